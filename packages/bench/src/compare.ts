/**
 * Two runs side by side (e.g. before and after a kernel change): the summed speedup of
 * each model set at each (group size, m) and how the summed times moved.
 */
import Table from "cli-table3";
import { summarizeModels } from "./report.js";
import { type BenchResults, timingMethod } from "./results.js";

export interface ComparisonRow {
  readonly model: string;
  readonly groupsize: number;
  readonly m: number;
  readonly speedupBefore: number | null;
  readonly speedupAfter: number | null;
  /** after / before of the summed TriRun time (0.8: 20 % faster). */
  readonly trirunTimeRatio: number | null;
  /** after / before of the summed FP16 time: how stable the baseline was between runs. */
  readonly fp16TimeRatio: number | null;
}

export interface Comparison {
  readonly rows: readonly ComparisonRow[];
  /** Differences between the runs that make the comparison questionable. */
  readonly warnings: readonly string[];
}

/** Compares the (model, group size, m) points present in both runs. */
export function compareResults(before: BenchResults, after: BenchResults): Comparison {
  const warnings: string[] = [];
  if (before.meta.device.name !== after.meta.device.name) {
    warnings.push(`different devices: ${before.meta.device.name} vs ${after.meta.device.name}`);
  }
  if (timingMethod(before) !== timingMethod(after)) {
    warnings.push(`different timing methods: ${timingMethod(before)} vs ${timingMethod(after)}`);
  }
  if (before.meta.mode !== after.meta.mode) {
    warnings.push(`different weight modes: ${before.meta.mode} vs ${after.meta.mode}`);
  }
  if (before.meta.fp16Layout !== after.meta.fp16Layout) {
    warnings.push(`different FP16 layouts: ${before.meta.fp16Layout} vs ${after.meta.fp16Layout}`);
  }
  const beforeSummaries = summarizeModels(before);
  const rows: ComparisonRow[] = [];
  for (const a of summarizeModels(after)) {
    const b = beforeSummaries.find((s) => s.model === a.model && s.groupsize === a.groupsize && s.m === a.m);
    if (!b) continue;
    const ratio = (x: number | null, y: number | null) => (x === null || y === null ? null : x / y);
    rows.push({
      model: a.model,
      groupsize: a.groupsize,
      m: a.m,
      speedupBefore: b.speedup,
      speedupAfter: a.speedup,
      trirunTimeRatio: ratio(a.trirunUs, b.trirunUs),
      fp16TimeRatio: ratio(a.fp16Us, b.fp16Us),
    });
  }
  if (rows.length === 0) warnings.push("the runs share no (model set, group size, batch size) point");
  return { rows, warnings };
}

function speedup(value: number | null): string {
  return value === null ? "n/a" : `${value.toFixed(2)}x`;
}

function change(ratio: number | null): string {
  if (ratio === null) return "n/a";
  const percent = (ratio - 1) * 100;
  return `${percent >= 0 ? "+" : ""}${percent.toFixed(1)}%`;
}

const HEAD = ["model", "group", "m", "speedup before", "speedup after", "TriRun time", "FP16 time"];

function cells(row: ComparisonRow): string[] {
  return [
    row.model,
    row.groupsize === -1 ? "per column" : `g${row.groupsize}`,
    String(row.m),
    speedup(row.speedupBefore),
    speedup(row.speedupAfter),
    change(row.trirunTimeRatio),
    change(row.fp16TimeRatio),
  ];
}

/** Terminal table of a comparison, warnings first. */
export function formatComparisonTable(comparison: Comparison): string {
  const table = new Table({ head: HEAD, style: { head: [], border: [] } });
  for (const row of comparison.rows) table.push(cells(row));
  return [...comparison.warnings.map((w) => `warning: ${w}`), table.toString()].join("\n");
}

/** Markdown table of a comparison (negative time changes are speed-ups). */
export function comparisonToMarkdown(comparison: Comparison): string {
  const line = (values: readonly string[]) => `| ${values.join(" | ")} |`;
  const out = [...comparison.warnings.map((w) => `> warning: ${w}`)];
  if (out.length > 0) out.push("");
  out.push(line(HEAD), line(HEAD.map(() => "---")), ...comparison.rows.map((row) => line(cells(row))));
  return `${out.join("\n")}\n`;
}
