/**
 * The `speed` command's shapes, sizes and argument handling (the measurement itself needs a GPU).
 */
import { available } from "@trirun/kernel-native";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../src/cli.js";
import { formatSpeed, runSpeed, type SpeedReport } from "../src/speed/run-speed.js";
import type { StepPart } from "../src/model/gpu-runtime.js";
import { headSize, kvDim } from "../src/model/config.js";
import {
  kvCacheBytes,
  parseBatchList,
  SPEED_SHAPE_NAMES,
  speedConfig,
  weightBytes,
} from "../src/speed/shapes.js";

/** Published parameter counts of the Hugging Face Llama-2 checkpoints (norm weights included). */
const PUBLISHED_PARAMS: Record<string, number> = {
  "llama2-7b": 6_738_415_616,
  "llama2-13b": 13_015_864_320,
  "llama2-70b": 68_976_648_192,
};

describe("speed shapes", () => {
  it("every shape is a valid config; --layers keeps that many blocks and is range-checked", () => {
    for (const name of SPEED_SHAPE_NAMES) {
      const c = speedConfig(name);
      expect(headSize(c) % 2).toBe(0);
      expect(c.dim % 128).toBe(0);
      expect(c.hiddenDim % 256).toBe(0);
      const n = 1 + Math.floor(Math.random() * c.nLayers);
      expect(speedConfig(name, n)).toMatchObject({ nLayers: n, dim: c.dim });
      expect(() => speedConfig(name, c.nLayers + 1)).toThrow(RangeError);
      expect(() => speedConfig(name, 0)).toThrow(/layers/);
    }
    expect(kvDim(speedConfig("llama2-70b"))).toBe(1024);
    expect(() => speedConfig("llama3-8b")).toThrow(/shape: expected one of llama2-7b/);
  });

  it("fp16 weight bytes are twice the published parameter count less the norms", () => {
    for (const [name, params] of Object.entries(PUBLISHED_PARAMS)) {
      const c = speedConfig(name);
      const norms = (2 * c.nLayers + 1) * c.dim;
      expect(weightBytes(c, "fp16")).toBe(2 * (params - norms));
    }
  });

  it("TriRun bytes: 2 bits per block weight plus one fp16 scale per 128, fp16 embedding and classifier", () => {
    for (const [name, params] of Object.entries(PUBLISHED_PARAMS)) {
      const c = speedConfig(name);
      const embedAndClassifier = 2 * c.vocabSize * c.dim;
      const blockParams = params - (2 * c.nLayers + 1) * c.dim - embedAndClassifier;
      expect(weightBytes(c, "trirun")).toBe(blockParams / 4 + blockParams / 64 + 2 * embedAndClassifier);
    }
    // The 70B shape fits one 80 GB device through TriRun; its fp16 weights alone would not.
    const c70 = speedConfig("llama2-70b");
    expect(weightBytes(c70, "trirun")).toBeLessThan(40e9);
    expect(weightBytes(c70, "fp16")).toBeGreaterThan(80e9);
  });

  it("KV cache bytes: fp16 keys and values per layer, position and sequence", () => {
    const c = speedConfig("llama2-7b");
    expect(kvCacheBytes(c, 1, 1)).toBe(512 * 1024); // 0.5 MiB per token for Llama-2 7B
    const b = 1 + Math.floor(Math.random() * 32);
    const t = 1 + Math.floor(Math.random() * 512);
    expect(kvCacheBytes(c, b, t)).toBe(b * t * 512 * 1024);
    // Grouped-query attention: 8 of 64 heads.
    const c70 = speedConfig("llama2-70b");
    expect(kvCacheBytes(c70, 1, 1)).toBe(2 * 2 * 80 * 1024);
  });

  it("parses batch lists", () => {
    expect(parseBatchList("1,4,16,32")).toEqual([1, 4, 16, 32]);
    expect(parseBatchList(" 8 ")).toEqual([8]);
    for (const bad of ["", "1,,2", "0", "1.5", "a", "1,2,1", "5000"]) {
      expect(() => parseBatchList(bad)).toThrow(RangeError);
    }
  });
});

describe("runSpeed settings", () => {
  it("are checked before the device", () => {
    const base = {
      shape: "llama2-7b",
      batches: [1],
      steps: 2,
      warmup: 1,
      seed: 0,
      formats: ["fp16" as const],
    };
    expect(() => runSpeed({ ...base, formats: [] })).toThrow(TypeError);
    expect(() => runSpeed({ ...base, formats: "fp16" as never })).toThrow(/formats/);
    expect(() => runSpeed({ ...base, batches: [] })).toThrow(RangeError);
    expect(() => runSpeed({ ...base, batches: [0] })).toThrow(/batch/);
    expect(() => runSpeed({ ...base, steps: 0 })).toThrow(/steps/);
    expect(() => runSpeed({ ...base, warmup: -1 })).toThrow(/warmup/);
    expect(() => runSpeed({ ...base, layers: 40 })).toThrow(/layers/);
  });
});

