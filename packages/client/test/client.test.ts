import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AWAY_AFTER_MS, IDLE_AFTER_MS } from "../src/attention";
import {
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
        state: { mood: "ok" },
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
    expect(states[states.length - 1]?.state).toEqual({ cursor: 199 });
  });

  it("a single update goes out at once", () => {
    make();
    join();
    vi.advanceTimersByTime(5000);
    client.updateState({ mood: "busy" });
    expect(net.last.sentOfType("state")).toEqual([{ type: "state", state: { mood: "busy" } }]);
    expect(client.getSnapshot().self?.state).toEqual({ mood: "busy" });
  });

  it("updates made while offline go out with the next hello", () => {
    make();
    join();
    net.last.drop(1006);
    client.updateState({ mood: "busy" });
    vi.advanceTimersByTime(1000);
    net.last.accept();
    expect(net.last.sent).toEqual([{ type: "hello", id: "me", proto: 2, state: { mood: "busy" } }]);
  });

  it("setUser sends the hints with the state and shows them on ourselves at once", () => {
    make({ user: { name: "Ada" } });
    join([u("me", 1, { name: "Ada" })]);
    vi.advanceTimersByTime(1000);
    client.setUser({ name: "Ada L." });
    expect(net.last.sentOfType("state")).toEqual([{ type: "state", state: {}, user: { name: "Ada L." } }]);
    expect(client.getSnapshot().self?.name).toBe("Ada L.");
    client.updateState({ x: 1 });
    vi.advanceTimersByTime(200);
    expect(net.last.sentOfType("state")[1]).toEqual({ type: "state", state: { x: 1 } });
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
    expect(client.state).toEqual({});
  });
});

/** A page for the attention tracker: visibility, focus and input, all driven by the test. */
function page(init: { hidden?: boolean; focused?: boolean } = {}) {
  const doc = Object.assign(new EventTarget(), {
    visibilityState: init.hidden ? "hidden" : "visible",
    hasFocus: () => init.focused ?? true,
  });
  const win = new EventTarget();
  return {
    environment: { ...noBrowser, document: doc, window: win },
    hide() {
      doc.visibilityState = "hidden";
      doc.dispatchEvent(new Event("visibilitychange"));
    },
    show() {
      doc.visibilityState = "visible";
      doc.dispatchEvent(new Event("visibilitychange"));
    },
    input: () => win.dispatchEvent(new Event("pointermove")),
    blur: () => win.dispatchEvent(new Event("blur")),
    focus: () => win.dispatchEvent(new Event("focus")),
  };
}

describe("our status", () => {
  const statuses = () => net.last.sentOfType("status").map((m) => m.status);

  it("a hidden page is away at once and active again when shown; only changes are sent", () => {
    const p = page();
    make({ environment: p.environment });
    join();
    expect(client.getSnapshot().tabStatus).toBe("active");
    p.hide();
    expect(statuses()).toEqual(["away"]);
    expect(client.getSnapshot().tabStatus).toBe("away");
    p.hide(); // a second event with no change sends nothing
    p.show();
    p.input();
    expect(statuses()).toEqual(["away", "active"]);
    // The state is the app's: the status is never written into it.
    expect(net.last.sentOfType("state")).toEqual([]);
  });

  it("idle after idleAfterMs without input, away after awayAfterMs, active on the next input", () => {
    const p = page();
    make({ environment: p.environment });
    join();
    vi.advanceTimersByTime(IDLE_AFTER_MS / 2);
    p.input(); // the clock starts again
    vi.advanceTimersByTime(IDLE_AFTER_MS - 1);
    expect(statuses()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(statuses()).toEqual(["idle"]);
    vi.advanceTimersByTime(AWAY_AFTER_MS - IDLE_AFTER_MS);
    expect(statuses()).toEqual(["idle", "away"]);
    p.input();
    expect(statuses()).toEqual(["idle", "away", "active"]);
  });

  it("takes its timings from the options", () => {
    const p = page();
    make({ environment: p.environment, idleAfterMs: 1000, awayAfterMs: 3000 });
    join();
    vi.advanceTimersByTime(3000);
    expect(statuses()).toEqual(["idle", "away"]);
  });

  it("a visible page whose window lost the focus is idle; focus makes it active", () => {
    const p = page();
    make({ environment: p.environment });
    join();
    p.blur();
    expect(statuses()).toEqual(["idle"]);
    p.focus();
    expect(statuses()).toEqual(["idle", "active"]);
  });

  it("a tab hidden at connect says so in its hello, and a status set before joining follows it", () => {
    const p = page({ hidden: true });
    make({ environment: p.environment });
    client.connect();
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]?.status).toBe("away");
    p.show(); // before the snapshot: not sent yet, the server has not joined us
    expect(statuses()).toEqual([]);
    net.last.push(snapshot(1, [u("me", 1)], "me"));
    expect(statuses()).toEqual(["active"]);
  });

  it("an active tab's hello carries no status: no status means active", () => {
    make({ environment: page().environment });
    client.connect();
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]).toEqual({ type: "hello", id: "me", proto: 2, state: {} });
  });

  it("after a reconnection the hello carries the status of that moment", () => {
    const p = page();
    make({ environment: p.environment });
    join();
    net.last.drop(1006);
    p.hide();
    vi.advanceTimersByTime(1000);
    net.last.accept();
    expect(net.last.sentOfType("hello")[0]?.status).toBe("away");
    net.last.push(snapshot(2, [u("me", 1)], "me"));
    expect(statuses()).toEqual([]); // the hello said it already
  });

  it("setStatus pins a status over the page's, null gives it back", () => {
    const p = page();
    make({ environment: p.environment });
    join();
    client.setStatus("away");
    p.input();
    expect(statuses()).toEqual(["away"]);
    expect(client.getSnapshot().tabStatus).toBe("away");
    client.setStatus(null);
    expect(statuses()).toEqual(["away", "active"]);
  });

  it("without a page (Node) the tab is active unless pinned", () => {
    make();
    join();
    vi.advanceTimersByTime(AWAY_AFTER_MS * 2);
    expect(statuses()).toEqual([]);
    client.setStatus("idle");
    expect(statuses()).toEqual(["idle"]);
  });

  it("stops listening to the page on disconnect", () => {
    const p = page();
    make({ environment: p.environment });
    join();
    const socket = net.last;
    client.disconnect();
    p.hide();
    vi.advanceTimersByTime(AWAY_AFTER_MS * 2);
    expect(socket.sentOfType("status")).toEqual([]);
  });
});

