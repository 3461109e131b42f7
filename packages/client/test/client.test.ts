import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  AWAY_AFTER_MS,
  CONNECT_TIMEOUT_MS,
  PING_INTERVAL_MS,
  PresenceClient,
  roomUrl,
  type ClientEnvironment,
  type PresenceClientOptions,
} from "../src/client";
import type { ChannelLike } from "../src/identity";
import { diff, fakeSockets, snapshot, u } from "./fake-socket";

const T0 = Date.UTC(2025, 5, 1, 12);
const noBrowser: ClientEnvironment = {
  location: { protocol: "https:", host: "app.example" },
  sessionStorage: null,
  broadcastChannel: null,
  document: null,
  window: null,
};

let net: ReturnType<typeof fakeSockets>;
let client: PresenceClient;

function make(options: Partial<PresenceClientOptions> = {}) {
  client = new PresenceClient({
    room: "lobby",
    tabId: "me",
    WebSocket: net.WebSocket,
    random: () => 0,
    environment: noBrowser,
    ...options,
  });
  return client;
}

/** Connects and plays the server's side of a join: open, then the first snapshot. */
function join(users = [u("me", 1)], version = 1) {
  client.connect();
  net.last.accept();
  net.last.push(snapshot(version, users, "me"));
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
  net = fakeSockets();
});
afterEach(() => {
  client?.disconnect();
  vi.useRealTimers();
});

describe("url", () => {
  it("uses the page origin by default, ws or wss from the page protocol", () => {
    expect(roomUrl("lobby", undefined, { protocol: "https:", host: "a.example" })).toBe(
      "wss://a.example/server/ws/lobby",
    );
    expect(roomUrl("x-1", undefined, { protocol: "http:", host: "localhost:5173" })).toBe(
      "ws://localhost:5173/server/ws/x-1",
    );
  });
  it("takes a given server URL, and invalid rooms mean lobby", () => {
    expect(roomUrl("Bad Room!", "http://127.0.0.1:3000")).toBe("ws://127.0.0.1:3000/server/ws/lobby");
    expect(roomUrl("r", "wss://p.example/base/")).toBe("wss://p.example/base/server/ws/r");
  });
});

