/** Results from a short run on the simulated GPU: fresh, random measurement data each run. */
import { runBenchmark } from "../src/measure.js";
import type { BenchResults } from "../src/results.js";
import { FIXED_MODEL_SETS, type ModelSet } from "../src/shapes.js";
import { SimulatedGpu } from "./simulated-gpu.js";

export function syntheticResults(
  options: { modelSets?: ModelSet[]; batchSizes?: number[] } = {},
): BenchResults {
  const gpu = new SimulatedGpu({
    seed: 1 + Math.floor(Math.random() * 1e6),
    jitter: 0.05,
    // A random device, so that each run draws different curves.
    dramBytesPerUs: 1.5e6 + Math.random() * 2e6,
    trirunFlopsPerUs: 100e6 + Math.random() * 300e6,
    l2Bytes: 2 * 1024 * 1024,
  });
  return runBenchmark(gpu.api(), {
    modelSets: options.modelSets ?? [
      ...FIXED_MODEL_SETS.filter((s) => s.id === "trilm-3.9b" || s.id === "llama2-7b"),
      {
        id: "custom",
        title: "Custom shapes",
        source: "--shape",
        layers: [{ layer: "1024x2048", k: 1024, n: 2048 }],
      },
    ],
    batchSizes: options.batchSizes ?? [1, 4, 16, 64, 256, 1024],
    groupsizes: [128, -1],
    samples: 3,
    minSampleUs: 20,
    warmupUs: 20,
    seed: Math.floor(Math.random() * 2 ** 32),
    uploadChunkElements: 1024 * 1024,
    copyBufferBytes: 64 * 1024 * 1024,
    hostClockUs: () => gpu.hostNow,
    command: "trirun-bench --simulated",
    commit: "0000000",
  });
}
