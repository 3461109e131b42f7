// The scenario both end-to-end suites run: people on pages of the demo, seeing each other.
// `a` (Ada) and `c` (Grace) use server A; `b` (Linus) uses server B, which is the same
// server in the one-instance suite and another instance sharing Redis in the other.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  activity,
  launchChromium,
  openPerson,
  recordLabels,
  selfId,
  stackLabel,
  typingFrames,
  waitForLabel,
  waitForTyping,
  waitLive,
  type Person,
} from "./browser";
import { ARTIFACTS } from "./paths";
import { TEST_GRACE_MS } from "./process";

export interface Servers {
  baseA: string;
  baseB: string;
}

export interface ScenarioState {
  browser: Browser;
  servers: Servers;
  a: Person;
}

/**
 * Declares the scenario's tests in the calling `describe`. `servers` is called in
 * `beforeAll`; the returned `state` lets a suite add tests of its own afterwards.
 */
export function presenceScenario(
  servers: () => Promise<Servers>,
  { shots = false }: { shots?: boolean } = {},
): { state: () => ScenarioState } {
  let browser: Browser;
  let s: Servers;
  let a: Person;
  let b: Person;
  let c: Person;

  beforeAll(async () => {
    s = await servers();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("two pages in lobby see each other's faces, within a second", async () => {
    // Ada's screen is the one in the screenshots: a sharp one.
    a = await openPerson(browser, s.baseA, "lobby", "Ada", { deviceScaleFactor: 2 });
    expect(await stackLabel(a.page)).toBe("1 person here: you");
    b = await openPerson(browser, s.baseB, "lobby", "Linus");
    // B has its snapshot; A must show B within a second of that.
    await waitForLabel(a.page, "2 people here: Linus and you", 1000);
    await waitForLabel(b.page, "2 people here: Ada and you", 1000);
    expect(await a.page.locator(".hn-face").count()).toBe(2);
    // Arriving is silent: B's log does not list A as "joined"; A's log lists B.
    expect(await activity(b.page)).toEqual([]);
    expect(await activity(a.page)).toEqual(["Linus joined"]);
  });

  it("a page in design-review sees neither, and they do not see it", async () => {
    c = await openPerson(browser, s.baseA, "design-review", "Grace");
    expect(await stackLabel(c.page)).toBe("1 person here: you");
    await sleep(300); // a wrong broadcast would have arrived by now
    expect(await stackLabel(c.page)).toBe("1 person here: you");
    expect(await stackLabel(a.page)).toBe("2 people here: Linus and you");
    expect(await stackLabel(b.page)).toBe("2 people here: Ada and you");
  });

  it("a reload keeps the same face, with no leave or join for the others", async () => {
    const before = await selfId(b.page);
    expect(before).toMatch(/^[a-z0-9]{16}$/);
    const labels = await recordLabels(a.page);
    const logBefore = await activity(a.page);
    await b.page.reload();
    await waitLive(b.page);
    expect(await selfId(b.page)).toBe(before);
    await waitForLabel(b.page, "2 people here: Ada and you", 1000);
    // Past the grace window: a leave would have been broadcast by now.
    await sleep(TEST_GRACE_MS + 500);
    expect(await activity(a.page)).toEqual(logBefore);
    expect(await labels()).not.toContain("1 person here: you");
    expect(await stackLabel(a.page)).toBe("2 people here: Linus and you");
  });

  it("typing in one page shows the indicator in the other, then it clears", async () => {
    const sentBefore = b.sent.length;
    await b.page.click("textarea");
    const started = Date.now();
    await b.page.keyboard.type("Shipping it today", { delay: 40 });
    const typedFor = Date.now() - started;
    await waitForTyping(a.page, "Linus is typing…", 2000);
    if (shots) {
      mkdirSync(ARTIFACTS, { recursive: true });
      await a.page
        .locator(".card")
        .first()
        .screenshot({ path: join(ARTIFACTS, "typing-indicator.png") });
    }
    expect(await b.page.textContent(".hn-typing")).toBe(""); // we never see ourselves
    // 2 s after the last keystroke the sender says it stopped.
    await waitForTyping(a.page, "", 4000);
    // One signal, a refresh per 3 s of continued typing, one stop: never one per keystroke.
    const frames = typingFrames(b.sent.slice(sentBefore));
    expect(frames[0]).toBe(true);
    expect(frames.slice(1, -1).every((t) => t)).toBe(true);
    expect(frames[frames.length - 1]).toBe(false);
    // Typing lasts until 2 s after the last keystroke, with a refresh every 3 s of it.
    expect(frames.length).toBeLessThanOrEqual(2 + Math.floor((typedFor + 2000) / 3000));
    expect(frames.length).toBeLessThan("Shipping it today".length / 3);
  });

  it("closing a page removes its face after the grace window", async () => {
    await b.page.close();
    await waitForLabel(a.page, "1 person here: you", TEST_GRACE_MS + 3000);
    expect((await activity(a.page))[0]).toBe("Linus left");
    await b.context.close();
    await c.context.close();
  });

  return { state: () => ({ browser, servers: s, a }) };
}
