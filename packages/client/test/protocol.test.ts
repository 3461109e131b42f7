import { describe, expect, it } from "vitest";
import {
  decodeClientMsg,
  decodeServerMsg,
  encodeClientMsg,
  jsonByteLength,
  normalizeRoomId,
  isValidTabId,
  tokenExpiry,
  utf8Length,
} from "../src/protocol";
import { fixtures } from "./fixtures";

describe("golden fixtures", () => {
  const all = fixtures();

  it("finds the fixtures of both versions and both directions", () => {
    expect(all.filter((f) => f.name.startsWith("v1/")).length).toBeGreaterThanOrEqual(4);
    expect(all.filter((f) => f.name.startsWith("v2/")).length).toBeGreaterThanOrEqual(14);
    expect(new Set(all.map((f) => f.direction))).toEqual(new Set(["client", "server"]));
  });

  for (const f of all) {
    it(`decodes ${f.name} and encodes it back to the same JSON`, () => {
      const decoded = f.direction === "server" ? decodeServerMsg(f.text) : decodeClientMsg(f.text);
      if (!decoded.ok) throw new Error(`${f.name}: ${decoded.error}`);
      expect(decoded.msg).toEqual(JSON.parse(f.text));
      expect(JSON.parse(JSON.stringify(decoded.msg))).toEqual(JSON.parse(f.text));
      if (f.direction === "client") {
        // What this client puts on the wire for that message is that very JSON.
        expect(JSON.parse(encodeClientMsg(decoded.msg as never))).toEqual(JSON.parse(f.text));
      }
    });
  }

  it("covers every message type of protocol 2", () => {
    const types = (direction: string) =>
      new Set(
        all
          .filter((f) => f.direction === direction && f.name.startsWith("v2/"))
          .map((f) => (JSON.parse(f.text) as { type: string }).type),
      );
    expect(types("client")).toEqual(new Set(["hello", "ping", "state", "event", "sync", "auth", "status", "location"]));
    expect(types("server")).toEqual(new Set(["presence", "diff", "event", "pong", "error"]));
  });
});

describe("decodeServerMsg", () => {
  it("rejects text that is not JSON or not an object", () => {
    expect(decodeServerMsg("{").ok).toBe(false);
    expect(decodeServerMsg("[1]").ok).toBe(false);
    expect(decodeServerMsg("null").ok).toBe(false);
  });

  it("rejects unknown types and wrong field shapes", () => {
    expect(decodeServerMsg('{"type":"nope"}')).toEqual({ ok: false, error: 'unknown server message type "nope"' });
    const bad = [
      '{"type":"presence","roomId":"lobby","count":1,"members":"a","version":1}',
      '{"type":"presence","roomId":"lobby","count":1,"members":["a"],"version":-1}',
      '{"type":"presence","roomId":"lobby","count":1,"members":["a"],"version":1.5}',
      '{"type":"diff","roomId":"r","prev":1,"version":2,"joined":[{"id":"a","state":[],"tabs":1,"since":0}],"left":[],"updated":[]}',
      '{"type":"diff","roomId":"r","prev":1,"version":2,"joined":[{"id":"a","state":{},"since":0}],"left":[],"updated":[]}',
      '{"type":"diff","roomId":"r","prev":1,"version":2,"joined":[],"left":[3],"updated":[]}',
      '{"type":"error","code":1,"message":"x"}',
      '{"type":"event","roomId":"r","event":"x","data":1}',
    ];
    for (const text of bad) expect(decodeServerMsg(text).ok, text).toBe(false);
  });

  it("keeps the fields it knows and drops the ones a newer server adds", () => {
    const d = decodeServerMsg('{"type":"pong","extra":1}');
    expect(d).toEqual({ ok: true, msg: { type: "pong" } });
    const u = decodeServerMsg(
      '{"type":"diff","roomId":"r","prev":1,"version":2,"joined":[{"id":"a","state":{},"tabs":1,"since":5,"role":"x"}],"left":[],"updated":[]}',
    );
    expect(u.ok && u.msg.type === "diff" && u.msg.joined[0]).toEqual({
      id: "a",
      state: {},
      tabs: 1,
      since: 5,
      status: "active",
      statusSince: 5,
    });
  });

  it("reads a user without a status (an older server) as active since they joined", () => {
    const d = decodeServerMsg(
      '{"type":"diff","roomId":"r","prev":1,"version":2,"joined":[{"id":"a","state":{},"tabs":1,"since":5}],"left":[],"updated":[]}',
    );
    expect(d.ok && d.msg.type === "diff" && d.msg.joined[0]).toMatchObject({ status: "active", statusSince: 5 });
  });

  it("reads a status it does not know as active, and insists on the types of the others", () => {
    const user = (fields: string) =>
      decodeServerMsg(
        `{"type":"diff","roomId":"r","prev":1,"version":2,"joined":[],"left":[],"updated":[{"id":"a","state":{},"tabs":1,"since":5${fields}}]}`,
      );
    const busy = user(',"status":"busy","statusSince":9');
    expect(busy.ok && busy.msg.type === "diff" && busy.msg.updated[0]).toMatchObject({
      status: "active",
      statusSince: 9,
    });
    expect(user(',"status":"away","statusSince":"9"').ok).toBe(false);
    expect(user(',"location":7').ok).toBe(false);
    const there = user(',"status":"idle","statusSince":9,"location":"risks"');
    expect(there.ok && there.msg.type === "diff" && there.msg.updated[0]).toMatchObject({
      status: "idle",
      location: "risks",
    });
  });
});

