import { describe, expect, it } from "vitest";
import type { BenchKernelApi } from "../src/kernel-api.js";
import { callsPerSample, planLayer, rotationCopies, runBenchmark } from "../src/measure.js";
import { rowFigures, summarizeModels } from "../src/report.js";
import { parseResults } from "../src/results.js";
import { fp16WeightBytes, type ModelSet, packedWeightBytes } from "../src/shapes.js";
import { SimulatedGpu, type SimulatedGpuSpec } from "./simulated-gpu.js";

const MiB = 1024 * 1024;

function smallSets(): ModelSet[] {
  return [
    {
      id: "tiny",
      title: "Tiny",
      source: "test",
      layers: [
        { layer: "a", k: 1024, n: 1024 },
        { layer: "b", k: 2048, n: 512 },
      ],
    },
    { id: "wide", title: "Wide", source: "test", layers: [{ layer: "c", k: 512, n: 4096 }] },
  ];
}

function run(gpu: SimulatedGpu, overrides: Partial<Parameters<typeof runBenchmark>[1]> = {}) {
  return runBenchmark(gpu.api(), {
    modelSets: smallSets(),
    batchSizes: [1, 16, 256],
    groupsizes: [128, -1],
    samples: 7,
    minSampleUs: 50,
    warmupUs: 100,
    seed: Math.floor(Math.random() * 2 ** 32),
    uploadChunkElements: 64 * 1024,
    copyBufferBytes: 64 * MiB,
    hostClockUs: () => gpu.hostNow,
    ...overrides,
  });
}

describe("rotationCopies", () => {
  it("gives the fewest copies whose total bytes exceed factor x L2", () => {
    for (let trial = 0; trial < 200; trial++) {
      const bytes = 1 + Math.floor(Math.random() * 300 * MiB);
      const l2 = Math.floor(Math.random() * 100 * MiB);
      const factor = [1, 2, 4, 8][trial % 4];
      const copies = rotationCopies(bytes, l2, factor);
      expect(copies).toBeGreaterThanOrEqual(1);
      expect(copies * bytes).toBeGreaterThan(factor * l2);
      if (copies > 1) expect((copies - 1) * bytes).toBeLessThanOrEqual(factor * l2);
    }
    expect(rotationCopies(300 * MiB, 50 * MiB)).toBe(1);
    expect(() => rotationCopies(0, 50 * MiB)).toThrow(RangeError);
    expect(() => rotationCopies(10, Number.NaN)).toThrow(RangeError);
  });

  it("sizes samples to the requested minimum duration", () => {
    expect(callsPerSample(3, 200)).toBe(67);
    expect(callsPerSample(500, 200)).toBe(1);
    expect(callsPerSample(0.001, 200)).toBe(512);
  });
});

describe("planLayer", () => {
  it("rotates both sides past 4x L2 when memory allows", () => {
    const plan = planLayer(4096, 4096, 16, [128, -1], "cold", 50 * MiB, 4, 80e9);
    expect(plan.fp16Copies * fp16WeightBytes(4096, 4096)).toBeGreaterThan(200 * MiB);
    expect(plan.packedCopies * packedWeightBytes(4096, 4096, -1)).toBeGreaterThan(200 * MiB);
    expect(planLayer(4096, 4096, 16, [128], "hot", 50 * MiB, 4, 80e9)).toMatchObject({
      fp16Copies: 1,
      packedCopies: 1,
    });
  });

  it("reduces copies to fit the free memory, and says so when even one copy does not fit", () => {
    const plan = planLayer(4096, 4096, 16, [128], "cold", 50 * MiB, 4, 150e6);
    expect(plan.bytes).toBeLessThanOrEqual(0.9 * 150e6);
    expect(plan.fp16Copies).toBeGreaterThanOrEqual(1);
    expect(() => planLayer(16384, 16384, 4096, [128], "cold", 50 * MiB, 4, 100e6)).toThrow(/device memory/);
  });
});

