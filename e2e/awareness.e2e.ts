// Status, location, follow and recently left, in chromium against one herenow instance.
// Linus is a Playwright page; Ada is a tab of a chromium driven over the DevTools protocol
// directly (lib/cdp.ts), so that bringing another tab to the front really hides her page,
// as it does for a person switching tabs. Screenshots go to test-artifacts/.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  launchChromium,
  openPerson,
  sectionFaces,
  selfId,
  topFace,
  waitForFace,
  waitForLabel,
  type Person,
} from "./lib/browser";
import { RawChromium, type RawTab } from "./lib/cdp";
import { ARTIFACTS } from "./lib/paths";
import { TEST_GRACE_MS, startHerenow, type Herenow } from "./lib/process";

const ROOM = "awareness";
/** Linus's page keeps faces that left this long (the demo's ?recentMs=). */
const RECENT_MS = 4000;
const SECTIONS = ["overview", "goals", "timeline", "risks", "decisions"];

let server: Herenow;
let browser: Browser;
let raw: RawChromium;

beforeAll(async () => {
  server = await startHerenow();
  browser = await launchChromium();
  raw = await RawChromium.launch();
});
afterAll(async () => {
  await raw?.close();
  await browser?.close();
  await server?.stop();
});

/** Where a section's top is in the window, px. */
function sectionTop(page: Page, section: string): Promise<number> {
  return page.evaluate((id) => document.getElementById(id)!.getBoundingClientRect().top, section);
}

/** Waits until `section` is at the top of Linus's window (under the sticky bar). */
async function waitScrolledTo(page: Page, section: string, timeout = 3000): Promise<void> {
  try {
    await page.waitForFunction(
      (id) => {
        const top = document.getElementById(id)!.getBoundingClientRect().top;
        return top >= 0 && top <= 120;
      },
      section,
      { timeout, polling: 25 },
    );
  } catch {
    throw new Error(
      `#${section} not scrolled to within ${timeout} ms: its top is at ${await sectionTop(page, section)}`,
    );
  }
}

/** Scrolls Ada's page the way the demo expects a reader to: the section's heading to the top. */
async function adaReads(ada: RawTab, section: string): Promise<void> {
  await ada.evaluate(`document.getElementById(${JSON.stringify(section)}).scrollIntoView({ block: "start" }), true`);
}

/** Waits until Linus's page shows exactly `want` in every section's stack. */
async function waitForSections(page: Page, want: Record<string, string[]>, timeout = 3000): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const seen: Record<string, string[]> = {};
    for (const s of SECTIONS) seen[s] = await sectionFaces(page, s);
    const expected = Object.fromEntries(SECTIONS.map((s) => [s, want[s] ?? []]));
    if (JSON.stringify(seen) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) {
      throw new Error(`section stacks: expected ${JSON.stringify(expected)}, saw ${JSON.stringify(seen)}`);
    }
    await sleep(50);
  }
}

