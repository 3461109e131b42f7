/**
 * The wire protocol, mirrored by hand from the server's `protocol.rs` (see docs/ARCHITECTURE.md).
 *
 * The golden messages in `fixtures/protocol/` are the contract: the tests decode every one
 * of them with the functions below, so the two sides cannot drift silently. Decoding is
 * strict about the fields this client relies on and tolerant of fields it does not know
 * (a newer server may add some), which it drops.
 */

import { USER_STATUSES, type UserStatus } from "./attention";

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A JSON object: the shape of a presence `state`. */
export type JsonObject = { [key: string]: Json };

/** Protocol version this client speaks. Version 1 is the reference template's. */
export const PROTOCOL_VERSION = 2;
/** Server limit on a `state` object and on an event's `data`: UTF-8 bytes of compact JSON. */
export const MAX_STATE_BYTES = 1024;
/** Server limit on an event name. */
export const MAX_EVENT_NAME_CHARS = 32;
/** The reserved event that carries typing signals: data `{"typing": boolean}`. */
export const TYPING_EVENT = "typing";
/** Server limit on a tab's `location`: UTF-8 bytes of the string. */
export const MAX_LOCATION_BYTES = 128;

/** Display hints a client may give when it has no token. Absent hints are omitted. */
export interface UserHints {
  name?: string;
  avatar?: string;
  color?: string;
}

/** One member of a room, as the server describes it (protocol 2). */
export interface User {
  /** Presence id: the tab id without auth. */
  readonly id: string;
  readonly name?: string;
  readonly avatar?: string;
  readonly color?: string;
  /** The app's free-form presence state (cursor, selection, ...); always an object. */
  readonly state: Readonly<JsonObject>;
  /** How many sockets (tabs) this member has open. */
  readonly tabs: number;
  /** When the member joined, ms since the epoch. Rosters are ordered by it, then by id. */
  readonly since: number;
  /**
   * With `AUTH=optional` or `required`: whether the server verified this user's token
   * (its id is then `u_...` and its name and avatar come from the token). Absent with
   * `AUTH=off`, where nobody is verified.
   */
  readonly verified?: boolean;
  /** The member's status folded across their tabs: active if any tab is, else idle if any is. */
  readonly status: UserStatus;
  /** Since when `status` holds, ms since the epoch by the server's store clock. */
  readonly statusSince: number;
  /** Where their most recently active tab is (a section id, a slide...); absent when none. */
  readonly location?: string;
}

// ---- client -> server ----------------------------------------------------------------

export interface HelloMsg {
  type: "hello";
  id: string;
  proto?: 1 | 2;
  token?: string;
  user?: UserHints;
  state?: JsonObject;
  /** This tab's status when it is not `active` (the default). */
  status?: UserStatus;
  /** This tab's location, when it has one. */
  location?: string;
}
export interface PingMsg {
  type: "ping";
}
export interface StateMsg {
  type: "state";
  state: JsonObject;
  user?: UserHints;
}
export interface ClientEventMsg {
  type: "event";
  event: string;
  data: Json;
}
export interface SyncMsg {
  type: "sync";
}
/** A fresh token for an open socket, sent before the current one expires. */
export interface AuthMsg {
  type: "auth";
  token: string;
}
/** This tab's status changed (sent only on a change). */
export interface StatusMsg {
  type: "status";
  status: UserStatus;
}
/** This tab's location changed; null clears it. */
export interface LocationMsg {
  type: "location";
  location: string | null;
}
export type ClientMsg = HelloMsg | PingMsg | StateMsg | ClientEventMsg | SyncMsg | AuthMsg | StatusMsg | LocationMsg;

// ---- server -> client ----------------------------------------------------------------

/**
 * A full roster. Protocol 1 gets it whenever the member set changes; protocol 2 gets it
 * after `hello` and on `sync` only (then `users` and `self` are present).
 */
export interface PresenceMsg {
  type: "presence";
  roomId: string;
  count: number;
  members: string[];
  version: number;
  users?: User[];
  self?: string;
}
/** Protocol 2: the net change from version `prev` to version `version`. */
export interface DiffMsg {
  type: "diff";
  roomId: string;
  prev: number;
  version: number;
  joined: User[];
  left: string[];
  updated: User[];
}
/** Protocol 2: an ephemeral event from another socket of the room. */
export interface ServerEventMsg {
  type: "event";
  roomId: string;
  from: string;
  event: string;
  data: Json;
}
export interface PongMsg {
  type: "pong";
}
/** The server's answer to this socket's own bad input. */
export interface ErrorMsg {
  type: "error";
  code: ErrorCode;
  message: string;
}
export type ServerMsg = PresenceMsg | DiffMsg | ServerEventMsg | PongMsg | ErrorMsg;

