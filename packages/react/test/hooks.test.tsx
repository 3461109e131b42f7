import { PresenceClient } from "@herenow/client";
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { StrictMode, useRef } from "react";
import { renderToString } from "react-dom/server";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { diff, fakeSockets, u } from "../../client/test/fake-socket";
import { joinAs, noBrowser } from "./harness";
import { ActivityLog } from "../src/ActivityLog";
import { AvatarStack } from "../src/AvatarStack";
import { PresenceProvider, useOthers, useSelf, useStatus, useTyping } from "../src/hooks";
import { TypingIndicator } from "../src/TypingIndicator";

let net: ReturnType<typeof fakeSockets>;

beforeEach(() => {
  net = fakeSockets();
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function Room(props: { room?: string; name?: string; children: React.ReactNode }) {
  return (
    <PresenceProvider
      room={props.room ?? "lobby"}
      user={{ name: props.name ?? "Me" }}
      options={{ WebSocket: net.WebSocket, tabId: "me", environment: noBrowser, random: () => 0 }}
    >
      {props.children}
    </PresenceProvider>
  );
}

function Status() {
  return <p data-testid="status">{useStatus()}</p>;
}
function Self() {
  return <p data-testid="self">{useSelf()?.name ?? "-"}</p>;
}
function OtherNames() {
  const renders = useRef(0);
  renders.current += 1;
  const names = useOthers((others) => others.map((o) => o.name ?? o.id));
  return (
    <p data-testid="others" data-renders={renders.current}>
      {names.join(",")}
    </p>
  );
}

describe("<PresenceProvider> and hooks", () => {
  it("passes getToken through (the latest one) and tells the app on 4401", async () => {
    const onAuthError = vi.fn();
    const Signed = (props: { token: string }) => (
      <PresenceProvider
        room="lobby"
        getToken={() => props.token}
        onAuthError={onAuthError}
        options={{ WebSocket: net.WebSocket, tabId: "me", environment: noBrowser, random: () => 0 }}
      >
        <Status />
      </PresenceProvider>
    );
    const { rerender } = render(<Signed token="first.token.x" />);
    rerender(<Signed token="second.token.x" />);
    await act(async () => {
      await Promise.resolve();
      await Promise.resolve();
    });
    act(() => net.last.accept());
    expect(net.last.sentOfType("hello")[0]?.token).toBe("second.token.x");
    act(() => net.last.drop(4401, "invalid token"));
    expect(screen.getByTestId("status").textContent).toBe("closed");
    expect(onAuthError).toHaveBeenCalledWith(expect.objectContaining({ code: "unauthorized" }));
  });

  it("connects on mount and feeds status, self and others", () => {
    render(
      <Room>
        <Status />
        <Self />
        <OtherNames />
      </Room>,
    );
    expect(screen.getByTestId("status").textContent).toBe("connecting");
    expect(net.sockets).toHaveLength(1);
    expect(net.last.url).toBe("ws://localhost/server/ws/lobby");
    joinAs(net, [u("me", 1, { name: "Me" }), u("ada", 2, { name: "Ada" })]);
    expect(screen.getByTestId("status").textContent).toBe("open");
    expect(screen.getByTestId("self").textContent).toBe("Me");
    expect(screen.getByTestId("others").textContent).toBe("Ada");
    act(() => net.last.push(diff(1, 2, { joined: [u("linus", 3, { name: "Linus" })] })));
    expect(screen.getByTestId("others").textContent).toBe("Ada,Linus");
  });

  it("useOthers(selector) does not re-render when the selection is unchanged", () => {
    render(
      <Room>
        <OtherNames />
      </Room>,
    );
    joinAs(net, [u("me", 1), u("ada", 2, { name: "Ada" })]);
    const before = Number(screen.getByTestId("others").dataset.renders);
    act(() => net.last.push(diff(1, 2, { updated: [u("ada", 2, { name: "Ada", state: { cursor: 5 } })] })));
    act(() => net.last.push(diff(2, 3, { updated: [u("ada", 2, { name: "Ada", state: { cursor: 6 } })] })));
    expect(Number(screen.getByTestId("others").dataset.renders)).toBe(before);
    act(() => net.last.push(diff(3, 4, { updated: [u("ada", 2, { name: "Ada L." })] })));
    expect(screen.getByTestId("others").textContent).toBe("Ada L.");
  });

  it("the widgets read the provider's room", () => {
    render(
      <Room>
        <AvatarStack />
        <TypingIndicator />
        <ActivityLog />
      </Room>,
    );
    joinAs(net, [u("me", 1, { name: "Me" }), u("ada", 2, { name: "Ada" })]);
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("2 people here: Ada and you");
    act(() => net.last.push({ type: "event", roomId: "lobby", from: "ada", event: "typing", data: { typing: true } }));
    expect(screen.getByText("Ada is typing…")).toBeTruthy();
    act(() => net.last.push(diff(1, 2, { joined: [u("linus", 3, { name: "Linus" })] })));
    expect(screen.getByRole("listitem").textContent).toContain("Linus joined");
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("3 people here: Linus, Ada and you");
  });

  it("useTyping sends one debounced signal for many keystrokes", () => {
    vi.useFakeTimers();
    function Box() {
      const { onInput, stop } = useTyping();
      return <input aria-label="message" onInput={onInput} onBlur={stop} />;
    }
    render(
      <Room>
        <Box />
      </Room>,
    );
    joinAs(net);
    const box = screen.getByRole("textbox", { name: "message" });
    for (let i = 0; i < 12; i++) fireEvent.input(box, { target: { value: "x".repeat(i + 1) } });
    fireEvent.blur(box);
    expect(net.last.sentOfType("event").map((e) => e.data)).toEqual([{ typing: true }, { typing: false }]);
  });

  it("a new name is sent as a hint update, without reconnecting", () => {
    vi.useFakeTimers();
    const { rerender } = render(
      <Room name="Ada">
        <Self />
      </Room>,
    );
    joinAs(net, [u("me", 1, { name: "Ada" })]);
    expect(net.last.sentOfType("hello")[0]?.user).toEqual({ name: "Ada" });
    act(() => vi.advanceTimersByTime(1000));
    rerender(
      <Room name="Ada L.">
        <Self />
      </Room>,
    );
    expect(net.sockets).toHaveLength(1);
    expect(net.last.sentOfType("state")).toEqual([{ type: "state", state: {}, user: { name: "Ada L." } }]);
    expect(screen.getByTestId("self").textContent).toBe("Ada L.");
  });

  it("leaves with 1000 on unmount, and a new room means a new connection", async () => {
    vi.useFakeTimers();
    const { rerender, unmount } = render(
      <Room room="lobby">
        <Status />
      </Room>,
    );
    joinAs(net);
    rerender(
      <Room room="design-review">
        <Status />
      </Room>,
    );
    act(() => vi.advanceTimersByTime(1));
    expect(net.sockets[0]?.closedWith?.code).toBe(1000);
    expect(net.sockets).toHaveLength(2);
    expect(net.last.url).toBe("ws://localhost/server/ws/design-review");
    unmount();
    act(() => vi.advanceTimersByTime(1));
    expect(net.last.closedWith?.code).toBe(1000);
  });

  it("StrictMode's double mount does not leave and rejoin", () => {
    vi.useFakeTimers();
    render(
      <StrictMode>
        <Room>
          <Status />
        </Room>
      </StrictMode>,
    );
    act(() => vi.advanceTimersByTime(10));
    const open = net.sockets.filter((s) => s.closedWith === null);
    expect(open).toHaveLength(1);
    expect(net.sockets.filter((s) => s.closedWith?.code === 1000)).toHaveLength(0);
  });

  it("hooks outside a provider say what is missing", () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect(() => render(<Status />)).toThrow(/PresenceProvider/);
  });
});

describe("server rendering", () => {
  it("renders an empty room and opens no socket", () => {
    const html = renderToString(
      <Room room="launch-plan">
        <Status />
        <AvatarStack />
        <OtherNames />
      </Room>,
    );
    expect(html).toContain("connecting");
    expect(html).toContain("Nobody here yet");
    expect(net.sockets).toHaveLength(0);
  });

  it("a given client is used as it is", () => {
    const client = new PresenceClient({ room: "x", tabId: "me", WebSocket: net.WebSocket, environment: noBrowser });
    render(
      <PresenceProvider room="ignored" client={client}>
        <Status />
      </PresenceProvider>,
    );
    expect(net.last.url).toBe("ws://localhost/server/ws/x");
  });
});
