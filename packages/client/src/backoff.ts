/**
 * What to do after a socket closes: retry after how long, or stop.
 *
 * The rules are the close codes of docs/ARCHITECTURE.md. A plain backoff starts at 1 s (sooner than the
 * server's 3 s grace window, so a dropped connection usually comes back before anyone sees
 * a leave) and doubles to 30 s; jitter spreads a whole room's reconnects after a server
 * restart so they do not arrive in one burst.
 */
import { CloseCode } from "./protocol";

/** First retry delay. */
export const BACKOFF_MIN_MS = 1_000;
/** Longest retry delay. */
export const BACKOFF_MAX_MS = 30_000;
/** Jitter: a delay is stretched by up to this fraction, at random. */
export const BACKOFF_JITTER = 0.3;
/** After a 1008 policy close the server asks for at least this long before a retry. */
export const POLICY_RETRY_MS = 30_000;

export type CloseDecision =
  { kind: "retry"; delayMs: number } | { kind: "stop"; reason: "too_big" | "unauthorized" | "forbidden" };

/**
 * Delay before retry number `attempt` (0-based): 1 s, 2 s, 4 s, ... capped at 30 s, then
 * stretched by up to 30 % jitter while staying within 1..30 s. `random` is in [0, 1).
 */
export function backoffDelay(attempt: number, random: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt));
  const jittered = base * (1 + BACKOFF_JITTER * random);
  return Math.round(Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, jittered)));
}

/** The decision for a close with `code`, after `attempt` failed retries in a row. */
export function closeDecision(code: number, attempt: number, random: number): CloseDecision {
  switch (code) {
    case CloseCode.TooBig:
      return { kind: "stop", reason: "too_big" };
    case CloseCode.Unauthorized:
      return { kind: "stop", reason: "unauthorized" };
    case CloseCode.Forbidden:
      return { kind: "stop", reason: "forbidden" };
    case CloseCode.Policy:
      return { kind: "retry", delayMs: Math.round(POLICY_RETRY_MS * (1 + BACKOFF_JITTER * random)) };
    default:
      return { kind: "retry", delayMs: backoffDelay(attempt, random) };
  }
}