/** Error codes the server documents; a newer server may send others. */
export type ErrorCode =
  | "bad_json"
  | "bad_message"
  | "unknown_type"
  | "not_joined"
  | "already_joined"
  | "invalid_id"
  | "invalid_proto"
  | "invalid_user"
  | "invalid_token"
  | "state_too_large"
  | "event_too_large"
  | "location_too_large"
  | "rate_limited"
  | "room_full"
  /** The token has expired (the socket then closes with 4401). */
  | "token_expired"
  /** The token does not allow this room (close 4403), or a viewer tried to send. */
  | "forbidden"
  | (string & {});

/** Close codes with a meaning for the client (docs/ARCHITECTURE.md, "Wire protocol"). */
export const CloseCode = {
  /** Sent by the client: leave now, no grace window. */
  Normal: 1000,
  GoingAway: 1001,
  /** From the server: a policy violation; retry after 30 s at the earliest. */
  Policy: 1008,
  /** From the server: a frame was too big; retrying would fail the same way. */
  TooBig: 1009,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  /** From the server: not authorised (no valid token, or it expired); do not retry. */
  Unauthorized: 4401,
  /** From the server: the token does not allow this room; do not retry. */
  Forbidden: 4403,
} as const;

// ---- validation ----------------------------------------------------------------------

/** The result of decoding one frame: the message, or why it was rejected. */
export type Decoded<T> = { ok: true; msg: T } | { ok: false; error: string };

const TAB_ID = /^[A-Za-z0-9_-]{1,128}$/;
const ROOM_ID = /^[a-z0-9-]{1,64}$/;
/** The room every invalid room id falls back to, as on the server. */
export const DEFAULT_ROOM = "lobby";

/** Whether `id` is acceptable as a tab id in `hello`. */
export function isValidTabId(id: string): boolean {
  return TAB_ID.test(id);
}

/** The room the server will put us in: the id itself when valid, else `lobby`. */
export function normalizeRoomId(room: string): string {
  return ROOM_ID.test(room) ? room : DEFAULT_ROOM;
}

/** UTF-8 size of a string, the measure of the location limit. */
export function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** UTF-8 size of a value's compact JSON, the measure the server's limits use. */
export function jsonByteLength(value: Json): number {
  return new TextEncoder().encode(JSON.stringify(value)).length;
}

class Invalid extends Error {}

