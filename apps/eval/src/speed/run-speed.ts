import { available, Event, memoryInfo, synchronize, unavailableReason } from "@trirun/kernel-native";
import Table from "cli-table3";
import { useColor } from "../report.js";
import { withActivationBits } from "../model/config.js";
import {
  CudaLlamaRuntime,
  CudaRuntimeUnavailableError,
  type StepPart,
  stepPartsOf,
} from "../model/gpu-runtime.js";
import { disposeModel, listLinears } from "../model/llama.js";
import { randomCudaModel } from "./random-model.js";
import { kvCacheBytes, parseBatchList, speedConfig, type WeightFormat, weightBytes } from "./shapes.js";

export interface SpeedSettings {
  shape: string;
  batches: number[];
  /** Blocks to keep (default: all of the shape). */
  layers?: number;
  /** Timed decoding steps per batch size. */
  steps: number;
  /** Untimed steps first (allocation of scratch buffers, cuBLAS heuristics, clocks). */
  warmup: number;
  seed: number;
  formats: WeightFormat[];
  /** Replay each decoding step as a CUDA graph (default true). */
  graphs?: boolean;
  /** Fuse q/k/v and gate/up into one matmul each (default true). */
  fuse?: boolean;
  /** BitNet's row ops in fewer launches (CudaRuntimeOptions.fuseRowOps; default true). */
  fuseRowOps?: boolean;
  /** Quantize every block linear's input to this many bits per row (BitNet: 8), in both formats. */
  activationBits?: number;
  /**
   * Also time the step with each part of the block left out of every block in turn (STEP_PARTS), so
   * that the difference is what that part costs (default false).
   */
  breakdown?: boolean;
  onStatus?: (line: string) => void;
}

/** One part's cost in a step: the step timed with that part left out of every block. */
export interface PartCost {
  part: StepPart;
  /** Median device time of a step without the part, ms (same steps and warm-up as the full step). */
  deviceMsWithout: number;
  /**
   * What the part costs per step, ms (the full step's median, measured before and after the parts' runs
   * and averaged, minus deviceMsWithout); and per block, us.
   */
  msPerStep: number;
  usPerBlock: number;
}

export interface SpeedMeasurement {
  batch: number;
  /** Generated tokens per second over all sequences of the batch (from the mean wall-clock step time). */
  tokensPerSecond: number;
  /**
   * Mean wall-clock time of one decoding step (one token for every sequence), ms: what a caller waits,
   * host work included (token ids and positions uploaded, the graph launched, the device synchronized).
   */
  msPerToken: number;
  /** Median wall-clock step time, ms. */
  msPerTokenMedian: number;
  /**
   * Median device time of a step, ms: CUDA events recorded on the stream before the step's uploads and
   * after its last kernel, so the host's part of the step (JavaScript, launch calls, the wait) is not in it.
   */
  deviceMsPerTokenMedian: number;
  /** With `breakdown`: each part's cost, from steps timed without it. */
  breakdown?: PartCost[];
}

export interface SpeedFormatResult {
  format: WeightFormat;
  /** Why it was not measured (it does not fit the free device memory), else undefined. */
  skipped?: string;
  /** Device bytes of the weights (linears as the layers report them, plus the runtime's embedding and norms). */
  weightBytes?: number;
  /** Largest drop of free device memory while the model, its caches and buffers were alive. */
  deviceBytesUsed?: number;
  measurements: SpeedMeasurement[];
}

export interface SpeedReport {
  shape: string;
  layers: number;
  layersOfShape: number;
  steps: number;
  graphs: boolean;
  fuse: boolean;
  /** BitNet's row ops fused (CudaRuntimeOptions.fuseRowOps); always false for shapes without them. */
  fuseRowOps: boolean;
  breakdown: boolean;
  results: SpeedFormatResult[];
  notes: string[];
}

const GIB = 2 ** 30;
/** Headroom for cuBLAS workspaces, scratch buffers and fragmentation when checking that a model fits. */
const FIT_MARGIN = 0.92;

