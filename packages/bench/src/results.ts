/**
 * The benchmark's result document: what a GPU run writes as JSON and what the
 * offline `render` step reads back. The schema validates files before use, so a
 * truncated or hand-edited file fails with a message naming the file and field.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { runTelemetrySchema, telemetrySummarySchema } from "./telemetry.js";

export const RESULTS_FORMAT = "trirun-bench/1";

const finite = z.number().refine(Number.isFinite, "must be a finite number");
const positive = finite.refine((value) => value > 0, "must be positive");

/** Per-call times of one side (microseconds), over the samples of a row. */
export const timingSchema = z.object({
  medianUs: positive,
  p10Us: positive,
  p90Us: positive,
  q1Us: positive,
  q3Us: positive,
  minUs: positive,
  maxUs: positive,
  /** Number of samples; each sample times `callsPerSample` back-to-back calls with events. */
  samples: z.number().int().positive(),
  callsPerSample: z.number().int().positive(),
  /** Weight copies the calls rotated through (1 for hot runs). */
  weightCopies: z.number().int().positive(),
  /** Samples in which the host may not have kept the GPU queue full (see NOTES.md). */
  launchBoundSamples: z.number().int().nonnegative(),
});
export type Timing = z.infer<typeof timingSchema>;

/** 128, or -1 for one group per column: the kernel's two group sizes. */
const groupsizeSchema = z
  .number()
  .int()
  .refine((g): boolean => g === 128 || g === -1, "must be 128 or -1 (one group per column)");

const configValue = z.union([z.number(), z.string(), z.boolean(), z.null()]);

export const rowSchema = z.object({
  model: z.string().min(1),
  layer: z.string().min(1),
  k: z.number().int().positive(),
  n: z.number().int().positive(),
  m: z.number().int().positive(),
  /** 128, or -1 for one group per column. */
  groupsize: groupsizeSchema,
  fp16: timingSchema.nullable(),
  trirun: timingSchema.nullable(),
  /** The configuration `trirunMatmul` returned (tile shape, SMs, ...). */
  config: z.record(z.string(), configValue).nullable(),
  /** Why a side has no timing (an exception from the kernel), else null. */
  error: z.string().nullable(),
  /** The GPU's clocks and power while the row's m was measured (both sides), if sampled. */
  gpu: telemetrySummarySchema.nullable().optional(),
});
export type ResultRow = z.infer<typeof rowSchema>;

export const deviceSchema = z.object({
  name: z.string(),
  computeCapability: z.string(),
  smCount: z.number().int().positive(),
  l2Bytes: z.number().int().positive(),
  memoryBytes: z.number().int().positive(),
  /** Theoretical DRAM bandwidth (bytes/s) from the memory clock and bus width, if known. */
  peakMemoryBandwidth: z.number().positive().nullable().optional(),
});
export type ResultDevice = z.infer<typeof deviceSchema>;

export const rooflineSchema = z.object({
  /** Size of the copied buffer; a copy reads and writes it, so it moves twice this many bytes. */
  bufferBytes: z.number().int().positive(),
  /** Device-to-device copy bandwidth, bytes read + written per second, in GB/s (1e9). */
  gbps: positive,
  medianUs: positive,
  p10Us: positive,
  p90Us: positive,
});
export type Roofline = z.infer<typeof rooflineSchema>;

export const modelSetSchema = z.object({
  id: z.string().min(1),
  title: z.string(),
  source: z.string(),
  layers: z.array(
    z.object({ layer: z.string(), k: z.number().int().positive(), n: z.number().int().positive() }),
  ),
});