function fail(message: string): never {
  throw new Invalid(message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string): string {
  const v = o[key];
  return typeof v === "string" ? v : fail(`${key} must be a string`);
}

function optStr(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  return typeof v === "string" ? v : fail(`${key} must be a string`);
}

function int(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${key} must be a non-negative integer`);
}

function jsonObject(v: unknown, what: string): JsonObject {
  return isObject(v) ? (v as JsonObject) : fail(`${what} must be an object`);
}

function strings(o: Record<string, unknown>, key: string): string[] {
  const v = o[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    fail(`${key} must be an array of strings`);
  }
  return v as string[];
}

function hints(v: unknown, what: string): UserHints {
  const o = isObject(v) ? v : fail(`${what} must be an object`);
  const out: UserHints = {};
  const name = optStr(o, "name");
  const avatar = optStr(o, "avatar");
  const color = optStr(o, "color");
  if (name !== undefined) out.name = name;
  if (avatar !== undefined) out.avatar = avatar;
  if (color !== undefined) out.color = color;
  return out;
}

function isUserStatus(v: unknown): v is UserStatus {
  return typeof v === "string" && (USER_STATUSES as readonly string[]).includes(v);
}

/**
 * A member's status. A server older than status sends none, which means `active` since they
 * joined; a newer server's status this client does not know reads as `active` too, so an
 * unknown word never hides anybody.
 */
function userStatus(o: Record<string, unknown>, since: number): { status: UserStatus; statusSince: number } {
  const status = isUserStatus(o.status) ? o.status : "active";
  const statusSince = o.statusSince === undefined ? since : int(o, "statusSince");
  return { status, statusSince };
}

function user(v: unknown): User {
  const o = isObject(v) ? v : fail("a user must be an object");
  const out: {
    id: string;
    name?: string;
    avatar?: string;
    color?: string;
    state: JsonObject;
    tabs: number;
    since: number;
    verified?: boolean;
    status: UserStatus;
    statusSince: number;
    location?: string;
  } = { id: str(o, "id"), state: {}, tabs: 0, since: 0, status: "active", statusSince: 0 };
  const h = hints(o, "user");
  if (h.name !== undefined) out.name = h.name;
  if (h.avatar !== undefined) out.avatar = h.avatar;
  if (h.color !== undefined) out.color = h.color;
  out.state = jsonObject(o.state, "user.state");
  out.tabs = int(o, "tabs");
  out.since = int(o, "since");
  if (o.verified !== undefined && o.verified !== null) {
    out.verified = typeof o.verified === "boolean" ? o.verified : fail("verified must be a boolean");
  }
  Object.assign(out, userStatus(o, out.since));
  const location = optStr(o, "location");
  if (location !== undefined) out.location = location;
  return out;
}

function users(o: Record<string, unknown>, key: string): User[] {
  const v = o[key];
  return Array.isArray(v) ? v.map(user) : fail(`${key} must be an array of users`);
}

function parse(frame: string | unknown): Record<string, unknown> {
  let value: unknown = frame;
  if (typeof frame === "string") {
    try {
      value = JSON.parse(frame);
    } catch {
      fail("not JSON");
    }
  }
  return isObject(value) ? value : fail("a message must be a JSON object");
}

function decodeServer(o: Record<string, unknown>): ServerMsg {
  switch (o.type) {
    case "presence": {
      const msg: PresenceMsg = {
        type: "presence",
        roomId: str(o, "roomId"),
        count: int(o, "count"),
        members: strings(o, "members"),
        version: int(o, "version"),
      };
      if (o.users !== undefined) msg.users = users(o, "users");
      const self = optStr(o, "self");
      if (self !== undefined) msg.self = self;
      return msg;
    }
    case "diff":
      return {
        type: "diff",
        roomId: str(o, "roomId"),
        prev: int(o, "prev"),
        version: int(o, "version"),
        joined: users(o, "joined"),
        left: strings(o, "left"),
        updated: users(o, "updated"),
      };
    case "event":
      return {
        type: "event",
        roomId: str(o, "roomId"),
        from: str(o, "from"),
        event: str(o, "event"),
        data: o.data === undefined ? null : (o.data as Json),
      };
    case "pong":
      return { type: "pong" };
    case "error":
      return { type: "error", code: str(o, "code"), message: str(o, "message") };
    default:
      return fail(`unknown server message type ${JSON.stringify(o.type)}`);
  }
}

function clientStatus(v: unknown): UserStatus {
  return isUserStatus(v) ? v : fail(`status must be one of ${USER_STATUSES.join(", ")}`);
}

function decodeClient(o: Record<string, unknown>): ClientMsg {
  switch (o.type) {
    case "hello": {
      const msg: HelloMsg = { type: "hello", id: str(o, "id") };
      if (o.proto !== undefined) {
        msg.proto = o.proto === 1 || o.proto === 2 ? o.proto : fail("proto must be 1 or 2");
      }
      const token = optStr(o, "token");
      if (token !== undefined) msg.token = token;
      if (o.user !== undefined) msg.user = hints(o.user, "user");
      if (o.state !== undefined) msg.state = jsonObject(o.state, "state");
      if (o.status !== undefined) msg.status = clientStatus(o.status);
      const location = optStr(o, "location");
      if (location !== undefined) msg.location = location;
      return msg;
    }
    case "ping":
      return { type: "ping" };
    case "state": {
      const msg: StateMsg = { type: "state", state: jsonObject(o.state, "state") };
      if (o.user !== undefined) msg.user = hints(o.user, "user");
      return msg;
    }
    case "event":
      return {
        type: "event",
        event: str(o, "event"),
        data: o.data === undefined ? null : (o.data as Json),
      };
    case "sync":
      return { type: "sync" };
    case "auth":
      return { type: "auth", token: str(o, "token") };
    case "status":
      return { type: "status", status: clientStatus(o.status) };
    case "location": {
      if (!("location" in o)) fail("location must be a string or null");
      return { type: "location", location: optStr(o, "location") ?? null };
    }
    default:
      return fail(`unknown client message type ${JSON.stringify(o.type)}`);
  }
}

function decodeWith<T>(frame: unknown, f: (o: Record<string, unknown>) => T): Decoded<T> {
  try {
    return { ok: true, msg: f(parse(frame)) };
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, error: e.message };
    throw e;
  }
}

/** Decodes a server frame (text, or an already parsed value). */
export function decodeServerMsg(frame: unknown): Decoded<ServerMsg> {
  return decodeWith(frame, decodeServer);
}

/** Decodes a client frame; the client never needs it, its tests and fake servers do. */
export function decodeClientMsg(frame: unknown): Decoded<ClientMsg> {
  return decodeWith(frame, decodeClient);
}

/** Encodes a client message as one text frame. */
export function encodeClientMsg(msg: ClientMsg): string {
  return JSON.stringify(msg);
}

/**
 * The `exp` claim of a JWT, in ms since the epoch, read without checking anything (the
 * server checks): when the client must have sent a fresh token. `null` if unreadable.
 */
export function tokenExpiry(token: string): number | null {
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims: unknown = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    const exp = isObject(claims) ? claims.exp : undefined;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}
