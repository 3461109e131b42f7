import { describe, expect, it } from "vitest";
import { activityOfChange, appendActivity, rosterChange } from "../src/activity";
import type { DiffMsg, PresenceMsg, User } from "../src/protocol";
import { applyDiff, applySnapshot, emptyRoster, othersOf, selfOf, type Roster } from "../src/roster";
import { fixture } from "./fixtures";

const snapshot = () => fixture<PresenceMsg>("v2/server.presence.json");
const diff = () => fixture<DiffMsg>("v2/server.diff.json");
const user = (id: string, since: number, extra: Partial<User> = {}): User => ({
  id,
  state: {},
  tabs: 1,
  since,
  status: "active",
  statusSince: since,
  ...extra,
});

function seeded(): Roster {
  return applySnapshot(emptyRoster("design-review"), snapshot());
}

describe("applySnapshot", () => {
  it("takes the golden snapshot as it is: users, version and self", () => {
    const r = seeded();
    expect(r.version).toBe(7);
    expect(r.self).toBe("tab-ada-1");
    expect(r.users.map((u) => u.id)).toEqual(["tab-ada-1", "tab-linus"]);
    expect(selfOf(r)?.name).toBe("Ada");
    expect(othersOf(r).map((u) => u.id)).toEqual(["tab-linus"]);
  });

  it("always replaces what was held, even with a lower version", () => {
    const r = seeded();
    const older = applySnapshot(r, { ...snapshot(), version: 2, users: [user("z", 1)], members: ["z"], self: "z" });
    expect(older.version).toBe(2);
    expect(older.users.map((u) => u.id)).toEqual(["z"]);
  });

  it("orders users by since, then id, and drops duplicate ids", () => {
    const r = applySnapshot(emptyRoster("lobby"), {
      type: "presence",
      roomId: "lobby",
      count: 3,
      members: ["c", "b", "a"],
      version: 1,
      users: [user("c", 5), user("b", 9), user("a", 5), user("b", 9, { name: "B2" })],
      self: "a",
    });
    expect(r.users.map((u) => u.id)).toEqual(["a", "c", "b"]);
    expect(r.users[2]?.name).toBe("B2");
  });

  it("reads a protocol-1 snapshot as bare members", () => {
    const r = applySnapshot(emptyRoster("lobby"), fixture<PresenceMsg>("v1/server.presence.json"));
    expect(r.users.map((u) => u.id)).toEqual(["k3f9a2", "x7q1m0"]);
    expect(r.self).toBeNull();
    expect(r.version).toBe(4);
  });

  it("returns a deeply frozen roster and leaves the message alone", () => {
    const msg = snapshot();
    const r = applySnapshot(emptyRoster("x"), msg);
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.users)).toBe(true);
    expect(Object.isFrozen(r.users[0])).toBe(true);
    expect(Object.isFrozen(r.users[0]?.state)).toBe(true);
    expect(() => (r.users as User[]).push(user("x", 1))).toThrow(TypeError);
  });
});

describe("applyDiff", () => {
  it("applies the golden diff on top of the golden snapshot (prev 7 -> 9)", () => {
    const before = seeded();
    const result = applyDiff(before, diff());
    if (result.kind !== "applied") throw new Error(result.kind);
    const r = result.roster;
    expect(r.version).toBe(9);
    expect(r.users.map((u) => u.id)).toEqual(["tab-ada-1", "tab-grace"]);
    const ada = r.users[0]!;
    expect(ada.tabs).toBe(2);
    expect(ada.state).toEqual({ cursor: { x: 1, y: 2 } });
    expect([ada.status, ada.statusSince, ada.location]).toEqual(["away", 1763888412000, "timeline"]);
    expect(result.left.map((u) => u.id)).toEqual(["tab-linus"]);
    expect(result.joined.map((u) => u.name)).toEqual(["Grace"]);
    expect(r.self).toBe("tab-ada-1");
    expect(Object.isFrozen(r.users)).toBe(true);
    // The input is untouched.
    expect(before.version).toBe(7);
    expect(before.users.map((u) => u.id)).toEqual(["tab-ada-1", "tab-linus"]);
  });

  it("before any snapshot: unsynced", () => {
    expect(applyDiff(emptyRoster("design-review"), diff())).toEqual({ kind: "unsynced" });
  });

  it("a diff the roster already includes is stale", () => {
    const r = seeded();
    expect(applyDiff(r, { ...diff(), prev: 5, version: 7 })).toEqual({ kind: "stale" });
    expect(applyDiff(r, { ...diff(), prev: 3, version: 6 })).toEqual({ kind: "stale" });
  });

  it("a diff that does not start at the held version is a gap", () => {
    const r = seeded();
    expect(applyDiff(r, { ...diff(), prev: 8, version: 9 })).toEqual({ kind: "gap" });
    expect(applyDiff(r, { ...diff(), prev: 6, version: 9 })).toEqual({ kind: "gap" });
  });

  it("applies left before joined, so a leave and a rejoin in one diff keep the member", () => {
    const r = seeded();
    const result = applyDiff(r, {
      type: "diff",
      roomId: "design-review",
      prev: 7,
      version: 8,
      joined: [user("tab-linus", 99, { name: "Linus again" })],
      left: ["tab-linus"],
      updated: [],
    });
    if (result.kind !== "applied") throw new Error(result.kind);
    expect(result.roster.users.find((u) => u.id === "tab-linus")?.name).toBe("Linus again");
  });

  it("ignores leaves of ids it never had", () => {
    const result = applyDiff(seeded(), { ...diff(), joined: [], updated: [], left: ["ghost"], version: 8 });
    if (result.kind !== "applied") throw new Error(result.kind);
    expect(result.left).toEqual([]);
    expect(result.roster.users).toHaveLength(2);
  });
});

describe("activity", () => {
  it("names joins and leaves but never ourselves", () => {
    const entries = activityOfChange([user("a", 1), user("me", 2)], [user("b", 0)], "me", 1000, 1);
    expect(entries.map((e) => [e.kind, e.user.id, e.seq])).toEqual([
      ["left", "b", 1],
      ["joined", "a", 2],
    ]);
  });

  it("keeps the log newest first and capped", () => {
    let log = appendActivity([], activityOfChange([user("a", 1)], [], null, 1, 1));
    log = appendActivity(log, activityOfChange([user("b", 1), user("c", 1)], [], null, 2, 2), 2);
    expect(log.map((e) => e.user.id)).toEqual(["c", "b"]);
    expect(Object.isFrozen(log)).toBe(true);
  });

  it("compares two rosters for a sync answer", () => {
    const change = rosterChange([user("a", 1), user("b", 2)], [user("b", 2), user("c", 3)]);
    expect(change.joined.map((u) => u.id)).toEqual(["c"]);
    expect(change.left.map((u) => u.id)).toEqual(["a"]);
  });
});
