/**
 * How people are named on screen and to screen readers ("Ada, Linus and you").
 * Pure functions, so the phrasing is tested once and shared by every component.
 */
import type { User } from "@herenow/client";

/** A user's name for display: the hint when given, else "Guest" and a short tag of the id. */
export function displayName(user: Pick<User, "id" | "name">): string {
  const name = user.name?.trim();
  return name ? name : `Guest ${user.id.slice(-4)}`;
}

/** "Ada", "Ada and Linus", "Ada, Linus and Grace". */
export function joinNames(names: readonly string[]): string {
  if (names.length <= 1) return names[0] ?? "";
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** The accessible name of an avatar stack: "3 people here: Ada, Linus and you". */
export function stackLabel(users: readonly User[], selfId: string | null): string {
  if (users.length === 0) return "Nobody here yet";
  const others = users.filter((u) => u.id !== selfId).map(displayName);
  const names = users.some((u) => u.id === selfId) ? [...others, "you"] : others;
  const count = users.length === 1 ? "1 person here" : `${users.length} people here`;
  return `${count}: ${joinNames(names)}`;
}

/** "Ada is typing…", "Ada and Linus are typing…", "3 people are typing…"; "" for nobody. */
export function typingPhrase(users: readonly User[]): string {
  const names = users.map(displayName);
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${joinNames(names)} are typing…`;
  return `${names.length} people are typing…`;
}

/** Whether a user marked themselves away (the client does it for hidden tabs). */
export function isAway(user: User): boolean {
  return user.state.status === "away";
}
