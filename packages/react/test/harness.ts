// What the React tests share: a client environment without a browser, and the scripted
// server's answer to a join.
import type { ClientEnvironment, User } from "@herenow/client";
import { act } from "@testing-library/react";
import { fakeSockets, snapshot, u } from "../../client/test/fake-socket";

export const noBrowser: ClientEnvironment = {
  location: { protocol: "http:", host: "localhost" },
  sessionStorage: null,
  broadcastChannel: null,
  document: null,
  window: null,
};

/** The newest socket opens and gets a snapshot of `users` in which it is `me`. */
export function joinAs(net: ReturnType<typeof fakeSockets>, users: User[] = [u("me", 1, { name: "Me" })], version = 1) {
  act(() => {
    net.last.accept();
    net.last.push(snapshot(version, users, "me"));
  });
}
