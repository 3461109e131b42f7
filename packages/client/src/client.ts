/**
 * `PresenceClient`: one tab's membership of one room.
 *
 * It owns the connection state machine (`connecting` -> `open` -> `reconnecting` ... ->
 * `closed`), the roster, typing signals, the activity log, this tab's status and location
 * and who recently left, and exposes everything as one immutable snapshot with
 * `subscribe`/`getSnapshot` (the `useSyncExternalStore` contract).
 * The socket, timers' randomness and browser APIs are injected, so the whole machine runs
 * in Node and under fake timers.
 */
import { ACTIVITY_CAPACITY, activityOfChange, appendActivity, rosterChange, type ActivityEntry } from "./activity";
import { AttentionTracker, type UserStatus } from "./attention";
import { backoffDelay, closeDecision } from "./backoff";
import { TAB_CHANNEL_NAME, TabIdentity, type ChannelLike, type StorageLike } from "./identity";
import {
  CloseCode,
  MAX_EVENT_NAME_CHARS,
  MAX_LOCATION_BYTES,
  MAX_STATE_BYTES,
  PROTOCOL_VERSION,
  TYPING_EVENT,
  decodeServerMsg,
  encodeClientMsg,
  tokenExpiry,
  jsonByteLength,
  normalizeRoomId,
  utf8Length,
  type ClientMsg,
  type DiffMsg,
  type Json,
  type JsonObject,
  type PresenceMsg,
  type ServerEventMsg,
  type User,
  type UserHints,
} from "./protocol";
import { nextExpiry, noteDepartures, pruneRecent, RECENT_MS, withoutPresent, type RecentUser } from "./recent";
import { applyDiff, applySnapshot, deepFreeze, emptyRoster, type Roster } from "./roster";
import { TYPING_RECEIVE_TIMEOUT_MS, TypingSignal } from "./typing";

/** Keep-alive period: well inside the server's 30 s staleness limit and proxies' idle cuts. */
export const PING_INTERVAL_MS = 25_000;
/** A socket that has not opened after this long is abandoned and retried. */
export const CONNECT_TIMEOUT_MS = 10_000;
/**
 * Updates beyond 10 a second are merged: at most one `state` message per 100 ms, and one
 * `location` message (scrolling through a page moves it quickly).
 */
export const STATE_THROTTLE_MS = 100;
/** Diffs kept while waiting for the first snapshot on a socket. */
export const MAX_BUFFERED_DIFFS = 64;
/** A token is refreshed this long before it expires (or at 80 % of a shorter lifetime). */
export const TOKEN_REFRESH_BEFORE_MS = 60_000;
/** A refresh whose `getToken()` failed is tried again after this long, until expiry. */
export const TOKEN_RETRY_MS = 5_000;

export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "closed";

/** Why the client is not connected, or the last error the server reported. */
export interface ClientError {
  /** `server`: an `error` message (the socket stays open); `close`: the socket was closed. */
  readonly source: "server" | "close";
  readonly code: string;
  readonly message: string;
  /** For `unauthorized`/`forbidden` closes: the server's error code before it (`token_expired`, ...). */
  readonly detail?: string;
}

/** Where a token comes from: the app's own sign-in, asked on every connect and before expiry. */
export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

/** Everything a UI needs, immutable; a new object after every change. */
export interface PresenceSnapshot {
  readonly status: ConnectionStatus;
  readonly roomId: string;
  /** The room version held, or null before the first snapshot. */
  readonly version: number | null;
  /** Everyone in the room, ourselves included, by join time. */
  readonly users: readonly User[];
  /** Ourselves, with our latest local state and hints, once the server has us. */
  readonly self: User | null;
  /** Everyone but us. */
  readonly others: readonly User[];
  /** The others who are typing, in roster order. */
  readonly typing: readonly User[];
  /** Joins and leaves, newest first. */
  readonly activity: readonly ActivityEntry[];
  /** Who left in the last `recentMs`, newest first (the roster no longer has them). */
  readonly recent: readonly RecentUser[];
  /** This tab's own status (the room shows it folded with your other tabs' in `self`). */
  readonly tabStatus: UserStatus;
  /** This tab's own location, as set with `setLocation`. */
  readonly tabLocation: string | null;
  readonly error: ClientError | null;
  /** When the next reconnect attempt is due (ms epoch), while `reconnecting`. */
  readonly retryAt: number | null;
}

