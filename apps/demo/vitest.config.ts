import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";
import { sourceAliases } from "../../packages/aliases";

export default defineConfig({
  plugins: [react()],
  resolve: { alias: sourceAliases },
  test: { environment: "happy-dom", include: ["src/**/*.test.{ts,tsx}"], restoreMocks: true },
});
