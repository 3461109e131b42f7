// Follow mode: the face menu, the banner, scrolling to the followed person's location and
// every way it stops.
import type { User } from "@herenow/client";
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { diff, fakeSockets, u } from "../../client/test/fake-socket";
import { joinAs, noBrowser } from "./harness";
import { AvatarStack } from "../src/AvatarStack";
import { PresenceProvider, useFollow } from "../src/hooks";

let net: ReturnType<typeof fakeSockets>;
let scrolled: string[];

beforeEach(() => {
  net = fakeSockets();
  scrolled = [];
  vi.spyOn(Element.prototype, "scrollIntoView").mockImplementation(function (this: Element) {
    scrolled.push(this.id);
  });
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function Room(props: { children?: React.ReactNode; onFollow?: (location: string, user: User) => void }) {
  return (
    <PresenceProvider
      room="lobby"
      user={{ name: "Me" }}
      options={{ WebSocket: net.WebSocket, tabId: "me", environment: noBrowser, random: () => 0 }}
      {...(props.onFollow ? { onFollow: props.onFollow } : {})}
    >
      <AvatarStack />
      <section id="intro" />
      <section id="risks" />
      {props.children}
    </PresenceProvider>
  );
}

const room = () => [
  u("me", 1, { name: "Me", location: "intro" }),
  u("ada", 2, { name: "Ada", location: "risks", color: "#e76f51" }),
];
const banner = () => document.querySelector<HTMLElement>(".hn-follow");

/** Clicks Ada's face and then the menu's "Follow Ada". */
function followAda() {
  fireEvent.click(screen.getByRole("button", { name: "Ada" }));
  fireEvent.click(screen.getByRole("menuitem", { name: "Follow Ada" }));
}

describe("follow", () => {
  it("a face offers Follow; following goes to their location and shows the banner", () => {
    render(<Room />);
    joinAs(net, room());
    const face = screen.getByRole("button", { name: "Ada" });
    expect(face.getAttribute("aria-haspopup")).toBe("menu");
    expect(face.getAttribute("aria-expanded")).toBe("false");
    fireEvent.click(face);
    expect(face.getAttribute("aria-expanded")).toBe("true");
    const item = screen.getByRole("menuitem", { name: "Follow Ada" });
    expect(document.activeElement).toBe(item);
    fireEvent.click(item);
    expect(screen.queryByRole("menu")).toBeNull();
    expect(scrolled).toEqual(["risks"]);
    expect(banner()?.dataset.following).toBe("ada");
    expect(screen.getByRole("status").textContent).toContain("Following Ada");
    expect(banner()?.style.getPropertyValue("--hn-user-color")).toBe("#e76f51");
    expect(face.classList.contains("hn-face--followed")).toBe(true);
    // Your own face offers nothing to follow.
    expect(screen.getByRole("img", { name: "Me (you)" })).toBeTruthy();
  });

  it("keeps up as they move, and only scrolls when their location changes", () => {
    render(<Room />);
    joinAs(net, room());
    followAda();
    act(() => net.last.push(diff(1, 2, { updated: [u("ada", 2, { name: "Ada", location: "intro" })] })));
    act(() => net.last.push(diff(2, 3, { updated: [u("ada", 2, { name: "Ada", location: "intro", tabs: 2 })] })));
    expect(scrolled).toEqual(["risks", "intro"]);
  });

  it("stops with one click on the banner", () => {
    render(<Room />);
    joinAs(net, room());
    followAda();
    fireEvent.click(screen.getByRole("button", { name: "Stop following" }));
    expect(banner()).toBeNull();
    act(() => net.last.push(diff(1, 2, { updated: [u("ada", 2, { name: "Ada", location: "intro" })] })));
    expect(scrolled).toEqual(["risks"]);
  });

  it.each([
    ["the wheel", () => window.dispatchEvent(new WheelEvent("wheel"))],
    ["a touch that scrolls", () => window.dispatchEvent(new Event("touchmove"))],
    ["a scroll key", () => window.dispatchEvent(new KeyboardEvent("keydown", { key: "PageDown" }))],
    ["Escape", () => window.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape" }))],
  ])("scrolling yourself stops it: %s", (_, act_) => {
    render(<Room />);
    joinAs(net, room());
    followAda();
    act(act_);
    expect(banner()).toBeNull();
  });

  it("a press on the page's scroll bar stops it, a press in the page does not", () => {
    const root = document.documentElement;
    vi.spyOn(root, "clientWidth", "get").mockReturnValue(1000);
    vi.spyOn(root, "clientHeight", "get").mockReturnValue(700);
    render(<Room />);
    joinAs(net, room());
    followAda();
    fireEvent.pointerDown(document.body, { clientX: 500, clientY: 300 });
    expect(banner()).not.toBeNull();
    fireEvent.pointerDown(root, { clientX: 1005, clientY: 300 });
    expect(banner()).toBeNull();
  });

  it("typing in a field does not stop it", () => {
    render(
      <Room>
        <textarea aria-label="notes" />
      </Room>,
    );
    joinAs(net, room());
    followAda();
    fireEvent.keyDown(screen.getByRole("textbox"), { key: " " });
    expect(banner()).not.toBeNull();
  });

  it("stops when the followed person leaves", () => {
    render(<Room />);
    joinAs(net, room());
    followAda();
    act(() => net.last.push(diff(1, 2, { left: ["ada"] })));
    expect(banner()).toBeNull();
  });

  it("the menu of a followed face offers to stop", () => {
    render(<Room />);
    joinAs(net, room());
    followAda();
    fireEvent.click(screen.getByRole("button", { name: "Ada" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Stop following Ada" }));
    expect(banner()).toBeNull();
  });

  it("the menu closes on Escape (focus back on the face) and on a press elsewhere", () => {
    render(<Room />);
    joinAs(net, room());
    const face = screen.getByRole("button", { name: "Ada" });
    fireEvent.click(face);
    fireEvent.keyDown(screen.getByRole("menu"), { key: "Escape" });
    expect(screen.queryByRole("menu")).toBeNull();
    expect(document.activeElement).toBe(face);
    fireEvent.click(face);
    fireEvent.pointerDown(document.body);
    expect(screen.queryByRole("menu")).toBeNull();
  });

  it("onFollow replaces the scrolling", () => {
    const onFollow = vi.fn();
    render(<Room onFollow={onFollow} />);
    joinAs(net, room());
    followAda();
    expect(onFollow).toHaveBeenCalledWith("risks", expect.objectContaining({ id: "ada" }));
    expect(scrolled).toEqual([]);
  });

  it("useFollow follows by id and says whom; yourself and strangers are refused", () => {
    let api: ReturnType<typeof useFollow> | undefined;
    function Probe() {
      api = useFollow();
      return <p data-testid="f">{api.following?.name ?? "-"}</p>;
    }
    render(
      <Room>
        <Probe />
      </Room>,
    );
    joinAs(net, room());
    act(() => api!.follow("me"));
    act(() => api!.follow("nobody"));
    expect(screen.getByTestId("f").textContent).toBe("-");
    act(() => api!.follow("ada"));
    expect(screen.getByTestId("f").textContent).toBe("Ada");
    act(() => api!.stop());
    expect(screen.getByTestId("f").textContent).toBe("-");
  });

  it("followBanner={false} leaves the banner to the app", () => {
    let api: ReturnType<typeof useFollow> | undefined;
    function Probe() {
      api = useFollow();
      return null;
    }
    render(
      <PresenceProvider
        room="lobby"
        followBanner={false}
        options={{ WebSocket: net.WebSocket, tabId: "me", environment: noBrowser }}
      >
        <Probe />
      </PresenceProvider>,
    );
    joinAs(net, room());
    act(() => api!.follow("ada"));
    expect(api!.following?.id).toBe("ada");
    expect(banner()).toBeNull();
  });
});
