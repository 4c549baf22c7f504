import { defineConfig } from "tsup";

export default defineConfig([
  {
    // Library entries: the measuring code and, separately, the chart renderer.
    entry: { index: "src/index.ts", chart: "src/chart.ts", cli: "src/cli.ts" },
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "node20",
  },
  {
    // The executable (ESM only; keeps its shebang).
    entry: { bin: "src/bin.ts" },
    format: ["esm"],
    sourcemap: true,
    clean: false,
    target: "node20",
  },
]);
