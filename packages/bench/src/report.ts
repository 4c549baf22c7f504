/**
 * Figures derived from raw timings, and the text outputs: terminal tables, CSV and
 * the markdown for BENCHMARKS.md. Charts live in `chart.ts` (heavier dependencies).
 */
import Table from "cli-table3";
import { stringify } from "csv-stringify/sync";
import { type BenchResults, type ResultRow, sustainMs } from "./results.js";
import { fp16WeightBytes, packedWeightBytes } from "./shapes.js";
import { telemetryBullets } from "./telemetry.js";

/** Per-row figures. Times in microseconds, bandwidths in GB/s (1e9 bytes/s). */
export interface RowFigures {
  /** FP16 median time / TriRun median time. */
  readonly speedup: number | null;
  /** 2 m k n / TriRun median time, in TFLOP/s. */
  readonly tflops: number | null;
  /** Packed weight bytes (k n / 4 + scales) / TriRun median time. */
  readonly weightGBps: number | null;
  /** `weightGBps` / the measured copy bandwidth. */
  readonly rooflineFraction: number | null;
  readonly fp16Tflops: number | null;
  /** FP16 weight bytes (2 k n) / FP16 median time. */
  readonly fp16WeightGBps: number | null;
  readonly fp16RooflineFraction: number | null;
}

/** Computes the figures of one row against the copy roofline `rooflineGbps`. */
export function rowFigures(row: ResultRow, rooflineGbps: number): RowFigures {
  const flops = 2 * row.m * row.k * row.n;
  const trirunUs = row.trirun?.medianUs ?? null;
  const fp16Us = row.fp16?.medianUs ?? null;
  const packed = packedWeightBytes(row.k, row.n, row.groupsize);
  const dense = fp16WeightBytes(row.k, row.n);
  const weightGBps = trirunUs === null ? null : packed / (trirunUs * 1e3);
  const fp16WeightGBps = fp16Us === null ? null : dense / (fp16Us * 1e3);
  return {
    speedup: trirunUs === null || fp16Us === null ? null : fp16Us / trirunUs,
    tflops: trirunUs === null ? null : flops / (trirunUs * 1e6),
    weightGBps,
    rooflineFraction: weightGBps === null ? null : weightGBps / rooflineGbps,
    fp16Tflops: fp16Us === null ? null : flops / (fp16Us * 1e6),
    fp16WeightGBps,
    fp16RooflineFraction: fp16WeightGBps === null ? null : fp16WeightGBps / rooflineGbps,
  };
}

/** One model set at one (group size, m), summed over its layers. */
export interface ModelSummary {
  readonly model: string;
  readonly title: string;
  readonly groupsize: number;
  readonly m: number;
  /** Sums of median times over the layers; null if any layer lacks a timing. */
  readonly fp16Us: number | null;
  readonly trirunUs: number | null;
  /** Sum of FP16 times / sum of TriRun times: how the speed targets are judged. */
  readonly speedup: number | null;
  /** Packed weight bytes of all layers / summed TriRun time. */
  readonly weightGBps: number | null;
  readonly rooflineFraction: number | null;
}

/** Summed-over-layers figures per model set, group size and m, in run order. */
export function summarizeModels(results: BenchResults): ModelSummary[] {
  const summaries: ModelSummary[] = [];
  const rooflineGbps = results.meta.roofline.gbps;
  for (const set of results.modelSets) {
    for (const groupsize of results.meta.groupsizes) {
      for (const m of results.meta.batchSizes) {
        const rows = results.rows.filter((r) => r.model === set.id && r.groupsize === groupsize && r.m === m);
        if (rows.length === 0) continue;
        // Every layer of the set once (parseResults refuses other files; this guards results built in code).
        const complete =
          rows.length === set.layers.length &&
          set.layers.every((l) => rows.some((r) => r.layer === l.layer && r.k === l.k && r.n === l.n)) &&
          rows.every((r) => r.fp16 && r.trirun);
        let fp16Us = 0;
        let trirunUs = 0;
        let packedBytes = 0;
        for (const row of rows) {
          fp16Us += row.fp16?.medianUs ?? 0;
          trirunUs += row.trirun?.medianUs ?? 0;
          packedBytes += packedWeightBytes(row.k, row.n, row.groupsize);
        }
        const weightGBps = complete ? packedBytes / (trirunUs * 1e3) : null;
        summaries.push({
          model: set.id,
          title: set.title,
          groupsize,
          m,
          fp16Us: complete ? fp16Us : null,
          trirunUs: complete ? trirunUs : null,
          speedup: complete ? fp16Us / trirunUs : null,
          weightGBps,
          rooflineFraction: weightGBps === null ? null : weightGBps / rooflineGbps,
        });
      }
    }
  }
  return summaries;
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined ? "n/a" : value.toFixed(digits);
}

