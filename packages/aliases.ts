// Inside this workspace `@herenow/client` and `@herenow/react` resolve to their TypeScript
// sources, so the demo's dev server hot-reloads on them, `vite build` and the Vitest suites
// need no package build first. (The root tsconfig's `paths` say the same to `tsc`.)
//
// Aliases rather than an export condition: a condition in the packages' `exports` would
// ship a pointer to `src/`, which the tarballs leave out, and a `development` condition is
// one that every Vite app's dev server turns on, so it would break our consumers.
import { fileURLToPath } from "node:url";
import type { Alias } from "vite";

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/** Vite/Vitest `resolve.alias` entries, exact specifiers only. */
export const sourceAliases: Alias[] = [
  { find: /^@herenow\/client$/, replacement: source("./client/src/index.ts") },
  { find: /^@herenow\/react$/, replacement: source("./react/src/index.ts") },
  { find: /^@herenow\/react\/styles\.css$/, replacement: source("./react/src/styles.css") },
];