describe("joining", () => {
  it("connects to the room and says hello with protocol 2, its id, hints and state", () => {
    make({ room: "design-review", user: { name: "Ada", color: "#f80" }, state: { mood: "ok" } });
    expect(client.getSnapshot().status).toBe("closed");
    client.connect();
    expect(net.last.url).toBe("wss://app.example/server/ws/design-review");
    expect(client.getSnapshot().status).toBe("connecting");
    net.last.accept();
    expect(net.last.sent).toEqual([
      {
        type: "hello",
        id: "me",
        proto: 2,
        user: { name: "Ada", color: "#f80" },
        state: { status: "active", mood: "ok" },
      },
    ]);
    expect(client.getSnapshot().status).toBe("connecting");
    net.last.push(snapshot(3, [u("me", 1, { name: "Ada" }), u("linus", 2)], "me", "design-review"));
    const s = client.getSnapshot();
    expect(s.status).toBe("open");
    expect(s.version).toBe(3);
    expect(s.self?.name).toBe("Ada");
    expect(s.others.map((x) => x.id)).toEqual(["linus"]);
  });

  it("the first snapshot seeds silently; later diffs are activity", () => {
    make();
    join([u("me", 1), u("ada", 2, { name: "Ada" })]);
    expect(client.getSnapshot().activity).toEqual([]);
    net.last.push(diff(1, 2, { joined: [u("linus", 3, { name: "Linus" })] }));
    net.last.push(diff(2, 3, { left: ["ada"] }));
    const log = client.getSnapshot().activity;
    expect(log.map((e) => [e.kind, e.user.name])).toEqual([
      ["left", "Ada"],
      ["joined", "Linus"],
    ]);
  });

  it("buffers diffs that arrive before the first snapshot and applies the ones that follow it", () => {
    make();
    client.connect();
    net.last.accept();
    net.last.push(diff(4, 5, { joined: [u("old", 1)] })); // already in the snapshot
    net.last.push(diff(5, 6, { joined: [u("grace", 9, { name: "Grace" })] }));
    expect(client.getSnapshot().users).toEqual([]);
    net.last.push(snapshot(5, [u("me", 1), u("old", 1)], "me"));
    const s = client.getSnapshot();
    expect(s.version).toBe(6);
    expect(s.users.map((x) => x.id)).toEqual(["me", "old", "grace"]);
    expect(s.activity.map((e) => e.user.id)).toEqual(["grace"]);
    expect(net.last.sentOfType("sync")).toEqual([]);
  });

  it("a version gap sends one sync; the answer replaces the roster and reports what changed", () => {
    make();
    join([u("me", 1), u("ada", 2)], 10);
    net.last.push(diff(11, 12, { joined: [u("x", 5)] }));
    net.last.push(diff(12, 13, { joined: [u("y", 6)] }));
    expect(net.last.sentOfType("sync")).toHaveLength(1);
    expect(client.getSnapshot().version).toBe(10);
    net.last.push(snapshot(13, [u("me", 1), u("x", 5), u("y", 6)], "me"));
    const s = client.getSnapshot();
    expect(s.version).toBe(13);
    expect(s.activity.map((e) => [e.kind, e.user.id])).toEqual([
      ["joined", "y"],
      ["joined", "x"],
      ["left", "ada"],
    ]);
    net.last.push(diff(13, 14, { left: ["x"] }));
    expect(client.getSnapshot().users.map((x) => x.id)).toEqual(["me", "y"]);
  });

  it("ignores stale diffs", () => {
    make();
    join([u("me", 1)], 5);
    net.last.push(diff(3, 5, { joined: [u("ghost", 1)] }));
    expect(client.getSnapshot().users.map((x) => x.id)).toEqual(["me"]);
    expect(net.last.sentOfType("sync")).toEqual([]);
  });

  it("keeps the snapshot object until something changes, and notifies subscribers", () => {
    make();
    const calls = vi.fn();
    client.subscribe(calls);
    join();
    const a = client.getSnapshot();
    expect(client.getSnapshot()).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(calls).toHaveBeenCalled();
    calls.mockClear();
    net.last.push(diff(1, 2, { joined: [u("z", 3)] }));
    expect(calls).toHaveBeenCalledTimes(1);
    expect(client.getSnapshot()).not.toBe(a);
  });

  it("records server errors and stays connected", () => {
    make();
    join();
    net.last.push({ type: "error", code: "rate_limited", message: "slow down" });
    const s = client.getSnapshot();
    expect(s.error).toEqual({ source: "server", code: "rate_limited", message: "slow down" });
    expect(s.status).toBe("open");
  });

  it("skips frames it cannot decode", () => {
    make();
    join();
    const before = client.getSnapshot();
    net.last.onmessage?.({ data: "not json" });
    net.last.onmessage?.({ data: '{"type":"future-thing"}' });
    expect(client.getSnapshot()).toBe(before);
  });
});

