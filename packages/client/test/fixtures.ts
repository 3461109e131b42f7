// Reads the golden protocol messages shared with the Rust tests (fixtures/protocol/).
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// A string, not a URL object: happy-dom replaces the global URL class.
const root = join(dirname(fileURLToPath(import.meta.url)), "../../../fixtures/protocol") + "/";

export interface Fixture {
  /** `v2/server.diff.json` */
  name: string;
  direction: "client" | "server";
  text: string;
}

export function fixtures(): Fixture[] {
  const out: Fixture[] = [];
  for (const version of ["v1", "v2"]) {
    for (const file of readdirSync(root + version).sort()) {
      if (!file.endsWith(".json")) continue;
      const direction = file.startsWith("client.") ? "client" : "server";
      out.push({ name: `${version}/${file}`, direction, text: readFileSync(`${root}${version}/${file}`, "utf8") });
    }
  }
  return out;
}

/** One fixture, parsed: `fixture("v2/server.presence.json")`. */
export function fixture<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(root + name, "utf8")) as T;
}
