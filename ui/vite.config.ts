import { defineConfig } from "vite";

// The bundle goes into the Python package (src/striate/server/ui_dist), which ships it in the wheel.
export default defineConfig({
  base: "/",
  build: {
    outDir: "../src/striate/server/ui_dist",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
});