describe("reconnecting", () => {
  it("retries after 1 s on an abnormal close, same id, and seeds silently again", () => {
    make();
    join([u("me", 1), u("ada", 2)]);
    net.last.drop(1006);
    expect(client.getSnapshot().status).toBe("reconnecting");
    expect(client.getSnapshot().retryAt).toBe(T0 + 1000);
    vi.advanceTimersByTime(999);
    expect(net.sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(net.sockets).toHaveLength(2);
    expect(client.getSnapshot().status).toBe("reconnecting");
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]?.id).toBe("me");
    net.last.push(snapshot(7, [u("me", 1), u("linus", 3)], "me"));
    const s = client.getSnapshot();
    expect(s.status).toBe("open");
    expect(s.activity).toEqual([]); // no "ada left / linus joined" from a reconnect
    expect(s.users.map((x) => x.id)).toEqual(["me", "linus"]);
  });

  it("backs off exponentially while attempts fail and resets after a successful join", () => {
    make();
    join();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const n = net.sockets.length;
      net.last.drop(1006);
      let waited = 0;
      while (net.sockets.length === n && waited < 60_000) {
        vi.advanceTimersByTime(100);
        waited += 100;
      }
      delays.push(waited);
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    net.last.accept();
    net.last.push(snapshot(2, [u("me", 1)], "me"));
    net.last.drop(1012);
    expect(client.getSnapshot().retryAt).toBe(Date.now() + 1000);
  });

  it("spreads retries with jitter", () => {
    make({ random: () => 0.5 });
    join();
    net.last.drop(1006);
    expect(client.getSnapshot().retryAt).toBe(T0 + 1150);
  });

  it("a 1008 policy close waits at least 30 s", () => {
    make();
    join();
    net.last.drop(1008, "policy");
    vi.advanceTimersByTime(29_999);
    expect(net.sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(net.sockets).toHaveLength(2);
  });

  it.each([
    [1009, "too_big"],
    [4401, "unauthorized"],
  ])("a %i close stops for good", (code, reason) => {
    make();
    join();
    net.last.drop(code, "nope");
    const s = client.getSnapshot();
    expect(s.status).toBe("closed");
    expect(s.error).toEqual({ source: "close", code: reason, message: "nope" });
    vi.advanceTimersByTime(10 * 60_000);
    expect(net.sockets).toHaveLength(1);
  });

  it("a socket that never opens is abandoned after the connect timeout and retried", () => {
    make();
    client.connect();
    vi.advanceTimersByTime(CONNECT_TIMEOUT_MS);
    expect(net.sockets[0]?.closedWith).not.toBeNull();
    expect(client.getSnapshot().status).toBe("reconnecting");
    vi.advanceTimersByTime(1000);
    expect(net.sockets).toHaveLength(2);
  });

  it("retries at once when the network comes back", () => {
    const win = new EventTarget();
    make({ environment: { ...noBrowser, window: win } });
    join();
    net.last.drop(1006);
    net.last.drop(1006);
    expect(net.sockets).toHaveLength(1);
    win.dispatchEvent(new Event("online"));
    expect(net.sockets).toHaveLength(2);
  });

  it("drops typing marks when the connection goes", () => {
    make();
    join([u("me", 1), u("ada", 2)]);
    net.last.push({ type: "event", roomId: "lobby", from: "ada", event: "typing", data: { typing: true } });
    expect(client.getSnapshot().typing).toHaveLength(1);
    net.last.drop(1006);
    expect(client.getSnapshot().typing).toEqual([]);
  });
});

describe("server rendering", () => {
  it("getServerSnapshot is an empty room, always the same object, and opens no socket", () => {
    make({ room: "launch-plan" });
    const s = client.getServerSnapshot();
    expect(s).toBe(client.getServerSnapshot());
    expect(s).toMatchObject({ status: "connecting", roomId: "launch-plan", users: [], self: null });
    expect(net.sockets).toHaveLength(0);
  });
});

describe("leaving", () => {
  it("disconnect() closes with 1000 and never comes back", () => {
    make();
    join();
    const socket = net.last;
    client.disconnect();
    expect(socket.closedWith?.code).toBe(1000);
    expect(client.getSnapshot().status).toBe("closed");
    vi.advanceTimersByTime(120_000);
    expect(net.sockets).toHaveLength(1);
    expect(socket.sentOfType("ping")).toEqual([]);
  });

  it("can connect again after disconnect()", () => {
    make();
    join();
    client.disconnect();
    join();
    expect(net.sockets).toHaveLength(2);
    expect(client.getSnapshot().status).toBe("open");
  });

  it("disconnect() while waiting to retry cancels the retry", () => {
    make();
    join();
    net.last.drop(1006);
    client.disconnect();
    vi.advanceTimersByTime(60_000);
    expect(net.sockets).toHaveLength(1);
  });
});

