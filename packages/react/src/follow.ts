/**
 * Follow mode: keep your page where someone else is.
 *
 * A `Follower` watches one member of the room and, each time their location changes (and
 * at once when following starts), takes you there: by default it scrolls the element whose
 * DOM id is the location into view; an `onFollow` callback replaces that (a slide deck
 * goes to the slide, a spreadsheet selects the cell). Scrolling yourself (wheel, touch,
 * scroll keys, the scroll bar) stops it, and so does Escape, the followed person leaving
 * the room, or `stop()`. Framework-free; the React provider owns one per client.
 */
import type { PresenceClient, PresenceSnapshot, User } from "@herenow/client";

/** Takes the follower to `location`, where `user` now is. */
export type FollowHandler = (location: string, user: User) => void;

/** Keys that scroll a page: pressing one means you are steering again. */
export const SCROLL_KEYS: ReadonlySet<string> = new Set([
  "ArrowUp",
  "ArrowDown",
  "PageUp",
  "PageDown",
  "Home",
  "End",
  " ",
]);

export interface FollowerOptions {
  /** The current `onFollow`, read at each move (so a new callback needs no new follower). */
  onFollow?: () => FollowHandler | undefined;
  /** The page: events that stop following, elements to scroll to; default `window`. */
  window?: Window | null;
}

/** Who is followed, immutable; a new object on every change (`useSyncExternalStore`). */
export interface FollowState {
  /** The followed member as the room sees them now, or null when following nobody. */
  readonly user: User | null;
}

const NOBODY: FollowState = Object.freeze({ user: null });

export class Follower {
  #client: PresenceClient;
  #onFollow: () => FollowHandler | undefined;
  #win: Window | null;
  #state: FollowState = NOBODY;
  #targetId: string | null = null;
  /** The location last gone to; undefined: none yet since following started. */
  #went: string | null | undefined;
  #listeners = new Set<() => void>();
  #detach: (() => void)[] = [];

  constructor(client: PresenceClient, options: FollowerOptions = {}) {
    this.#client = client;
    this.#onFollow = options.onFollow ?? (() => undefined);
    this.#win = options.window !== undefined ? options.window : typeof window === "undefined" ? null : window;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  getSnapshot = (): FollowState => this.#state;

  /** Starts following the member `id` (someone else in the room); goes to them at once. */
  follow(id: string): void {
    const snapshot = this.#client.getSnapshot();
    if (id === snapshot.self?.id || !snapshot.users.some((u) => u.id === id)) return;
    this.stop();
    this.#targetId = id;
    this.#went = undefined;
    this.#detach.push(this.#client.subscribe(() => this.#update(this.#client.getSnapshot())));
    this.#listen();
    this.#update(snapshot);
  }

  /** Stops following; a no-op when following nobody. */
  stop(): void {
    for (const detach of this.#detach.splice(0)) detach();
    if (this.#targetId === null) return;
    this.#targetId = null;
    this.#went = undefined;
    this.#set(NOBODY);
  }

  #update(snapshot: PresenceSnapshot): void {
    const user = snapshot.users.find((u) => u.id === this.#targetId);
    if (!user || snapshot.status === "closed") {
      this.stop(); // They left (or we did): there is nobody to follow any more.
      return;
    }
    if (user !== this.#state.user) this.#set(Object.freeze({ user }));
    const location = user.location ?? null;
    if (location === this.#went) return;
    this.#went = location;
    if (location !== null) this.#go(location, user);
  }

  #go(location: string, user: User): void {
    const handler = this.#onFollow();
    if (handler) {
      handler(location, user);
      return;
    }
    const target = this.#win?.document.getElementById(location);
    if (!target) return;
    const reduced = this.#win?.matchMedia?.("(prefers-reduced-motion: reduce)").matches ?? false;
    target.scrollIntoView({ behavior: reduced ? "auto" : "smooth", block: "start" });
  }

  /** The user's own scrolling stops following; our scrollIntoView fires none of these. */
  #listen(): void {
    const win = this.#win;
    if (!win) return;
    const stop = () => this.stop();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") return stop();
      if (SCROLL_KEYS.has(e.key) && !isEditable(e.target)) stop();
    };
    // A press on the page's own scroll bar: outside the document's client area.
    const onPointer = (e: PointerEvent) => {
      const root = win.document.documentElement;
      if (e.clientX >= root.clientWidth || e.clientY >= root.clientHeight) stop();
    };
    const options = { capture: true, passive: true };
    win.addEventListener("wheel", stop, options);
    win.addEventListener("touchmove", stop, options);
    win.addEventListener("keydown", onKey, options);
    win.addEventListener("pointerdown", onPointer, options);
    this.#detach.push(() => {
      win.removeEventListener("wheel", stop, options);
      win.removeEventListener("touchmove", stop, options);
      win.removeEventListener("keydown", onKey, options);
      win.removeEventListener("pointerdown", onPointer, options);
    });
  }

  #set(state: FollowState): void {
    this.#state = state;
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Keys typed into a field move its caret, not the page. */
function isEditable(target: EventTarget | null): boolean {
  const el = target as { tagName?: string; isContentEditable?: boolean } | null;
  if (!el || typeof el.tagName !== "string") return false;
  return el.isContentEditable === true || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName);
}
