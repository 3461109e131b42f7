/**
 * `<PresenceProvider>` and the hooks that read one room's presence.
 *
 * Everything is built on `useSyncExternalStore` over the client's immutable snapshot, so a
 * render never sees a half-applied diff, and server rendering gets an empty room from
 * `getServerSnapshot` without opening a socket (sockets open in an effect).
 */
import {
  PresenceClient,
  type ActivityEntry,
  type ConnectionStatus,
  type JsonObject,
  type PresenceClientOptions,
  type PresenceSnapshot,
  type ClientError,
  type TokenSource,
  type RecentUser,
  type User,
  type UserHints,
  type UserStatus,
} from "@herenow/client";
import { useCallback, useContext, useEffect, useMemo, useRef, useSyncExternalStore, type ReactNode } from "react";
import { FollowContext, PresenceContext } from "./context";
import { Follower, type FollowHandler, type FollowState } from "./follow";
import { FollowBanner } from "./FollowBanner";

export interface PresenceProviderProps {
  /** Room id; invalid ids mean `lobby`, as on the server. */
  room: string;
  /** Server base URL; default: the page's own origin. */
  url?: string;
  /** Display hints; changing them sends an update, not a reconnection. */
  user?: UserHints;
  /** Initial presence state. */
  initialState?: JsonObject;
  /**
   * The signed identity token from the app's backend, asked for on every connect and
   * before the token expires. The latest function given is the one called.
   */
  getToken?: TokenSource;
  /** The server refused the token (4401) or the room (4403); the client does not retry. */
  onAuthError?: (error: ClientError) => void;
  /** Extra client options (WebSocket implementation, environment, ...). */
  options?: Omit<PresenceClientOptions, "room" | "url" | "user" | "state" | "getToken" | "onAuthError">;
  /** Use this client instead of making one; the provider still connects and disconnects it. */
  client?: PresenceClient;
  /**
   * Follow mode's move: called with the followed person's new location. Default: scroll the
   * element whose DOM id is the location into view.
   */
  onFollow?: FollowHandler;
  /** Show the "Following Ada · Stop following" banner while following. Default true. */
  followBanner?: boolean;
  children?: ReactNode;
}

/**
 * The socket closes on unmount a tick late: React's StrictMode unmounts and remounts every
 * effect once in development, and an immediate close (1000, "leave now") would show the
 * others a leave and a join.
 */
const pendingDisconnect = new WeakMap<PresenceClient, ReturnType<typeof setTimeout>>();

/** Joins `room` for as long as it is mounted; one client per room. */
export function PresenceProvider(props: PresenceProviderProps) {
  const {
    room,
    url,
    user,
    initialState,
    options,
    client: given,
    followBanner = true,
    children,
    getToken,
    onAuthError,
  } = props;
  // Options other than room and url are read once per room; hints follow through setUser.
  const initial = useRef({ user, initialState, options, hasToken: getToken !== undefined });
  // The callbacks are read through refs: a new function each render changes nothing.
  const tokenRef = useRef(getToken);
  const authErrorRef = useRef(onAuthError);
  tokenRef.current = getToken;
  authErrorRef.current = onAuthError;
  const client = useMemo(
    () =>
      given ??
      new PresenceClient({
        ...initial.current.options,
        room,
        ...(url === undefined ? {} : { url }),
        ...(initial.current.user ? { user: initial.current.user } : {}),
        ...(initial.current.initialState ? { state: initial.current.initialState } : {}),
        ...(initial.current.hasToken ? { getToken: () => tokenRef.current?.() ?? null } : {}),
        onAuthError: (error: ClientError) => authErrorRef.current?.(error),
      }),
    [given, room, url],
  );

  const onFollow = useRef(props.onFollow);
  onFollow.current = props.onFollow;
  const follower = useMemo(() => new Follower(client, { onFollow: () => onFollow.current }), [client]);
  useEffect(() => () => follower.stop(), [follower]);

  useEffect(() => {
    clearTimeout(pendingDisconnect.get(client));
    pendingDisconnect.delete(client);
    client.connect();
    return () => {
      pendingDisconnect.set(
        client,
        setTimeout(() => {
          pendingDisconnect.delete(client);
          client.disconnect();
        }, 0),
      );
    };
  }, [client]);

  const name = user?.name;
  const avatar = user?.avatar;
  const color = user?.color;
  useEffect(() => {
    const hints: UserHints = {};
    if (name !== undefined) hints.name = name;
    if (avatar !== undefined) hints.avatar = avatar;
    if (color !== undefined) hints.color = color;
    client.setUser(hints); // a no-op when nothing changed
  }, [client, name, avatar, color]);

  return (
    <PresenceContext.Provider value={client}>
      <FollowContext.Provider value={follower}>
        {children}
        {followBanner ? <FollowBanner /> : null}
      </FollowContext.Provider>
    </PresenceContext.Provider>
  );
}

