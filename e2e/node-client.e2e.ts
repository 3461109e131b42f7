// @herenow/client in Node (the `ws` package as its WebSocket) against the real binary:
// the protocol as the server really speaks it, without a browser in between.
import type { PresenceClient, PresenceSnapshot } from "@herenow/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { names, nodeClient, until } from "./lib/node-client";
import { freePort, startHerenow, TEST_GRACE_MS, type Herenow } from "./lib/process";

let server: Herenow;
let port: number;
const clients: PresenceClient[] = [];

function join(room: string, id: string, name: string): PresenceClient {
  const client = nodeClient(`http://127.0.0.1:${port}`, room, id, name);
  clients.push(client);
  return client;
}

beforeAll(async () => {
  port = await freePort();
  server = await startHerenow({ PORT: String(port) });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(async () => {
  await server?.stop();
});

describe("the client in Node against herenow", () => {
  it("two clients see each other, by name, in join order", async () => {
    const ada = join("node-a", "node-ada", "Ada");
    await until(ada, (s) => s.status === "open" && names(s) === "Ada");
    const linus = join("node-a", "node-linus", "Linus");
    const seen = await until(linus, (s) => names(s) === "Ada,Linus");
    expect(seen.self?.id).toBe("node-linus");
    const adaView = await until(ada, (s) => names(s) === "Ada,Linus");
    expect(adaView.activity.map((e) => `${e.user.name} ${e.kind}`)).toEqual(["Linus joined"]);
    expect(seen.activity).toEqual([]); // arriving is silent
    expect(adaView.version).toBe(seen.version);
  });

  it("state, names, events and typing reach the other client", async () => {
    const ada = join("node-b", "node-ada", "Ada");
    const linus = join("node-b", "node-linus", "Linus");
    await until(ada, (s) => s.others.length === 1);
    await until(linus, (s) => s.others.length === 1);

    ada.updateState({ cursor: { x: 3, y: 4 } });
    await until(linus, (s) => JSON.stringify(s.others[0]?.state.cursor) === '{"x":3,"y":4}');

    ada.setUser({ name: "Ada L." });
    await until(linus, (s) => s.others[0]?.name === "Ada L.");

    const wave = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no wave event within 3 s")), 3000);
      linus.onEvent((e) => {
        if (e.event !== "wave") return;
        clearTimeout(timer);
        resolve(e);
      });
    });
    ada.broadcast("wave", { hand: "left" });
    expect(await wave).toEqual({ from: "node-ada", event: "wave", data: { hand: "left" } });

    ada.notifyTyping();
    await until(linus, (s) => s.typing.map((u) => u.id).join() === "node-ada");
    ada.stopTyping();
    await until(linus, (s) => s.typing.length === 0);
  });

  it("status and location reach the other client, folded over one person's tabs", async () => {
    const ada = join("node-status", "node-ada", "Ada");
    const adaPhone = join("node-status", "node-ada", "Ada");
    const linus = join("node-status", "node-linus", "Linus");
    const adaSeen = (s: PresenceSnapshot) => s.others.find((u) => u.id === "node-ada");
    await until(linus, (s) => adaSeen(s)?.tabs === 2);
    ada.setLocation("risks");
    await until(linus, (s) => adaSeen(s)?.location === "risks");
    // Her laptop goes away; her phone, still active, is now the tab to show: nowhere.
    ada.setStatus("away");
    await until(linus, (s) => adaSeen(s)?.location === undefined);
    expect(adaSeen(linus.getSnapshot())?.status).toBe("active");
    const before = Date.now();
    adaPhone.setStatus("away");
    const seen = await until(linus, (s) => adaSeen(s)?.status === "away");
    expect(adaSeen(seen)!.statusSince).toBeGreaterThanOrEqual(before - 50);
    expect(adaSeen(seen)!.statusSince).toBeLessThanOrEqual(Date.now() + 50);
    // Her phone goes: its face stays among the recently left for Linus only when she is gone.
    adaPhone.disconnect();
    await until(linus, (s) => adaSeen(s)?.tabs === 1);
    expect(linus.getSnapshot().recent).toEqual([]);
    ada.disconnect();
    const gone = await until(linus, (s) => s.others.length === 0);
    expect(gone.recent.map((r) => r.user.id)).toEqual(["node-ada"]);
  });

  it("disconnect() leaves at once, without the grace window", async () => {
    const ada = join("node-c", "node-ada", "Ada");
    const linus = join("node-c", "node-linus", "Linus");
    await until(ada, (s) => s.others.length === 1);
    const started = Date.now();
    linus.disconnect();
    await until(ada, (s) => s.others.length === 0, TEST_GRACE_MS);
    expect(Date.now() - started).toBeLessThan(TEST_GRACE_MS);
  });

  it("an invalid room id means the lobby", async () => {
    const c = join("Not A Room", "node-x", "X");
    const s = await until(c, (s) => s.status === "open");
    expect(s.roomId).toBe("lobby");
  });

  it("comes back by itself when the server restarts", async () => {
    const ada = join("node-d", "node-ada", "Ada");
    const linus = join("node-d", "node-linus", "Linus");
    await until(ada, (s) => s.others.length === 1);
    await server.stop(); // closes every socket with 1012: retry with backoff
    await until(ada, (s) => s.status === "reconnecting");
    server = await startHerenow({ PORT: String(port) });
    const back = await until(ada, (s) => s.status === "open" && s.users.length === 2, 8000);
    await until(linus, (s) => s.status === "open" && s.users.length === 2, 8000);
    // The first snapshot after a reconnection seeds silently: whoever the new server
    // already had is not news. (Linus may show as joined if he came back after Ada: the
    // memory store forgot everyone, so that join is real.)
    expect(back.activity.filter((e) => e.kind === "left" || e.user.id === "node-ada")).toEqual([]);
  });
});