describe("trirun-eval speed arguments", () => {
  afterEach(() => vi.restoreAllMocks());

  async function cli(args: string[]): Promise<void> {
    vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await buildProgram({ embedded: true }).parseAsync(["node", "trirun-eval", "speed", ...args]);
  }

  it("rejects bad arguments before touching a device", async () => {
    await expect(cli([])).rejects.toThrow(/--shape/);
    await expect(cli(["--shape", "gpt2"])).rejects.toThrow(/--shape/);
    await expect(cli(["--shape", "llama2-7b", "--batch", "1,x"])).rejects.toThrow(/batch/);
    await expect(cli(["--shape", "llama2-7b", "--layers", "33"])).rejects.toThrow(/1\.\.32/);
    await expect(cli(["--shape", "llama2-7b", "--formats", "int4"])).rejects.toThrow(/formats/);
  });

  it.skipIf(available())("says clearly that it needs a GPU when there is none", async () => {
    // Defaults included: every argument is checked before the device is asked for.
    await expect(cli(["--shape", "trilm-3.9b", "--layers", "1"])).rejects.toThrow(
      /speed needs a CUDA device to measure on/,
    );
    await expect(cli(["--shape", "llama2-70b", "--formats", "trirun", "--batch", "1"])).rejects.toThrow(
      /speed needs a CUDA device/,
    );
    // --no-graphs / --no-fuse / --fuse-row-ops are options of the command (not "unknown option").
    await expect(
      cli(["--shape", "trilm-3.9b", "--layers", "1", "--no-graphs", "--no-fuse", "--fuse-row-ops"]),
    ).rejects.toThrow(/speed needs a CUDA device/);
  });

  it("the table shows both formats, the speedup from the mean step times, and how the step ran", () => {
    const step = 1 + Math.random();
    const report: SpeedReport = {
      shape: "llama2-7b",
      layers: 32,
      layersOfShape: 32,
      steps: 8,
      graphs: false,
      fuse: true,
      fuseRowOps: true,
      breakdown: false,
      notes: ["a note"],
      results: [
        {
          format: "fp16",
          weightBytes: 2 ** 30,
          deviceBytesUsed: 2 ** 31,
          measurements: [
            {
              batch: 1,
              tokensPerSecond: 1000 / (3 * step),
              msPerToken: 3 * step,
              msPerTokenMedian: 3 * step,
              deviceMsPerTokenMedian: 2 * step,
            },
          ],
        },
        {
          format: "trirun",
          weightBytes: 2 ** 28,
          deviceBytesUsed: 2 ** 29,
          measurements: [
            {
              batch: 1,
              tokensPerSecond: 1000 / step,
              msPerToken: step,
              msPerTokenMedian: step,
              deviceMsPerTokenMedian: step / 2,
            },
          ],
        },
      ],
    };
    const text = formatSpeed(report);
    // (Llama's block has no row ops to fuse: the header leaves the switch out.)
    expect(text).toMatch(/CUDA graphs off, fused projections on\n/);
    expect(text).not.toMatch(/row ops/);
    const bitnet = formatSpeed({ ...report, shape: "bitnet-2b", layers: 30, layersOfShape: 30 });
    expect(bitnet).toMatch(/bitnet-2b: 30 of 30 blocks, .*fused projections on, fused row ops on\n/);
    expect(formatSpeed({ ...report, shape: "bitnet-2b", fuseRowOps: false })).toMatch(/fused row ops off\n/);
    expect(text).toMatch(/3\.00x/);
    expect(text).toMatch(/4\.00x/); // GPU speedup: device medians 2 step vs step / 2
    expect(text).toMatch(/trirun: weights 0\.25 GiB/);
    expect(text).toMatch(/note: a note/);
    expect(text).not.toMatch(/where the step/);
  });

  it("with --breakdown, a table per format and batch of what each part costs", () => {
    const full = 1 + Math.random();
    const cost = (part: StepPart, ms: number) => ({
      part,
      deviceMsWithout: full - ms,
      msPerStep: ms,
      usPerBlock: (ms * 1000) / 32,
    });
    const text = formatSpeed({
      shape: "llama2-7b",
      layers: 32,
      layersOfShape: 32,
      steps: 8,
      graphs: true,
      fuse: true,
      fuseRowOps: false,
      breakdown: true,
      notes: [],
      results: [
        {
          format: "trirun",
          weightBytes: 2 ** 28,
          deviceBytesUsed: 2 ** 29,
          measurements: [
            {
              batch: 4,
              tokensPerSecond: 4000 / full,
              msPerToken: full,
              msPerTokenMedian: full,
              deviceMsPerTokenMedian: full,
              breakdown: [cost("qkv", full / 4), cost("norms", 0.032)],
            },
          ],
        },
      ],
    });
    expect(text).toContain(`trirun, batch 4: where the step's ${full.toFixed(3)} GPU ms go (32 blocks)`);
    expect(text).toMatch(
      new RegExp(
        `qkv\\s.*${(full * 0.75).toFixed(3)}.*${(full / 4).toFixed(3)}.*${(((full / 4) * 1000) / 32).toFixed(2)}.*25\\.0%`,
      ),
    );
    expect(text).toMatch(/norms\s.*0\.032.*1\.00/);
  });

  it.skipIf(available())("--breakdown is a speed flag (then the missing device is the error)", async () => {
    await expect(cli(["--shape", "llama2-7b", "--layers", "1", "--breakdown"])).rejects.toThrow(
      /speed needs a CUDA device/,
    );
  });
});