/** The client of the nearest `<PresenceProvider>` (for `updateState`, `broadcast`, ...). */
export function usePresenceClient(): PresenceClient {
  const client = useContext(PresenceContext);
  if (!client) throw new Error("herenow: presence hooks need a <PresenceProvider> above them");
  return client;
}

const noSubscribe = () => () => {};

/**
 * For components that also work without a provider, given their data as props: `pick`
 * from the nearest provider's snapshot (cached per snapshot), or `fallback` when there is
 * no provider. `pick` must be a stable function.
 */
export function useSnapshotIfAny<T>(pick: (snapshot: PresenceSnapshot) => T, fallback: T): T {
  const client = useContext(PresenceContext);
  const last = useRef<{ snapshot: PresenceSnapshot; value: T } | null>(null);
  const get = (snapshot: PresenceSnapshot): T => {
    if (last.current?.snapshot === snapshot) return last.current.value;
    const value = pick(snapshot);
    last.current = { snapshot, value };
    return value;
  };
  return useSyncExternalStore(
    client ? client.subscribe : noSubscribe,
    client ? () => get(client.getSnapshot()) : () => fallback,
    client ? () => get(client.getServerSnapshot()) : () => fallback,
  );
}

/** The whole presence snapshot; re-renders on every change. */
export function usePresence(): PresenceSnapshot {
  const client = usePresenceClient();
  return useSyncExternalStore(client.subscribe, client.getSnapshot, client.getServerSnapshot);
}

