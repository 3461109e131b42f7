/**
 * Recently left: people who left the room a moment ago, kept for `recentMs` so their face
 * can stay, greyed, instead of vanishing ("Linus, left 1 minute ago").
 *
 * Client side only, from the diffs this client applied: the server forgets a member when
 * they leave. Pure functions over a newest-first list; the client calls them and keeps
 * one timer for the next expiry.
 */
import type { User } from "./protocol";

/** How long a face that left stays on screen: long enough to notice who just went. */
export const RECENT_MS = 60_000;
/** At most this many recently-left people are kept: a stack never shows more. */
export const RECENT_CAPACITY = 20;

/** Someone who left, as they were last seen. */
export interface RecentUser {
  readonly user: User;
  /** When this client saw them leave, ms since the epoch. */
  readonly leftAt: number;
}

/**
 * The list after a change: those who came back are taken out (their face is restored by
 * the roster), those who left are put first. `self` never counts as having left.
 */
export function noteDepartures(
  recent: readonly RecentUser[],
  change: { joined: readonly Pick<User, "id">[]; left: readonly User[] },
  self: string | null,
  at: number,
  capacity = RECENT_CAPACITY,
): readonly RecentUser[] {
  if (change.joined.length === 0 && change.left.length === 0) return recent;
  const back = new Set(change.joined.map((u) => u.id));
  const gone = change.left.filter((u) => u.id !== self && !back.has(u.id));
  const goneIds = new Set(gone.map((u) => u.id));
  const kept = recent.filter((r) => !back.has(r.user.id) && !goneIds.has(r.user.id));
  if (kept.length === recent.length && gone.length === 0) return recent;
  const fresh = gone.map((user) => Object.freeze({ user, leftAt: at }));
  return Object.freeze([...fresh, ...kept].slice(0, capacity));
}

/** The list without those who left `recentMs` ago or more; the same list when none expired. */
export function pruneRecent(recent: readonly RecentUser[], now: number, recentMs: number): readonly RecentUser[] {
  const kept = recent.filter((r) => now - r.leftAt < recentMs);
  return kept.length === recent.length ? recent : Object.freeze(kept);
}

/** When the next entry expires, or null for an empty list. */
export function nextExpiry(recent: readonly RecentUser[], recentMs: number): number | null {
  let first: number | null = null;
  for (const r of recent) first = first === null ? r.leftAt : Math.min(first, r.leftAt);
  return first === null ? null : first + recentMs;
}

/** Drops anyone the roster has again (a snapshot that shows them back). */
export function withoutPresent(recent: readonly RecentUser[], present: readonly Pick<User, "id">[]) {
  const ids = new Set(present.map((u) => u.id));
  const kept = recent.filter((r) => !ids.has(r.user.id));
  return kept.length === recent.length ? recent : Object.freeze(kept);
}
