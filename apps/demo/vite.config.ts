// The demo app. `make dev` runs herenow on :3000 and this dev server on :5173, which
// forwards /server (HTTP and WebSocket) to it; `make run` serves the built app from
// herenow itself, on one port.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";
import { sourceAliases } from "../../packages/aliases";

// 127.0.0.1 rather than localhost: Node may resolve localhost to ::1 while herenow listens on IPv4.
const server = process.env.HERENOW_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  plugins: [react()],
  // The packages' sources, in the dev server (hot reload) and in the build alike.
  resolve: { alias: sourceAliases },
  server: {
    port: 5173,
    proxy: { "/server": { target: server, ws: true, changeOrigin: true } },
  },
  build: { outDir: "dist", sourcemap: true },
});
