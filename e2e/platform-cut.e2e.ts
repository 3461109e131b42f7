// A platform cutting sockets under the client, as Vercel does when a function reaches its
// max duration: the TCP connection goes without a WebSocket close. A small TCP proxy in
// front of herenow stands in for the platform; cutting it drops every connection through
// it at once. The client reconnects by itself, and the grace window (at its default,
// 3 s, as deployed) hides the gap: nobody in the room sees a leave, not for one render.
import { createServer, connect, type Server, type Socket } from "node:net";
import type { PresenceClient, PresenceSnapshot } from "@herenow/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeClient, until } from "./lib/node-client";
import { freePort, startHerenow, type Herenow } from "./lib/process";

/** The platform's default grace window; the client's first retry comes after 1-1.3 s. */
const GRACE_MS = 3000;

/** The roster's names, sorted: who joined first does not matter here. */
const names = (s: PresenceSnapshot) =>
  s.users
    .map((u) => u.name)
    .sort()
    .join(",");

/** A TCP proxy to `target` whose connections can all be cut at once. */
interface CutProxy {
  url: string;
  /** Connections accepted so far (a reconnect is one more). */
  accepted: () => number;
  /** Drop every open connection, both sides, without a WebSocket close. */
  cut: () => void;
  close: () => Promise<void>;
}

async function cutProxy(targetPort: number): Promise<CutProxy> {
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream = connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => s.destroy());
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    accepted: () => accepted,
    // resetAndDestroy: an RST, as a connection torn down by the platform looks.
    cut: () => open.forEach((s) => s.resetAndDestroy()),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Every roster `client` shows from now on, as its names. */
function recordRosters(client: PresenceClient): () => string[] {
  const seen: string[] = [];
  const record = (s: PresenceSnapshot) => {
    if (s.status === "open" && seen[seen.length - 1] !== names(s)) seen.push(names(s));
  };
  record(client.getSnapshot());
  client.subscribe(() => record(client.getSnapshot()));
  return () => seen;
}

let server: Herenow;
let proxy: CutProxy;
const clients: PresenceClient[] = [];

beforeAll(async () => {
  const port = await freePort();
  server = await startHerenow({ PORT: String(port), GRACE_MS: String(GRACE_MS) });
  proxy = await cutProxy(port);
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await proxy?.close();
  await server?.stop();
});

describe("a socket cut by the platform", () => {
  it("reconnects by itself and nobody sees a leave, cut after cut", async () => {
    const room = "platform-cut";
    const direct = `http://${new URL(server.url).host}`;
    // Ada's socket goes through the platform that cuts; Linus is connected directly.
    const ada = nodeClient(proxy.url, room, "cut-ada", "Ada");
    const linus = nodeClient(direct, room, "cut-linus", "Linus");
    clients.push(ada, linus);
    await until(linus, (s) => names(s) === "Ada,Linus");
    await until(ada, (s) => names(s) === "Ada,Linus");
    const linusSaw = recordRosters(linus);

    for (let cut = 1; cut <= 3; cut++) {
      const before = proxy.accepted();
      proxy.cut();
      // Ada notices and comes back through the platform, well inside the grace window.
      await until(ada, (s) => s.status !== "open", 2000);
      const back = await until(ada, (s) => s.status === "open" && names(s) === "Ada,Linus", GRACE_MS);
      expect(proxy.accepted()).toBe(before + 1);
      expect(back.activity.filter((e) => e.kind === "left")).toEqual([]);
    }
    // Past the grace window of the last cut: a leave would have shown by now.
    await new Promise((r) => setTimeout(r, GRACE_MS + 500));
    expect(linusSaw()).toEqual(["Ada,Linus"]);
    expect(linus.getSnapshot().activity.filter((e) => e.kind === "left")).toEqual([]);
  });

  it("a socket that stays cut leaves after the grace window", async () => {
    // The same cut with no way back (the proxy refuses new connections): the leave is
    // real and shows once the grace window has run out, not before.
    const room = "platform-gone";
    const direct = `http://${new URL(server.url).host}`;
    const grace = nodeClient(proxy.url, room, "gone-grace", "Grace");
    const linus = nodeClient(direct, room, "gone-linus", "Linus");
    clients.push(grace, linus);
    await until(linus, (s) => names(s) === "Grace,Linus");
    await until(grace, (s) => names(s) === "Grace,Linus");
    // No new connections (close() resolves once the cut ones are gone), then the cut.
    const closed = proxy.close();
    const cutAt = Date.now();
    proxy.cut();
    await closed;
    await until(linus, (s) => names(s) === "Linus", GRACE_MS + 3000);
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(GRACE_MS - 100);
    grace.disconnect();
  });
});