describe("runBenchmark on a simulated GPU", () => {
  it("times each side at its true per-call GPU cost despite slow launches, with cold weights", () => {
    const spec: Partial<SimulatedGpuSpec> = {
      jitter: 0.02,
      seed: 1 + Math.floor(Math.random() * 1e6),
      hostLaunchUs: 8,
    };
    const gpu = new SimulatedGpu(spec);
    const results = parseResults(JSON.parse(JSON.stringify(run(gpu))));
    expect(results.rows).toHaveLength(3 * 3 * 2);
    const l2 = gpu.spec.l2Bytes;

    for (const row of results.rows) {
      expect(row.error).toBeNull();
      const fp16Expected = SimulatedGpu.durationUs(gpu.spec, "gemmF16", row.m, row.k, row.n, 0, false);
      const trirunExpected = SimulatedGpu.durationUs(
        gpu.spec,
        "trirunMatmul",
        row.m,
        row.k,
        row.n,
        row.groupsize,
        false,
      );
      // Several of these calls take a fraction of the 8 us launch cost; the queue-filling
      // copy must hide it, or the median would be about 8 us.
      expect(row.fp16?.medianUs).toBeGreaterThan(fp16Expected * 0.97);
      expect(row.fp16?.medianUs).toBeLessThan(fp16Expected * 1.03);
      expect(row.trirun?.medianUs).toBeGreaterThan(trirunExpected * 0.97);
      expect(row.trirun?.medianUs).toBeLessThan(trirunExpected * 1.03);
      expect(row.trirun?.samples).toBe(7);
      expect(row.trirun?.launchBoundSamples).toBe(0);
      expect(row.fp16?.p10Us).toBeLessThanOrEqual(row.fp16?.medianUs ?? 0);
      expect(row.fp16?.p90Us).toBeGreaterThanOrEqual(row.fp16?.medianUs ?? 0);
      // Cold rotation: the copies of each side exceed 4x L2.
      expect((row.fp16?.weightCopies ?? 0) * fp16WeightBytes(row.k, row.n)).toBeGreaterThan(4 * l2);
      expect(
        (row.trirun?.weightCopies ?? 0) * packedWeightBytes(row.k, row.n, row.groupsize),
      ).toBeGreaterThan(4 * l2);
      expect(row.config).toMatchObject({ threadK: 128, sms: gpu.spec.smCount });

      const figures = rowFigures(row, results.meta.roofline.gbps);
      expect(figures.speedup).toBeCloseTo((row.fp16?.medianUs ?? 0) / (row.trirun?.medianUs ?? 1), 12);
      expect(figures.tflops).toBeCloseTo(
        (2 * row.m * row.k * row.n) / ((row.trirun?.medianUs ?? 1) * 1e6),
        12,
      );
    }
    // No call found its weights in the simulated L2.
    expect(gpu.calls.length).toBeGreaterThan(0);
    expect(gpu.calls.filter((c) => c.hitL2)).toHaveLength(0);
    // Calls cycle through the weight copies: no copy is reused before all others were used.
    for (const row of results.rows) {
      const fp16Keys = gpu.calls
        .filter((c) => c.op === "gemmF16" && c.k === row.k && c.n === row.n && c.m === row.m)
        .map((c) => c.weightKey);
      const trirunKeys = gpu.calls
        .filter(
          (c) =>
            c.op === "trirunMatmul" &&
            c.k === row.k &&
            c.n === row.n &&
            c.m === row.m &&
            c.groupsize === row.groupsize,
        )
        .map((c) => c.weightKey);
      for (const [keys, copies] of [
        [fp16Keys, row.fp16?.weightCopies ?? 0],
        [trirunKeys, row.trirun?.weightCopies ?? 0],
      ] as const) {
        expect(new Set(keys).size).toBe(Math.min(copies, keys.length));
        for (let i = copies; i < keys.length; i++) expect(keys[i]).toBe(keys[i - copies]);
        for (let i = 1; i < Math.min(copies, keys.length); i++) expect(keys[i]).not.toBe(keys[i - 1]);
      }
    }
    // Roofline: the simulated copy bandwidth.
    expect(results.meta.roofline.gbps / (gpu.spec.dramBytesPerUs / 1e3)).toBeGreaterThan(0.98);
    expect(results.meta.roofline.gbps / (gpu.spec.dramBytesPerUs / 1e3)).toBeLessThan(1.02);
    // Everything allocated was freed, and nothing was left zero-filled.
    expect(gpu.roots.size).toBe(0);
    expect(gpu.allocatedBytes).toBe(0);
    expect(gpu.allRoots.every((r) => r.zeroUploads === 0 && r.uploaded >= r.numel)).toBe(true);
  });

  it("sizes each sample from the GPU's time per call, not the host's launch rate", () => {
    // Calls of ~1-2 us launched at 8 us each: warm-up batches without a queue-filling copy run at
    // the host's pace, and samples sized from them held a fraction of minSampleUs of GPU time.
    const minSampleUs = 40 + Math.floor(Math.random() * 40);
    const gpu = new SimulatedGpu({ hostLaunchUs: 8, seed: 1 + Math.floor(Math.random() * 1e6) });
    const results = run(gpu, { minSampleUs, batchSizes: [1, 16], groupsizes: [128] });
    expect(results.rows.length).toBeGreaterThan(0);
    for (const row of results.rows) {
      for (const side of [row.fp16, row.trirun]) {
        expect(side).not.toBeNull();
        const gpuUsPerSample = (side?.callsPerSample ?? 0) * (side?.medianUs ?? 0);
        expect(gpuUsPerSample).toBeGreaterThanOrEqual(minSampleUs * 0.95);
        // ... and not much more: one call's worth at most, as callsPerSample rounds up.
        expect(gpuUsPerSample).toBeLessThan(minSampleUs * 1.05 + (side?.medianUs ?? 0));
        expect(side?.launchBoundSamples).toBe(0);
      }
    }
  });

  it("sums times over each model's layers for the per-model speedup", () => {
    const gpu = new SimulatedGpu({ seed: 1 + Math.floor(Math.random() * 1e6) });
    const results = run(gpu, { batchSizes: [4, 64] });
    const summaries = summarizeModels(results);
    expect(summaries).toHaveLength(2 * 2 * 2);
    for (const s of summaries) {
      const layers = smallSets().find((set) => set.id === s.model)?.layers ?? [];
      let fp16 = 0;
      let trirun = 0;
      let bytes = 0;
      for (const l of layers) {
        fp16 += SimulatedGpu.durationUs(gpu.spec, "gemmF16", s.m, l.k, l.n, 0, false);
        trirun += SimulatedGpu.durationUs(gpu.spec, "trirunMatmul", s.m, l.k, l.n, s.groupsize, false);
        bytes += packedWeightBytes(l.k, l.n, s.groupsize);
      }
      expect(s.speedup).toBeCloseTo(fp16 / trirun, 6);
      expect(s.weightGBps).toBeCloseTo(bytes / (trirun * 1e3), 3);
      expect(s.rooflineFraction).toBeCloseTo((s.weightGBps ?? 0) / results.meta.roofline.gbps, 12);
    }
  });

  it("keeps weights in L2 with --hot where they fit", () => {
    const gpu = new SimulatedGpu({ seed: 7 });
    const results = run(gpu, {
      mode: "hot",
      modelSets: [smallSets()[0]],
      batchSizes: [1],
      groupsizes: [128],
    });
    const small = results.rows.find((r) => r.layer === "a");
    expect(small?.fp16?.weightCopies).toBe(1);
    // fp16 weights of layer a are 2 MiB, below the 4 MiB L2: timed at L2 speed.
    const expected = SimulatedGpu.durationUs(gpu.spec, "gemmF16", 1, 1024, 1024, 0, true);
    expect(small?.fp16?.medianUs).toBeCloseTo(expected, 6);
    expect(results.meta.mode).toBe("hot");
  });

  it("lengthens the queue-filling copy when launches get slower than the warm-up showed", () => {
    const gpu = new SimulatedGpu({ seed: 9, hostLaunchUs: 4 });
    const api = gpu.api();
    let calls = 0;
    const slowing: BenchKernelApi = {
      ...api,
      gemmF16: (A, W, C, opts) => {
        // After the warm-up, each launch costs the host 40 us more than before.
        if (++calls > 40) gpu.hostNow += 40;
        api.gemmF16(A, W, C, opts);
      },
    };
    const results = runBenchmark(slowing, {
      modelSets: [{ id: "s", title: "S", source: "test", layers: [{ layer: "a", k: 1024, n: 1024 }] }],
      batchSizes: [1],
      groupsizes: [128],
      samples: 9,
      minSampleUs: 50,
      warmupUs: 50,
      uploadChunkElements: 64 * 1024,
      copyBufferBytes: 64 * MiB,
      hostClockUs: () => gpu.hostNow,
    });
    const [row] = results.rows;
    const expected = SimulatedGpu.durationUs(gpu.spec, "gemmF16", 1, 1024, 1024, 0, false);
    // 44 us of host time per call against about 2 us of GPU time: only the longer
    // copy keeps the timed calls back to back.
    expect(row.fp16?.medianUs).toBeCloseTo(expected, 6);
    expect(row.fp16?.launchBoundSamples).toBe(0);
  });

  it("records a kernel error in its row and carries on", () => {
    const gpu = new SimulatedGpu({ seed: 3 });
    const api = gpu.api();
    const failing: BenchKernelApi = {
      ...api,
      trirunMatmul: (A, B, s, C, opts) => {
        if (A.shape[0] === 16 && opts?.groupsize === -1)
          throw new RangeError("simulated: unsupported configuration");
        return api.trirunMatmul(A, B, s, C, opts);
      },
    };
    const results = runBenchmark(failing, {
      modelSets: [smallSets()[1]],
      batchSizes: [1, 16],
      groupsizes: [128, -1],
      samples: 3,
      minSampleUs: 20,
      warmupUs: 50,
      uploadChunkElements: 64 * 1024,
      copyBufferBytes: 64 * MiB,
      hostClockUs: () => gpu.hostNow,
    });
    const bad = results.rows.find((r) => r.m === 16 && r.groupsize === -1);
    expect(bad?.trirun).toBeNull();
    expect(bad?.error).toMatch(/unsupported configuration/);
    expect(results.rows.filter((r) => r.trirun !== null)).toHaveLength(3);
    const summary = summarizeModels(results).find((s) => s.m === 16 && s.groupsize === -1);
    expect(summary?.speedup).toBeNull();
    expect(gpu.allocatedBytes).toBe(0);
  });

  it("stops at its time limit and returns what it measured", () => {
    const gpu = new SimulatedGpu({ seed: 5 });
    const full = run(gpu, { groupsizes: [128] });
    expect(full.meta.stoppedEarly).toBe(false);
    const gpu2 = new SimulatedGpu({ seed: 5 });
    // The simulated host clock: about a third of the full run's host time.
    const limited = run(gpu2, { groupsizes: [128], timeLimitS: (gpu.hostNow / 3) * 1e-6 });
    expect(limited.meta.stoppedEarly).toBe(true);
    expect(limited.rows.length).toBeGreaterThan(0);
    expect(limited.rows.length).toBeLessThan(full.rows.length);
    expect(gpu2.allocatedBytes).toBe(0);
  });

  it("validates its options", () => {
    const gpu = new SimulatedGpu();
    expect(() => run(gpu, { modelSets: [] })).toThrow(/modelSets/);
    expect(() => run(gpu, { samples: 0 })).toThrow(/samples/);
    expect(() => run(gpu, { uploadChunkElements: 1000 })).toThrow(/uploadChunkElements/);
    expect(() => run(gpu, { sustainUs: -1 })).toThrow(/sustainUs/);
    expect(() => run(gpu, { sustainUs: Number.NaN })).toThrow(/sustainUs/);
  });
});

