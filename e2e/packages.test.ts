// The npm packages as published: packed, linted (publint, attw), their contents checked,
// then installed from the tarballs into three apps outside this workspace (e2e/consumers/):
// plain Node, Vite + React 18, Next.js App Router + React 19. Each app is type-checked under
// moduleResolution "bundler" and "nodenext" and built; the Node program joins a real
// herenow, and the two web apps are served and opened in chromium, where two pages show two
// faces. `make test-packages` runs it (npm run packages --workspace e2e).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, waitForLabel } from "./lib/browser";
import { installConsumer, PACKAGES, packPackages, run, toolEnv, type PackageName } from "./lib/consumers";
import { ARTIFACTS, REPO } from "./lib/paths";
import { freePort, kill, startHerenow, waitHealthy, type Herenow } from "./lib/process";

const BIN = join(REPO, "node_modules/.bin");
const work = mkdtempSync(join(tmpdir(), "herenow-consumers-"));
let tarballs: Record<PackageName, string>;
let browser: Browser | undefined;
const servers: Herenow[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  tarballs = await packPackages(join(work, "packs"));
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([...children.map(kill), ...servers.map((s) => s.stop())]);
  if (process.env.KEEP_CONSUMERS !== "1") rmSync(work, { recursive: true, force: true });
});

/** Every file of a directory, as paths relative to it. */
function files(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path, base) : [relative(base, path)];
  });
}

/** The strings of a JSON value: an `exports` map's targets, not its keys. */
function values(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (v && typeof v === "object") return Object.values(v).flatMap(values);
  return [];
}

describe("docs/WEB.md", () => {
  it("shows the consumer apps' sources as they are", () => {
    const doc = readFileSync(join(REPO, "docs/WEB.md"), "utf8");
    const blocks = [...doc.matchAll(/^<!-- (e2e\/consumers\/\S+) -->\n```\w*\n([\s\S]*?)^```$/gm)];
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    for (const [, path, code] of blocks) expect(code, path).toBe(readFileSync(join(REPO, path!), "utf8"));
  });
});

