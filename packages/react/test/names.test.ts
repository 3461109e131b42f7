import type { User } from "@herenow/client";
import { describe, expect, it } from "vitest";
import { displayName, joinNames, stackLabel, typingPhrase } from "../src/names";

const u = (id: string, name?: string): User => ({ id, ...(name ? { name } : {}), state: {}, tabs: 1, since: 0 });

describe("names", () => {
  it("falls back to Guest and a short tag of the id", () => {
    expect(displayName(u("x", "  Ada "))).toBe("Ada");
    expect(displayName(u("k3f9a2"))).toBe("Guest f9a2");
    expect(displayName(u("k3f9a2", "   "))).toBe("Guest f9a2");
  });

  it("joins names the way people write them", () => {
    expect(joinNames([])).toBe("");
    expect(joinNames(["Ada"])).toBe("Ada");
    expect(joinNames(["Ada", "Linus"])).toBe("Ada and Linus");
    expect(joinNames(["Ada", "Linus", "Grace"])).toBe("Ada, Linus and Grace");
  });

  it("labels the stack with the count and the names, you last", () => {
    const users = [u("me", "Me"), u("a", "Ada"), u("l", "Linus")];
    expect(stackLabel(users, "me")).toBe("3 people here: Ada, Linus and you");
    expect(stackLabel([u("me")], "me")).toBe("1 person here: you");
    expect(stackLabel([u("a", "Ada")], null)).toBe("1 person here: Ada");
    expect(stackLabel([], "me")).toBe("Nobody here yet");
  });

  it("phrases typing for one, two and more", () => {
    expect(typingPhrase([])).toBe("");
    expect(typingPhrase([u("a", "Ada")])).toBe("Ada is typing…");
    expect(typingPhrase([u("a", "Ada"), u("l", "Linus")])).toBe("Ada and Linus are typing…");
    expect(typingPhrase([u("a", "Ada"), u("l", "Linus"), u("g", "Grace")])).toBe("3 people are typing…");
  });
});
