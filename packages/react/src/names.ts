/**
 * How people are named on screen and to screen readers ("Ada, Linus and you").
 * Pure functions, so the phrasing is tested once and shared by every component.
 */
import type { User } from "@herenow/client";

/** A user's name for display: the hint when given, else "Guest" and a short tag of the id. */
export function displayName(user: Pick<User, "id" | "name">): string {
  const name = user.name?.trim();
  return name ? name : `Guest ${user.id.slice(-4)}`;
}

/** "Ada", "Ada and Linus", "Ada, Linus and Grace". */
export function joinNames(names: readonly string[]): string {
  if (names.length <= 1) return names[0] ?? "";
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** The accessible name of an avatar stack: "3 people here: Ada, Linus and you". */
export function stackLabel(users: readonly User[], selfId: string | null): string {
  if (users.length === 0) return "Nobody here yet";
  const others = users.filter((u) => u.id !== selfId).map(displayName);
  const names = users.some((u) => u.id === selfId) ? [...others, "you"] : others;
  const count = users.length === 1 ? "1 person here" : `${users.length} people here`;
  return `${count}: ${joinNames(names)}`;
}

/** "Ada is typing…", "Ada and Linus are typing…", "3 people are typing…"; "" for nobody. */
export function typingPhrase(users: readonly User[]): string {
  const names = users.map(displayName);
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${joinNames(names)} are typing…`;
  return `${names.length} people are typing…`;
}

/** Whether a user is away (every tab of theirs hidden, or no input for 10 minutes). */
export function isAway(user: Pick<User, "status">): boolean {
  return user.status === "away";
}

/** Under this, "just now": nobody needs the seconds of who left. */
const JUST_NOW_MS = 45_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** "just now", "1 minute ago", "5 minutes ago", "2 hours ago"; `short`: "5 min ago", "2 h ago". */
export function agoPhrase(ms: number, short = false): string {
  if (ms < JUST_NOW_MS) return "just now";
  const minutes = Math.max(1, Math.round(ms / MINUTE));
  if (minutes < 60) return short ? `${minutes} min ago` : `${minutes} ${minutes === 1 ? "minute" : "minutes"} ago`;
  const hours = Math.round(ms / HOUR);
  return short ? `${hours} h ago` : `${hours} ${hours === 1 ? "hour" : "hours"} ago`;
}

/** How long a status has held, for a tooltip: "" under a minute, else "3 min", "2 h". */
export function durationPhrase(ms: number): string {
  if (ms < MINUTE) return "";
  const minutes = Math.round(ms / MINUTE);
  return minutes < 60 ? `${minutes} min` : `${Math.round(ms / HOUR)} h`;
}

/** How a face is named to assistive technology. */
export interface FaceDescription {
  /** This face is you. */
  self?: boolean;
  /** When they left, for someone recently gone (ms since the epoch). */
  leftAt?: number;
  /** The time now (ms), to say how long ago they left. */
  now?: number;
}

/**
 * A face's accessible name: the name and, when they are not active, their status:
 * "Ada", "Ada, idle", "Ada, away", "Ada (you), away", "Linus, left 1 minute ago".
 */
export function faceLabel(user: Pick<User, "id" | "name" | "status">, d: FaceDescription = {}): string {
  const name = d.self ? `${displayName(user)} (you)` : displayName(user);
  if (d.leftAt !== undefined) return `${name}, left ${agoPhrase((d.now ?? Date.now()) - d.leftAt)}`;
  return user.status === "active" ? name : `${name}, ${user.status}`;
}
