/**
 * Join/leave activity ("Ada joined", "Linus left"), derived from roster changes.
 *
 * Pure functions: the client decides when to call them. It never calls them for the first
 * snapshot after a (re)connection, which only seeds the roster: arriving in a room must
 * not list everyone already there as "joined".
 */
import type { User } from "./protocol";

export interface ActivityEntry {
  /** Increasing number, unique within one client: a stable React key. */
  readonly seq: number;
  readonly kind: "joined" | "left";
  /** The user as known at that moment. */
  readonly user: User;
  /** When this client saw it, ms since the epoch. */
  readonly at: number;
}

/** How many entries a client keeps; the log components show fewer. */
export const ACTIVITY_CAPACITY = 50;

/** The activity for a diff that was applied; `self` never appears in its own log. */
export function activityOfChange(
  joined: readonly User[],
  left: readonly User[],
  self: string | null,
  at: number,
  nextSeq: number,
): ActivityEntry[] {
  const out: ActivityEntry[] = [];
  let seq = nextSeq;
  for (const user of left) {
    if (user.id !== self) out.push(Object.freeze({ seq: seq++, kind: "left" as const, user, at }));
  }
  for (const user of joined) {
    if (user.id !== self) out.push(Object.freeze({ seq: seq++, kind: "joined" as const, user, at }));
  }
  return out;
}

/** The joins and leaves between two full rosters (a `sync` answer replacing a roster). */
export function rosterChange(before: readonly User[], after: readonly User[]): { joined: User[]; left: User[] } {
  const beforeIds = new Set(before.map((u) => u.id));
  const afterIds = new Set(after.map((u) => u.id));
  return {
    joined: after.filter((u) => !beforeIds.has(u.id)),
    left: before.filter((u) => !afterIds.has(u.id)),
  };
}

/** Adds entries to a newest-first log, keeping at most `capacity`. */
export function appendActivity(
  log: readonly ActivityEntry[],
  entries: readonly ActivityEntry[],
  capacity = ACTIVITY_CAPACITY,
): readonly ActivityEntry[] {
  if (entries.length === 0) return log;
  return Object.freeze([...entries].reverse().concat(log).slice(0, capacity));
}
