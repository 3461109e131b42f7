// The demo end to end through `vercel dev -L`: the page from the `web` service (Vite),
// its WebSocket upgraded through the CLI's router to the `server` service (our Rust
// function), as one project on one origin, the way a deployment serves it.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPerson, waitForLabel, waitLive } from "../lib/browser";
import { ARTIFACTS } from "../lib/paths";
import { TEST_GRACE_MS } from "../lib/process";
import { startVercelDev, type VercelDev } from "../lib/vercel";

let dev: VercelDev | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  // A first run compiles the function; later ones reuse the target dir.
  dev = await startVercelDev({ GRACE_MS: String(TEST_GRACE_MS), LOG_FORMAT: "json" }, 540_000);
  browser = await launchChromium();
  // Vite bundles the demo's dependencies on the first page load: take that here, with
  // room for it, rather than in a test's timing.
  const warm = await browser.newPage();
  await warm.goto(`${dev.url}/rooms/warm-up?name=Warm`);
  await waitLive(warm, 60_000);
  await warm.close();
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await dev?.stop();
});

// Faces of people here: someone who just left stays a while, greyed (`hn-face--left`).
const faces = (page: import("playwright-core").Page) =>
  page.locator(".hn-stack .hn-face:not(.hn-face--leaving):not(.hn-face--left)").count();

describe("the demo through vercel dev", () => {
  it("the server service answers under /server, unstripped", async () => {
    const ready = (await (await fetch(`${dev!.url}/server/readyz`)).json()) as {
      ready: boolean;
      warnings: string[];
    };
    expect(ready.ready).toBe(true);
    // vercel dev sets VERCEL=1 and there is no REDIS_URL here: the warning shows.
    expect(ready.warnings.join(" ")).toContain("REDIS_URL");
    const room = (await (await fetch(`${dev!.url}/server/rooms/nobody-here`)).json()) as { count: number };
    expect(room.count).toBe(0);
  });

  it("two pages in one room see two faces; closing one removes its face", async () => {
    const room = `vercel-${Date.now().toString(36)}`;
    const ada = await openPerson(browser!, dev!.url, room, "Ada");
    const linus = await openPerson(browser!, dev!.url, room, "Linus");
    await waitForLabel(ada.page, "2 people here: Linus and you");
    await waitForLabel(linus.page, "2 people here: Ada and you");
    expect(await faces(ada.page)).toBe(2);
    expect(await faces(linus.page)).toBe(2);
    mkdirSync(ARTIFACTS, { recursive: true });
    await ada.page.screenshot({ path: join(ARTIFACTS, "vercel-dev-two-faces.png") });

    await linus.context.close();
    await waitForLabel(ada.page, "1 person here: you", TEST_GRACE_MS + 5000);
    await expect.poll(() => faces(ada.page), { timeout: 3000 }).toBe(1);
    expect(await ada.page.locator(".hn-stack .hn-face--left").count()).toBe(1);
    await ada.context.close();
  });
});
