/**
 * @herenow/client: framework-free presence for one room.
 *
 * ```ts
 * const client = new PresenceClient({ room: "design-review", user: { name: "Ada" } });
 * client.subscribe(() => render(client.getSnapshot()));
 * client.connect();
 * ```
 */
export * from "./protocol";
export * from "./roster";
export * from "./activity";
export * from "./attention";
export * from "./recent";
export * from "./backoff";
export * from "./typing";
export * from "./identity";
export * from "./client";
