/**
 * Client timings the demo takes from its address, for demos and tests that cannot wait a
 * minute: `?recentMs=3000` keeps faces that left for 3 s, `?idleAfterMs=` and
 * `?awayAfterMs=` shorten the way to idle and away. Anything missing or not a positive
 * whole number keeps the client's default.
 */
export interface DemoTimings {
  recentMs?: number;
  idleAfterMs?: number;
  awayAfterMs?: number;
}

const KEYS = ["recentMs", "idleAfterMs", "awayAfterMs"] as const;
/** A day: longer than anyone waits for a demo, short enough to be a sane timer. */
const MAX_MS = 86_400_000;

export function timingsFrom(search: string): DemoTimings {
  const params = new URLSearchParams(search);
  const out: DemoTimings = {};
  for (const key of KEYS) {
    const raw = params.get(key);
    if (raw === null || !/^\d{1,9}$/.test(raw)) continue;
    const ms = Number(raw);
    if (ms > 0 && ms <= MAX_MS) out[key] = ms;
  }
  // The client refuses away before idle: then keep both defaults rather than fail.
  if (out.idleAfterMs !== undefined && out.awayAfterMs !== undefined && out.awayAfterMs < out.idleAfterMs) {
    delete out.idleAfterMs;
    delete out.awayAfterMs;
  }
  return out;
}
