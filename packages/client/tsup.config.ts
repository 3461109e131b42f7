// The published build: one ESM file and one bundled `.d.ts` (tsup 8.5: esbuild for the
// JavaScript, rollup-plugin-dts for the types). tsup 8.5 rather than tsup 9 or tsdown,
// which need Node 22.18, while the workspace supports Node 20.19.
import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: "esm",
  target: "es2022",
  platform: "neutral",
  tsconfig: "tsconfig.build.json",
  dts: true,
  clean: true,
});
