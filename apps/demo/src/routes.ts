/**
 * The demo's routes: `/rooms/:roomId`, and everything else falls back to the lobby.
 * Room ids follow the server's rule (1-64 of `[a-z0-9-]`, else `lobby`).
 */
import { DEFAULT_ROOM, normalizeRoomId } from "@herenow/client";

export interface RoomLink {
  id: string;
  title: string;
  blurb: string;
  /** Tile color in the sidebar. */
  tint: string;
}

/** The rooms in the sidebar. Any other valid id works too, at its own URL. */
export const ROOMS: readonly RoomLink[] = [
  { id: "lobby", title: "Lobby", blurb: "Everyone lands here first. Say hello.", tint: "#2a9d8f" },
  {
    id: "design-review",
    title: "Design review",
    blurb: "Thursday's review of the new onboarding flow.",
    tint: "#e76f51",
  },
  {
    id: "launch-plan",
    title: "Launch plan",
    blurb: "Who ships what, and when, for the March launch.",
    tint: "#e9c46a",
  },
];

export function roomPath(room: string): string {
  return `/rooms/${normalizeRoomId(room)}`;
}

/** The room a path shows, and whether the address bar should be corrected to it. */
export function routeOf(pathname: string): { room: string; canonical: string; redirect: boolean } {
  const match = /^\/rooms\/([^/]+)\/?$/.exec(pathname);
  let room = DEFAULT_ROOM;
  if (match?.[1]) {
    try {
      room = normalizeRoomId(decodeURIComponent(match[1]));
    } catch {
      room = DEFAULT_ROOM; // malformed percent-encoding
    }
  }
  const canonical = roomPath(room);
  return { room, canonical, redirect: canonical !== pathname };
}

/** Title and blurb for a room, listed or not. */
export function roomInfo(room: string): RoomLink {
  return (
    ROOMS.find((r) => r.id === room) ?? {
      id: room,
      title: room.replace(/-/g, " ").replace(/^./, (c) => c.toUpperCase()),
      blurb: "A room of your own: share its address to meet here.",
      tint: "#8d99ae",
    }
  );
}
