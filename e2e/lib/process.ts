// Child processes for the tests: a herenow instance, a redis-server. Every one listens on
// 127.0.0.1 only and is killed when its test ends.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { demoDist, herenowBin } from "./paths";

/** A free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/** Kills a child (TERM, then KILL after 3 s) and waits for it to exit. */
export async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const done = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
  if (!done) {
    child.kill("SIGKILL");
    await exited;
  }
}

export interface Herenow {
  /** http://127.0.0.1:PORT */
  url: string;
  /** What the instance logged (JSON lines), for diagnostics and to read its store. */
  logs: () => string;
  /** The store the instance says it serves with ("memory", "redis"). */
  store: () => string | null;
  stop: () => Promise<void>;
}

/** Short timings so the suite stays fast; the reload still fits easily in the grace window. */
export const TEST_GRACE_MS = 1500;

/**
 * Starts herenow on a free port, serving the built demo unless `env.STATIC_DIR` names
 * another directory (or is "": no static files), and waits for its listening line.
 */
export async function startHerenow(env: Record<string, string> = {}): Promise<Herenow> {
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: "0",
    STATIC_DIR: env.STATIC_DIR ?? demoDist(),
    GRACE_MS: String(TEST_GRACE_MS),
    LOG_FORMAT: "json",
    RUST_LOG: process.env.RUST_LOG ?? "info",
    ...env,
  };
  if (childEnv.STATIC_DIR === "") delete childEnv.STATIC_DIR;
  const child = spawn(herenowBin(), [], { env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  // Logs may come on either stream; keep both (bounded) for diagnostics.
  const keep = (s: string) => (s.length > 200_000 ? s.slice(-100_000) : s);
  child.stderr!.on("data", (d: Buffer) => (stderr = keep(stderr + d.toString())));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error("herenow did not print its listening line within 15 s")), 15_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${e.message}\n--- output ---\n${(stdout + stderr).slice(-4000)}`));
    };
    child.stdout!.on("data", (d: Buffer) => {
      stdout = keep(stdout + d.toString());
      const m = /herenow listening on (http:\/\/\S+)/.exec(stdout);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1].replace("0.0.0.0", "127.0.0.1"));
      }
    });
    child.once("exit", (code) => fail(new Error(`herenow exited with ${code} before listening`)));
    child.once("error", fail);
  });
  child.removeAllListeners("exit");
  return {
    url,
    logs: () => stdout + stderr,
    store: () =>
      /"store":"([a-z]+)"/.exec(stdout + stderr)?.[1] ?? /store="?([a-z]+)/.exec(stdout + stderr)?.[1] ?? null,
    stop: () => kill(child),
  };
}

/** Waits until `GET url` answers 200, at most `timeoutMs`. */
export async function waitHealthy(url: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not healthy after ${timeoutMs} ms`);
    await sleep(100);
  }
}

export interface Redis {
  url: string;
  stop: () => Promise<void>;
}

/** A throwaway redis-server on a free loopback port: no persistence, killed at the end. */
export async function startRedis(): Promise<Redis> {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out.slice(-2000)}`)), 10_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run redis-server (${e.message}); install it: apt-get install redis-server`));
    });
    child.stdout!.on("data", () => {
      if (out.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => kill(child) };
}