describe("status, sections, follow and recently left", () => {
  let linus: Person;
  let linusId: string;
  let ada: RawTab;
  let adaId: string;

  it("a page the browser hides turns its face away on the other page within 2 s, and active again when shown", async () => {
    linus = await openPerson(browser, server.url, ROOM, "Linus", {
      deviceScaleFactor: 2,
      query: `recentMs=${RECENT_MS}`,
    });
    linusId = (await selfId(linus.page))!;
    ada = await raw.open(`${server.url}/rooms/${ROOM}?name=Ada`);
    await ada.waitFor(`document.querySelector('[data-status="open"] ')`);
    adaId = await ada.evaluate<string>(`document.querySelector(".hn-face--self").dataset.presenceId`);
    await waitForLabel(linus.page, "2 people here: Ada and you", 2000);
    await waitForFace(linus.page, adaId, "active");

    // Another tab to the front: the browser itself hides Ada's page.
    const other = await raw.open("about:blank");
    const hiddenAt = Date.now();
    expect(await ada.evaluate("document.visibilityState")).toBe("hidden");
    await waitForFace(linus.page, adaId, "away", 2000);
    expect(Date.now() - hiddenAt).toBeLessThan(2000);
    expect(await linus.page.getAttribute(topFace(adaId), "aria-label")).toBe("Ada, away");
    expect(await linus.page.locator(`${topFace(adaId)} .hn-face__badge`).count()).toBe(1);
    // Still in the room: away is not gone.
    expect(await linus.page.getAttribute(".hn-stack", "aria-label")).toBe("2 people here: Ada and you");

    mkdirSync(ARTIFACTS, { recursive: true });
    await linus.page.mouse.move(5, 700);
    await linus.page.waitForTimeout(300);
    const box = (await linus.page.locator(".topbar__presence").boundingBox())!;
    await linus.page.screenshot({
      path: join(ARTIFACTS, "status-away-face.png"),
      clip: { x: box.x - 12, y: box.y - 8, width: box.width + 24, height: box.height + 16 },
    });
    await linus.page.screenshot({ path: join(ARTIFACTS, "demo-away.png") });

    // Ada's tab to the front again: visible and focused, so active.
    await ada.bringToFront();
    const shownAt = Date.now();
    expect(await ada.evaluate("document.visibilityState")).toBe("visible");
    await waitForFace(linus.page, adaId, "active", 2000);
    expect(Date.now() - shownAt).toBeLessThan(2000);
    expect(await linus.page.getAttribute(topFace(adaId), "aria-label")).toBe("Ada");
    await other.close();
  });

  it("a section's stack shows only who is there", async () => {
    await waitForSections(linus.page, {}); // at the top of the page nobody is in a section
    await adaReads(ada, "timeline");
    await linus.page.evaluate(() => document.getElementById("goals")!.scrollIntoView({ block: "start" }));
    await waitForSections(linus.page, { goals: [linusId], timeline: [adaId] });
    expect(await linus.page.getAttribute("#timeline .hn-stack", "aria-label")).toBe("1 person here: Ada");
    // Ada's page agrees, and still counts everyone at the top.
    await ada.waitFor(`document.querySelector("#goals .hn-face")?.dataset.presenceId === ${JSON.stringify(linusId)}`);
    expect(await ada.evaluate(`document.querySelector(".hn-stack").getAttribute("aria-label")`)).toBe(
      "2 people here: Linus and you",
    );
    // The side list says where each one is.
    expect(await linus.page.textContent(`.people [data-presence-id="${adaId}"] .people__status`)).toContain(
      "in Timeline",
    );

    await adaReads(ada, "risks");
    await waitForSections(linus.page, { goals: [linusId], risks: [adaId] });

    await adaReads(ada, "timeline");
    await waitForSections(linus.page, { goals: [linusId], timeline: [adaId] });
    await linus.page.mouse.move(5, 700);
    await linus.page.waitForTimeout(300); // enter animations
    const goals = (await linus.page.locator("#goals").boundingBox())!;
    const timeline = (await linus.page.locator("#timeline .section__head").boundingBox())!;
    await linus.page.screenshot({
      path: join(ARTIFACTS, "section-stacks.png"),
      clip: {
        x: goals.x - 16,
        y: goals.y - 8,
        width: goals.width + 32,
        height: timeline.y + timeline.height - goals.y + 16,
      },
    });
  });

  it("following scrolls the follower's page to the other's section and keeps up; scrolling yourself stops it", async () => {
    const page = linus.page;
    await page.click(topFace(adaId));
    await page.getByRole("menuitem", { name: "Follow Ada" }).click();
    await page.waitForSelector(".hn-follow__bar", { timeout: 1000 });
    expect(await page.textContent(".hn-follow__bar")).toContain("Following Ada");
    expect(await page.getAttribute(".hn-follow", "data-following")).toBe(adaId);

    // Ada is in the timeline; Linus's page goes there.
    await waitScrolledTo(page, "timeline");
    // Ada moves on; Linus's page follows.
    await adaReads(ada, "decisions");
    await waitScrolledTo(page, "decisions");
    // Following moved Linus too: both are in Decisions now (you first in your own stacks).
    await waitForSections(page, { decisions: [linusId, adaId] });
    await page.waitForTimeout(400); // the smooth scroll settles
    await page.screenshot({ path: join(ARTIFACTS, "follow-banner.png") });

    // Linus scrolls by himself: following stops at once, and Ada's next move is hers alone.
    await page.mouse.move(600, 400);
    await page.mouse.wheel(0, -300);
    await page.waitForSelector(".hn-follow", { state: "detached", timeout: 1000 });
    await page.waitForTimeout(500); // his own scroll settles
    const before = await page.evaluate(() => window.scrollY);
    await adaReads(ada, "overview");
    await page.waitForFunction(
      (id) => document.querySelector<HTMLElement>("#overview .hn-face")?.dataset.presenceId === id,
      adaId,
      { timeout: 3000, polling: 25 },
    );
    await page.waitForTimeout(500);
    expect(await page.evaluate(() => window.scrollY)).toBe(before);
  });

  it("a closed page's face greys, says when it left, and then goes", async () => {
    await ada.close();
    // The socket closes as a tab's does (no 1000): the grace window passes, then the leave.
    await waitForFace(linus.page, adaId, "left", TEST_GRACE_MS + 3000);
    const leftAt = Date.now();
    expect(await linus.page.getAttribute(topFace(adaId), "aria-label")).toBe("Ada, left just now");
    expect(await linus.page.getAttribute(".hn-stack", "aria-label")).toBe("1 person here: you");
    expect(await linus.page.textContent(`.people [data-presence-id="${adaId}"]`)).toContain("left just now");
    await linus.page.hover(topFace(adaId));
    expect(await linus.page.textContent('[role="tooltip"]')).toBe("Ada · left just now");
    await linus.page.screenshot({ path: join(ARTIFACTS, "recently-left.png") });
    await linus.page.mouse.move(5, 700);
    // It stays for recentMs, then goes.
    await sleep(RECENT_MS / 2);
    expect(await linus.page.getAttribute(topFace(adaId), "data-status")).toBe("left");
    await waitForFace(linus.page, adaId, null, RECENT_MS + 2000);
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(RECENT_MS - 500);
    await linus.context.close();
  });
});
