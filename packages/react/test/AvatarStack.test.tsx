import type { RecentUser, User } from "@herenow/client";
import { act, cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AvatarStack, EXIT_MS } from "../src/AvatarStack";

const u = (id: string, name: string, since: number, extra: Partial<User> = {}): User => ({
  id,
  name,
  state: {},
  tabs: 1,
  since,
  status: "active",
  statusSince: since,
  ...extra,
});

const me = u("me", "Me", 5);
const ada = u("ada", "Ada", 1);
const linus = u("linus", "Linus", 2);
const grace = u("grace", "Grace", 3);
const people = [ada, linus, grace, me, u("alan", "Alan", 6), u("ken", "Ken", 7), u("barbara", "Barbara", 8)];

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

const faces = () => [...document.querySelectorAll<HTMLElement>(".hn-face")];
const faceIds = () => faces().map((f) => f.dataset.presenceId);

describe("<AvatarStack>", () => {
  it("names everyone for assistive technology, you last", () => {
    // In screen order: newest first.
    render(<AvatarStack users={[me, u("ada", "Ada", 9), linus]} selfId="me" />);
    expect(screen.getByRole("group", { name: "3 people here: Ada, Linus and you" })).toBeTruthy();
  });

  it("shows yourself first with a ring, then the others newest on the left and on top", () => {
    render(<AvatarStack users={[me, ada, linus, grace]} selfId="me" />);
    expect(faceIds()).toEqual(["me", "grace", "linus", "ada"]);
    const z = faces().map((f) => Number(f.style.zIndex));
    expect([...z].sort((a, b) => b - a)).toEqual(z); // left ones drawn over right ones
    const self = screen.getByRole("img", { name: "Me (you)" });
    expect(self.classList.contains("hn-face--self")).toBe(true);
    expect(screen.getByRole("img", { name: "Ada" }).classList.contains("hn-face--self")).toBe(false);
  });

  it("puts the oldest others behind a +N chip and keeps you visible", () => {
    render(<AvatarStack users={people} selfId="me" max={5} />);
    expect(faceIds()).toEqual(["me", "barbara", "ken", "alan", "grace"]);
    const chip = screen.getByRole("img", { name: "2 more: Linus and Ada" });
    expect(chip.textContent).toBe("+2");
    expect(Number(chip.style.zIndex)).toBeGreaterThan(Math.max(...faces().map((f) => Number(f.style.zIndex))));
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe(
      "7 people here: Barbara, Ken, Alan, Grace, Linus, Ada and you",
    );
  });

  it("shows no chip when everyone fits", () => {
    render(<AvatarStack users={people.slice(0, 5)} selfId="me" max={5} />);
    expect(faces()).toHaveLength(5);
    expect(document.querySelector(".hn-chip")).toBeNull();
  });

  it("the chip's tooltip lists the rest, on hover and on keyboard focus", () => {
    render(<AvatarStack users={people} selfId="me" max={3} />);
    const chip = screen.getByRole("img", { name: /more/ });
    expect(screen.queryByRole("tooltip")).toBeNull();
    fireEvent.mouseEnter(chip);
    const tip = screen.getByRole("tooltip");
    expect(
      within(tip)
        .getAllByRole("listitem")
        .map((li) => li.textContent),
    ).toEqual(["Alan", "Grace", "Linus", "Ada"]);
    expect(chip.getAttribute("aria-describedby")).toBe(tip.id);
    fireEvent.mouseLeave(chip);
    expect(screen.queryByRole("tooltip")).toBeNull();
    act(() => chip.focus());
    expect(screen.getByRole("tooltip").textContent).toContain("Alan");
  });

  it("a face shows its name in a tooltip on hover and on focus, Escape hides it", () => {
    render(<AvatarStack users={[me, ada]} selfId="me" />);
    const face = screen.getByRole("img", { name: "Ada" });
    expect(face.tabIndex).toBe(0);
    fireEvent.mouseEnter(face);
    expect(screen.getByRole("tooltip").textContent).toBe("Ada");
    fireEvent.mouseLeave(face);
    act(() => face.focus());
    expect(screen.getByRole("tooltip").textContent).toBe("Ada");
    fireEvent.keyDown(face, { key: "Escape" });
    expect(screen.queryByRole("tooltip")).toBeNull();
    act(() => screen.getByRole("img", { name: "Me (you)" }).focus());
    expect(screen.getByRole("tooltip").textContent).toBe("Me · you");
  });

  it("badges a face that is away and says so, with how long in the tooltip", () => {
    vi.useFakeTimers({ now: 10 * 60_000 });
    render(
      <AvatarStack
        users={[me, u("ada", "Ada", 1, { status: "away", statusSince: 5 * 60_000, tabs: 2 })]}
        selfId="me"
      />,
    );
    const face = screen.getByRole("img", { name: "Ada, away" });
    expect(face.classList.contains("hn-face--away")).toBe(true);
    expect(face.dataset.status).toBe("away");
    expect(face.querySelector(".hn-face__badge")).not.toBeNull();
    fireEvent.mouseEnter(face);
    expect(screen.getByRole("tooltip").textContent).toBe("Ada · away 5 min · 2 tabs");
  });

  it("dims an idle face without a badge; an active face is neither", () => {
    render(
      <AvatarStack users={[me, u("ada", "Ada", 1, { status: "idle", statusSince: Date.now() }), linus]} selfId="me" />,
    );
    const idle = screen.getByRole("img", { name: "Ada, idle" });
    expect(idle.classList.contains("hn-face--idle")).toBe(true);
    expect(idle.querySelector(".hn-face__badge")).toBeNull();
    fireEvent.mouseEnter(idle);
    expect(screen.getByRole("tooltip").textContent).toBe("Ada · idle"); // under a minute: no duration
    const active = screen.getByRole("img", { name: "Linus" });
    expect(active.className).not.toMatch(/idle|away/);
  });

  it("names your own status too", () => {
    render(<AvatarStack users={[u("me", "Me", 5, { status: "away" })]} selfId="me" />);
    expect(screen.getByRole("img", { name: "Me (you), away" })).toBeTruthy();
  });

  it("draws a generated face without an avatar URL, and the image when given", () => {
    render(
      <AvatarStack
        users={[ada, u("linus", "Linus", 2, { avatar: "https://example.com/l.png" })]}
        selfId={null}
        size={40}
      />,
    );
    const [linusFace, adaFace] = faces();
    expect(adaFace?.querySelector("svg")).not.toBeNull();
    expect(adaFace?.querySelector("img")).toBeNull();
    const img = linusFace?.querySelector("img");
    expect(img?.getAttribute("src")).toBe("https://example.com/l.png");
    expect(screen.getByRole("group").style.getPropertyValue("--hn-size")).toBe("40px");
  });

  it("falls back to a generated face when the image fails", () => {
    render(
      <AvatarStack users={[u("linus", "Linus", 2, { avatar: "https://example.com/missing.png" })]} selfId={null} />,
    );
    fireEvent.error(document.querySelector("img")!);
    expect(document.querySelector("img")).toBeNull();
    expect(document.querySelector(".hn-face svg")).not.toBeNull();
  });

  it("can leave yourself out", () => {
    render(<AvatarStack users={[me, ada]} selfId="me" showSelf={false} />);
    expect(faceIds()).toEqual(["ada"]);
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("1 person here: Ada");
  });

  it("lets a face that leaves play its exit animation, then removes it", () => {
    vi.useFakeTimers();
    const { rerender } = render(<AvatarStack users={[me, ada, linus]} selfId="me" />);
    rerender(<AvatarStack users={[me, ada]} selfId="me" />);
    const leaving = document.querySelector('[data-presence-id="linus"]');
    expect(leaving?.classList.contains("hn-face--leaving")).toBe(true);
    expect(faceIds()).toEqual(["me", "linus", "ada"]); // where it was
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("2 people here: Ada and you");
    act(() => vi.advanceTimersByTime(EXIT_MS));
    expect(faceIds()).toEqual(["me", "ada"]);
  });

  it("removes a face at once when reduced motion is asked for", () => {
    const matchMedia = vi.fn((query: string) => ({
      matches: query.includes("reduce"),
      media: query,
      addEventListener: () => {},
      removeEventListener: () => {},
    }));
    vi.stubGlobal("matchMedia", matchMedia);
    try {
      const { rerender } = render(<AvatarStack users={[me, ada, linus]} selfId="me" />);
      rerender(<AvatarStack users={[me, ada]} selfId="me" />);
      expect(faceIds()).toEqual(["me", "ada"]);
      expect(matchMedia).toHaveBeenCalledWith("(prefers-reduced-motion: reduce)");
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("a face that comes back while leaving is simply there again", () => {
    vi.useFakeTimers();
    const { rerender } = render(<AvatarStack users={[me, ada, linus]} selfId="me" />);
    rerender(<AvatarStack users={[me, ada]} selfId="me" />);
    rerender(<AvatarStack users={[me, ada, linus]} selfId="me" />);
    expect(document.querySelectorAll(".hn-face--leaving")).toHaveLength(0);
    act(() => vi.advanceTimersByTime(EXIT_MS * 2));
    expect(faceIds()).toEqual(["me", "linus", "ada"]);
  });
});

describe("<AvatarStack> and who recently left", () => {
  const T = Date.UTC(2025, 0, 1, 9);
  const left = (user: User, agoMs: number): RecentUser => ({ user, leftAt: T - agoMs });

  it("keeps a face that left greyed, says when, and leaves it out of the count", () => {
    vi.useFakeTimers({ now: T });
    render(<AvatarStack users={[me, ada]} recent={[left(linus, 60_000)]} selfId="me" />);
    const face = screen.getByRole("img", { name: "Linus, left 1 minute ago" });
    expect(face.classList.contains("hn-face--left")).toBe(true);
    expect(face.dataset.status).toBe("left");
    expect(faceIds()).toEqual(["me", "ada", "linus"]); // after the people here
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("2 people here: Ada and you");
    fireEvent.mouseEnter(face);
    expect(screen.getByRole("tooltip").textContent).toBe("Linus · left 1 min ago");
  });

  it("says 'just now' at first and updates the phrase as time goes by", () => {
    vi.useFakeTimers({ now: T });
    render(<AvatarStack users={[me]} recent={[left(linus, 0)]} selfId="me" />);
    expect(screen.getByRole("img", { name: "Linus, left just now" })).toBeTruthy();
    act(() => vi.advanceTimersByTime(120_000));
    expect(screen.getByRole("img", { name: "Linus, left 2 minutes ago" })).toBeTruthy();
  });

  it("only takes room nobody here needs: no face that left when the chip is out", () => {
    render(<AvatarStack users={people} recent={[left(u("x", "X", 0), 1)]} selfId="me" max={5} />);
    expect(document.querySelector(".hn-face--left")).toBeNull();
    render(<AvatarStack users={[me, ada]} recent={[left(linus, 1), left(grace, 2)]} selfId="me" max={3} />);
    expect([...document.querySelectorAll<HTMLElement>(".hn-face--left")].map((f) => f.dataset.presenceId)).toEqual([
      "linus",
    ]);
  });

  it("someone here is never also shown as left, and showRecent={false} hides them all", () => {
    render(<AvatarStack users={[me, ada]} recent={[left(ada, 1)]} selfId="me" />);
    expect(faceIds()).toEqual(["me", "ada"]);
    cleanup();
    render(<AvatarStack users={[me]} recent={[left(ada, 1)]} selfId="me" showRecent={false} />);
    expect(faceIds()).toEqual(["me"]);
  });

  it("a face that leaves the room greys in place, without an exit animation; expiring plays it", () => {
    vi.useFakeTimers({ now: T });
    const { rerender } = render(<AvatarStack users={[me, ada, linus]} recent={[]} selfId="me" />);
    rerender(<AvatarStack users={[me, ada]} recent={[left(linus, 0)]} selfId="me" />);
    const face = document.querySelector('[data-presence-id="linus"]')!;
    expect(face.classList.contains("hn-face--left")).toBe(true);
    expect(face.classList.contains("hn-face--leaving")).toBe(false);
    rerender(<AvatarStack users={[me, ada]} recent={[]} selfId="me" />);
    expect(document.querySelector('[data-presence-id="linus"]')?.classList.contains("hn-face--leaving")).toBe(true);
    act(() => vi.advanceTimersByTime(EXIT_MS));
    expect(faceIds()).toEqual(["me", "ada"]);
  });
});

describe("<AvatarStack location>", () => {
  const at = (user: User, location?: string): User => (location ? { ...user, location } : user);

  it("shows only the people at that location, and counts only them", () => {
    const users = [at(me, "intro"), at(ada, "intro"), at(linus, "risks"), grace];
    render(<AvatarStack users={users} selfId="me" location="intro" />);
    expect(faceIds()).toEqual(["me", "ada"]);
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("2 people here: Ada and you");
    expect(screen.getByRole("group").dataset.location).toBe("intro");
  });

  it("shows nobody when nobody is there", () => {
    render(<AvatarStack users={[at(ada, "risks")]} selfId="me" location="intro" />);
    expect(faces()).toHaveLength(0);
    expect(screen.getByRole("group").getAttribute("aria-label")).toBe("Nobody here yet");
  });

  it("shows who left from that location only", () => {
    const recent = [
      { user: at(linus, "intro"), leftAt: Date.now() },
      { user: at(grace, "risks"), leftAt: Date.now() },
    ];
    render(<AvatarStack users={[at(me, "intro")]} recent={recent} selfId="me" location="intro" />);
    expect(faceIds()).toEqual(["me", "linus"]);
  });
});
