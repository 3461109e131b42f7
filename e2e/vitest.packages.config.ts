// The npm packages as published, in apps outside the workspace (packages.test.ts). Apart
// from the other end-to-end suites: it packs, installs and builds, which takes minutes.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["packages.test.ts"],
    // One step after another: the installs and builds share 2 cores with nothing else.
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
});
