import { afterEach, describe, expect, it, vi } from "vitest";
import {
  AWAY_AFTER_MS,
  AttentionTracker,
  IDLE_AFTER_MS,
  decideStatus,
  nextStatusChange,
  type Attention,
  type UserStatus,
} from "../src/attention";

const t = { idleAfterMs: 1000, awayAfterMs: 5000 };
const at = (a: Partial<Attention>): Attention => ({ hidden: false, focused: true, lastInputAt: 0, ...a });

describe("decideStatus", () => {
  it("has the documented defaults", () => {
    expect(IDLE_AFTER_MS).toBe(60_000);
    expect(AWAY_AFTER_MS).toBe(600_000);
  });

  it("active while input is recent, idle after idleAfterMs, away after awayAfterMs", () => {
    expect(decideStatus(at({}), 999, t)).toBe("active");
    expect(decideStatus(at({}), 1000, t)).toBe("idle");
    expect(decideStatus(at({}), 4999, t)).toBe("idle");
    expect(decideStatus(at({}), 5000, t)).toBe("away");
  });

  it("a hidden page is away at once", () => {
    expect(decideStatus(at({ hidden: true }), 0, t)).toBe("away");
    expect(decideStatus(at({ hidden: true, lastInputAt: 10 }), 10, t)).toBe("away");
  });

  it("a visible page without focus is idle at once, and away after awayAfterMs", () => {
    expect(decideStatus(at({ focused: false }), 0, t)).toBe("idle");
    expect(decideStatus(at({ focused: false }), 5000, t)).toBe("away");
  });
});

describe("nextStatusChange", () => {
  it("is the next threshold, or null when only an event can change the answer", () => {
    expect(nextStatusChange(at({ lastInputAt: 100 }), 200, t)).toBe(1100);
    expect(nextStatusChange(at({ lastInputAt: 100 }), 1100, t)).toBe(5100);
    expect(nextStatusChange(at({ focused: false, lastInputAt: 100 }), 200, t)).toBe(5100);
    expect(nextStatusChange(at({ lastInputAt: 100 }), 5100, t)).toBeNull();
    expect(nextStatusChange(at({ hidden: true }), 0, t)).toBeNull();
  });

  it("agrees with decideStatus: the answer changes exactly there and nowhere before", () => {
    for (const a of [at({ lastInputAt: 40 }), at({ focused: false, lastInputAt: 7 })]) {
      let now = a.lastInputAt;
      const seen: UserStatus[] = [decideStatus(a, now, t)];
      for (let next = nextStatusChange(a, now, t); next !== null; next = nextStatusChange(a, now, t)) {
        expect(decideStatus(a, next - 1, t)).toBe(seen[seen.length - 1]);
        now = next;
        seen.push(decideStatus(a, now, t));
      }
      expect(seen[seen.length - 1]).toBe("away");
      expect(new Set(seen).size).toBe(seen.length); // each step is a change
    }
  });
});

describe("AttentionTracker", () => {
  afterEach(() => vi.useRealTimers());

  function setup(init: { hidden?: boolean; focused?: boolean } = {}) {
    vi.useFakeTimers({ now: 0 });
    const doc = Object.assign(new EventTarget(), {
      visibilityState: init.hidden ? "hidden" : "visible",
      hasFocus: () => init.focused ?? true,
    });
    const win = new EventTarget();
    const changes: UserStatus[] = [];
    const tracker = new AttentionTracker({
      sources: { document: doc, window: win },
      ...t,
      onChange: (s) => changes.push(s),
      now: () => Date.now(),
    });
    const visibility = (v: "hidden" | "visible") => {
      doc.visibilityState = v;
      doc.dispatchEvent(new Event("visibilitychange"));
    };
    return { tracker, changes, win, visibility };
  }

  it("starts from the page as it is, without a callback", () => {
    const { tracker, changes } = setup({ hidden: true });
    expect(tracker.start()).toBe("away");
    expect(changes).toEqual([]);
    const other = setup({ focused: false });
    expect(other.tracker.start()).toBe("idle");
  });

  it("reports each change once, from timers and from events", () => {
    const { tracker, changes, win, visibility } = setup();
    tracker.start();
    vi.advanceTimersByTime(999);
    win.dispatchEvent(new Event("keydown"));
    vi.advanceTimersByTime(999);
    expect(changes).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(changes).toEqual(["idle"]);
    visibility("hidden");
    visibility("hidden");
    expect(changes).toEqual(["idle", "away"]);
    visibility("visible"); // coming back is a sign of someone there
    expect(changes).toEqual(["idle", "away", "active"]);
    win.dispatchEvent(new Event("blur"));
    win.dispatchEvent(new Event("pointermove")); // hovering an unfocused window
    expect(changes).toEqual(["idle", "away", "active", "idle"]);
    win.dispatchEvent(new Event("focus"));
    expect(tracker.status).toBe("active");
  });

  it("every input event counts, scrolling alone does not", () => {
    const { tracker, changes, win } = setup();
    tracker.start();
    vi.advanceTimersByTime(1000);
    expect(changes).toEqual(["idle"]);
    win.dispatchEvent(new Event("scroll"));
    expect(tracker.status).toBe("idle");
    for (const type of ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"]) {
      vi.advanceTimersByTime(1000);
      expect(tracker.status).toBe("idle");
      win.dispatchEvent(new Event(type));
      expect(tracker.status, type).toBe("active");
    }
  });

  it("stop() removes every listener and the timer", () => {
    const { tracker, changes, win, visibility } = setup();
    tracker.start();
    tracker.stop();
    visibility("hidden");
    win.dispatchEvent(new Event("blur"));
    vi.advanceTimersByTime(60_000);
    expect(changes).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("refuses timings that make no sense", () => {
    const make = (idleAfterMs: number, awayAfterMs: number) =>
      new AttentionTracker({ sources: {}, idleAfterMs, awayAfterMs, onChange: () => {} });
    expect(() => make(0, 10)).toThrow(RangeError);
    expect(() => make(10, 5)).toThrow(RangeError);
    expect(() => make(10, 10)).not.toThrow();
  });
});
