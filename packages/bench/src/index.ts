// The measuring library: shapes, statistics, timing, results and text reports.
// Charts (vega, resvg) are in the separate `@trirun/bench/chart` entry.
export * from "./cli.js";
export * from "./compare.js";
export * from "./kernel-api.js";
export * from "./measure.js";
export * from "./random.js";
export * from "./report.js";
export * from "./results.js";
export * from "./shapes.js";
export * from "./stats.js";
export * from "./targets.js";
export * from "./telemetry.js";
export * from "./telemetry-recorder.js";
