// One herenow instance (memory store) serving the built demo: the whole scenario, then
// the overflow screenshot.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { activity, openPerson, selfId, waitForLabel, waitLive } from "./lib/browser";
import { ARTIFACTS } from "./lib/paths";
import { startHerenow, type Herenow } from "./lib/process";
import { presenceScenario } from "./lib/scenario";

let server: Herenow | undefined;
afterAll(async () => {
  await server?.stop();
});

describe("one herenow instance", () => {
  const { state } = presenceScenario(
    async () => {
      server = await startHerenow();
      return { baseA: server.url, baseB: server.url };
    },
    { shots: true },
  );

  it("leaving a room through a link leaves at once (close 1000, no grace window)", async () => {
    const { browser, servers, a } = state();
    const b = await openPerson(browser, servers.baseA, "lobby", "Linus");
    await waitForLabel(a.page, "2 people here: Linus and you", 1000);
    const started = Date.now();
    await b.page.click('nav a[href="/rooms/launch-plan"]');
    await waitForLabel(b.page, "1 person here: you", 2000);
    await waitForLabel(a.page, "1 person here: you", 1000);
    expect(Date.now() - started).toBeLessThan(1500); // shorter than the 1.5 s grace window + a join
    expect(b.page.url()).toMatch(/\/rooms\/launch-plan\?name=Linus$/);
    await b.context.close();
  });

  it("any other path falls back to the lobby", async () => {
    const { browser, servers, a } = state();
    const d = await openPerson(browser, servers.baseA, "Not-A-Room!", "Barbara");
    await d.page.waitForURL((u) => u.pathname === "/rooms/lobby", { timeout: 2000 });
    await waitForLabel(a.page, "2 people here: Barbara and you", 1000);
    await d.page.goto(`${servers.baseA}/some/where/else`);
    await d.page.waitForURL((u) => u.pathname === "/rooms/lobby", { timeout: 2000 });
    await d.context.close();
    await waitForLabel(a.page, "1 person here: you", 5000);
  });

  it("a duplicated tab takes a new id; the original keeps its face", async () => {
    const { browser, servers, a } = state();
    const context = await browser.newContext();
    try {
      const first = await context.newPage();
      await first.goto(`${servers.baseA}/rooms/lobby?name=Katherine`);
      await waitLive(first);
      const id = (await selfId(first))!;
      await waitForLabel(a.page, "2 people here: Katherine and you", 1000);
      // What the browser's "Duplicate tab" does: the copy starts with the same sessionStorage.
      const copy = await context.newPage();
      await copy.addInitScript((tabId) => sessionStorage.setItem("herenow:tab-id", tabId), id);
      await copy.goto(`${servers.baseA}/rooms/lobby?name=Katherine`);
      await copy.waitForFunction(
        (old) => {
          const self = document.querySelector(".hn-face--self")?.getAttribute("data-presence-id");
          return !!self && self !== old && document.querySelector('[data-status="open"]') !== null;
        },
        id,
        { timeout: 3000 },
      );
      expect(await selfId(first)).toBe(id);
      expect(await first.evaluate(() => sessionStorage.getItem("herenow:tab-id"))).toBe(id);
      await waitForLabel(a.page, "3 people here: Katherine, Katherine and you", 2000);
      expect(await activity(a.page)).not.toContain("Katherine left");
    } finally {
      await context.close(); // also when an expectation failed: the next test needs an empty room
    }
    await waitForLabel(a.page, "1 person here: you", 5000);
  });

  it("the stack overflows into a +N chip; screenshots show faces", async () => {
    const { browser, servers, a } = state();
    // Six more people, as raw protocol-2 sockets from a page of the same origin.
    const crowd = await browser.newContext();
    const page = await crowd.newPage();
    await page.goto(`${servers.baseA}/server/healthz`);
    const wsUrl = servers.baseA.replace("http", "ws") + "/server/ws/lobby";
    await page.evaluate(async (url) => {
      const people: [string, string, string][] = [
        ["grace", "Grace", "active"],
        ["alan", "Alan", "active"],
        ["radia", "Radia", "away"],
        ["ken", "Ken", "active"],
        ["katherine", "Katherine", "active"],
        ["edsger", "Edsger", "active"],
      ];
      const w = window as unknown as { crowd: WebSocket[] };
      w.crowd = [];
      for (const [id, name, status] of people) {
        const ws = new WebSocket(url);
        w.crowd.push(ws);
        await new Promise<void>((resolve, reject) => {
          ws.onopen = () =>
            ws.send(
              JSON.stringify({
                type: "hello",
                id: `e2e-${id}`,
                proto: 2,
                user: { name },
                ...(status === "active" ? {} : { status }),
              }),
            );
          ws.onmessage = () => resolve();
          ws.onerror = () => reject(new Error("socket failed"));
        });
      }
    }, wsUrl);
    await waitForLabel(a.page, "7 people here: Edsger, Katherine, Ken, Radia, Alan, Grace and you", 3000);
    // Faces pushed into the chip play their exit animation first.
    await a.page.waitForFunction(() => document.querySelectorAll(".hn-face--leaving").length === 0, null, {
      timeout: 2000,
    });
    expect(await a.page.locator(".hn-face").count()).toBe(5);
    expect(await a.page.textContent(".hn-chip")).toBe("+2");
    expect(await a.page.getAttribute(".hn-chip", "aria-label")).toBe("2 more: Alan and Grace");
    expect(await a.page.locator(".hn-face--away").count()).toBe(1);
    expect((await activity(a.page)).slice(0, 2)).toEqual(["Edsger joined", "Katherine joined"]);

    mkdirSync(ARTIFACTS, { recursive: true });
    await a.page.mouse.move(5, 700); // no hover effects in the first picture
    await a.page.waitForTimeout(400); // let the enter animations finish
    const box = (await a.page.locator(".topbar__presence").boundingBox())!;
    const clip = { x: box.x - 12, y: box.y - 8, width: box.width + 24, height: box.height + 16 };
    const stackPng = await a.page.screenshot({ path: join(ARTIFACTS, "avatar-stack-overflow.png"), clip });
    await a.page.hover(".hn-chip");
    await a.page.waitForSelector('[role="tooltip"]');
    await a.page.waitForTimeout(200);
    await a.page.screenshot({
      path: join(ARTIFACTS, "avatar-stack-tooltip.png"),
      clip: { ...clip, height: clip.height + 64 },
    });
    await a.page.mouse.move(5, 700);
    await a.page.screenshot({ path: join(ARTIFACTS, "demo-lobby.png") });

    // The picture really shows faces: decode it in the browser and count colorful pixels
    // and distinct colors (a blank or all-grey strip would fail).
    const stats = await a.page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext("2d")!;
      ctx.drawImage(img, 0, 0);
      const { data } = ctx.getImageData(0, 0, img.width, img.height);
      let colorful = 0;
      const colors = new Set<number>();
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
        if (Math.max(r, g, b) - Math.min(r, g, b) > 60) {
          colorful++;
          colors.add(((r >> 5) << 6) | ((g >> 5) << 3) | (b >> 5));
        }
      }
      return { colorful: colorful / (data.length / 4), colors: colors.size, width: img.width };
    }, stackPng.toString("base64"));
    expect(stats.width).toBeGreaterThan(150);
    expect(stats.colorful).toBeGreaterThan(0.15);
    expect(stats.colors).toBeGreaterThanOrEqual(5);

    await crowd.close();
    await waitForLabel(a.page, "1 person here: you", 5000);
  });
});