describe("our location", () => {
  const locations = () => net.last.sentOfType("location").map((m) => m.location);

  it("sends a change at once, merges a burst into the latest, and clears with null", () => {
    make();
    join();
    vi.advanceTimersByTime(1000);
    client.setLocation("intro");
    expect(locations()).toEqual(["intro"]);
    for (const l of ["a", "b", "c", "timeline"]) client.setLocation(l);
    expect(locations()).toEqual(["intro"]);
    vi.advanceTimersByTime(100);
    expect(locations()).toEqual(["intro", "timeline"]);
    expect(client.getSnapshot().tabLocation).toBe("timeline");
    client.setLocation("timeline"); // unchanged: nothing
    vi.advanceTimersByTime(1000);
    client.setLocation(null);
    expect(locations()).toEqual(["intro", "timeline", null]);
  });

  it("a location set while offline goes out with the next hello", () => {
    make();
    client.setLocation("risks");
    join();
    expect(net.last.sentOfType("hello")[0]?.location).toBe("risks");
    expect(locations()).toEqual([]);
  });

  it("a back-and-forth within the throttle sends nothing", () => {
    make();
    join();
    vi.advanceTimersByTime(1000);
    client.setLocation("a");
    client.setLocation("b");
    client.setLocation("a");
    vi.advanceTimersByTime(500);
    expect(locations()).toEqual(["a"]);
  });

  it("refuses a location over 128 bytes; an empty one is none", () => {
    make();
    expect(() => client.setLocation("é".repeat(65))).toThrow(RangeError);
    client.setLocation("x".repeat(128));
    expect(client.location).toBe("x".repeat(128));
    client.setLocation("");
    expect(client.location).toBeNull();
  });
});

describe("recently left", () => {
  it("keeps who left for recentMs, newest first, then lets them go", () => {
    make({ recentMs: 60_000 });
    join([u("me", 1), u("ada", 2, { name: "Ada" }), u("linus", 3, { name: "Linus" })]);
    net.last.push(diff(1, 2, { left: ["ada"] }));
    vi.advanceTimersByTime(10_000);
    net.last.push(diff(2, 3, { left: ["linus"] }));
    let s = client.getSnapshot();
    expect(s.recent.map((r) => [r.user.name, r.leftAt])).toEqual([
      ["Linus", T0 + 10_000],
      ["Ada", T0],
    ]);
    expect(s.users.map((x) => x.id)).toEqual(["me"]);
    vi.advanceTimersByTime(50_000);
    s = client.getSnapshot();
    expect(s.recent.map((r) => r.user.name)).toEqual(["Linus"]);
    vi.advanceTimersByTime(10_000);
    expect(client.getSnapshot().recent).toEqual([]);
  });

  it("someone who comes back is no longer recently left", () => {
    make();
    join([u("me", 1), u("ada", 2)]);
    net.last.push(diff(1, 2, { left: ["ada"] }));
    expect(client.getSnapshot().recent).toHaveLength(1);
    net.last.push(diff(2, 3, { joined: [u("ada", 9)] }));
    expect(client.getSnapshot().recent).toEqual([]);
  });

  it("a reconnection shows nobody as just left, and drops those who are back", () => {
    make();
    join([u("me", 1), u("ada", 2), u("linus", 3)]);
    net.last.push(diff(1, 2, { left: ["ada"] }));
    net.last.drop(1006);
    vi.advanceTimersByTime(1000);
    net.last.accept();
    net.last.push(snapshot(9, [u("me", 1), u("ada", 2)], "me")); // linus went meanwhile
    expect(client.getSnapshot().recent).toEqual([]);
  });

  it("recentMs 0 turns it off", () => {
    make({ recentMs: 0 });
    join([u("me", 1), u("ada", 2)]);
    net.last.push(diff(1, 2, { left: ["ada"] }));
    expect(client.getSnapshot().recent).toEqual([]);
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
