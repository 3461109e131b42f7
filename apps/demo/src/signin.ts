/**
 * The demo's development sign-in: a name becomes a signed token through the server's
 * development-only route (`GET /server/dev/token`, on with `DEV_TOKENS=true`). A real app
 * gets its tokens from its own backend instead (see the README); everything else (the
 * client's `getToken`, refresh before expiry, no retry on 4401/4403) is the same.
 */

export const SIGNED_IN_KEY = "herenow:signed-in";

type Storage = Pick<globalThis.Storage, "getItem" | "setItem" | "removeItem">;
type Fetch = (url: string) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

/** The name signed in with in this browser, if any. */
export function loadSignIn(storage: Storage | null): string | null {
  try {
    const name = storage?.getItem(SIGNED_IN_KEY)?.trim();
    return name ? name : null;
  } catch {
    return null;
  }
}

export function saveSignIn(storage: Storage | null, name: string | null): void {
  try {
    if (name) storage?.setItem(SIGNED_IN_KEY, name);
    else storage?.removeItem(SIGNED_IN_KEY);
  } catch {
    // Private mode: the sign-in lasts for this page.
  }
}

/** Why a token could not be had, in words for the page. */
export class SignInError extends Error {}

/** A `getToken` for the client: a fresh development token for `name` on every call. */
export function devTokenSource(name: string, fetchFn: Fetch = (url) => fetch(url)): () => Promise<string> {
  return async () => {
    const res = await fetchFn(`/server/dev/token?name=${encodeURIComponent(name)}`);
    if (res.status === 404) {
      throw new SignInError(
        "this server has no development sign-in: start it with DEV_TOKENS=true (and AUTH=optional)",
      );
    }
    const body = (await res.json().catch(() => null)) as { token?: unknown; error?: unknown } | null;
    if (!res.ok || typeof body?.token !== "string") {
      throw new SignInError(typeof body?.error === "string" ? body.error : `sign-in failed (${res.status})`);
    }
    return body.token;
  };
}
