import { defineConfig } from "tsup";

export default defineConfig({
  // index: browser-safe core; node: file I/O; cli/*: the trirun-pack / trirun-unpack binaries.
  entry: {
    index: "src/index.ts",
    node: "src/node/index.ts",
  },
  format: ["esm", "cjs"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20",
});
