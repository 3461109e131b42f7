// The demo's development sign-in in a real browser: herenow with AUTH=optional and
// DEV_TOKENS=true; two browsers signed in with one name are one verified face with two
// tabs, next to an anonymous visitor; signing out makes a browser anonymous again.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openPerson, selfId, waitForLabel, waitLive } from "./lib/browser";
import { ARTIFACTS } from "./lib/paths";
import { startHerenow, type Herenow } from "./lib/process";

let server: Herenow | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  server = await startHerenow({
    AUTH: "optional",
    AUTH_SECRET: "e2e-secret-0123456789abcdef-0123456789",
    DEV_TOKENS: "true",
  });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe("development sign-in", () => {
  it("one name on two browsers is one verified face with two tabs", async () => {
    const base = server!.url;
    const linus = await openPerson(browser!, base, "lobby", "Linus");
    const laptop = await openPerson(browser!, base, "lobby", "Ada");
    const phone = await openPerson(browser!, base, "lobby", "Ada");
    await waitForLabel(linus.page, "3 people here: Ada, Ada and you");
    for (const p of [laptop, phone]) {
      await p.page.click("text=Sign in as Ada");
      await p.page.waitForSelector("text=Signed in as Ada", { timeout: 5000 });
      await waitLive(p.page);
    }
    await waitForLabel(linus.page, "2 people here: Ada and you");
    const laptopId = await selfId(laptop.page);
    expect(laptopId).toMatch(/^u_[A-Za-z0-9_-]{22}$/);
    expect(await selfId(phone.page)).toBe(laptopId);
    // The people list marks Ada verified, with both devices.
    const row = linus.page.locator(`li.people__row[data-presence-id="${laptopId}"]`);
    await row.locator(".people__verified").waitFor({ timeout: 5000 });
    expect(await row.textContent()).toContain("2 tabs");
    // The token went in the hello, never on the URL.
    expect(laptop.sent.some((f) => f.includes('"type":"hello"') && f.includes('"token"'))).toBe(true);
    mkdirSync(ARTIFACTS, { recursive: true });
    await linus.page.screenshot({ path: join(ARTIFACTS, "signin.png") });

    // Signing out: the phone is an anonymous visitor again (a second "Ada" face).
    await phone.page.click("text=Sign out");
    await waitForLabel(linus.page, "3 people here: Ada, Ada and you");
    expect(await selfId(phone.page)).not.toBe(laptopId);
    for (const p of [linus, laptop, phone]) await p.context.close();
  });
});
