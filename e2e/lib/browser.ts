// Chromium through playwright-core: Debian's /usr/bin/chromium, never a downloaded build.
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

/**
 * Launches headless chromium. Playwright gives every launch a fresh temporary
 * --user-data-dir of its own (and removes it on close).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** One person: their own browser context (own localStorage), one tab, and its WebSocket frames. */
export interface Person {
  name: string;
  context: BrowserContext;
  page: Page;
  /** Text frames this tab sent on its WebSockets, in order (reloads included). */
  sent: string[];
}

export async function openPerson(
  browser: Browser,
  base: string,
  room: string,
  name: string,
  options: { deviceScaleFactor?: number; query?: string } = {},
): Promise<Person> {
  const context = await browser.newContext({
    viewport: { width: 1200, height: 760 },
    deviceScaleFactor: options.deviceScaleFactor ?? 1,
  });
  const page = await context.newPage();
  const sent: string[] = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => typeof f.payload === "string" && sent.push(f.payload)));
  await page.goto(`${base}/rooms/${room}?name=${encodeURIComponent(name)}${options.query ? `&${options.query}` : ""}`);
  await waitLive(page);
  return { name, context, page, sent };
}

/** Waits until the page's client has joined its room (the status badge says so). */
export async function waitLive(page: Page, timeout = 5000): Promise<void> {
  await page.waitForSelector('[data-status="open"]', { timeout });
}

/** The avatar stack's accessible name, e.g. "2 people here: Linus and you". */
export function stackLabel(page: Page): Promise<string | null> {
  return page.getAttribute(".hn-stack", "aria-label");
}

/** Waits for the avatar stack to read `expected`; the error says what it read instead. */
export async function waitForLabel(page: Page, expected: string, timeout = 5000): Promise<void> {
  try {
    await page.waitForFunction(
      (exp) => document.querySelector(".hn-stack")?.getAttribute("aria-label") === exp,
      expected,
      { timeout, polling: 25 },
    );
  } catch {
    throw new Error(`avatar stack: expected "${expected}" within ${timeout} ms, saw "${await stackLabel(page)}"`);
  }
}

/** Waits for the typing indicator to read `expected` ("" = nobody typing). */
export async function waitForTyping(page: Page, expected: string, timeout = 5000): Promise<void> {
  try {
    await page.waitForFunction((exp) => (document.querySelector(".hn-typing")?.textContent ?? "") === exp, expected, {
      timeout,
      polling: 25,
    });
  } catch {
    const seen = await page.textContent(".hn-typing");
    throw new Error(`typing indicator: expected "${expected}" within ${timeout} ms, saw "${seen}"`);
  }
}

/** This tab's presence id, read from its own face. */
export function selfId(page: Page): Promise<string | null> {
  return page.getAttribute(".hn-face--self", "data-presence-id");
}

/** The activity log's lines, newest first ("Linus joined"). */
export function activity(page: Page): Promise<string[]> {
  return page.$$eval(".hn-activity__text", (els) => els.map((e) => (e.textContent ?? "").trim()));
}

/**
 * Records every value the avatar stack's label takes from now on, so a test can prove
 * that something never showed, even for one frame.
 */
export async function recordLabels(page: Page): Promise<() => Promise<string[]>> {
  await page.evaluate(() => {
    const w = window as unknown as { __labels: string[]; __labelObserver?: MutationObserver };
    w.__labelObserver?.disconnect();
    w.__labels = [];
    const stack = document.querySelector(".hn-stack");
    if (!stack) throw new Error("no avatar stack");
    w.__labelObserver = new MutationObserver(() => w.__labels.push(stack.getAttribute("aria-label") ?? ""));
    w.__labelObserver.observe(stack, { attributes: true, attributeFilter: ["aria-label"] });
  });
  return () => page.evaluate(() => (window as unknown as { __labels: string[] }).__labels);
}

/** How many of a tab's sent frames were typing events, and with which value. */
export function typingFrames(sent: readonly string[]): boolean[] {
  return sent.flatMap((f) => {
    const m = JSON.parse(f) as { type?: string; event?: string; data?: { typing?: boolean } };
    return m.type === "event" && m.event === "typing" ? [m.data?.typing === true] : [];
  });
}

/** A face of the top bar's stack (the whole room), by presence id. */
export const topFace = (id: string) => `.topbar .hn-stack [data-presence-id="${id}"]`;

/**
 * Waits until the top bar shows `id` with `status` (`active`, `idle`, `away`, `left`),
 * or, with `null`, shows no face of `id` at all.
 */
export async function waitForFace(page: Page, id: string, status: string | null, timeout = 5000): Promise<void> {
  try {
    await page.waitForFunction(
      ([sel, want]) => {
        const el = document.querySelector<HTMLElement>(sel!);
        return want === null ? el === null : el?.dataset.status === want && !el.classList.contains("hn-face--leaving");
      },
      [topFace(id), status] as const,
      { timeout, polling: 25 },
    );
  } catch {
    const seen = await page.getAttribute(topFace(id), "data-status").catch(() => null);
    throw new Error(`face ${id}: expected ${status ?? "no face"} within ${timeout} ms, saw ${seen ?? "no face"}`);
  }
}

/** The presence ids shown in one section's stack, in screen order. */
export function sectionFaces(page: Page, section: string): Promise<string[]> {
  return page.$$eval(`#${section} .hn-stack .hn-face:not(.hn-face--leaving)`, (els) =>
    els.map((e) => (e as HTMLElement).dataset.presenceId ?? ""),
  );
}
