import { describe, expect, it } from "vitest";
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, POLICY_RETRY_MS, backoffDelay, closeDecision } from "../src/backoff";

describe("backoff", () => {
  it("starts at 1 s, doubles and stops at 30 s", () => {
    expect(BACKOFF_MIN_MS).toBe(1000);
    expect(BACKOFF_MAX_MS).toBe(30000);
    expect([0, 1, 2, 3, 4, 5, 10, 50].map((n) => backoffDelay(n, 0))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });

  it("adds jitter within 1..30 s, and the first retry comes before the 3 s grace window ends", () => {
    expect(backoffDelay(0, 0.999)).toBeGreaterThan(1250);
    expect(backoffDelay(0, 0.999)).toBeLessThan(3000);
    expect(backoffDelay(2, 0.5)).toBe(4600);
    for (let n = 0; n < 12; n++) {
      for (const r of [0, 0.3, 0.99]) {
        const d = backoffDelay(n, r);
        expect(d).toBeGreaterThanOrEqual(1000);
        expect(d).toBeLessThanOrEqual(30000);
      }
    }
  });
});

describe("close codes", () => {
  it("1009 and 4401 stop for good", () => {
    expect(closeDecision(1009, 0, 0.5)).toEqual({ kind: "stop", reason: "too_big" });
    expect(closeDecision(4401, 3, 0.5)).toEqual({ kind: "stop", reason: "unauthorized" });
    expect(closeDecision(4403, 0, 0.5)).toEqual({ kind: "stop", reason: "forbidden" });
  });

  it("1008 waits at least 30 s, whatever the attempt", () => {
    expect(POLICY_RETRY_MS).toBe(30000);
    for (const r of [0, 0.5, 0.99]) {
      const d = closeDecision(1008, 0, r);
      expect(d.kind).toBe("retry");
      expect(d.kind === "retry" && d.delayMs).toBeGreaterThanOrEqual(30000);
    }
  });

  it("everything else retries with the backoff", () => {
    for (const code of [1000, 1001, 1005, 1006, 1011, 1012, 1013, 4000]) {
      expect(closeDecision(code, 1, 0)).toEqual({ kind: "retry", delayMs: 2000 });
    }
  });
});
