// @herenow/client in Node: the `ws` package as its WebSocket, no browser APIs, and a
// bounded wait for a state of its snapshot.
import { PresenceClient, type ClientEnvironment, type PresenceSnapshot, type SocketConstructor } from "@herenow/client";
import WebSocket from "ws";

export const nodeEnvironment: ClientEnvironment = {
  location: null,
  sessionStorage: null,
  broadcastChannel: null,
  document: null,
  window: null,
};

/** A connected client for `room` on the server at `url` (http://...). */
export function nodeClient(url: string, room: string, id: string, name: string): PresenceClient {
  const client = new PresenceClient({
    room,
    url,
    tabId: id,
    user: { name },
    WebSocket: WebSocket as unknown as SocketConstructor,
    environment: nodeEnvironment,
  });
  client.connect();
  return client;
}

/** Resolves when `ok` holds for the client's snapshot; fails after `timeoutMs` with what it saw. */
export function until(
  client: PresenceClient,
  ok: (s: PresenceSnapshot) => boolean,
  timeoutMs = 3000,
): Promise<PresenceSnapshot> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const s = client.getSnapshot();
      if (!ok(s)) return false;
      clearTimeout(timer);
      unsubscribe();
      resolve(s);
      return true;
    };
    const timer = setTimeout(() => {
      unsubscribe();
      const s = client.getSnapshot();
      reject(
        new Error(
          `timed out: status ${s.status}, users ${s.users.map((u) => u.name ?? u.id).join(",")}, typing ${s.typing.length}, error ${JSON.stringify(s.error)}`,
        ),
      );
    }, timeoutMs);
    const unsubscribe = client.subscribe(check);
    check();
  });
}

export const names = (s: PresenceSnapshot) => s.users.map((u) => u.name).join(",");
