// The Vercel checks (`make test-vercel`): what `vercel build` wrote to .vercel/output, and
// the demo through `vercel dev -L`. Apart from the other end-to-end tests because each
// needs the Vercel CLI's step before or around it.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["vercel/*.vercel.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    // `vercel dev` compiles the function (debug) before it serves anything.
    hookTimeout: 600_000,
  },
});
