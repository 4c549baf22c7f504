import { defineConfig } from "tsup";

export default defineConfig({
  // index: browser-safe core; node: file I/O (Node only); cli/*: the trirun-pack / trirun-unpack
  // binaries (bin points at the ESM files; the shebang is kept from the source).
  entry: {
    index: "src/index.ts",
    node: "src/node/index.ts",
    "cli/pack": "src/cli/pack.ts",
    "cli/unpack": "src/cli/unpack.ts",
  },
  format: ["esm", "cjs"],
  dts: { entry: { index: "src/index.ts", node: "src/node/index.ts" } },
  sourcemap: true,
  clean: true,
  target: "node20",
});
