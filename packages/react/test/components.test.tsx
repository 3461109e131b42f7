import type { ActivityEntry, User } from "@herenow/client";
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { ActivityLog } from "../src/ActivityLog";
import { TypingIndicator } from "../src/TypingIndicator";

const u = (id: string, name: string): User => ({
  id,
  name,
  state: {},
  tabs: 1,
  since: 0,
  status: "active",
  statusSince: 0,
});
const entry = (seq: number, kind: "joined" | "left", user: User): ActivityEntry => ({
  seq,
  kind,
  user,
  at: Date.UTC(2025, 0, 1, 9, seq),
});

afterEach(cleanup);

describe("<TypingIndicator>", () => {
  const live = () => document.querySelector<HTMLElement>(".hn-typing")!;

  it("stays an empty live region when nobody types", () => {
    render(<TypingIndicator users={[]} />);
    expect(live().getAttribute("aria-live")).toBe("polite");
    expect(live().textContent).toBe("");
  });

  it.each([
    [[u("a", "Ada")], "Ada is typing…"],
    [[u("a", "Ada"), u("l", "Linus")], "Ada and Linus are typing…"],
    [[u("a", "Ada"), u("l", "Linus"), u("g", "Grace")], "3 people are typing…"],
  ])("phrases %#", (users, phrase) => {
    render(<TypingIndicator users={users} />);
    expect(live().textContent).toBe(phrase);
    expect(live().classList.contains("hn-typing--active")).toBe(true);
  });
});

describe("<ActivityLog>", () => {
  it("lists joins and leaves newest first, capped", () => {
    const entries = [
      entry(4, "left", u("l", "Linus")),
      entry(3, "joined", u("g", "Grace")),
      entry(2, "joined", u("l", "Linus")),
      entry(1, "joined", u("a", "Ada")),
    ];
    render(<ActivityLog entries={entries} max={3} formatTime={(ms) => `t${new Date(ms).getUTCMinutes()}`} />);
    const items = screen.getAllByRole("listitem");
    expect(items.map((li) => li.textContent)).toEqual(["Linus leftt4", "Grace joinedt3", "Linus joinedt2"]);
    expect(items[0]?.dataset.kind).toBe("left");
    expect(screen.getByRole("list", { name: "Recent activity" })).toBeTruthy();
  });

  it("says so when there is nothing yet", () => {
    render(<ActivityLog entries={[]} emptyText="Quiet here." />);
    expect(screen.getByText("Quiet here.")).toBeTruthy();
    expect(screen.queryByRole("list")).toBeNull();
  });
});