describe("keep-alive", () => {
  it("pings every 25 s while the socket is open, and stops with it", () => {
    make();
    expect(PING_INTERVAL_MS).toBe(25_000);
    join();
    vi.advanceTimersByTime(24_999);
    expect(net.last.sentOfType("ping")).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(net.last.sentOfType("ping")).toHaveLength(1);
    vi.advanceTimersByTime(50_000);
    expect(net.last.sentOfType("ping")).toHaveLength(3);
    const first = net.last;
    first.drop(1006);
    vi.advanceTimersByTime(100_000);
    expect(first.sentOfType("ping")).toHaveLength(3);
  });
});

describe("our own state", () => {
  it("sends at most 10 state messages a second and always the latest state", () => {
    make();
    join();
    for (let i = 0; i < 200; i++) {
      client.updateState({ cursor: i });
      vi.advanceTimersByTime(10);
    }
    vi.advanceTimersByTime(1000);
    const states = net.last.sentOfType("state");
    expect(states.length).toBeGreaterThanOrEqual(19);
    expect(states.length).toBeLessThanOrEqual(21);
    expect(states[states.length - 1]?.state).toEqual({ status: "active", cursor: 199 });
  });

  it("a single update goes out at once", () => {
    make();
    join();
    vi.advanceTimersByTime(5000);
    client.updateState({ status: "busy" });
    expect(net.last.sentOfType("state")).toEqual([{ type: "state", state: { status: "busy" } }]);
    expect(client.getSnapshot().self?.state).toEqual({ status: "busy" });
  });

  it("updates made while offline go out with the next hello", () => {
    make();
    join();
    net.last.drop(1006);
    client.updateState({ status: "busy" });
    vi.advanceTimersByTime(1000);
    net.last.accept();
    expect(net.last.sent).toEqual([{ type: "hello", id: "me", proto: 2, state: { status: "busy" } }]);
  });

  it("setUser sends the hints with the state and shows them on ourselves at once", () => {
    make({ user: { name: "Ada" } });
    join([u("me", 1, { name: "Ada" })]);
    vi.advanceTimersByTime(1000);
    client.setUser({ name: "Ada L." });
    expect(net.last.sentOfType("state")).toEqual([
      { type: "state", state: { status: "active" }, user: { name: "Ada L." } },
    ]);
    expect(client.getSnapshot().self?.name).toBe("Ada L.");
    client.updateState({ x: 1 });
    vi.advanceTimersByTime(200);
    expect(net.last.sentOfType("state")[1]).toEqual({ type: "state", state: { status: "active", x: 1 } });
  });

  it("setUser with unchanged hints sends nothing", () => {
    make({ user: { name: "Ada" } });
    join([u("me", 1, { name: "Ada" })]);
    vi.advanceTimersByTime(1000);
    client.setUser({ name: "Ada" });
    expect(net.last.sentOfType("state")).toEqual([]);
  });

  it("refuses a state over 1 KiB", () => {
    make();
    expect(() => client.updateState({ big: "x".repeat(1100) })).toThrow(RangeError);
    expect(client.state).toEqual({ status: "active" });
  });

  it("goes away when the tab is hidden for a while and comes back active", () => {
    const doc = Object.assign(new EventTarget(), { visibilityState: "visible" });
    make({ environment: { ...noBrowser, document: doc } });
    join();
    doc.visibilityState = "hidden";
    doc.dispatchEvent(new Event("visibilitychange"));
    vi.advanceTimersByTime(AWAY_AFTER_MS - 1);
    expect(net.last.sentOfType("state")).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(net.last.sentOfType("state")).toEqual([{ type: "state", state: { status: "away" } }]);
    vi.advanceTimersByTime(500);
    doc.visibilityState = "visible";
    doc.dispatchEvent(new Event("visibilitychange"));
    expect(net.last.sentOfType("state")[1]).toEqual({ type: "state", state: { status: "active" } });
  });

  it("a short hide does not mark us away", () => {
    const doc = Object.assign(new EventTarget(), { visibilityState: "visible" });
    make({ environment: { ...noBrowser, document: doc } });
    join();
    doc.visibilityState = "hidden";
    doc.dispatchEvent(new Event("visibilitychange"));
    vi.advanceTimersByTime(5000);
    doc.visibilityState = "visible";
    doc.dispatchEvent(new Event("visibilitychange"));
    vi.advanceTimersByTime(AWAY_AFTER_MS * 2);
    expect(net.last.sentOfType("state")).toEqual([]);
  });
});

