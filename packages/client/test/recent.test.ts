import { describe, expect, it } from "vitest";
import type { User } from "../src/protocol";
import { RECENT_MS, nextExpiry, noteDepartures, pruneRecent, withoutPresent, type RecentUser } from "../src/recent";
import { u } from "./fake-socket";

const ada = u("ada", 1, { name: "Ada" });
const linus = u("linus", 2, { name: "Linus" });
const me = u("me", 3);
const none: readonly RecentUser[] = [];
const ids = (r: readonly RecentUser[]) => r.map((x) => `${x.user.id}@${x.leftAt}`);

describe("recently left", () => {
  it("keeps a minute by default", () => {
    expect(RECENT_MS).toBe(60_000);
  });

  it("puts who left first, with when; never ourselves", () => {
    let r = noteDepartures(none, { joined: [], left: [ada] }, "me", 100);
    r = noteDepartures(r, { joined: [], left: [linus, me] }, "me", 200);
    expect(ids(r)).toEqual(["linus@200", "ada@100"]);
    expect(r[1]?.user).toBe(ada); // as they were last seen
    expect(Object.isFrozen(r)).toBe(true);
  });

  it("whoever comes back is taken out; leaving again counts from then", () => {
    let r = noteDepartures(none, { joined: [], left: [ada, linus] }, null, 100);
    r = noteDepartures(r, { joined: [ada], left: [] }, null, 150);
    expect(ids(r)).toEqual(["linus@100"]);
    r = noteDepartures(r, { joined: [], left: [linus] }, null, 300);
    expect(ids(r)).toEqual(["linus@300"]);
    // Left and back within one change: not gone at all.
    expect(ids(noteDepartures(none, { joined: [ada], left: [ada] }, null, 1))).toEqual([]);
  });

  it("returns the same list when nothing changes it", () => {
    const r = noteDepartures(none, { joined: [], left: [ada] }, null, 1);
    expect(noteDepartures(r, { joined: [], left: [] }, null, 2)).toBe(r);
    expect(noteDepartures(r, { joined: [linus], left: [] }, null, 2)).toBe(r);
    expect(pruneRecent(r, 2, 100)).toBe(r);
    expect(withoutPresent(r, [linus])).toBe(r);
  });

  it("is capped", () => {
    const many: User[] = Array.from({ length: 30 }, (_, i) => u(`p${i}`, i));
    const r = noteDepartures(none, { joined: [], left: many }, null, 1, 20);
    expect(r).toHaveLength(20);
  });

  it("expires entries recentMs after they left, and says when the next one goes", () => {
    let r = noteDepartures(none, { joined: [], left: [ada] }, null, 100);
    r = noteDepartures(r, { joined: [], left: [linus] }, null, 400);
    expect(nextExpiry(r, 1000)).toBe(1100);
    expect(ids(pruneRecent(r, 1099, 1000))).toEqual(["linus@400", "ada@100"]);
    r = pruneRecent(r, 1100, 1000);
    expect(ids(r)).toEqual(["linus@400"]);
    expect(nextExpiry(r, 1000)).toBe(1400);
    expect(nextExpiry(pruneRecent(r, 1400, 1000), 1000)).toBeNull();
  });

  it("drops those a snapshot shows present again", () => {
    const r = noteDepartures(none, { joined: [], left: [ada, linus] }, null, 1);
    expect(ids(withoutPresent(r, [ada, me]))).toEqual(["linus@1"]);
  });
});