describe("decodeClientMsg", () => {
  it("accepts the three statuses and nothing else", () => {
    for (const status of ["active", "idle", "away"]) {
      expect(decodeClientMsg(`{"type":"status","status":"${status}"}`)).toEqual({
        ok: true,
        msg: { type: "status", status },
      });
    }
    expect(decodeClientMsg('{"type":"status","status":"busy"}').ok).toBe(false);
    expect(decodeClientMsg('{"type":"status"}').ok).toBe(false);
    expect(decodeClientMsg('{"type":"hello","id":"a","status":"zzz"}').ok).toBe(false);
  });

  it("a location is a string or null, and must be there", () => {
    expect(decodeClientMsg('{"type":"location","location":null}')).toEqual({
      ok: true,
      msg: { type: "location", location: null },
    });
    expect(decodeClientMsg('{"type":"location"}').ok).toBe(false);
    expect(decodeClientMsg('{"type":"location","location":3}').ok).toBe(false);
  });
});

describe("limits and ids", () => {
  it("measures UTF-8 bytes of compact JSON, as the server does", () => {
    expect(jsonByteLength({ a: 1 })).toBe(7);
    expect(jsonByteLength({ a: "é" })).toBe(10);
    expect(utf8Length("sección")).toBe(8);
  });

  it("normalizes room ids like the server: invalid ones mean lobby", () => {
    expect(normalizeRoomId("design-review")).toBe("design-review");
    expect(normalizeRoomId("Design")).toBe("lobby");
    expect(normalizeRoomId("")).toBe("lobby");
    expect(normalizeRoomId("a".repeat(64))).toBe("a".repeat(64));
    expect(normalizeRoomId("a".repeat(65))).toBe("lobby");
    expect(normalizeRoomId("a/b")).toBe("lobby");
  });

  it("accepts tab ids of 1-128 [A-Za-z0-9_-]", () => {
    expect(isValidTabId("tab-ada_1")).toBe(true);
    expect(isValidTabId("")).toBe(false);
    expect(isValidTabId("a".repeat(129))).toBe(false);
    expect(isValidTabId("a b")).toBe(false);
  });
});

describe("tokens", () => {
  it("reads a token's expiry without checking it, and null for junk", () => {
    const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    expect(tokenExpiry(`${b64({ alg: "HS256" })}.${b64({ sub: "ü?>", exp: 1700000000 })}.sig`)).toBe(1700000000000);
    for (const junk of ["", "a", "a.b.c", `x.${b64({ sub: "x" })}.y`, `x.${b64({ exp: "soon" })}.y`]) {
      expect(tokenExpiry(junk)).toBeNull();
    }
  });

  it("decodes the auth refresh and a user's verified flag", () => {
    expect(decodeClientMsg('{"type":"auth","token":"a.b.c"}')).toEqual({
      ok: true,
      msg: { type: "auth", token: "a.b.c" },
    });
    expect(decodeClientMsg('{"type":"auth"}').ok).toBe(false);
    const user = { id: "u_x", state: {}, tabs: 1, since: 1, verified: false };
    const msg = { type: "diff", roomId: "r", prev: 1, version: 2, joined: [user], left: [], updated: [] };
    const decoded = decodeServerMsg(JSON.stringify(msg));
    expect(decoded.ok && decoded.msg.type === "diff" && decoded.msg.joined[0]?.verified).toBe(false);
    expect(decodeServerMsg(JSON.stringify({ ...msg, joined: [{ ...user, verified: "yes" }] })).ok).toBe(false);
  });
});