describe("events and typing", () => {
  it("broadcast sends an event; others' events reach onEvent listeners", () => {
    make();
    join([u("me", 1), u("ada", 2)]);
    const seen = vi.fn();
    client.onEvent(seen);
    expect(client.broadcast("cursor", { x: 1, y: 2 })).toBe(true);
    expect(net.last.sentOfType("event")).toEqual([{ type: "event", event: "cursor", data: { x: 1, y: 2 } }]);
    net.last.push({ type: "event", roomId: "lobby", from: "ada", event: "wave", data: null });
    expect(seen).toHaveBeenCalledWith({ from: "ada", event: "wave", data: null });
    expect(() => client.broadcast("x".repeat(33))).toThrow(RangeError);
  });

  it("notifyTyping sends one typing signal for many keystrokes", () => {
    make();
    join();
    // 20 keystrokes in one second, then quiet: stops at 2.95 s, before a refresh is due.
    for (let i = 0; i < 20; i++) {
      client.notifyTyping();
      vi.advanceTimersByTime(50);
    }
    vi.advanceTimersByTime(2000);
    expect(net.last.sentOfType("event")).toEqual([
      { type: "event", event: "typing", data: { typing: true } },
      { type: "event", event: "typing", data: { typing: false } },
    ]);
  });

  it("shows who is typing, clears on typing:false, on timeout and when they leave", () => {
    make();
    join([u("me", 1), u("ada", 2), u("linus", 3)]);
    const typing = (from: string, on: boolean) =>
      net.last.push({ type: "event", roomId: "lobby", from, event: "typing", data: { typing: on } });
    typing("ada", true);
    typing("linus", true);
    expect(client.getSnapshot().typing.map((x) => x.id)).toEqual(["ada", "linus"]);
    typing("ada", false);
    expect(client.getSnapshot().typing.map((x) => x.id)).toEqual(["linus"]);
    vi.advanceTimersByTime(5999);
    expect(client.getSnapshot().typing.map((x) => x.id)).toEqual(["linus"]);
    vi.advanceTimersByTime(1);
    expect(client.getSnapshot().typing).toEqual([]);
    typing("ada", true);
    net.last.push(diff(1, 2, { left: ["ada"] }));
    expect(client.getSnapshot().typing).toEqual([]);
  });
});

describe("tab identity", () => {
  it("a duplicated tab that finds out after joining leaves with 1000 and rejoins under a new id", () => {
    const storage = new Map<string, string>([["herenow:tab-id", "shared"]]);
    const sessionStorage = {
      getItem: (k: string) => storage.get(k) ?? null,
      setItem: (k: string, v: string) => void storage.set(k, v),
    };
    let channel: ChannelLike | null = null;
    const broadcastChannel = () => (channel = { onmessage: null, postMessage: vi.fn(), close: vi.fn() });
    make({ tabId: undefined, environment: { ...noBrowser, sessionStorage, broadcastChannel } });
    expect(client.tabId).toBe("shared");
    join([u("shared", 1)]);
    const first = net.last;
    // The original tab, older, answers our claim.
    channel!.onmessage?.({ data: { t: "taken", id: "shared", born: 0, nonce: 0.5 } });
    expect(first.closedWith?.code).toBe(1000);
    expect(net.sockets).toHaveLength(2);
    net.last.accept();
    const hello = net.last.sentOfType("hello")[0];
    expect(hello?.id).not.toBe("shared");
    expect(hello?.id).toBe(client.tabId);
    expect(storage.get("herenow:tab-id")).toBe(client.tabId);
  });
});

