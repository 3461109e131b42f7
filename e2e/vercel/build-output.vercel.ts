// What `vercel build` (run just before by `make test-vercel-build`) wrote to
// .vercel/output: both services, routed as vercel.json says, the server as a Rust
// function with its max duration, the web service as the built demo.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "../lib/paths";

const OUTPUT = join(REPO, ".vercel/output");
const json = (path: string) => JSON.parse(readFileSync(join(OUTPUT, path), "utf8")) as Record<string, unknown>;
const vercelJson = JSON.parse(readFileSync(join(REPO, "vercel.json"), "utf8")) as {
  services: { server: { functions: Record<string, { maxDuration: number }> } };
};

describe("vercel build output", () => {
  it("exists (make test-vercel-build runs vercel build first)", () => {
    expect(existsSync(join(OUTPUT, "config.json")), `${OUTPUT}/config.json`).toBe(true);
  });

  it("routes /server/... to the server service and everything else to web, in that order", () => {
    const config = json("config.json") as { version: number; routes: { src?: string; destination?: unknown }[] };
    expect(config.version).toBe(3);
    const services = config.routes.filter((r) => r.destination).map((r) => [r.src, r.destination]);
    expect(services).toEqual([
      ["^/server(?:/(.*))$", { service: "server", type: "service" }],
      ["^(?:/(.*))$", { service: "web", type: "service" }],
    ]);
  });

  it("builds the server as a Rust function: our release binary, streaming, with the max duration", () => {
    const func = join(OUTPUT, "services/server/functions/index.func");
    const vc = JSON.parse(readFileSync(join(func, ".vc-config.json"), "utf8")) as {
      runtime: string;
      runtimeLanguage: string;
      handler: string;
      maxDuration: number;
      supportsResponseStreaming: boolean;
      filePathMap: Record<string, string>;
    };
    expect(vc.runtime).toBe("executable");
    expect(vc.runtimeLanguage).toBe("rust");
    expect(vc.supportsResponseStreaming).toBe(true);
    expect(vc.maxDuration).toBe(vercelJson.services.server.functions["src/main.rs"]!.maxDuration);
    const exe = vc.filePathMap[vc.handler];
    expect(exe).toMatch(/release\/herenow-vercel$/);
    const path = join(REPO, exe!);
    const stat = statSync(path);
    expect(stat.isFile() && (stat.mode & 0o111) !== 0, `${path} is an executable`).toBe(true);
    // It is the herenow server: its strings name our routes.
    expect(readFileSync(path).includes("/server/readyz")).toBe(true);
  });

  it("builds the web service as the demo's static files with the SPA fallback", () => {
    const web = join(OUTPUT, "services/web");
    const index = readFileSync(join(web, "static/index.html"), "utf8");
    expect(index).toMatch(/<script type="module"[^>]+src="\/assets\/index-[\w-]+\.js"/);
    const assets = readdirSync(join(web, "static/assets"));
    expect(assets.some((f) => f.endsWith(".js"))).toBe(true);
    expect(assets.some((f) => f.endsWith(".css"))).toBe(true);
    const config = JSON.parse(readFileSync(join(web, "config.json"), "utf8")) as {
      routes: { handle?: string; src?: string; dest?: string }[];
    };
    expect(config.routes[0]).toEqual({ handle: "filesystem" });
    // The demo's rooms are one page: /rooms/<id> serves index.html (after real files);
    // nothing else is rewritten, so Vite's own paths still reach it under vercel dev.
    const spa = config.routes.filter((r) => r.dest === "/index.html").map((r) => new RegExp(r.src!));
    expect(spa).toHaveLength(1);
    expect(spa[0]!.test("/rooms/design-review")).toBe(true);
    expect(spa[0]!.test("/src/main.tsx")).toBe(false);
  });
});
