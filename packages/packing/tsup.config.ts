import { defineConfig } from "tsup";

export default defineConfig({
  // index: browser-safe core; node: file I/O (Node only); cli/*: the trirun-pack / trirun-unpack
  // binaries (bin points at the ESM files; the shebang is kept from the source).
  entry: {
    index: "src/index.ts",
    node: "src/node/index.ts",
    "cli/pack": "src/cli/pack.ts",
    "cli/unpack": "src/cli/unpack.ts",
    // the worker of trirun-pack --threads (src/node/pack-pool.ts starts it by path)
    "pack-worker": "src/node/pack-worker.ts",
  },
  format: ["esm", "cjs"],
  dts: { entry: { index: "src/index.ts", node: "src/node/index.ts" } },
  sourcemap: true,
  clean: true,
  target: "node20",
  // import.meta.url in the CommonJS build too: the pack pool finds its worker file from it.
  shims: true,
});
