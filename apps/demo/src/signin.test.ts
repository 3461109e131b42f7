import { describe, expect, it } from "vitest";
import { SIGNED_IN_KEY, SignInError, devTokenSource, loadSignIn, saveSignIn } from "./signin";

function memory() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}

describe("development sign-in", () => {
  it("remembers the signed-in name and forgets it on sign-out", () => {
    const s = memory();
    expect(loadSignIn(s)).toBeNull();
    saveSignIn(s, "Ada");
    expect(s.getItem(SIGNED_IN_KEY)).toBe("Ada");
    expect(loadSignIn(s)).toBe("Ada");
    saveSignIn(s, null);
    expect(loadSignIn(s)).toBeNull();
    expect(loadSignIn(null)).toBeNull();
  });

  it("asks the dev token route for the name and returns its token", async () => {
    const asked: string[] = [];
    const source = devTokenSource("Ada Lovelace", async (url) => {
      asked.push(url);
      return { ok: true, status: 200, json: async () => ({ token: "a.b.c" }) };
    });
    await expect(source()).resolves.toBe("a.b.c");
    expect(asked).toEqual(["/server/dev/token?name=Ada%20Lovelace"]);
  });

  it("says what is wrong when the route is off or refuses", async () => {
    const off = devTokenSource("Ada", async () => ({ ok: false, status: 404, json: async () => ({}) }));
    await expect(off()).rejects.toThrow(/DEV_TOKENS=true/);
    await expect(off()).rejects.toBeInstanceOf(SignInError);
    const bad = devTokenSource("", async () => ({
      ok: false,
      status: 400,
      json: async () => ({ error: "name is required" }),
    }));
    await expect(bad()).rejects.toThrow("name is required");
  });
});
