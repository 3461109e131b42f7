/**
 * A user's status, `active` | `idle` | `away`, decided in the tab from what the browser
 * says about the person in front of it: whether the page is visible, whether its window
 * has focus, and when they last touched a key, the mouse or the screen.
 *
 * Not to be confused with the connection status (`connecting`, `open`, ...): this is about
 * the person, that is about the socket. The rules are one pure function of the inputs and
 * a time, `decideStatus`, so they are tested without a browser; `AttentionTracker` feeds it
 * from the page's events and says when the answer changes.
 */

/** What the room shows about a person's attention; the server folds it across their tabs. */
export type UserStatus = "active" | "idle" | "away";

/** Every status, best first: the order the server folds tabs by (active wins). */
export const USER_STATUSES: readonly UserStatus[] = ["active", "idle", "away"];

/** No input for this long makes a visible tab `idle`: a minute is a pause, not a break. */
export const IDLE_AFTER_MS = 60_000;
/** No input for this long makes even a visible tab `away`: ten minutes is a break. */
export const AWAY_AFTER_MS = 600_000;

export interface StatusTimings {
  /** Quiet time before `idle`; default `IDLE_AFTER_MS` (60 s). */
  idleAfterMs: number;
  /** Quiet time before `away`; default `AWAY_AFTER_MS` (10 min). */
  awayAfterMs: number;
}

/** What the page says about its visitor at one moment. */
export interface Attention {
  /** The page is hidden (another tab in front, window minimised, screen locked). */
  readonly hidden: boolean;
  /** The page's window has the focus (another app or window may be in front of it). */
  readonly focused: boolean;
  /** When the visitor last gave input (or came back to the page), ms. */
  readonly lastInputAt: number;
}

/**
 * The status at `now`:
 * - hidden: `away`, at once (nobody is looking at it);
 * - no input for `awayAfterMs`: `away`;
 * - visible but its window is not focused, or no input for `idleAfterMs`: `idle` (they
 *   may be reading it, they are not working in it);
 * - else `active`.
 */
export function decideStatus(a: Attention, now: number, t: StatusTimings): UserStatus {
  if (a.hidden) return "away";
  const quiet = now - a.lastInputAt;
  if (quiet >= t.awayAfterMs) return "away";
  if (!a.focused || quiet >= t.idleAfterMs) return "idle";
  return "active";
}

/**
 * When `decideStatus` will next give another answer if no event comes, or null when only
 * an event can change it (hidden, or already `away`).
 */
export function nextStatusChange(a: Attention, now: number, t: StatusTimings): number | null {
  if (a.hidden) return null;
  const quiet = now - a.lastInputAt;
  if (a.focused && quiet < t.idleAfterMs) return a.lastInputAt + t.idleAfterMs;
  if (quiet < t.awayAfterMs) return a.lastInputAt + t.awayAfterMs;
  return null;
}

/** The page APIs the tracker listens to; `document` and `window` fit, test doubles too. */
export interface AttentionSources {
  /** `visibilitychange`; `hasFocus()` is read once at start when present. */
  document?: (EventTarget & { readonly visibilityState: string; hasFocus?: () => boolean }) | null;
  /** `focus`, `blur` and the input events. */
  window?: EventTarget | null;
}

/**
 * Input that shows a person at the page. Scrolling by itself is not in the list: a page
 * may scroll on its own (follow mode does); the wheel, keys and touches that scroll it are.
 */
export const INPUT_EVENTS = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"] as const;

export interface AttentionTrackerOptions extends Partial<StatusTimings> {
  sources: AttentionSources;
  /** Told the new status each time it changes (never twice in a row with the same one). */
  onChange: (status: UserStatus) => void;
  /** The clock, ms; default `Date.now`. */
  now?: () => number;
}

/**
 * Follows the page's events and tells `onChange` whenever the status changes. Input events
 * are cheap: each only notes the time, and one timer wakes up when the next change is due.
 */
export class AttentionTracker {
  #timings: StatusTimings;
  #sources: AttentionSources;
  #onChange: (status: UserStatus) => void;
  #now: () => number;
  #hidden = false;
  #focused = true;
  #lastInputAt = 0;
  #status: UserStatus = "active";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #detach: (() => void)[] = [];

  constructor(options: AttentionTrackerOptions) {
    this.#timings = {
      idleAfterMs: options.idleAfterMs ?? IDLE_AFTER_MS,
      awayAfterMs: options.awayAfterMs ?? AWAY_AFTER_MS,
    };
    if (!(this.#timings.idleAfterMs > 0 && this.#timings.awayAfterMs >= this.#timings.idleAfterMs)) {
      throw new RangeError("herenow: idleAfterMs must be positive and awayAfterMs at least idleAfterMs");
    }
    this.#sources = options.sources;
    this.#onChange = options.onChange;
    this.#now = options.now ?? Date.now;
  }

  /** The status now. */
  get status(): UserStatus {
    return this.#status;
  }

  /** Starts listening; the status is decided at once from the page as it is (no callback). */
  start(): UserStatus {
    this.stop();
    const doc = this.#sources.document ?? null;
    const win = this.#sources.window ?? null;
    this.#hidden = doc?.visibilityState === "hidden";
    this.#focused = typeof doc?.hasFocus === "function" ? doc.hasFocus() : true;
    this.#lastInputAt = this.#now();
    const on = (target: EventTarget | null, type: string, handler: () => void, capture = false) => {
      if (!target) return;
      const options = { capture, passive: true };
      target.addEventListener(type, handler, options);
      this.#detach.push(() => target.removeEventListener(type, handler, options));
    };
    on(doc, "visibilitychange", () => {
      this.#hidden = doc!.visibilityState === "hidden";
      // Coming back to the page is the strongest sign of someone there.
      if (!this.#hidden) this.#lastInputAt = this.#now();
      this.#update();
    });
    on(win, "focus", () => {
      this.#focused = true;
      this.#lastInputAt = this.#now();
      this.#update();
    });
    on(win, "blur", () => {
      this.#focused = false;
      this.#update();
    });
    const input = () => this.#input();
    // Capture: an app that stops propagation of its own clicks still shows someone there.
    for (const type of INPUT_EVENTS) on(win, type, input, true);
    this.#status = this.#decide();
    this.#schedule();
    return this.#status;
  }

  /** Stops listening and drops the timer. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const detach of this.#detach.splice(0)) detach();
  }

  #input(): void {
    this.#lastInputAt = this.#now();
    // The common case, many events a second while active, costs one assignment: the
    // pending timer re-checks when it fires.
    if (this.#status !== "active" || !this.#focused) this.#update();
  }

  #decide(): UserStatus {
    return decideStatus(
      { hidden: this.#hidden, focused: this.#focused, lastInputAt: this.#lastInputAt },
      this.#now(),
      this.#timings,
    );
  }

  #update(): void {
    const next = this.#decide();
    this.#schedule();
    if (next === this.#status) return;
    this.#status = next;
    this.#onChange(next);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const now = this.#now();
    const at = nextStatusChange(
      { hidden: this.#hidden, focused: this.#focused, lastInputAt: this.#lastInputAt },
      now,
      this.#timings,
    );
    if (at === null) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#update();
      },
      Math.max(0, at - now),
    );
  }
}