describe("sustained timing on a simulated GPU with a power cap", () => {
  // Compute-bound on the simulated GPU at every m here: cuBLAS demands 1.5x the cap at full clock,
  // TriRun 1.2x, so run alone they settle at clocks 1 / 1.5 and 1 / 1.2.
  const computeSet: ModelSet[] = [
    {
      id: "big",
      title: "Big",
      source: "test",
      layers: [
        { layer: "x", k: 2048, n: 2048 },
        { layer: "y", k: 2048, n: 1024 },
      ],
    },
  ];
  const tauUs = 2000;
  const powerRun = (gpu: SimulatedGpu, sustainUs: number) =>
    parseResults(
      JSON.parse(
        JSON.stringify(
          run(gpu, { modelSets: computeSet, batchSizes: [1024, 1536], groupsizes: [128], sustainUs }),
        ),
      ),
    );
  const expected = (gpu: SimulatedGpu, row: { m: number; k: number; n: number }) => {
    const { m, k, n } = row;
    const fp16 = SimulatedGpu.durationUs(gpu.spec, "gemmF16", m, k, n, 0, false);
    const trirun = SimulatedGpu.durationUs(gpu.spec, "trirunMatmul", m, k, n, 128, false);
    // The premise: both sides are compute-bound, so both run at the cap.
    expect(SimulatedGpu.callPower(gpu.spec, "gemmF16", m, k, n, 0, false)).toBe(1.5);
    expect(SimulatedGpu.callPower(gpu.spec, "trirunMatmul", m, k, n, 128, false)).toBe(1.2);
    return { fp16, trirun };
  };
  const seed = () => 1 + Math.floor(Math.random() * 1e6);

  it("times each side at the clock of its own power", () => {
    const gpu = new SimulatedGpu({ powerTauUs: tauUs, jitter: 0.01, seed: seed() });
    const results = powerRun(gpu, 20 * tauUs);
    expect(results.meta.sustainUs).toBe(20 * tauUs);
    expect(results.rows).toHaveLength(4);
    for (const row of results.rows) {
      const full = expected(gpu, row);
      const fp16Steady = full.fp16 / SimulatedGpu.steadyClock(1.5);
      const trirunSteady = full.trirun / SimulatedGpu.steadyClock(1.2);
      expect(row.fp16?.medianUs).toBeGreaterThan(fp16Steady * 0.97);
      expect(row.fp16?.medianUs).toBeLessThan(fp16Steady * 1.03);
      expect(row.trirun?.medianUs).toBeGreaterThan(trirunSteady * 0.97);
      expect(row.trirun?.medianUs).toBeLessThan(trirunSteady * 1.03);
      expect(row.fp16?.samples).toBe(7);
      expect(row.trirun?.launchBoundSamples).toBe(0);
      expect(row.fp16?.launchBoundSamples).toBe(0);
    }
    // The sides take turns going first along a layer's m and, at one m, from layer to layer: the second
    // side of a row is the last to run in it.
    const lastOp = (n: number, m: number) => gpu.calls.filter((c) => c.n === n && c.m === m).at(-1)?.op;
    expect(lastOp(2048, 1024)).toBe("trirunMatmul");
    expect(lastOp(2048, 1536)).toBe("gemmF16");
    expect(lastOp(1024, 1024)).toBe("gemmF16");
    expect(lastOp(1024, 1536)).toBe("trirunMatmul");
  });

  it("is what separates the sides: interleaved samples share one clock", () => {
    const gpu = new SimulatedGpu({ powerTauUs: tauUs, jitter: 0.01, seed: seed() });
    const results = powerRun(gpu, 0);
    expect(results.meta.sustainUs).toBeUndefined();
    for (const row of results.rows) {
      const full = expected(gpu, row);
      const speedup = (row.fp16?.medianUs ?? 0) / (row.trirun?.medianUs ?? 1);
      // One clock for both: the ratio of the full-clock durations, not of the steady ones (1.25x apart).
      expect(speedup).toBeGreaterThan((full.fp16 / full.trirun) * 0.95);
      expect(speedup).toBeLessThan((full.fp16 / full.trirun) * 1.05);
    }
  });

  it("flags samples the host may have starved", () => {
    // m = 1 on a small layer: ~1 us of GPU time per call against 8 us of host launch time.
    const gpu = new SimulatedGpu({ hostLaunchUs: 8, seed: seed() });
    const results = run(gpu, {
      modelSets: [{ id: "s", title: "S", source: "test", layers: [{ layer: "y", k: 512, n: 512 }] }],
      batchSizes: [1],
      groupsizes: [128],
      sustainUs: 2000,
    });
    for (const row of results.rows) {
      expect(row.fp16?.launchBoundSamples).toBe(7);
      expect(row.trirun?.launchBoundSamples).toBe(7);
    }
  });
});