/** Long messages cut for table cells (the JSON and CSV keep them whole). */
function shorten(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 3)}...`;
}

function groupLabel(groupsize: number): string {
  return groupsize === -1 ? "per column" : `g${groupsize}`;
}

/** Short labels of the dispatcher's configuration fields; the group size has its own column. */
const CONFIG_LABELS: Record<string, string | null> = {
  mBlocks: "mb",
  stages: "st",
  sms: "sms",
  maxParallel: "par",
  threads: "thr",
  groupsize: null,
  workspaceBytes: null,
};

/** The dispatcher's configuration in a compact form, e.g. `128x128 mb4 st4 sms132 par16 thr256`. */
export function formatConfig(config: ResultRow["config"]): string {
  if (!config) return "";
  const parts: string[] = [];
  if (config.threadK !== undefined && config.threadN !== undefined) {
    parts.push(`${String(config.threadK)}x${String(config.threadN)}`);
  }
  for (const [key, value] of Object.entries(config)) {
    if (key === "threadK" || key === "threadN") continue;
    const label = key in CONFIG_LABELS ? CONFIG_LABELS[key] : `${key}=`;
    if (label !== null) parts.push(`${label}${String(value)}`);
  }
  return parts.join(" ");
}

/** Terminal table of per-layer rows. */
export function formatRowsTable(rows: readonly ResultRow[], rooflineGbps: number): string {
  const table = new Table({
    head: [
      "model",
      "layer",
      "k x n",
      "m",
      "group",
      "fp16 us",
      "trirun us (p10-p90)",
      "speedup",
      "TFLOP/s",
      "weight GB/s",
      "roofline",
      "config",
    ],
    style: { head: [], border: [] },
  });
  for (const row of rows) {
    const figures = rowFigures(row, rooflineGbps);
    const spread = row.trirun ? `${fixed(row.trirun.p10Us, 1)}-${fixed(row.trirun.p90Us, 1)}` : "";
    table.push([
      row.model,
      row.layer,
      `${row.k} x ${row.n}`,
      String(row.m),
      groupLabel(row.groupsize),
      fixed(row.fp16?.medianUs, 1),
      row.trirun ? `${fixed(row.trirun.medianUs, 1)} (${spread})` : shorten(row.error ?? "n/a", 48),
      figures.speedup === null ? "n/a" : `${fixed(figures.speedup, 2)}x`,
      fixed(figures.tflops, 1),
      fixed(figures.weightGBps, 0),
      figures.rooflineFraction === null ? "n/a" : `${fixed(figures.rooflineFraction * 100, 0)}%`,
      formatConfig(row.config),
    ]);
  }
  return table.toString();
}

/** Terminal table: summed speedup of each model set (rows) at each m (columns), per group size. */
export function formatSummaryTable(results: BenchResults): string {
  const summaries = summarizeModels(results);
  const out: string[] = [];
  for (const groupsize of results.meta.groupsizes) {
    const table = new Table({
      head: [`speedup, ${groupLabel(groupsize)}`, ...results.meta.batchSizes.map((m) => `m=${m}`)],
      style: { head: [], border: [] },
    });
    for (const set of results.modelSets) {
      const cells = results.meta.batchSizes.map((m) => {
        const s = summaries.find((x) => x.model === set.id && x.groupsize === groupsize && x.m === m);
        return s?.speedup == null ? "n/a" : `${fixed(s.speedup, 2)}x`;
      });
      table.push([set.id, ...cells]);
    }
    out.push(table.toString());
  }
  return out.join("\n");
}

/** Columns of the CSV output, in order. */
export const CSV_COLUMNS = [
  "model",
  "layer",
  "k",
  "n",
  "m",
  "groupsize",
  "fp16_median_us",
  "fp16_p10_us",
  "fp16_p90_us",
  "trirun_median_us",
  "trirun_p10_us",
  "trirun_p90_us",
  "speedup",
  "trirun_tflops",
  "trirun_weight_gbps",
  "trirun_roofline_fraction",
  "fp16_tflops",
  "fp16_weight_gbps",
  "fp16_roofline_fraction",
  "fp16_weight_copies",
  "trirun_weight_copies",
  "config",
  "error",
  "gpu_sm_clock_mhz",
  "gpu_power_w",
  "gpu_limited_fraction",
] as const;

function csvNumber(value: number | null | undefined): string {
  return value === null || value === undefined ? "" : String(value);
}

/** One CSV line per row, full precision, with a header line. */
export function toCsv(results: BenchResults): string {
  const rooflineGbps = results.meta.roofline.gbps;
  const records = results.rows.map((row) => {
    const f = rowFigures(row, rooflineGbps);
    return [
      row.model,
      row.layer,
      String(row.k),
      String(row.n),
      String(row.m),
      String(row.groupsize),
      csvNumber(row.fp16?.medianUs),
      csvNumber(row.fp16?.p10Us),
      csvNumber(row.fp16?.p90Us),
      csvNumber(row.trirun?.medianUs),
      csvNumber(row.trirun?.p10Us),
      csvNumber(row.trirun?.p90Us),
      csvNumber(f.speedup),
      csvNumber(f.tflops),
      csvNumber(f.weightGBps),
      csvNumber(f.rooflineFraction),
      csvNumber(f.fp16Tflops),
      csvNumber(f.fp16WeightGBps),
      csvNumber(f.fp16RooflineFraction),
      csvNumber(row.fp16?.weightCopies),
      csvNumber(row.trirun?.weightCopies),
      row.config ? JSON.stringify(row.config) : "",
      row.error ?? "",
      csvNumber(row.gpu?.smClockMHz.median),
      csvNumber(row.gpu?.powerW?.median),
      csvNumber(row.gpu?.limitedFraction),
    ];
  });
  return stringify([[...CSV_COLUMNS], ...records]);
}

/** Speed targets over FP16 (summed over a model's layers) for the main model sets, by m. */
export interface SpeedTarget {
  readonly model: string;
  readonly mFrom: number;
  readonly mTo: number;
  readonly minSpeedup: number;
}

/** The kernel's speed targets (cold weights, group size 128, summed over layers). */
export const SPEED_TARGETS: readonly SpeedTarget[] = [
  ...(
    [
      ["llama2-70b", [7.0, 5.0, 3.0, 1.8, 1.0]],
      ["llama2-7b", [6.0, 4.0, 2.5, 1.5, 1.0]],
      ["trilm-3.9b", [4.5, 3.0, 2.0, 1.3, 1.0]],
    ] as const
  ).flatMap(([model, [small, m32, m64, m128, large]]) => [
    { model, mFrom: 1, mTo: 16, minSpeedup: small },
    { model, mFrom: 32, mTo: 32, minSpeedup: m32 },
    { model, mFrom: 64, mTo: 64, minSpeedup: m64 },
    { model, mFrom: 128, mTo: 128, minSpeedup: m128 },
    { model, mFrom: 256, mTo: 4096, minSpeedup: large },
  ]),
];

/** The target for `model` at `m`, if any. */
export function targetFor(model: string, m: number): SpeedTarget | undefined {
  return SPEED_TARGETS.find((t) => t.model === model && m >= t.mFrom && m <= t.mTo);
}

/** A table cell's text: a `|` or a line break (error messages, device names) would break the row. */
function markdownCell(text: string): string {
  return text.replace(/\r?\n/g, " ").replaceAll("|", "\\|");
}

function markdownTable(head: readonly string[], body: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.map(markdownCell).join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...body.map(line)].join("\n");
}

export interface MarkdownOptions {
  /** Relative path of the chart image to embed, if any. */
  readonly chartPath?: string;
  /** Include per-layer tables (long). Default true. */
  readonly perLayer?: boolean;
}

/** Markdown for BENCHMARKS.md: run facts, summed speedups, targets, bandwidths and per-layer rows. */
export function toMarkdown(results: BenchResults, options: MarkdownOptions = {}): string {
  const { meta } = results;
  const summaries = summarizeModels(results);
  const out: string[] = [];
  const l2MiB = meta.device.l2Bytes / (1024 * 1024);
  out.push(`## ${meta.device.name}: TriRun vs cuBLAS FP16`);
  out.push("");
  out.push(
    `- Device: ${meta.device.name} (sm_${meta.device.computeCapability.replace(".", "")}, ${meta.device.smCount} SMs, ${l2MiB.toFixed(0)} MiB L2, ${(meta.device.memoryBytes / 2 ** 30).toFixed(0)} GiB${meta.device.peakMemoryBandwidth ? `, ${(meta.device.peakMemoryBandwidth / 1e12).toFixed(2)} TB/s theoretical DRAM peak` : ""})`,
  );
  out.push(`- Date: ${meta.date}; commit: ${meta.commit ?? "unknown"}; ${meta.runtime}`);
  out.push(`- Command: \`${meta.command}\``);
  out.push(
    `- Method: ${meta.mode === "cold" ? `cold weights (each side rotates through weight copies larger than ${meta.coldFactor}x L2)` : "hot weights (one buffer, L2-resident where it fits)"}; CUDA events; median of ${meta.samples} samples of back-to-back calls (each at least ${meta.minSampleUs} us)${meta.sustainUs ? `, each side sustained: it ran alone, back to back, for ${sustainMs(meta.sustainUs)} ms before its samples, which followed without a gap (each side at the clock its own power allows; the sides take turns going first)` : ", the sides' samples interleaved"}; FP16 baseline: cuBLAS with W as ${meta.fp16Layout === "nk" ? "(n, k) (PyTorch Linear.weight)" : "(k, n) row-major"}; same A and C for both sides.`,
  );
  out.push(
    `- Roofline: device-to-device copy of ${(meta.roofline.bufferBytes / 2 ** 20).toFixed(0)} MiB at ${(meta.roofline.gbps / 1000).toFixed(2)} TB/s (bytes read + written).`,
  );
  out.push(...telemetryBullets(meta.telemetry, meta.telemetryNote, results.rows));
  if (meta.stoppedEarly) {
    const points = new Set(results.rows.map((r) => `${r.model}/${r.layer}/${r.m}`)).size;
    const total = results.modelSets.reduce((sum, set) => sum + set.layers.length, 0) * meta.batchSizes.length;
    out.push(
      `- **Incomplete:** the run reached its time limit after ${points} of ${total} (layer, m) points.`,
    );
  }
  out.push("");
  if (options.chartPath) {
    out.push(`![Speedup over FP16 vs batch size](${options.chartPath})`);
    out.push("");
  }
  for (const groupsize of meta.groupsizes) {
    out.push(`### Speedup over FP16, summed over each model's layers (${groupLabel(groupsize)})`);
    out.push("");
    const body = results.modelSets.map((set) => [
      set.title,
      ...meta.batchSizes.map((m) => {
        const s = summaries.find((x) => x.model === set.id && x.groupsize === groupsize && x.m === m);
        return s?.speedup == null ? "n/a" : `${fixed(s.speedup, 2)}x`;
      }),
    ]);
    out.push(markdownTable(["model", ...meta.batchSizes.map((m) => `m=${m}`)], body));
    out.push("");
    out.push(`Weight bandwidth of TriRun, TB/s (fraction of the copy roofline), ${groupLabel(groupsize)}:`);
    out.push("");
    const bandwidth = results.modelSets.map((set) => [
      set.title,
      ...meta.batchSizes.map((m) => {
        const s = summaries.find((x) => x.model === set.id && x.groupsize === groupsize && x.m === m);
        return s?.weightGBps == null || s.rooflineFraction === null
          ? "n/a"
          : `${fixed(s.weightGBps / 1000, 2)} (${fixed(s.rooflineFraction * 100, 0)}%)`;
      }),
    ]);
    out.push(markdownTable(["model", ...meta.batchSizes.map((m) => `m=${m}`)], bandwidth));
    out.push("");
  }

  const targetRows: string[][] = [];
  for (const s of summaries) {
    if (s.groupsize !== 128) continue;
    const target = targetFor(s.model, s.m);
    if (!target) continue;
    const met = s.speedup !== null && s.speedup >= target.minSpeedup;
    targetRows.push([
      s.model,
      String(s.m),
      `>= ${target.minSpeedup.toFixed(1)}x`,
      s.speedup === null ? "n/a" : `${fixed(s.speedup, 2)}x`,
      met ? "met" : "**not met**",
    ]);
  }
  if (targetRows.length > 0) {
    out.push("### Speed targets (group size 128, summed over layers)");
    out.push("");
    out.push(markdownTable(["model", "m", "target", "measured", ""], targetRows));
    out.push("");
  }

  if (options.perLayer ?? true) {
    out.push("### Per layer");
    out.push("");
    const body = results.rows.map((row) => {
      const f = rowFigures(row, meta.roofline.gbps);
      return [
        row.model,
        row.layer,
        `${row.k} x ${row.n}`,
        String(row.m),
        groupLabel(row.groupsize),
        fixed(row.fp16?.medianUs, 1),
        row.trirun
          ? `${fixed(row.trirun.medianUs, 1)} (${fixed(row.trirun.p10Us, 1)}-${fixed(row.trirun.p90Us, 1)})`
          : "n/a",
        f.speedup === null ? "n/a" : `${fixed(f.speedup, 2)}x`,
        fixed(f.tflops, 1),
        fixed(f.weightGBps, 0),
        f.rooflineFraction === null ? "n/a" : `${fixed(f.rooflineFraction * 100, 0)}%`,
        formatConfig(row.config) || (row.error ?? ""),
      ];
    });
    out.push(
      markdownTable(
        [
          "model",
          "layer",
          "k x n",
          "m",
          "group",
          "fp16 us",
          "trirun us (p10-p90)",
          "speedup",
          "TFLOP/s",
          "weight GB/s",
          "roofline",
          "config",
        ],
        body,
      ),
    );
    out.push("");
  }
  return `${out.join("\n")}\n`;
}
