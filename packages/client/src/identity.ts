/**
 * Per-tab identity: one visitor per tab, surviving reloads.
 *
 * The tab id lives in `sessionStorage`, which a reload keeps and a new tab does not.
 * A tab duplicated by the browser copies `sessionStorage`, so two live tabs would share
 * one id and show up as a single face with `tabs: 2`. Tabs therefore announce their id on
 * a `BroadcastChannel`; when two live tabs hold the same id, the younger one takes a new
 * id and tells its owner through `onChange`.
 */
import { isValidTabId } from "./protocol";

/** The subset of `Storage` used here. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The subset of `BroadcastChannel` used here. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  close(): void;
}

export const TAB_ID_STORAGE_KEY = "herenow:tab-id";
export const TAB_CHANNEL_NAME = "herenow:tabs";

/** A fresh random tab id: 16 url-safe characters. */
export function newTabId(random: () => number = Math.random): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  for (let i = 0; i < 16; i++) id += alphabet[Math.floor(random() * alphabet.length)];
  return id;
}

type Announce = { t: "claim" | "taken"; id: string; born: number; nonce: number };

function isAnnounce(v: unknown): v is Announce {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    (o.t === "claim" || o.t === "taken") &&
    typeof o.id === "string" &&
    typeof o.born === "number" &&
    typeof o.nonce === "number"
  );
}

export interface TabIdentityOptions {
  storage?: StorageLike | null;
  channel?: (() => ChannelLike) | null;
  random?: () => number;
  now?: () => number;
  /** Called with the new id after this tab found out it was a duplicate. */
  onChange?: (id: string) => void;
}

export class TabIdentity {
  #id: string;
  #storage: StorageLike | null;
  #openChannel: (() => ChannelLike) | null;
  #channel: ChannelLike | null = null;
  #random: () => number;
  #onChange: ((id: string) => void) | undefined;
  /** When this tab started using its id, and a tie-breaker: the older claim keeps it. */
  #born: number;
  #nonce: number;

  constructor(options: TabIdentityOptions = {}) {
    this.#storage = options.storage ?? null;
    this.#openChannel = options.channel ?? null;
    this.#random = options.random ?? Math.random;
    this.#onChange = options.onChange;
    this.#born = (options.now ?? Date.now)();
    this.#nonce = this.#random();
    const stored = safeGet(this.#storage);
    this.#id = stored !== null && isValidTabId(stored) ? stored : this.#fresh();
  }

  get id(): string {
    return this.#id;
  }

  /** Starts listening for duplicates and announces this tab's id. Idempotent. */
  start(): void {
    if (this.#channel || !this.#openChannel) return;
    try {
      this.#channel = this.#openChannel();
    } catch {
      return; // No BroadcastChannel (old browser, sandboxed frame): duplicates stay possible.
    }
    this.#channel.onmessage = (event) => this.#receive(event.data);
    this.#post("claim");
  }

  stop(): void {
    this.#channel?.close();
    this.#channel = null;
  }

  #receive(message: unknown): void {
    if (!isAnnounce(message) || message.id !== this.#id || message.nonce === this.#nonce) return;
    const theyAreOlder = message.born < this.#born || (message.born === this.#born && message.nonce < this.#nonce);
    if (theyAreOlder) {
      this.#id = this.#fresh();
      this.#post("claim");
      this.#onChange?.(this.#id);
    } else if (message.t === "claim") {
      this.#post("taken");
    }
  }

  #post(t: Announce["t"]): void {
    const message: Announce = { t, id: this.#id, born: this.#born, nonce: this.#nonce };
    try {
      this.#channel?.postMessage(message);
    } catch {
      // A closed channel: nothing to tell.
    }
  }

  #fresh(): string {
    const id = newTabId(this.#random);
    try {
      this.#storage?.setItem(TAB_ID_STORAGE_KEY, id);
    } catch {
      // Storage full or denied: the id lasts for this page only.
    }
    return id;
  }
}

function safeGet(storage: StorageLike | null): string | null {
  try {
    return storage?.getItem(TAB_ID_STORAGE_KEY) ?? null;
  } catch {
    return null;
  }
}