describe("the tarballs", () => {
  const unpacked = (name: PackageName) => join(work, "unpacked", name, "package");

  beforeAll(async () => {
    for (const name of PACKAGES) {
      mkdirSync(join(work, "unpacked", name), { recursive: true });
      await run("tar", ["-xzf", tarballs[name], "-C", join(work, "unpacked", name)], { cwd: work });
    }
  });

  it("hold package.json and dist/ only, and nothing in them points at a .ts source", () => {
    for (const name of PACKAGES) {
      const dir = unpacked(name);
      const list = files(dir).sort();
      const expected = ["dist/index.d.ts", "dist/index.js", "package.json"];
      expect(list).toEqual(name === "react" ? [...expected.slice(0, 2), "dist/styles.css", "package.json"] : expected);
      for (const file of list) {
        // esbuild marks where each part of a bundle came from (`// src/roster.ts`): a
        // comment, not a reference. Any other mention of a `.ts`/`.tsx` file (but `.d.ts`)
        // would be one: an import, a types entry, a source map.
        const text = readFileSync(join(dir, file), "utf8").replace(/^\/\/ src\/[\w/.-]+\.tsx?$/gm, "");
        const sources = text.match(/[\w./-]+(?<!\.d)\.tsx?\b/g) ?? [];
        expect(sources, `${name}: ${file}`).toEqual([]);
        expect(text, `${name}: ${file}`).not.toMatch(/sourceMappingURL|\bsrc\//);
      }
      // Every path the manifest gives (exports' targets, types) is a file of the tarball.
      const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Record<string, unknown>;
      const targets = [manifest.exports, manifest.types, manifest.main, manifest.module].flatMap(values);
      expect(targets.length, name).toBeGreaterThan(2);
      for (const target of targets) expect(list, `${name}: ${target}`).toContain(target.replace(/^\.\//, ""));
    }
  });

  it('the React entry is a client module ("use client" first) and ships its CSS', () => {
    const js = readFileSync(join(unpacked("react"), "dist/index.js"), "utf8");
    expect(js.startsWith('"use client";')).toBe(true);
    expect(js).toMatch(/from "@herenow\/client"/); // external: one client per app
    expect(js).toMatch(/from "react"/);
    expect(js).not.toMatch(/useSyncExternalStoreWithSelector|function createElement/); // React not bundled
    expect(readFileSync(join(unpacked("react"), "dist/styles.css"), "utf8")).toMatch(/\.hn-stack/);
  });

  it("publint finds no problem, suggestions included", async () => {
    for (const name of PACKAGES) {
      const out = await run(join(BIN, "publint"), ["run", tarballs[name], "--strict", "--level", "suggestion"], {
        cwd: work,
      });
      expect(out, name).toMatch(/All good!/);
    }
  });

  it("are the types wrong (attw, esm-only profile): no", async () => {
    for (const name of PACKAGES) {
      // The CSS entry has no types by nature; every JavaScript entry is checked.
      const args = [tarballs[name], "--profile", "esm-only", "--format", "table-flipped", "--no-emoji"];
      if (name === "react") args.push("--exclude-entrypoints", "./styles.css");
      // attw exits non-zero on any problem; the table shows how each entry resolved.
      const out = await run(join(BIN, "attw"), args, { cwd: work });
      expect(out, name).toMatch(new RegExp(`"@herenow/${name}"\\s*│ OK \\(ESM\\)\\s*│ OK\\s*│`));
    }
  });
});

/**
 * A person on a page: their own browser context. Page errors, console errors and failed
 * requests are collected (but the favicon, which the apps do not have).
 */
async function open(url: string): Promise<{ page: Page; errors: string[]; close: () => Promise<void> }> {
  browser ??= await launchChromium();
  const context = await browser.newContext({ viewport: { width: 900, height: 500 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    // A failed load is reported below, with its URL.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && new URL(r.url()).pathname !== "/favicon.ico") errors.push(`${r.status()} ${r.url()}`);
  });
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}

/** Two pages in one room, each showing both faces. */
async function twoFaces(urlA: (name: string) => string, urlB: (name: string) => string, shot: string): Promise<void> {
  const a = await open(urlA("Ada"));
  const b = await open(urlB("Linus"));
  try {
    await waitForLabel(a.page, "2 people here: Linus and you", 10_000);
    await waitForLabel(b.page, "2 people here: Ada and you", 5_000);
    expect(await a.page.locator(".hn-face").count()).toBe(2);
    expect(await b.page.locator(".hn-face").count()).toBe(2);
    // The stylesheet shipped as dist/styles.css is applied (it defines the theme's properties).
    expect(await a.page.$eval(".hn-stack", (el) => getComputedStyle(el).getPropertyValue("--hn-size"))).not.toBe("");
    mkdirSync(ARTIFACTS, { recursive: true });
    await a.page.screenshot({ path: join(ARTIFACTS, shot) });
    expect([...a.errors, ...b.errors]).toEqual([]);
    await b.close();
    await waitForLabel(a.page, "1 person here: you", 8_000);
  } finally {
    await a.close();
    await b.close();
  }
}

describe("a plain Node app (@herenow/client and ws)", () => {
  let dir: string;

  it("installs from its lockfile and the tarballs, type-checks (bundler, nodenext) and builds", async () => {
    dir = await installConsumer("node", work);
    await run("npm", ["run", "typecheck"], { cwd: dir });
    await run("npm", ["run", "build"], { cwd: dir });
  }, 300_000);

  it("joins a real herenow and receives the roster, two processes seeing each other", async () => {
    const server = await startHerenow({ STATIC_DIR: "" });
    servers.push(server);
    const env = toolEnv({ HERENOW_URL: server.url });
    const join2 = (name: string) => run("node", ["dist/main.js", "node-consumer", name, "2"], { cwd: dir, env });
    const [ada, linus] = await Promise.all([join2("Ada"), join2("Linus")]);
    for (const out of [ada, linus]) expect(out.trim().split(",").sort()).toEqual(["Ada", "Linus"]);
  }, 30_000);
});

describe("a Vite + React 18 app", () => {
  let dir: string;

  it("installs from its lockfile and the tarballs, type-checks (bundler, nodenext) and builds", async () => {
    dir = await installConsumer("vite", work);
    await run("npm", ["run", "typecheck"], { cwd: dir });
    await run("npm", ["run", "build"], { cwd: dir });
  }, 300_000);

  it("served by herenow: two pages in chromium show two faces", async () => {
    const server = await startHerenow({ STATIC_DIR: join(dir, "dist") });
    servers.push(server);
    const url = (name: string) => `${server.url}/?room=vite-consumer&name=${name}`;
    await twoFaces(url, url, "consumer-vite.png");
  }, 60_000);
});

describe("a Next.js App Router app (React 19, Server Components)", () => {
  let dir: string;

  it("installs from its lockfile and the tarballs, type-checks (nodenext, bundler) and builds", async () => {
    dir = await installConsumer("next", work);
    await run("npm", ["run", "typecheck"], { cwd: dir });
    await run("npm", ["run", "build"], { cwd: dir, timeoutMs: 300_000 });
  }, 600_000);

  it("next start: a page with a client component and one using the widget directly show two faces", async () => {
    const server = await startHerenow({ STATIC_DIR: "" });
    servers.push(server);
    const port = await freePort();
    const next = spawn(join(dir, "node_modules/.bin/next"), ["start", "-p", String(port), "-H", "127.0.0.1"], {
      cwd: dir,
      env: toolEnv({ HERENOW_URL: server.url, NODE_ENV: "production" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(next);
    let log = "";
    next.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    next.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    const base = `http://127.0.0.1:${port}`;
    await waitHealthy(`${base}/rooms/lobby`, 20_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${log.slice(-3000)}`);
    });
    // Server-rendered: the stack is in the HTML before any script runs, as an empty room.
    const html = await (await fetch(`${base}/direct/next-consumer?name=Ada`)).text();
    expect(html).toMatch(/class="hn-stack/);
    await twoFaces(
      (name) => `${base}/rooms/next-consumer?name=${name}`,
      (name) => `${base}/direct/next-consumer?name=${name}`,
      "consumer-next.png",
    );
    expect(log).not.toMatch(/\berror\b/i);
  }, 60_000);
});