describe("tokens", () => {
  /** An unsigned JWT-shaped token that expires `secs` from now (the client never checks signatures). */
  function jwt(sub: string, secs: number): string {
    const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return `${b64({ alg: "HS256" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + secs })}.sig`;
  }
  const flush = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  it("asks for a token before every connection attempt and sends it in hello", async () => {
    const tokens = [jwt("ada", 3600), jwt("ada", 3600)];
    const getToken = vi.fn(() => tokens.shift() ?? null);
    make({ getToken });
    client.connect();
    expect(net.sockets).toHaveLength(0);
    await flush();
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]?.token).toBe(getToken.mock.results[0]?.value);
    net.last.push(snapshot(1, [u("u_ada", 1, { verified: true })], "u_ada"));
    expect(client.getSnapshot().self?.id).toBe("u_ada");
    net.last.drop(1006);
    vi.advanceTimersByTime(1000);
    await flush();
    expect(getToken).toHaveBeenCalledTimes(2);
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]?.token).toBeTruthy();
  });

  it("null means anonymous; a failing getToken is retried with backoff", async () => {
    let calls = 0;
    make({
      getToken: () => {
        calls += 1;
        if (calls === 1) return Promise.reject(new Error("sign-in service down"));
        return null;
      },
    });
    client.connect();
    await flush();
    expect(net.sockets).toHaveLength(0);
    expect(client.getSnapshot().status).toBe("reconnecting");
    expect(client.getSnapshot().error?.code).toBe("token_unavailable");
    vi.advanceTimersByTime(1000);
    await flush();
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]?.token).toBeUndefined();
  });

  it("refreshes before expiry on the open socket, with no reconnect", async () => {
    const getToken = vi.fn(() => jwt("ada", 600));
    make({ getToken });
    client.connect();
    await flush();
    net.last.accept();
    net.last.push(snapshot(1, [u("u_ada", 1)], "u_ada"));
    // 600 s token: refreshed 60 s before it runs out.
    vi.advanceTimersByTime(539_000);
    await flush();
    expect(net.last.sentOfType("auth")).toHaveLength(0);
    vi.advanceTimersByTime(1_000);
    await flush();
    const auth = net.last.sentOfType("auth");
    expect(auth).toHaveLength(1);
    expect(auth[0]?.token).toBe(getToken.mock.results[1]?.value);
    expect(net.sockets).toHaveLength(1);
    // And again before the fresh one expires.
    vi.advanceTimersByTime(540_000);
    await flush();
    expect(net.last.sentOfType("auth")).toHaveLength(2);
  });

  it("a short token is refreshed at 80 % of its life", async () => {
    const getToken = vi.fn(() => jwt("ada", 10));
    make({ getToken });
    client.connect();
    await flush();
    net.last.accept();
    vi.advanceTimersByTime(7_900);
    await flush();
    expect(net.last.sentOfType("auth")).toHaveLength(0);
    vi.advanceTimersByTime(200);
    await flush();
    expect(net.last.sentOfType("auth")).toHaveLength(1);
  });

  it.each([
    [4401, "unauthorized", "token_expired"],
    [4403, "forbidden", "forbidden"],
  ])("a %i close tells the app and does not retry", async (code, reason, serverCode) => {
    const onAuthError = vi.fn();
    make({ getToken: () => jwt("ada", 600), onAuthError });
    client.connect();
    await flush();
    net.last.accept();
    net.last.push({ type: "error", code: serverCode, message: "no" });
    net.last.drop(code, "refused");
    const s = client.getSnapshot();
    expect(s.status).toBe("closed");
    expect(s.error).toEqual({ source: "close", code: reason, message: "refused", detail: serverCode });
    expect(onAuthError).toHaveBeenCalledWith(s.error);
    vi.advanceTimersByTime(10 * 60_000);
    await flush();
    expect(net.sockets).toHaveLength(1);
  });

  it("a verified self shows the server's display, not local hints", () => {
    make({ user: { name: "Typed name" } });
    join([u("u_ada", 1, { name: "Ada (verified)", verified: true })]);
    // The fake server called us "me" in join(); use a verified self instead.
    net.last.push(snapshot(2, [u("u_ada", 1, { name: "Ada (verified)", verified: true })], "u_ada"));
    expect(client.getSnapshot().self?.name).toBe("Ada (verified)");
  });
});