function measureFormat(s: SpeedSettings, format: WeightFormat): SpeedFormatResult {
  const config = speedConfig(s.shape, s.layers);
  const positions = s.warmup + s.steps;
  const maxBatch = Math.max(...s.batches);
  const needed = weightBytes(config, format) + kvCacheBytes(config, maxBatch, positions);
  const free0 = memoryInfo().freeBytes;
  if (needed > free0 * FIT_MARGIN) {
    return {
      format,
      skipped: `needs about ${(needed / GIB).toFixed(1)} GiB of device memory, ${(free0 / GIB).toFixed(1)} GiB free`,
      measurements: [],
    };
  }
  s.onStatus?.(`${format}: building ${config.nLayers} blocks of random weights`);
  const model = withActivationBits(randomCudaModel(config, format, s.seed), s.activationBits);
  let runtime: CudaLlamaRuntime | undefined;
  let peak = 0;
  // Both on the default stream, where decodeBatch uploads and launches.
  const start = new Event();
  const end = new Event();
  const measurements: SpeedMeasurement[] = [];
  try {
    // "move": the fused copies replace the model's own q/k/v and gate/up layers, so memory is a real model's.
    runtime = new CudaLlamaRuntime(model, {
      graphs: s.graphs ?? true,
      fuse: (s.fuse ?? true) ? "move" : undefined,
      fuseRowOps: s.fuseRowOps ?? true,
    });
    const tokens = Array.from(
      { length: maxBatch * positions },
      (_, i) => (i * 7919 + s.seed) % config.vocabSize,
    );
    const rt = runtime;
    // One run of warm-up + timed steps on a fresh batch cache: wall-clock and device times of the timed ones.
    const timeSteps = (batch: number) => {
      const caches = rt.newBatchCache(batch, positions);
      try {
        const times: number[] = [];
        const deviceTimes: number[] = [];
        for (let step = 0; step < positions; step++) {
          const t0 = performance.now();
          start.record();
          rt.decodeBatch(tokens.slice(step * batch, (step + 1) * batch), caches);
          end.record();
          synchronize();
          if (step >= s.warmup) {
            times.push(performance.now() - t0);
            deviceTimes.push(end.elapsedMs(start));
          }
          if (step === 0) peak = Math.max(peak, free0 - memoryInfo().freeBytes);
        }
        return { times, deviceTimes };
      } finally {
        caches.dispose();
      }
    };
    for (const batch of s.batches) {
      s.onStatus?.(`${format}: batch ${batch}`);
      const { times, deviceTimes } = timeSteps(batch);
      const mean = times.reduce((a, t) => a + t, 0) / times.length;
      const full = median(deviceTimes);
      let breakdown: PartCost[] | undefined;
      if (s.breakdown) {
        const without: [StepPart, number][] = [];
        try {
          for (const part of stepPartsOf(model.config)) {
            s.onStatus?.(`${format}: batch ${batch} without ${part}`);
            rt.setOmitParts([part]);
            without.push([part, median(timeSteps(batch).deviceTimes)]);
          }
        } finally {
          rt.setOmitParts([]);
        }
        // The full step again after the parts' runs, and the mean of both as the reference, so that a
        // drift of the clocks during the runs does not tilt every cost one way.
        s.onStatus?.(`${format}: batch ${batch} again`);
        const reference = (full + median(timeSteps(batch).deviceTimes)) / 2;
        breakdown = without.map(([part, ms]) => ({
          part,
          deviceMsWithout: ms,
          msPerStep: reference - ms,
          usPerBlock: ((reference - ms) * 1000) / config.nLayers,
        }));
      }
      measurements.push({
        batch,
        tokensPerSecond: (batch * 1000) / mean,
        msPerToken: mean,
        msPerTokenMedian: median(times),
        deviceMsPerTokenMedian: full,
        ...(breakdown === undefined ? {} : { breakdown }),
      });
    }
    const linearBytes =
      listLinears(model).reduce((sum, e) => sum + e.layer.byteLength, 0) + runtime.fusedByteLength;
    return { format, weightBytes: linearBytes + runtime.byteLength, deviceBytesUsed: peak, measurements };
  } finally {
    runtime?.dispose();
    disposeModel(model);
    synchronize();
    start.dispose();
    end.dispose();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Decoding throughput of the shape in FP16 and through TriRun, batch by batch. Needs a CUDA device. */
export function runSpeed(s: SpeedSettings): SpeedReport {
  const config = speedConfig(s.shape, s.layers);
  if (!Array.isArray(s.batches) || s.batches.length === 0) {
    throw new RangeError("batches: expected at least one batch size");
  }
  parseBatchList(s.batches.join(","));
  if (
    !Array.isArray(s.formats) ||
    s.formats.length === 0 ||
    s.formats.some((f) => f !== "fp16" && f !== "trirun")
  ) {
    throw new TypeError(
      `formats: expected a non-empty list of "fp16" and "trirun", got ${JSON.stringify(s.formats)}`,
    );
  }
  for (const [name, value, min] of [
    ["steps", s.steps, 1],
    ["warmup", s.warmup, 0],
  ] as const) {
    if (!Number.isInteger(value) || value < min) {
      throw new RangeError(`${name}: expected an integer >= ${min}, got ${value}`);
    }
  }
  if (!available()) {
    throw new CudaRuntimeUnavailableError(
      `speed needs a CUDA device to measure on: ${unavailableReason() ?? "unknown reason"}`,
    );
  }
  const results = s.formats.map((format) => measureFormat(s, format));
  const graphs = s.graphs ?? true;
  const fuse = s.fuse ?? true;
  // Only BitNet's block has the row ops that fuseRowOps fuses; elsewhere the switch changes nothing.
  const fuseRowOps = config.subNorms === true && (s.fuseRowOps ?? true);
  const quantizes = s.activationBits !== undefined;
  return {
    shape: s.shape,
    layers: config.nLayers,
    layersOfShape: speedConfig(s.shape).nLayers,
    steps: s.steps,
    graphs,
    fuse,
    fuseRowOps,
    breakdown: s.breakdown ?? false,
    results,
    notes: [
      "seeded random weights in the model's shapes; the embedding and the classifier stay fp16 in both",
      "each step decodes one token for every sequence of the batch (one batched KV cache, one attention launch per layer) and waits for the device; logits stay on the device",
      "ms/step and tok/s: mean wall-clock time of a step, host work included; GPU ms: median device time of a step between CUDA events recorded before its uploads and after its last kernel",
      graphs
        ? "each step uploads its token ids and positions, then replays the step's launches as one CUDA graph (captured after one eager warm-up step per batch size)"
        : "kernel launches are issued one by one from JavaScript (--no-graphs), so small steps include the launch overhead",
      fuse
        ? "q/k/v and gate/up run as one fused matmul each, in both formats"
        : "q/k/v and gate/up run as separate matmuls (--no-fuse)",
      ...(config.subNorms === true
        ? [
            fuseRowOps
              ? `BitNet's row ops fused (the default): the relu2 gate and the MLP's sub-norm in one launch${quantizes ? ", each quantization inside the norm or gate launch before it" : ""}`
              : `BitNet's row ops unfused (--no-fuse-row-ops): the relu2 gate and the sub-norm${quantizes ? ", and each quantization," : ""} in launches of their own`,
          ]
        : []),
      ...(s.breakdown
        ? [
            "breakdown: each part's cost is the median GPU step time (the mean of the full step's medians before and after the parts' runs) minus that of the same steps with the part left out of every block (outputs then meaningless); parts overlap in time, so the costs need not add up to the step",
          ]
        : []),
      ...(s.activationBits === undefined
        ? []
        : [
            `every block linear's input is quantized to ${s.activationBits} bits per row first (ops.quantizeRows), in both formats`,
          ]),
    ],
  };
}

export function formatSpeed(r: SpeedReport): string {
  const fp = r.results.find((x) => x.format === "fp16");
  const tr = r.results.find((x) => x.format === "trirun");
  const table = new Table({
    head: [
      "batch",
      "FP16 tok/s",
      "FP16 ms/step",
      "FP16 GPU ms",
      "TriRun tok/s",
      "TriRun ms/step",
      "TriRun GPU ms",
      "speedup",
      "GPU speedup",
    ],
    // Plain text when stdout is not a terminal (see report.ts useColor).
    ...(useColor() ? {} : { style: { head: [], border: [] } }),
  });
  const batches = [...new Set(r.results.flatMap((x) => x.measurements.map((m) => m.batch)))].sort(
    (a, b) => a - b,
  );
  const cell = (v: number | undefined, digits: number) => (v === undefined ? "-" : v.toFixed(digits));
  for (const batch of batches) {
    const a = fp?.measurements.find((m) => m.batch === batch);
    const b = tr?.measurements.find((m) => m.batch === batch);
    table.push([
      batch,
      cell(a?.tokensPerSecond, 1),
      cell(a?.msPerToken, 2),
      cell(a?.deviceMsPerTokenMedian, 3),
      cell(b?.tokensPerSecond, 1),
      cell(b?.msPerToken, 2),
      cell(b?.deviceMsPerTokenMedian, 3),
      a && b ? `${(a.msPerToken / b.msPerToken).toFixed(2)}x` : "-",
      a && b ? `${(a.deviceMsPerTokenMedian / b.deviceMsPerTokenMedian).toFixed(2)}x` : "-",
    ]);
  }
  const lines = [
    `${r.shape}: ${r.layers} of ${r.layersOfShape} blocks, ${r.steps} timed steps per batch, CUDA graphs ${r.graphs ? "on" : "off"}, fused projections ${r.fuse ? "on" : "off"}${speedConfig(r.shape).subNorms === true ? `, fused row ops ${r.fuseRowOps ? "on" : "off"}` : ""}`,
    table.toString(),
  ];
  for (const x of r.results) {
    if (x.skipped) lines.push(`${x.format}: not measured: ${x.skipped}`);
    else
      lines.push(
        `${x.format}: weights ${((x.weightBytes ?? 0) / GIB).toFixed(2)} GiB, device memory used ${((x.deviceBytesUsed ?? 0) / GIB).toFixed(2)} GiB`,
      );
  }
  for (const x of r.results) {
    for (const m of x.measurements) {
      if (m.breakdown === undefined) continue;
      const parts = new Table({
        head: ["part", "GPU ms/step without", "cost ms/step", "cost us/block", "share"],
        ...(useColor() ? {} : { style: { head: [], border: [] } }),
      });
      for (const p of m.breakdown) {
        parts.push([
          p.part,
          p.deviceMsWithout.toFixed(3),
          p.msPerStep.toFixed(3),
          p.usPerBlock.toFixed(2),
          `${((100 * p.msPerStep) / m.deviceMsPerTokenMedian).toFixed(1)}%`,
        ]);
      }
      lines.push(
        `${x.format}, batch ${m.batch}: where the step's ${m.deviceMsPerTokenMedian.toFixed(3)} GPU ms go (${r.layers} blocks)`,
        parts.toString(),
      );
    }
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}
