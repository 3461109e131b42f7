import type { User } from "@herenow/client";
import { describe, expect, it } from "vitest";
import { agoPhrase, displayName, durationPhrase, faceLabel, joinNames, stackLabel, typingPhrase } from "../src/names";

const u = (id: string, name?: string): User => ({
  id,
  ...(name ? { name } : {}),
  state: {},
  tabs: 1,
  since: 0,
  status: "active",
  statusSince: 0,
});

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

  it("says how long ago, in words and short", () => {
    expect(agoPhrase(0)).toBe("just now");
    expect(agoPhrase(44_999)).toBe("just now");
    expect(agoPhrase(45_000)).toBe("1 minute ago");
    expect(agoPhrase(60_000)).toBe("1 minute ago");
    expect(agoPhrase(120_000)).toBe("2 minutes ago");
    expect(agoPhrase(120_000, true)).toBe("2 min ago");
    expect(agoPhrase(3_600_000)).toBe("1 hour ago");
    expect(agoPhrase(7_200_000, true)).toBe("2 h ago");
    expect(durationPhrase(59_999)).toBe("");
    expect(durationPhrase(180_000)).toBe("3 min");
    expect(durationPhrase(7_200_000)).toBe("2 h");
  });

  it("names a face with its status when not active", () => {
    const ada = { ...u("a", "Ada") };
    expect(faceLabel(ada)).toBe("Ada");
    expect(faceLabel({ ...ada, status: "idle" })).toBe("Ada, idle");
    expect(faceLabel({ ...ada, status: "away" })).toBe("Ada, away");
    expect(faceLabel({ ...ada, status: "away" }, { self: true })).toBe("Ada (you), away");
    expect(faceLabel(u("l", "Linus"), { leftAt: 0, now: 60_000 })).toBe("Linus, left 1 minute ago");
    expect(faceLabel(u("l", "Linus"), { leftAt: 0, now: 1000 })).toBe("Linus, left just now");
  });
});
