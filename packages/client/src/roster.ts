/**
 * Pure roster logic: who is in the room, at which version.
 *
 * `applySnapshot` and `applyDiff` never mutate their input and return deeply frozen
 * rosters, so a UI can compare them by reference and nobody can edit one by accident.
 * The version rules come from docs/ARCHITECTURE.md: a diff applies only on top of the version it was
 * computed from (`prev`); anything else is either old news or a gap that needs a `sync`.
 */
import type { DiffMsg, PresenceMsg, User } from "./protocol";

export interface Roster {
  readonly roomId: string;
  /** The version held, or null before the first snapshot. */
  readonly version: number | null;
  /** This client's own presence id, once a protocol-2 snapshot has told it. */
  readonly self: string | null;
  /** Members ordered by `since`, then by `id`, as the server orders them. */
  readonly users: readonly User[];
}

/** What `applyDiff` did with a diff. */
export type DiffResult =
  | {
      kind: "applied";
      roster: Roster;
      joined: readonly User[];
      /** The users that left, as the roster last knew them (for "Ada left"). */
      left: readonly User[];
      updated: readonly User[];
    }
  /** No snapshot yet: the caller buffers the diff or drops it. */
  | { kind: "unsynced" }
  /** The roster already includes this change (`version` is not newer): ignore it. */
  | { kind: "stale" }
  /** A change between the held version and `prev` is missing: ask for a snapshot. */
  | { kind: "gap" };

/** A roster before any snapshot: nobody, no version. */
export function emptyRoster(roomId: string): Roster {
  return deepFreeze({ roomId, version: null, self: null, users: [] });
}

/** Ordering of the server's rosters: by join time, then id (code units, like Rust's bytes for ASCII ids). */
export function compareUsers(a: User, b: User): number {
  if (a.since !== b.since) return a.since - b.since;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Replaces the roster with a snapshot. A snapshot always wins, whatever the version held:
 * it is the server's answer on this very socket, after everything sent before it.
 * A protocol-1 snapshot (no `users`) yields bare members.
 */
export function applySnapshot(_prev: Roster, msg: PresenceMsg): Roster {
  const users =
    msg.users ??
    msg.members.map((id): User => ({ id, state: {}, tabs: 1, since: 0, status: "active", statusSince: 0 }));
  return deepFreeze({
    roomId: msg.roomId,
    version: msg.version,
    self: msg.self ?? null,
    users: dedupe(users).sort(compareUsers),
  });
}

/** Applies a diff when it follows the held version exactly (see `DiffResult`). */
export function applyDiff(roster: Roster, diff: DiffMsg): DiffResult {
  if (roster.version === null) return { kind: "unsynced" };
  if (diff.version <= roster.version) return { kind: "stale" };
  if (diff.prev !== roster.version) return { kind: "gap" };

  const byId = new Map(roster.users.map((u) => [u.id, u]));
  const left: User[] = [];
  for (const id of diff.left) {
    const gone = byId.get(id);
    if (gone) {
      left.push(gone);
      byId.delete(id);
    }
  }
  // Joined and updated carry whole user objects: an upsert is the safe reading of both.
  for (const u of diff.joined) byId.set(u.id, u);
  for (const u of diff.updated) byId.set(u.id, u);

  return {
    kind: "applied",
    roster: deepFreeze({
      roomId: roster.roomId,
      version: diff.version,
      self: roster.self,
      users: [...byId.values()].sort(compareUsers),
    }),
    joined: diff.joined,
    left,
    updated: diff.updated,
  };
}

/** The user this roster says is us, if any. */
export function selfOf(roster: Roster): User | null {
  return roster.self === null ? null : (roster.users.find((u) => u.id === roster.self) ?? null);
}

/** Everyone but us, in roster order. */
export function othersOf(roster: Roster): readonly User[] {
  return roster.users.filter((u) => u.id !== roster.self);
}

function dedupe(users: readonly User[]): User[] {
  const byId = new Map<string, User>();
  for (const u of users) byId.set(u.id, u);
  return [...byId.values()];
}

/** Freezes a JSON-like value and everything in it; returns it typed as read-only. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
