// Hooks and components render on happy-dom, through @testing-library/react.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";
import { sourceAliases } from "../aliases";

export default defineConfig({
  plugins: [react()],
  resolve: { alias: sourceAliases },
  test: {
    environment: "happy-dom",
    include: ["test/**/*.test.{ts,tsx}"],
    restoreMocks: true,
  },
});
