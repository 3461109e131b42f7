// The Vercel CLI (the exact devDependency) as the tests run it: offline, telemetry off,
// building into the repository's shared cargo target dir.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { REPO } from "./paths";
import { freePort } from "./process";

/** The CLI that `npm ci` installed. */
export function vercelBin(): string {
  const bin = join(REPO, "node_modules/.bin/vercel");
  if (!existsSync(bin)) throw new Error(`no Vercel CLI at ${bin}: run \`npm ci\` (make test-vercel does)`);
  return bin;
}

/** The environment every Vercel CLI run gets: no telemetry, no env files, one target dir. */
export function vercelEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    VERCEL_TELEMETRY_DISABLED: "1",
    HERENOW_DOTENV: "0",
    CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR ?? join(REPO, "target"),
    ...extra,
  };
}

export interface VercelDev {
  /** http://127.0.0.1:PORT, both services behind it as vercel.json routes them. */
  url: string;
  logs: () => string;
  stop: () => Promise<void>;
}

/**
 * `vercel dev -L` in the repository: Vite for `web`, the Rust function (built in debug,
 * then run on a port of its own) for `server`. Resolves once `/server/healthz` answers
 * through it, which takes a compile on a first run.
 */
export async function startVercelDev(env: Record<string, string>, readyWithinMs: number): Promise<VercelDev> {
  const port = await freePort();
  const child = spawn(vercelBin(), ["dev", "-L", "--yes", "--listen", `127.0.0.1:${port}`], {
    cwd: REPO,
    env: vercelEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so the services it started go with it.
    detached: true,
  });
  let out = "";
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 400_000) out = out.slice(-200_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const url = `http://127.0.0.1:${port}`;
  const stop = () => killGroup(child);
  const deadline = Date.now() + readyWithinMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`vercel dev exited with ${child.exitCode}:\n${out.slice(-4000)}`);
    try {
      const res = await fetch(`${url}/server/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok && (await res.text()) === "ok") break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`vercel dev did not serve /server/healthz within ${readyWithinMs} ms:\n${out.slice(-4000)}`);
    }
    await sleep(500);
  }
  return { url, logs: () => out, stop };
}

/** TERM to the whole group (the CLI stops its services on it), KILL after 10 s. */
async function killGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    return;
  }
  const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!done) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
    await exited;
  }
}