/** Shallow equality of arrays and plain objects; `Object.is` for the rest. */
export function shallowEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every(
    (k) =>
      Object.prototype.hasOwnProperty.call(b, k) &&
      Object.is((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
  );
}

/**
 * A slice of the snapshot; the component re-renders only when the slice changes by
 * `isEqual` (shallow by default), so a cursor moving does not re-render the avatar stack.
 */
export function usePresenceSelector<T>(
  selector: (snapshot: PresenceSnapshot) => T,
  isEqual: (a: T, b: T) => boolean = shallowEqual,
): T {
  const client = usePresenceClient();
  const last = useRef<{ snapshot: PresenceSnapshot; selector: unknown; value: T } | null>(null);
  const select = (snapshot: PresenceSnapshot): T => {
    const prev = last.current;
    if (prev && prev.snapshot === snapshot && prev.selector === selector) return prev.value;
    const value = selector(snapshot);
    const kept = prev && isEqual(prev.value, value) ? prev.value : value;
    last.current = { snapshot, selector, value: kept };
    return kept;
  };
  return useSyncExternalStore(
    client.subscribe,
    () => select(client.getSnapshot()),
    () => select(client.getServerSnapshot()),
  );
}

/** Everyone else in the room, or what `selector` picks from them. */
export function useOthers(): readonly User[];
export function useOthers<T>(selector: (others: readonly User[]) => T, isEqual?: (a: T, b: T) => boolean): T;
export function useOthers<T>(
  selector?: (others: readonly User[]) => T,
  isEqual?: (a: T, b: T) => boolean,
): T | readonly User[] {
  const pick = useCallback((s: PresenceSnapshot) => (selector ? selector(s.others) : s.others), [selector]);
  return usePresenceSelector<T | readonly User[]>(
    pick,
    (isEqual as ((a: T | readonly User[], b: T | readonly User[]) => boolean) | undefined) ?? shallowEqual,
  );
}

/** Ourselves as the room sees us (with our latest local state), or null before joining. */
export function useSelf(): User | null {
  return usePresenceSelector((s) => s.self, Object.is);
}

/**
 * The connection status: `connecting`, `open`, `reconnecting` or `closed`. (A person's
 * active / idle / away is `useUserStatus`.)
 */
export function useStatus(): ConnectionStatus {
  return usePresenceSelector((s) => s.status, Object.is);
}

/** A person's status in the room (active / idle / away) and since when (ms, server clock). */
export interface UserStatusInfo {
  readonly status: UserStatus;
  readonly since: number;
}

/**
 * The status of the member `id` as the room shows it (folded across their tabs), or yours
 * without an id; null while they are not in the room. Not the connection's: see `useStatus`.
 */
export function useUserStatus(id?: string): UserStatusInfo | null {
  const pick = useCallback(
    (s: PresenceSnapshot): UserStatusInfo | null => {
      const user = id === undefined ? s.self : s.users.find((u) => u.id === id);
      return user ? { status: user.status, since: user.statusSince } : null;
    },
    [id],
  );
  return usePresenceSelector(pick, (a, b) => a === b || (a?.status === b?.status && a?.since === b?.since));
}

/** This tab's own status (what it tells the server), with the room's fold of your tabs in `useSelf`. */
export function useTabStatus(): UserStatus {
  return usePresenceSelector((s) => s.tabStatus, Object.is);
}

/** Who is at `location` (the location of their most recently active tab), you included, by join time. */
export function usePresenceAt(location: string): readonly User[] {
  const pick = useCallback((s: PresenceSnapshot) => s.users.filter((u) => u.location === location), [location]);
  return usePresenceSelector(pick);
}

/**
 * Tells the room where this tab is: pass the section in view, the slide shown... (null:
 * nowhere in particular). Cleared when the component unmounts, unless something else has
 * set another location meanwhile.
 */
export function usePublishLocation(location: string | null | undefined): void {
  const client = usePresenceClient();
  const mine = useRef<string | null>(null);
  useEffect(() => {
    mine.current = location ?? null;
    client.setLocation(mine.current);
  }, [client, location]);
  useEffect(
    () => () => {
      if (mine.current !== null && client.location === mine.current) client.setLocation(null);
    },
    [client],
  );
}

/** Who left in the last `recentMs` (60 s by default), newest first. */
export function useRecentlyLeft(): readonly RecentUser[] {
  return usePresenceSelector((s) => s.recent, Object.is);
}

export interface FollowApi {
  /** The person followed, as the room sees them now; null when following nobody. */
  following: User | null;
  /** Follow the member `id` (not yourself): takes you to their location, and keeps up. */
  follow: (id: string) => void;
  stop: () => void;
}

const noFollow: FollowState = Object.freeze({ user: null });

/** Follow mode of the nearest `<PresenceProvider>`. */
export function useFollow(): FollowApi {
  const follower = useContext(FollowContext);
  if (!follower) throw new Error("herenow: presence hooks need a <PresenceProvider> above them");
  const state = useSyncExternalStore(follower.subscribe, follower.getSnapshot, () => noFollow);
  const follow = useCallback((id: string) => follower.follow(id), [follower]);
  const stop = useCallback(() => follower.stop(), [follower]);
  return useMemo(() => ({ following: state.user, follow, stop }), [state.user, follow, stop]);
}

/** Joins and leaves, newest first. */
export function useActivity(): readonly ActivityEntry[] {
  return usePresenceSelector((s) => s.activity, Object.is);
}

export interface TypingApi {
  /** The others who are typing now. */
  typing: readonly User[];
  /** Call on every input event; the client sends one debounced signal. */
  onInput: () => void;
  /** Call when the text is sent or the field is left. */
  stop: () => void;
}

/** Who else is typing, and the functions that report our own typing. */
export function useTyping(): TypingApi {
  const client = usePresenceClient();
  const typing = usePresenceSelector((s) => s.typing);
  const onInput = useCallback(() => client.notifyTyping(), [client]);
  const stop = useCallback(() => client.stopTyping(), [client]);
  return useMemo(() => ({ typing, onInput, stop }), [typing, onInput, stop]);
}
