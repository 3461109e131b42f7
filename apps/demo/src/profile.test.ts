import { describe, expect, it } from "vitest";
import { COLOR_KEY, NAME_KEY, cleanName, loadProfile, saveName } from "./profile";

function memory() {
  const map = new Map<string, string>();
  return { map, getItem: (k: string) => map.get(k) ?? null, setItem: (k: string, v: string) => void map.set(k, v) };
}

describe("profile", () => {
  it("makes up a name and a color once, then keeps them", () => {
    const storage = memory();
    const first = loadProfile(storage, "", () => 0);
    expect(first).toEqual({ name: "Ada", color: "#2a9d8f" });
    expect(loadProfile(storage, "", () => 0.99)).toEqual(first);
    expect(storage.map.get(NAME_KEY)).toBe("Ada");
    expect(storage.map.get(COLOR_KEY)).toBe("#2a9d8f");
  });

  it("takes ?name= over the stored name and stores it", () => {
    const storage = memory();
    saveName(storage, "Grace");
    expect(loadProfile(storage, "?name=%20Linus%20%20T.%20", () => 0).name).toBe("Linus T.");
    expect(storage.map.get(NAME_KEY)).toBe("Linus T.");
  });

  it("cleans names: trimmed, single spaces, at most 40 characters; blank names are not saved", () => {
    expect(cleanName("  a \n b ")).toBe("a b");
    expect(cleanName("x".repeat(50))).toHaveLength(40);
    const storage = memory();
    saveName(storage, "Ada");
    saveName(storage, "   ");
    expect(storage.map.get(NAME_KEY)).toBe("Ada");
  });

  it("works without storage", () => {
    expect(loadProfile(null, "", () => 0).name).toBe("Ada");
  });
});
