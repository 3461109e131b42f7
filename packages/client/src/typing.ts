/**
 * Typing signals without one message per keystroke.
 *
 * The first keystroke sends `typing: true`. While keys keep coming the signal is refreshed
 * every `refreshMs` (3 s, below the server's 5 s expiry); 2 s without a keystroke sends
 * `typing: false`. A burst of a hundred keystrokes therefore costs two messages.
 */

/** Quiet time after the last keystroke before `typing: false` is sent. */
export const TYPING_IDLE_MS = 2_000;
/** Refresh period while typing goes on; the server expires a signal after 5 s. */
export const TYPING_REFRESH_MS = 3_000;
/** Receivers drop a typing signal this long after the last one, in case its sender vanished. */
export const TYPING_RECEIVE_TIMEOUT_MS = 6_000;

export interface TypingSignalOptions {
  idleMs?: number;
  refreshMs?: number;
}

export class TypingSignal {
  #send: (typing: boolean) => void;
  #idleMs: number;
  #refreshMs: number;
  #typing = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(send: (typing: boolean) => void, options: TypingSignalOptions = {}) {
    this.#send = send;
    this.#idleMs = options.idleMs ?? TYPING_IDLE_MS;
    this.#refreshMs = options.refreshMs ?? TYPING_REFRESH_MS;
  }

  /** Whether the last signal sent was `typing: true`. */
  get typing(): boolean {
    return this.#typing;
  }

  /** Call on every keystroke or input event. */
  input(): void {
    if (!this.#typing) {
      this.#typing = true;
      this.#send(true);
      this.#scheduleRefresh();
    }
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => this.stop(), this.#idleMs);
  }

  /** Stops now (message sent, field blurred); sends `typing: false` if typing. */
  stop(): void {
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#refreshTimer);
    this.#idleTimer = this.#refreshTimer = undefined;
    if (this.#typing) {
      this.#typing = false;
      this.#send(false);
    }
  }

  /** Drops the timers without sending anything (the connection is going away). */
  dispose(): void {
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#refreshTimer);
    this.#idleTimer = this.#refreshTimer = undefined;
    this.#typing = false;
  }

  #scheduleRefresh(): void {
    this.#refreshTimer = setTimeout(() => {
      if (!this.#typing) return;
      this.#send(true);
      this.#scheduleRefresh();
    }, this.#refreshMs);
  }
}
