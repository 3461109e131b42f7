/**
 * The visitor's display name and color, kept in `localStorage` so every tab of one browser
 * shows the same name (each tab is still its own face: the tab id lives in sessionStorage).
 * `?name=Ada` in the address sets the name, handy for demos and tests.
 */

export const NAME_KEY = "herenow:name";
export const COLOR_KEY = "herenow:color";
export const MAX_NAME_CHARS = 40;

const FIRST_NAMES = [
  "Ada",
  "Grace",
  "Linus",
  "Alan",
  "Barbara",
  "Edsger",
  "Margaret",
  "Ken",
  "Dennis",
  "Radia",
  "Katherine",
  "Donald",
  "Frances",
  "John",
  "Hedy",
  "Tim",
  "Sophie",
  "Guido",
  "Anita",
  "Niklaus",
];
export const COLORS = ["#2a9d8f", "#e76f51", "#e9c46a", "#264653", "#f4a261", "#6d597a", "#355070", "#b56576"];

type Storage = Pick<globalThis.Storage, "getItem" | "setItem">;

function read(storage: Storage | null, key: string): string | null {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function write(storage: Storage | null, key: string, value: string): void {
  try {
    storage?.setItem(key, value);
  } catch {
    // Private mode or full: the name lasts for this page.
  }
}

export function cleanName(name: string): string {
  return name.replace(/\s+/g, " ").trim().slice(0, MAX_NAME_CHARS);
}

export interface Profile {
  name: string;
  color: string;
}

/** The profile to start with: the `?name=` parameter, the stored one, or a fresh random one. */
export function loadProfile(storage: Storage | null, search: string, random: () => number = Math.random): Profile {
  const fromQuery = cleanName(new URLSearchParams(search).get("name") ?? "");
  let name = fromQuery || cleanName(read(storage, NAME_KEY) ?? "");
  if (!name) name = FIRST_NAMES[Math.floor(random() * FIRST_NAMES.length)] ?? "Ada";
  let color = read(storage, COLOR_KEY) ?? "";
  if (!/^#[0-9a-f]{6}$/i.test(color)) color = COLORS[Math.floor(random() * COLORS.length)] ?? "#2a9d8f";
  write(storage, NAME_KEY, name);
  write(storage, COLOR_KEY, color);
  return { name, color };
}

export function saveName(storage: Storage | null, name: string): void {
  const clean = cleanName(name);
  if (clean) write(storage, NAME_KEY, clean);
}
