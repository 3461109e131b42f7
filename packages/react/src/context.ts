/**
 * The contexts `<PresenceProvider>` fills: the room's client, and the follower that follow
 * mode runs on. Their own module so components can read them without importing the
 * provider (which renders some of those components).
 */
import type { PresenceClient } from "@herenow/client";
import { createContext } from "react";
import type { Follower } from "./follow";

export const PresenceContext = createContext<PresenceClient | null>(null);
export const FollowContext = createContext<Follower | null>(null);