/** The subset of the browser `WebSocket` used here; `ws` in Node fits too. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
export type SocketConstructor = new (url: string) => SocketLike;

/** An event from another member (`broadcast` on their side). */
export interface PresenceEvent {
  readonly from: string;
  readonly event: string;
  readonly data: Json;
}

/** Browser APIs the client uses when present; each can be replaced or turned off (null). */
export interface ClientEnvironment {
  location?: { protocol: string; host: string } | null;
  sessionStorage?: StorageLike | null;
  broadcastChannel?: ((name: string) => ChannelLike) | null;
  /** For `visibilitychange` and `hasFocus()` (status). */
  document?: (EventTarget & { readonly visibilityState: string; hasFocus?: () => boolean }) | null;
  /** For `online` (retry at once when the network comes back), focus and input (status). */
  window?: EventTarget | null;
}

export interface PresenceClientOptions {
  /** Room id; anything but 1-64 of `[a-z0-9-]` means `lobby`, as on the server. */
  room: string;
  /**
   * Where the server is: an http(s) or ws(s) base URL, to which `/server/ws/<room>` is
   * appended. Default: the page's own origin.
   */
  url?: string;
  /** Display hints (name, avatar URL, color). */
  user?: UserHints;
  /** Initial presence state (the app's own: the user's status is not in it). */
  state?: JsonObject;
  /** Fixed tab id (tests, Node); default: the per-tab id kept in `sessionStorage`. */
  tabId?: string;
  /** WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: SocketConstructor;
  /** In [0, 1): drives jitter and fresh ids; injectable for tests. */
  random?: () => number;
  /** Time without input before this tab is `idle`; default 60 s (`IDLE_AFTER_MS`). */
  idleAfterMs?: number;
  /** Time without input before this tab is `away`; default 10 min. A hidden tab is away at once. */
  awayAfterMs?: number;
  /** How long someone who left stays in `recent`; default 60 s (`RECENT_MS`), 0 turns it off. */
  recentMs?: number;
  environment?: ClientEnvironment;
  /**
   * The signed identity token (JWT from the app's backend), asked for before every
   * connection attempt and again before the token expires (then sent on the open socket).
   * Return null to connect anonymously (servers with `AUTH=optional`). A throw or
   * rejection counts as a failed attempt and is retried with backoff.
   */
  getToken?: TokenSource;
  /**
   * Called when the server refuses the token (close 4401) or the room (4403). The client
   * does not retry those: the app signs in again, or shows why.
   */
  onAuthError?: (error: ClientError) => void;
}

type Listener = () => void;
/** Server error codes that explain a 4401/4403 close. */
const AUTH_ERRORS = new Set(["invalid_token", "token_expired", "forbidden"]);
const OPEN = 1;

/**
 * SSR and pre-connection snapshot: an empty room, no socket. Shared, so
 * `getServerSnapshot` returns the same object every time.
 */
export function emptySnapshot(room: string, status: ConnectionStatus = "closed"): PresenceSnapshot {
  return deepFreeze({
    status,
    roomId: normalizeRoomId(room),
    version: null,
    users: [],
    self: null,
    others: [],
    typing: [],
    activity: [],
    recent: [],
    tabStatus: "active",
    tabLocation: null,
    error: null,
    retryAt: null,
  });
}

