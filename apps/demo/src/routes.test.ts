import { describe, expect, it } from "vitest";
import { ROOMS, roomInfo, roomPath, routeOf } from "./routes";

describe("routes", () => {
  it("reads /rooms/:roomId", () => {
    expect(routeOf("/rooms/design-review")).toEqual({
      room: "design-review",
      canonical: "/rooms/design-review",
      redirect: false,
    });
    expect(routeOf("/rooms/launch-plan/")).toEqual({
      room: "launch-plan",
      canonical: "/rooms/launch-plan",
      redirect: true,
    });
  });

  it("falls back to the lobby for any other path or an invalid room", () => {
    for (const path of [
      "/",
      "/rooms",
      "/rooms/",
      "/elsewhere",
      "/rooms/a/b",
      "/rooms/Design",
      "/rooms/%E0%A4%A",
      `/rooms/${"a".repeat(65)}`,
    ]) {
      expect(routeOf(path), path).toEqual({ room: "lobby", canonical: "/rooms/lobby", redirect: true });
    }
  });

  it("links the three rooms of the demo", () => {
    expect(ROOMS.map((r) => roomPath(r.id))).toEqual(["/rooms/lobby", "/rooms/design-review", "/rooms/launch-plan"]);
  });

  it("titles an unlisted room from its id", () => {
    expect(roomInfo("team-sync").title).toBe("Team sync");
    expect(roomInfo("lobby").title).toBe("Lobby");
  });
});
