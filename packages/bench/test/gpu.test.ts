/**
 * The benchmark against the real kernel, on a machine with a CUDA GPU; skipped elsewhere.
 * Self-contained so that it can be bundled for a GPU machine.
 */
import { describe, expect, it } from "vitest";
import { type KernelLoadResult, loadKernel } from "../src/kernel-api.js";
import { runBenchmark } from "../src/measure.js";
import { rowFigures, summarizeModels } from "../src/report.js";
import { parseResults } from "../src/results.js";
import { fp16WeightBytes, packedWeightBytes } from "../src/shapes.js";

const kernel: KernelLoadResult = await loadKernel();
if (!kernel.ok) console.warn(`GPU benchmark tests skipped: ${kernel.reason.split("\n")[0]}`);

describe.skipIf(!kernel.ok)("runBenchmark on the GPU", () => {
  it("measures both sides with sane figures on a small model set", () => {
    if (!kernel.ok) return;
    const device = kernel.api.devices()[0];
    const results = parseResults(
      runBenchmark(kernel.api, {
        modelSets: [
          {
            id: "small",
            title: "Small",
            source: "test",
            layers: [
              { layer: "a", k: 4096, n: 4096 },
              { layer: "b", k: 11008, n: 4096 },
            ],
          },
        ],
        batchSizes: [1, 16, 128],
        groupsizes: [128, -1],
        samples: 5,
        seed: Math.floor(Math.random() * 2 ** 32),
      }),
    );
    expect(results.meta.device.smCount).toBe(device.smCount);
    // A device-to-device copy on any supported GPU: between 100 GB/s and 20 TB/s.
    expect(results.meta.roofline.gbps).toBeGreaterThan(100);
    expect(results.meta.roofline.gbps).toBeLessThan(20_000);
    for (const row of results.rows) {
      expect(row.fp16, `${row.layer} m=${row.m}`).not.toBeNull();
      if (row.trirun === null) {
        console.warn(
          `trirunMatmul failed for k=${row.k} n=${row.n} m=${row.m} g=${row.groupsize}: ${row.error}`,
        );
        continue;
      }
      const f = rowFigures(row, results.meta.roofline.gbps);
      // Nothing streams weights faster than about 1.3x the copy bandwidth (L2 effects aside, weights are cold).
      expect(f.fp16WeightGBps ?? 0).toBeLessThan(1.3 * results.meta.roofline.gbps);
      expect(f.weightGBps ?? 0).toBeLessThan(1.3 * results.meta.roofline.gbps);
      expect(row.trirun.weightCopies * packedWeightBytes(row.k, row.n, row.groupsize)).toBeGreaterThan(
        4 * device.l2Bytes,
      );
      expect((row.fp16?.weightCopies ?? 0) * fp16WeightBytes(row.k, row.n)).toBeGreaterThan(
        4 * device.l2Bytes,
      );
      expect(row.config).not.toBeNull();
    }
    expect(summarizeModels(results).length).toBe(6);
  });
});
