import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TYPING_IDLE_MS, TYPING_REFRESH_MS, TypingSignal } from "../src/typing";

describe("TypingSignal", () => {
  let sent: [number, boolean][];
  let signal: TypingSignal;
  const t0 = Date.UTC(2025, 0, 1);

  beforeEach(() => {
    vi.useFakeTimers({ now: t0 });
    sent = [];
    signal = new TypingSignal((typing) => sent.push([Date.now() - t0, typing]));
  });
  afterEach(() => vi.useRealTimers());

  it("uses 2 s idle and a 3 s refresh, below the server's 5 s expiry", () => {
    expect(TYPING_IDLE_MS).toBe(2000);
    expect(TYPING_REFRESH_MS).toBe(3000);
  });

  it("sends one signal for a burst of keystrokes and stops 2 s after the last", () => {
    for (let i = 0; i < 10; i++) {
      signal.input();
      vi.advanceTimersByTime(100);
    }
    expect(sent).toEqual([[0, true]]);
    vi.advanceTimersByTime(1899);
    expect(sent).toEqual([[0, true]]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([
      [0, true],
      [2900, false],
    ]);
    expect(signal.typing).toBe(false);
  });

  it("refreshes every 3 s while typing goes on, never per keystroke", () => {
    // One keystroke every 250 ms for 10 s: 40 keystrokes.
    for (let i = 0; i < 40; i++) {
      signal.input();
      vi.advanceTimersByTime(250);
    }
    vi.advanceTimersByTime(5000);
    expect(sent).toEqual([
      [0, true],
      [3000, true],
      [6000, true],
      [9000, true],
      [11750, false],
    ]);
  });

  it("stop() ends at once and only when typing", () => {
    signal.stop();
    expect(sent).toEqual([]);
    signal.input();
    signal.stop();
    vi.advanceTimersByTime(10000);
    expect(sent).toEqual([
      [0, true],
      [0, false],
    ]);
  });

  it("dispose() drops the timers silently", () => {
    signal.input();
    signal.dispose();
    vi.advanceTimersByTime(10000);
    expect(sent).toEqual([[0, true]]);
  });
});