/** The WebSocket URL for a room: `base` (or the page's origin) + `/server/ws/<room>`. */
export function roomUrl(room: string, base?: string, location?: { protocol: string; host: string } | null): string {
  const path = `/server/ws/${encodeURIComponent(normalizeRoomId(room))}`;
  if (base) {
    const u = new URL(base);
    const protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    return `${protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}${path}`;
  }
  if (!location) throw new Error("herenow: no page location; pass `url` to the client");
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

export class PresenceClient {
  readonly roomId: string;
  #url: string | undefined;
  #env: Required<ClientEnvironment>;
  #Socket: SocketConstructor | undefined;
  #random: () => number;
  #idleAfterMs: number | undefined;
  #awayAfterMs: number | undefined;
  #recentMs: number;
  #identity: TabIdentity | null;
  #fixedId: string | null;

  // Connection
  #status: ConnectionStatus = "closed";
  #socket: SocketLike | null = null;
  /** Failed attempts since the last successful join; drives the backoff. */
  #attempt = 0;
  #everJoined = false;
  #joined = false;
  #wantConnected = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryAt: number | null = null;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #error: ClientError | null = null;
  #getToken: TokenSource | null;
  #onAuthError: ((error: ClientError) => void) | null;
  /** The token of the current socket, and the timer that refreshes it. */
  #token: string | null = null;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped on every attempt, so a late `getToken()` answer for an older one is dropped. */
  #attemptSeq = 0;
  #lastServerError: string | null = null;

  // Room
  #roster: Roster;
  #buffered: DiffMsg[] = [];
  #syncRequested = false;
  #activity: readonly ActivityEntry[] = [];
  #activitySeq = 1;
  #typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  #recent: readonly RecentUser[] = [];
  #recentTimer: ReturnType<typeof setTimeout> | undefined;

  // Ourselves
  #hints: UserHints;
  #state: JsonObject;
  #hintsDirty = false;
  #stateDirty = false;
  #lastStateSentAt = -Infinity;
  #stateTimer: ReturnType<typeof setTimeout> | undefined;
  #typing: TypingSignal;
  /** What the page says (null: not tracking, before `connect()` or without a page). */
  #attention: AttentionTracker | null = null;
  #detectedStatus: UserStatus = "active";
  /** Set by `setStatus`: wins over what the page says. */
  #pinnedStatus: UserStatus | null = null;
  #location: string | null = null;
  /** What the server holds for this socket's tab (what hello or the last message said). */
  #sentStatus: UserStatus = "active";
  #sentLocation: string | null = null;
  #lastLocationSentAt = -Infinity;
  #locationTimer: ReturnType<typeof setTimeout> | undefined;

  // Store
  #snapshot: PresenceSnapshot;
  #serverSnapshot: PresenceSnapshot;
  #listeners = new Set<Listener>();
  #eventListeners = new Set<(event: PresenceEvent) => void>();
  #detach: (() => void)[] = [];

  constructor(options: PresenceClientOptions) {
    this.roomId = normalizeRoomId(options.room);
    this.#url = options.url;
    this.#env = resolveEnvironment(options.environment);
    this.#Socket = options.WebSocket;
    this.#random = options.random ?? Math.random;
    this.#idleAfterMs = options.idleAfterMs;
    this.#awayAfterMs = options.awayAfterMs;
    this.#recentMs = options.recentMs ?? RECENT_MS;
    this.#getToken = options.getToken ?? null;
    this.#onAuthError = options.onAuthError ?? null;
    this.#hints = { ...options.user };
    this.#state = { ...options.state };
    checkStateSize(this.#state);
    this.#fixedId = options.tabId ?? null;
    this.#identity =
      this.#fixedId === null
        ? new TabIdentity({
            storage: this.#env.sessionStorage,
            channel: this.#env.broadcastChannel ? () => this.#env.broadcastChannel!(TAB_CHANNEL_NAME) : null,
            random: this.#random,
            onChange: () => this.#identityChanged(),
          })
        : null;
    this.#typing = new TypingSignal((typing) => this.#sendEvent(TYPING_EVENT, { typing }));
    this.#roster = emptyRoster(this.roomId);
    this.#snapshot = emptySnapshot(this.roomId);
    this.#serverSnapshot = emptySnapshot(this.roomId, "connecting");
  }

  /** This tab's presence id (what `hello` sends). */
  get tabId(): string {
    return this.#fixedId ?? this.#identity!.id;
  }

  // ---- store contract --------------------------------------------------------------

  /** `useSyncExternalStore`'s subscribe. */
  subscribe = (listener: Listener): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** `useSyncExternalStore`'s getSnapshot: the same object until something changes. */
  getSnapshot = (): PresenceSnapshot => this.#snapshot;

  /**
   * `useSyncExternalStore`'s getServerSnapshot: an empty room, `connecting`, always the
   * same object. Server rendering never opens a socket.
   */
  getServerSnapshot = (): PresenceSnapshot => this.#serverSnapshot;

  /** Listens to other members' `broadcast` events (typing included). */
  onEvent(listener: (event: PresenceEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  // ---- lifecycle -------------------------------------------------------------------

  /** Joins the room; reconnects on its own until `disconnect()`. Idempotent. */
  connect(): void {
    if (this.#wantConnected) return;
    this.#wantConnected = true;
    this.#attempt = 0;
    this.#everJoined = false;
    this.#error = null;
    this.#identity?.start();
    this.#attachEnvironment();
    this.#open();
  }

  /** Leaves now: closes with 1000, which tells the server to skip the grace window. */
  disconnect(): void {
    if (!this.#wantConnected) return;
    this.#dropSocket(CloseCode.Normal, "leave");
    this.#teardown();
    this.#publish();
  }

  // ---- our presence ----------------------------------------------------------------

  /**
   * Merges `patch` into our presence state and sends it, throttled to 10 messages a
   * second; the latest state always goes out. Throws if the state would exceed 1 KiB.
   */
  updateState(patch: JsonObject): void {
    const next = { ...this.#state, ...patch };
    checkStateSize(next);
    this.#state = next;
    this.#stateDirty = true;
    this.#scheduleStateSend();
    this.#publish();
  }

  /** Merges display hints (name, avatar, color) and sends them with the state. */
  setUser(hints: UserHints): void {
    const next = { ...this.#hints, ...hints };
    const keys = new Set([...Object.keys(next), ...Object.keys(this.#hints)]) as Set<keyof UserHints>;
    if ([...keys].every((k) => next[k] === this.#hints[k])) return;
    this.#hints = next;
    this.#hintsDirty = true;
    this.#stateDirty = true;
    this.#scheduleStateSend();
    this.#publish();
  }

  /** Our latest local state (what the next `state` or `hello` carries). */
  get state(): Readonly<JsonObject> {
    return this.#state;
  }

  /** Sends an ephemeral event to everyone else in the room; dropped while offline. */
  broadcast(event: string, data: Json = null): boolean {
    if (event.length === 0 || event.length > MAX_EVENT_NAME_CHARS) {
      throw new RangeError(`herenow: event names are 1-${MAX_EVENT_NAME_CHARS} characters`);
    }
    if (jsonByteLength(data) > MAX_STATE_BYTES) {
      throw new RangeError(`herenow: event data is limited to ${MAX_STATE_BYTES} bytes`);
    }
    return this.#sendEvent(event, data);
  }

  /** This tab's status: the pinned one (`setStatus`), else what the page says. */
  get tabStatus(): UserStatus {
    return this.#pinnedStatus ?? this.#detectedStatus;
  }

  /**
   * Pins this tab's status (a "set me away" button, a bot, Node), or gives it back to the
   * page's visibility, focus and input with null. Sent only when it changes.
   */
  setStatus(status: UserStatus | null): void {
    if (status === this.#pinnedStatus) return;
    this.#pinnedStatus = status;
    this.#statusChanged();
  }

  /** This tab's location (null: none). */
  get location(): string | null {
    return this.#location;
  }

  /**
   * Says where in the app this tab is: a section id, a slide, a cell (at most 128 bytes;
   * throws beyond). null or "" clears it. The room shows each person at the location of
   * their most recently active tab. Sent when it changes, at most 10 times a second, always
   * the latest.
   */
  setLocation(location: string | null): void {
    const next = location === "" ? null : location;
    if (next !== null && utf8Length(next) > MAX_LOCATION_BYTES) {
      throw new RangeError(`herenow: a location is limited to ${MAX_LOCATION_BYTES} bytes`);
    }
    if (next === this.#location) return;
    this.#location = next;
    this.#scheduleLocationSend();
    this.#publish();
  }

  /** Call on every keystroke: sends one `typing` signal, refreshed and stopped for you. */
  notifyTyping(): void {
    this.#typing.input();
  }

  /** Stops the typing signal now (message sent, field left). */
  stopTyping(): void {
    this.#typing.stop();
  }

  // ---- connection state machine ----------------------------------------------------

  #open(): void {
    this.#retryAt = null;
    // Only the very first attempt is `connecting`; every later one is a reconnect.
    this.#status = this.#everJoined || this.#attempt > 0 ? "reconnecting" : "connecting";
    const seq = ++this.#attemptSeq;
    if (!this.#getToken) {
      this.#openSocket();
      return;
    }
    this.#publish();
    const getToken = this.#getToken;
    Promise.resolve()
      .then(getToken)
      .then(
        (token) => {
          if (seq !== this.#attemptSeq || !this.#wantConnected) return;
          this.#token = token || null;
          this.#openSocket();
        },
        (e: unknown) => {
          if (seq !== this.#attemptSeq || !this.#wantConnected) return;
          // The app's token endpoint failed: a failed attempt like any other.
          this.#error = {
            source: "close",
            code: "token_unavailable",
            message: e instanceof Error ? e.message : String(e),
          };
          this.#scheduleRetry(backoffDelay(this.#attempt, this.#random()));
        },
      );
  }

  #openSocket(): void {
    const Socket = this.#Socket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
    if (!Socket) throw new Error("herenow: no WebSocket here; pass the `WebSocket` option");
    const url = roomUrl(this.roomId, this.#url, this.#env.location);
    let socket: SocketLike;
    try {
      socket = new Socket(url);
    } catch (e) {
      // A malformed URL or a blocked scheme: retrying cannot help.
      this.#stop("close", "invalid_url", e instanceof Error ? e.message : String(e));
      return;
    }
    this.#socket = socket;
    this.#joined = false;
    this.#buffered = [];
    this.#syncRequested = false;
    socket.onopen = () => this.#socket === socket && this.#onOpen();
    socket.onmessage = (ev) => this.#socket === socket && this.#onMessage(ev.data);
    socket.onclose = (ev) => this.#socket === socket && this.#onClose(ev.code, ev.reason);
    socket.onerror = () => {}; // A close event always follows.
    this.#connectTimer = setTimeout(() => {
      if (this.#socket === socket && socket.readyState !== OPEN) {
        this.#dropSocket(CloseCode.GoingAway, "connect timeout");
        this.#onClose(1006, "connect timeout");
      }
    }, CONNECT_TIMEOUT_MS);
    this.#publish();
  }

  #onOpen(): void {
    clearTimeout(this.#connectTimer);
    const hello: ClientMsg = { type: "hello", id: this.tabId, proto: PROTOCOL_VERSION, state: this.#state };
    if (Object.keys(this.#hints).length > 0) hello.user = this.#hints;
    if (this.#token) {
      hello.token = this.#token;
      this.#scheduleRefresh(this.#token);
    }
    if (this.tabStatus !== "active") hello.status = this.tabStatus;
    if (this.#location !== null) hello.location = this.#location;
    this.#send(hello);
    // The hello carried everything pending.
    this.#stateDirty = this.#hintsDirty = false;
    this.#lastStateSentAt = Date.now();
    this.#sentStatus = this.tabStatus;
    this.#sentLocation = this.#location;
    this.#lastLocationSentAt = Date.now();
    this.#pingTimer = setInterval(() => this.#send({ type: "ping" }), PING_INTERVAL_MS);
  }

  #onClose(code: number, reason: string): void {
    this.#dropSocket();
    this.#clearTyping();
    if (!this.#wantConnected) return;
    const decision = closeDecision(code, this.#attempt, this.#random());
    if (decision.kind === "stop") {
      const last = this.#lastServerError;
      const detail = last && AUTH_ERRORS.has(last) ? last : null;
      this.#stop("close", decision.reason, reason || `closed with ${code}`);
      if (decision.reason === "unauthorized" || decision.reason === "forbidden") {
        const error: ClientError = detail ? { ...this.#error!, detail } : this.#error!;
        this.#error = error;
        this.#publish();
        this.#onAuthError?.(error);
      }
      return;
    }
    if (code !== 1000 && code !== 1001 && code !== 1005 && code !== 1006) {
      this.#error = { source: "close", code: String(code), message: reason || `closed with ${code}` };
    }
    this.#scheduleRetry(decision.delayMs);
  }

  #scheduleRetry(delayMs: number): void {
    this.#attempt += 1;
    this.#status = "reconnecting";
    this.#retryAt = Date.now() + delayMs;
    this.#retryTimer = setTimeout(() => this.#open(), delayMs);
    this.#publish();
  }

  /** Ask for a fresh token before `token` expires, and send it on the open socket. */
  #scheduleRefresh(token: string): void {
    clearTimeout(this.#refreshTimer);
    const expiry = tokenExpiry(token);
    if (expiry === null || !this.#getToken) return;
    const lifetime = expiry - Date.now();
    const delay = Math.max(0, lifetime - Math.min(TOKEN_REFRESH_BEFORE_MS, lifetime / 5));
    this.#refreshTimer = setTimeout(() => this.#refresh(expiry), delay);
  }

  #refresh(expiry: number): void {
    const socket = this.#socket;
    const getToken = this.#getToken;
    if (!socket || !getToken) return;
    Promise.resolve()
      .then(getToken)
      .then(
        (token) => {
          if (this.#socket !== socket || !token) return;
          this.#token = token;
          this.#send({ type: "auth", token });
          this.#scheduleRefresh(token);
        },
        () => {
          // Try again while the current token lasts; at expiry the server closes (4401).
          if (this.#socket !== socket) return;
          const retryIn = Math.min(TOKEN_RETRY_MS, expiry - Date.now());
          if (retryIn > 0) this.#refreshTimer = setTimeout(() => this.#refresh(expiry), retryIn);
        },
      );
  }

  /** Gives up: a close code that forbids retrying. */
  #stop(source: ClientError["source"], code: string, message: string): void {
    this.#dropSocket();
    this.#teardown();
    this.#error = { source, code, message };
    this.#publish();
  }

  /** Back to `closed`: every timer, listener and channel released. */
  #teardown(): void {
    this.#wantConnected = false;
    this.#status = "closed";
    this.#typing.dispose();
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#stateTimer);
    clearTimeout(this.#locationTimer);
    clearTimeout(this.#recentTimer);
    this.#stateTimer = this.#locationTimer = this.#recentTimer = undefined;
    this.#recent = [];
    this.#retryAt = null;
    this.#attention?.stop();
    this.#attention = null;
    this.#detectedStatus = "active";
    for (const detach of this.#detach.splice(0)) detach();
    this.#identity?.stop();
    this.#clearTyping();
  }

  /** Detaches and closes the current socket, if any, and its timers. */
  #dropSocket(code?: number, reason?: string): void {
    const socket = this.#socket;
    this.#socket = null;
    this.#joined = false;
    clearTimeout(this.#connectTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    if (code !== undefined) {
      try {
        socket.close(code, reason);
      } catch {
        // Already closing.
      }
    }
  }

  /** The network is back or our id changed: retry now instead of waiting out the backoff. */
  #retryNow(): void {
    if (!this.#wantConnected || this.#status !== "reconnecting" || this.#socket) return;
    clearTimeout(this.#retryTimer);
    this.#open();
  }

  #identityChanged(): void {
    // We were a duplicated tab: leave under the shared id (1000: the original tab keeps
    // it) and join again under our new one, without waiting.
    if (!this.#wantConnected || !this.#socket) return;
    this.#dropSocket(CloseCode.Normal, "tab id changed");
    clearTimeout(this.#retryTimer);
    this.#open();
  }

  // ---- inbound ---------------------------------------------------------------------

  #onMessage(data: unknown): void {
    const decoded = decodeServerMsg(typeof data === "string" ? data : String(data));
    if (!decoded.ok) return; // A newer server's message we cannot read: skip it.
    const msg = decoded.msg;
    switch (msg.type) {
      case "presence":
        this.#onSnapshot(msg);
        break;
      case "diff":
        this.#onDiff(msg);
        break;
      case "event":
        this.#onEvent(msg);
        break;
      case "error":
        this.#lastServerError = msg.code;
        this.#error = { source: "server", code: msg.code, message: msg.message };
        this.#publish();
        break;
      case "pong":
        break;
    }
  }

  #onSnapshot(msg: PresenceMsg): void {
    const before = this.#roster;
    this.#roster = applySnapshot(before, msg);
    this.#syncRequested = false;
    if (!this.#joined) {
      // First snapshot on this socket: it seeds silently, then the buffered diffs follow.
      this.#joined = true;
      this.#everJoined = true;
      this.#attempt = 0;
      this.#status = "open";
      this.#lastServerError = null;
      if (this.#error?.source === "close") this.#error = null;
      const buffered = this.#buffered;
      this.#buffered = [];
      // Who is back is no longer "recently left"; who vanished while we were away left at
      // a time we do not know, so they are not shown as having just left.
      this.#recent = withoutPresent(this.#recent, this.#roster.users);
      for (const diff of buffered) this.#applyDiff(diff);
      if (this.#stateDirty) this.#scheduleStateSend();
      this.#sendStatus();
      this.#scheduleLocationSend();
    } else {
      // A `sync` answer: whatever changed in the gap is real activity.
      const { joined, left } = rosterChange(before.users, this.#roster.users);
      this.#log(joined, left);
    }
    this.#pruneTyping();
    this.#publish();
  }

  #onDiff(msg: DiffMsg): void {
    if (!this.#joined) {
      if (this.#buffered.length < MAX_BUFFERED_DIFFS) this.#buffered.push(msg);
      return;
    }
    this.#applyDiff(msg);
    this.#pruneTyping();
    this.#publish();
  }

  #applyDiff(msg: DiffMsg): void {
    const result = applyDiff(this.#roster, msg);
    switch (result.kind) {
      case "applied":
        this.#roster = result.roster;
        this.#log(result.joined, result.left);
        break;
      case "gap":
        if (!this.#syncRequested) {
          this.#syncRequested = true;
          this.#send({ type: "sync" });
        }
        break;
      case "stale":
      case "unsynced":
        break;
    }
  }

  #onEvent(msg: ServerEventMsg): void {
    if (msg.event === TYPING_EVENT) {
      const typing =
        typeof msg.data === "object" && msg.data !== null && !Array.isArray(msg.data)
          ? msg.data.typing === true
          : false;
      clearTimeout(this.#typingTimers.get(msg.from));
      if (typing) {
        this.#typingTimers.set(
          msg.from,
          setTimeout(() => {
            this.#typingTimers.delete(msg.from);
            this.#publish();
          }, TYPING_RECEIVE_TIMEOUT_MS),
        );
      } else {
        this.#typingTimers.delete(msg.from);
      }
      this.#publish();
    }
    const event: PresenceEvent = { from: msg.from, event: msg.event, data: msg.data };
    for (const listener of [...this.#eventListeners]) listener(event);
  }

  /** Joins and leaves: into the activity log and the recently-left list. */
  #log(joined: readonly User[], left: readonly User[]): void {
    const now = Date.now();
    const entries = activityOfChange(joined, left, this.#roster.self, now, this.#activitySeq);
    this.#activitySeq += entries.length;
    this.#activity = appendActivity(this.#activity, entries, ACTIVITY_CAPACITY);
    if (this.#recentMs > 0) {
      this.#recent = noteDepartures(this.#recent, { joined, left }, this.#roster.self, now);
      this.#scheduleRecentExpiry();
    }
  }

  #scheduleRecentExpiry(): void {
    clearTimeout(this.#recentTimer);
    this.#recentTimer = undefined;
    const at = nextExpiry(this.#recent, this.#recentMs);
    if (at === null) return;
    this.#recentTimer = setTimeout(
      () => {
        this.#recentTimer = undefined;
        this.#recent = pruneRecent(this.#recent, Date.now(), this.#recentMs);
        this.#scheduleRecentExpiry();
        this.#publish();
      },
      Math.max(0, at - Date.now()),
    );
  }

  /** Typing marks of members who left are dropped. */
  #pruneTyping(): void {
    for (const [id, timer] of this.#typingTimers) {
      if (!this.#roster.users.some((u) => u.id === id)) {
        clearTimeout(timer);
        this.#typingTimers.delete(id);
      }
    }
  }

  #clearTyping(): void {
    for (const timer of this.#typingTimers.values()) clearTimeout(timer);
    this.#typingTimers.clear();
  }

  // ---- outbound --------------------------------------------------------------------

  #send(msg: ClientMsg): boolean {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(encodeClientMsg(msg));
      return true;
    } catch {
      return false; // Closing: the close handler takes over.
    }
  }

  #sendEvent(event: string, data: Json): boolean {
    return this.#joined && this.#send({ type: "event", event, data });
  }

  #scheduleStateSend(): void {
    if (!this.#joined || this.#stateTimer !== undefined) return; // hello will carry it
    const wait = this.#lastStateSentAt + STATE_THROTTLE_MS - Date.now();
    if (wait <= 0) {
      this.#flushState();
    } else {
      this.#stateTimer = setTimeout(() => {
        this.#stateTimer = undefined;
        this.#flushState();
      }, wait);
    }
  }

  #flushState(): void {
    if (!this.#stateDirty || !this.#joined) return;
    const msg: ClientMsg = { type: "state", state: this.#state };
    if (this.#hintsDirty) msg.user = this.#hints;
    if (this.#send(msg)) {
      this.#stateDirty = this.#hintsDirty = false;
      this.#lastStateSentAt = Date.now();
    }
  }

  /**
   * Status changes go out at once, not throttled: they come at a human pace (a tab switch,
   * a minute without input), and a page that was just hidden may not get a timer soon.
   */
  #sendStatus(): void {
    const status = this.tabStatus;
    if (!this.#joined || status === this.#sentStatus) return;
    if (this.#send({ type: "status", status })) this.#sentStatus = status;
  }

  #statusChanged(): void {
    this.#sendStatus();
    this.#publish();
  }

  #scheduleLocationSend(): void {
    if (!this.#joined || this.#locationTimer !== undefined) return; // hello will carry it
    const wait = this.#lastLocationSentAt + STATE_THROTTLE_MS - Date.now();
    if (wait <= 0) {
      this.#flushLocation();
    } else {
      this.#locationTimer = setTimeout(() => {
        this.#locationTimer = undefined;
        this.#flushLocation();
      }, wait);
    }
  }

  #flushLocation(): void {
    const location = this.#location;
    if (!this.#joined || location === this.#sentLocation) return;
    if (this.#send({ type: "location", location })) {
      this.#sentLocation = location;
      this.#lastLocationSentAt = Date.now();
    }
  }

  // ---- environment -----------------------------------------------------------------

  #attachEnvironment(): void {
    const doc = this.#env.document;
    const win = this.#env.window;
    if (doc || win) {
      this.#attention = new AttentionTracker({
        sources: { document: doc, window: win },
        ...(this.#idleAfterMs === undefined ? {} : { idleAfterMs: this.#idleAfterMs }),
        ...(this.#awayAfterMs === undefined ? {} : { awayAfterMs: this.#awayAfterMs }),
        onChange: (status) => {
          this.#detectedStatus = status;
          this.#statusChanged();
        },
      });
      this.#detectedStatus = this.#attention.start();
    }
    if (win) {
      const onOnline = () => this.#retryNow();
      win.addEventListener("online", onOnline);
      this.#detach.push(() => win.removeEventListener("online", onOnline));
    }
  }

  // ---- snapshot --------------------------------------------------------------------

  #publish(): void {
    const roster = this.#roster;
    const serverSelf = roster.self === null ? null : roster.users.find((u) => u.id === roster.self);
    // A verified user's display is the token's, whatever hints this tab holds.
    const hints = serverSelf?.verified ? {} : this.#hints;
    const self = serverSelf ? { ...serverSelf, ...hints, state: this.#state } : null;
    const users = self ? roster.users.map((u) => (u.id === self.id ? self : u)) : roster.users;
    const others = users.filter((u) => u.id !== roster.self);
    this.#snapshot = deepFreeze({
      status: this.#status,
      roomId: this.roomId,
      version: roster.version,
      users,
      self,
      others,
      typing: others.filter((u) => this.#typingTimers.has(u.id)),
      activity: this.#activity,
      recent: this.#recent,
      tabStatus: this.tabStatus,
      tabLocation: this.#location,
      error: this.#error,
      retryAt: this.#retryAt,
    });
    for (const listener of [...this.#listeners]) listener();
  }
}

function checkStateSize(state: JsonObject): void {
  const size = jsonByteLength(state);
  if (size > MAX_STATE_BYTES) {
    throw new RangeError(`herenow: state is ${size} bytes; the limit is ${MAX_STATE_BYTES}`);
  }
}

function resolveEnvironment(env: ClientEnvironment = {}): Required<ClientEnvironment> {
  const g = globalThis as {
    location?: { protocol: string; host: string };
    sessionStorage?: StorageLike;
    BroadcastChannel?: new (name: string) => ChannelLike;
    document?: EventTarget & { visibilityState: string; hasFocus?: () => boolean };
    window?: EventTarget;
  };
  const pick = <K extends keyof ClientEnvironment>(key: K, fallback: ClientEnvironment[K]) =>
    (key in env ? env[key] : fallback) ?? null;
  let storage: StorageLike | undefined;
  try {
    storage = g.sessionStorage; // Throws in some sandboxed frames.
  } catch {
    storage = undefined;
  }
  const BC = g.BroadcastChannel;
  return {
    location: pick("location", g.location),
    sessionStorage: pick("sessionStorage", storage),
    broadcastChannel: pick("broadcastChannel", BC ? (name: string) => new BC(name) : undefined),
    document: pick("document", g.document),
    window: pick("window", g.window),
  };
}
