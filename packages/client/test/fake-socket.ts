// A scripted stand-in for the browser WebSocket: the test plays the server.
import type { SocketLike } from "../src/client";
import { decodeClientMsg, type ClientMsg, type ServerMsg, type User } from "../src/protocol";

export class FakeSocket implements SocketLike {
  readyState = 0;
  sent: ClientMsg[] = [];
  closedWith: { code: number | undefined; reason: string | undefined } | null = null;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    const decoded = decodeClientMsg(data);
    if (!decoded.ok) throw new Error(`client sent an invalid frame: ${decoded.error}`);
    this.sent.push(decoded.msg);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // ---- the server's side ----
  accept(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(msg: ServerMsg): void {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  sentOfType<T extends ClientMsg["type"]>(type: T): Extract<ClientMsg, { type: T }>[] {
    return this.sent.filter((m): m is Extract<ClientMsg, { type: T }> => m.type === type);
  }
}

/** A WebSocket constructor that records every socket it makes. */
export function fakeSockets() {
  const sockets: FakeSocket[] = [];
  class WebSocket extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  return {
    WebSocket,
    sockets,
    get last(): FakeSocket {
      const s = sockets[sockets.length - 1];
      if (!s) throw new Error("no socket yet");
      return s;
    },
  };
}

export const u = (id: string, since: number, extra: Partial<User> = {}): User => ({
  id,
  state: {},
  tabs: 1,
  since,
  status: "active",
  statusSince: since,
  ...extra,
});

export function snapshot(version: number, users: User[], self: string, roomId = "lobby"): ServerMsg {
  return { type: "presence", roomId, count: users.length, members: users.map((x) => x.id), version, users, self };
}

export function diff(
  prev: number,
  version: number,
  change: { joined?: User[]; left?: string[]; updated?: User[] },
  roomId = "lobby",
): ServerMsg {
  return {
    type: "diff",
    roomId,
    prev,
    version,
    joined: change.joined ?? [],
    left: change.left ?? [],
    updated: change.updated ?? [],
  };
}
