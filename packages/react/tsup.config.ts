// The published build: one ESM file and one bundled `.d.ts` (tsup 8.5, as in
// packages/client), plus `dist/styles.css`. `react`, `react-dom`, `@herenow/client` and
// `boring-avatars` stay external (tsup leaves dependencies and peers out of the bundle), so
// an app has one React and one client. The `.d.ts` build reads `@herenow/client`'s
// published types, so build packages/client first.
import { copyFile } from "node:fs/promises";
import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: "esm",
  target: "es2022",
  platform: "neutral",
  tsconfig: "tsconfig.build.json",
  dts: true,
  clean: true,
  // Every export is a hook or a component that needs the browser's React: the directive lets
  // a React Server Component (Next.js App Router) import them without a wrapper of its own.
  banner: { js: '"use client";' },
  onSuccess: () => copyFile("src/styles.css", "dist/styles.css"),
});
