// Status, location and recently-left hooks over a scripted server (the fake socket).
import type { ClientEnvironment } from "@herenow/client";
import { act, cleanup, render, screen } from "@testing-library/react";
import { useState } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { diff, fakeSockets, u } from "../../client/test/fake-socket";
import { joinAs, noBrowser } from "./harness";
import { AvatarStack } from "../src/AvatarStack";
import {
  PresenceProvider,
  usePresenceAt,
  usePublishLocation,
  useRecentlyLeft,
  useStatus,
  useTabStatus,
  useUserStatus,
} from "../src/hooks";

let net: ReturnType<typeof fakeSockets>;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.UTC(2025, 0, 1, 9) });
  net = fakeSockets();
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function Room(props: { children: React.ReactNode; environment?: ClientEnvironment }) {
  return (
    <PresenceProvider
      room="lobby"
      user={{ name: "Me" }}
      options={{ WebSocket: net.WebSocket, tabId: "me", environment: props.environment ?? noBrowser, random: () => 0 }}
    >
      {props.children}
    </PresenceProvider>
  );
}

describe("usePresenceAt and <AvatarStack location>", () => {
  function Section(props: { id: string }) {
    const here = usePresenceAt(props.id);
    return <p data-testid={props.id}>{here.map((x) => x.name).join(",")}</p>;
  }

  it("lists who is at a location, and follows them as they move", () => {
    render(
      <Room>
        <Section id="intro" />
        <Section id="risks" />
        <AvatarStack location="risks" />
      </Room>,
    );
    joinAs(net, [
      u("me", 1, { name: "Me", location: "intro" }),
      u("ada", 2, { name: "Ada", location: "intro" }),
      u("linus", 3, { name: "Linus" }),
    ]);
    expect(screen.getByTestId("intro").textContent).toBe("Me,Ada");
    expect(screen.getByTestId("risks").textContent).toBe("");
    act(() => net.last.push(diff(1, 2, { updated: [u("ada", 2, { name: "Ada", location: "risks" })] })));
    expect(screen.getByTestId("intro").textContent).toBe("Me");
    expect(screen.getByTestId("risks").textContent).toBe("Ada");
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("1 person here: Ada");
  });
});

describe("usePublishLocation", () => {
  function Page() {
    const [section, setSection] = useState<string | null>("intro");
    const [shown, setShown] = useState(true);
    return (
      <>
        {shown ? <Publisher location={section} /> : null}
        <button onClick={() => setSection("risks")}>risks</button>
        <button onClick={() => setSection(null)}>none</button>
        <button onClick={() => setShown(false)}>unmount</button>
      </>
    );
  }
  function Publisher(props: { location: string | null }) {
    usePublishLocation(props.location);
    return null;
  }

  it("sends the location with the hello, then each change, and clears it on unmount", () => {
    render(
      <Room>
        <Page />
      </Room>,
    );
    joinAs(net);
    expect(net.last.sentOfType("hello")[0]?.location).toBe("intro");
    act(() => vi.advanceTimersByTime(1000));
    act(() => screen.getByText("risks").click());
    act(() => vi.advanceTimersByTime(1000));
    act(() => screen.getByText("none").click());
    act(() => vi.advanceTimersByTime(1000));
    act(() => screen.getByText("risks").click());
    act(() => vi.advanceTimersByTime(1000));
    act(() => screen.getByText("unmount").click());
    act(() => vi.advanceTimersByTime(1000));
    expect(net.last.sentOfType("location").map((m) => m.location)).toEqual(["risks", null, "risks", null]);
  });
});

describe("useUserStatus, useTabStatus and useStatus", () => {
  function Statuses() {
    const connection = useStatus();
    const mine = useUserStatus();
    const ada = useUserStatus("ada");
    const tab = useTabStatus();
    return (
      <p data-testid="s">
        {connection} / me {mine?.status ?? "-"} / tab {tab} / ada {ada ? `${ada.status}@${ada.since}` : "-"}
      </p>
    );
  }

  it("keeps the connection status and a person's status apart", () => {
    const doc = Object.assign(new EventTarget(), { visibilityState: "visible" });
    render(
      <Room environment={{ ...noBrowser, document: doc, window: new EventTarget() }}>
        <Statuses />
      </Room>,
    );
    expect(screen.getByTestId("s").textContent).toBe("connecting / me - / tab active / ada -");
    joinAs(net, [u("me", 1), u("ada", 2, { status: "idle", statusSince: 77 })]);
    expect(screen.getByTestId("s").textContent).toBe("open / me active / tab active / ada idle@77");
    act(() => {
      doc.visibilityState = "hidden";
      doc.dispatchEvent(new Event("visibilitychange"));
    });
    expect(net.last.sentOfType("status")).toEqual([{ type: "status", status: "away" }]);
    // This tab knows at once; the room's view of me (folded with my other tabs) follows the server.
    expect(screen.getByTestId("s").textContent).toBe("open / me active / tab away / ada idle@77");
    act(() => net.last.push(diff(1, 2, { updated: [u("me", 1, { status: "away", statusSince: 99 })] })));
    expect(screen.getByTestId("s").textContent).toBe("open / me away / tab away / ada idle@77");
  });
});

describe("useRecentlyLeft", () => {
  function Gone() {
    return (
      <p data-testid="gone">
        {useRecentlyLeft()
          .map((r) => r.user.name)
          .join(",")}
      </p>
    );
  }

  it("lists who left for a minute, and the stack greys them meanwhile", () => {
    render(
      <Room>
        <Gone />
        <AvatarStack />
      </Room>,
    );
    joinAs(net, [u("me", 1, { name: "Me" }), u("ada", 2, { name: "Ada" })]);
    act(() => net.last.push(diff(1, 2, { left: ["ada"] })));
    expect(screen.getByTestId("gone").textContent).toBe("Ada");
    expect(screen.getByRole("img", { name: "Ada, left just now" })).toBeTruthy();
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("1 person here: you");
    act(() => vi.advanceTimersByTime(60_000));
    expect(screen.getByTestId("gone").textContent).toBe("");
    act(() => vi.advanceTimersByTime(1000));
    expect(document.querySelector('[data-presence-id="ada"]')).toBeNull();
  });

  it("rejoining restores the face", () => {
    render(
      <Room>
        <AvatarStack />
      </Room>,
    );
    joinAs(net, [u("me", 1, { name: "Me" }), u("ada", 2, { name: "Ada" })]);
    act(() => net.last.push(diff(1, 2, { left: ["ada"] })));
    act(() => net.last.push(diff(2, 3, { joined: [u("ada", 5, { name: "Ada" })] })));
    const face = document.querySelector<HTMLElement>('[data-presence-id="ada"]')!;
    expect(face.dataset.status).toBe("active");
    expect(face.getAttribute("aria-label")).toBe("Ada");
  });
});
