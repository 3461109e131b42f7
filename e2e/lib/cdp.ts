// A chromium driven over the DevTools protocol directly, without Playwright: Playwright
// keeps every page it drives visible and focused (its focus emulation holds the page as
// if captured), so a page it drives can never be hidden by the browser. This one can:
// bringing another tab to the front really hides it, as a person switching tabs would.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { CHROMIUM } from "./browser";

/** Every DevTools call is answered well within this on a loopback socket. */
const CALL_TIMEOUT_MS = 10_000;

interface Reply {
  id?: number;
  result?: Record<string, unknown>;
  error?: { message: string };
}

export class RawChromium {
  #child: ChildProcess;
  #dir: string;
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, (reply: Reply) => void>();

  private constructor(child: ChildProcess, dir: string, ws: WebSocket) {
    this.#child = child;
    this.#dir = dir;
    this.#ws = ws;
    ws.on("message", (data) => {
      const reply = JSON.parse(String(data)) as Reply;
      if (reply.id === undefined) return; // events: not needed
      this.#pending.get(reply.id)?.(reply);
      this.#pending.delete(reply.id);
    });
  }

  /** Headless chromium with the DevTools endpoint on a free loopback port. */
  static async launch(): Promise<RawChromium> {
    const dir = mkdtempSync(join(tmpdir(), "herenow-cdp-"));
    const child = spawn(
      CHROMIUM,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-sync",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        `--user-data-dir=${dir}`,
        "about:blank",
      ],
      { stdio: "ignore" },
    );
    const portFile = join(dir, "DevToolsActivePort");
    for (let i = 0; i < 200 && !existsSync(portFile); i++) await sleep(50);
    if (!existsSync(portFile)) {
      child.kill("SIGKILL");
      throw new Error(`${CHROMIUM} did not open its DevTools port within 10 s`);
    }
    const [port, path] = readFileSync(portFile, "utf8").split("\n");
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return new RawChromium(child, dir, ws);
  }

  /** One DevTools call; `sessionId` addresses a tab. */
  async send<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<T> {
    const id = this.#next++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${method}: no answer in ${CALL_TIMEOUT_MS} ms`)),
        CALL_TIMEOUT_MS,
      );
      this.#pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
    if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
    return (reply.result ?? {}) as T;
  }

  /** A new tab (in the same window, like Ctrl+T) showing `url`. */
  async open(url: string): Promise<RawTab> {
    const { targetId } = await this.send<{ targetId: string }>("Target.createTarget", { url });
    const { sessionId } = await this.send<{ sessionId: string }>("Target.attachToTarget", { targetId, flatten: true });
    const tab = new RawTab(this, targetId, sessionId);
    await tab.bringToFront();
    return tab;
  }

  async close(): Promise<void> {
    this.#ws.close();
    const exited = new Promise<void>((resolve) => this.#child.once("exit", () => resolve()));
    this.#child.kill("SIGTERM");
    await Promise.race([exited, sleep(3000).then(() => this.#child.kill("SIGKILL"))]);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

export class RawTab {
  constructor(
    private readonly browser: RawChromium,
    readonly targetId: string,
    private readonly sessionId: string,
  ) {}

  /** The value of a JavaScript expression in the page. */
  async evaluate<T>(expression: string): Promise<T> {
    const { result, exceptionDetails } = await this.browser.send<{
      result: { value: T };
      exceptionDetails?: { text: string };
    }>("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }, this.sessionId);
    if (exceptionDetails) throw new Error(`${expression}: ${exceptionDetails.text}`);
    return result.value;
  }

  /** Waits until `expression` is truthy, polling; the error says what it last saw. */
  async waitFor(expression: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.evaluate<boolean>(`!!(${expression})`)) return;
      if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms: ${expression}`);
      await sleep(25);
    }
  }

  /** Closes the tab, as its close button would: the page's sockets go with it. */
  async close(): Promise<void> {
    await this.browser.send("Target.closeTarget", { targetId: this.targetId });
  }

  /** Shows this tab and gives it the focus; whichever tab was in front is hidden. */
  async bringToFront(): Promise<void> {
    await this.browser.send("Page.bringToFront", {}, this.sessionId);
  }
}
