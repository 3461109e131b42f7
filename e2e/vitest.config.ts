// End-to-end: Debian's chromium (through playwright-core) against the real herenow binary.
// Needs HERENOW_BIN (default target/debug/herenow) and the built demo (apps/demo/dist);
// `make test-e2e` provides both. Screenshots go to test-artifacts/.
import { defineConfig } from "vitest/config";
import { sourceAliases } from "../packages/aliases";

export default defineConfig({
  resolve: { alias: sourceAliases },
  test: {
    environment: "node",
    include: ["**/*.e2e.ts"],
    // Every scenario starts its own servers on free loopback ports; one at a time keeps
    // the timings honest on a 2-core machine.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