export const resultsSchema = z
  .object({
    format: z.literal(RESULTS_FORMAT),
    meta: z.object({
      date: z.string(),
      device: deviceSchema,
      /** "cold": weights rotated through copies larger than `coldFactor` x L2; "hot": one buffer. */
      mode: z.enum(["cold", "hot"]),
      coldFactor: positive,
      fp16Layout: z.enum(["nk", "kn"]),
      samples: z.number().int().positive(),
      minSampleUs: positive,
      /** Sustained timing (absent: the sides' samples interleaved): each side ran alone this long first. */
      sustainUs: positive.optional(),
      seed: z.number().int().nonnegative(),
      batchSizes: z.array(z.number().int().positive()),
      groupsizes: z.array(groupsizeSchema),
      roofline: rooflineSchema,
      command: z.string(),
      commit: z.string().nullable(),
      runtime: z.string(),
      /** True when the run hit its time limit before measuring every point. */
      stoppedEarly: z.boolean().optional(),
      /** GPU clocks, power and clock reasons over the whole run (nvidia-smi), if sampled. */
      telemetry: runTelemetrySchema.nullable().optional(),
      /** Why there is no telemetry (no nvidia-smi, turned off), where there is none. */
      telemetryNote: z.string().optional(),
    }),
    modelSets: z.array(modelSetSchema),
    rows: z.array(rowSchema),
  })
  // Summed speedups add each set's rows: a row twice, or one that is not the set's layer, would
  // give a wrong sum that looks complete.
  .superRefine((results, ctx) => {
    const layers = new Map<string, { k: number; n: number }>();
    for (const set of results.modelSets)
      for (const l of set.layers) layers.set(`${set.id}\u0000${l.layer}`, l);
    const seen = new Set<string>();
    results.rows.forEach((row, i) => {
      const layer = layers.get(`${row.model}\u0000${row.layer}`);
      if (layer === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["rows", i],
          message: `layer "${row.layer}" of model set "${row.model}" is not among the file's modelSets`,
        });
      } else if (layer.k !== row.k || layer.n !== row.n) {
        ctx.addIssue({
          code: "custom",
          path: ["rows", i],
          message: `layer "${row.layer}" of "${row.model}" is ${layer.k} x ${layer.n} in modelSets, ${row.k} x ${row.n} here`,
        });
      }
      const key = `${row.model}\u0000${row.layer}\u0000${row.m}\u0000${row.groupsize}`;
      if (seen.has(key)) {
        ctx.addIssue({
          code: "custom",
          path: ["rows", i],
          message: `a second row for "${row.model}" layer "${row.layer}" at m = ${row.m}, group size ${row.groupsize}`,
        });
      }
      seen.add(key);
    });
  });
export type BenchResults = z.infer<typeof resultsSchema>;

/** An invalid or unreadable results file. */
export class ResultsFileError extends Error {
  readonly code: "ERR_RESULTS_READ" | "ERR_RESULTS_JSON" | "ERR_RESULTS_SCHEMA";
  readonly file: string;

  constructor(code: ResultsFileError["code"], file: string, message: string) {
    super(message);
    this.name = "ResultsFileError";
    this.code = code;
    this.file = file;
  }
}

/** Validates parsed JSON as a results document; `source` names it in errors. */
export function parseResults(value: unknown, source = "results"): BenchResults {
  const parsed = resultsSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    throw new ResultsFileError(
      "ERR_RESULTS_SCHEMA",
      source,
      `${source}: not a ${RESULTS_FORMAT} results file: ${where}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** Serialises results as indented JSON. */
export function resultsToJson(results: BenchResults): string {
  return `${JSON.stringify(results, null, 2)}\n`;
}

/** Reads and validates a results JSON file. */
export async function readResultsFile(file: string): Promise<BenchResults> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ResultsFileError("ERR_RESULTS_READ", file, `${file}: cannot read results file (${reason})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ResultsFileError("ERR_RESULTS_JSON", file, `${file}: not valid JSON (${reason})`);
  }
  return parseResults(value, file);
}

/** A sustained run's settling time in milliseconds, to three significant digits (e.g. 1500, 0.25). */
export function sustainMs(sustainUs: number): number {
  return Number((sustainUs / 1000).toPrecision(3));
}

/** How a results file was timed: "interleaved" (the sides' samples alternate) or "sustained <ms> ms". */
export function timingMethod(results: BenchResults): string {
  const us = results.meta.sustainUs;
  return us === undefined ? "interleaved" : `sustained ${sustainMs(us)} ms`;
}
