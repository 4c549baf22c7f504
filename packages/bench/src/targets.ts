/**
 * The kernel's speed targets (SPEED_TARGETS in report.ts: issue #10, "stream weights at the memory
 * roofline, and win at every batch size") checked against a results file (`trirun-bench targets`): for
 * each target cell, the summed speedup over FP16 of the model set at each measured m the cell covers,
 * whether it is met, and the summed TriRun time that would meet it; `render`'s markdown shows the
 * met / not met part. The targets hold on the H100 and the H200 alike, for group size 128, cold weights.
 * Several files of one device may be given (e.g. interleaved timings for small m and sustained ones for
 * the m where the GPU runs at its power cap): a later file's complete (model set, m) point replaces an
 * earlier one's, and each point says how it was timed.
 */
import Table from "cli-table3";
import { SPEED_TARGETS, type SpeedTarget, summarizeModels } from "./report.js";
import { type BenchResults, timingMethod } from "./results.js";

/** One measured (model set, m) point against the target that covers it. */
export interface TargetCheck {
  readonly model: string;
  readonly m: number;
  readonly target: SpeedTarget;
  readonly speedup: number;
  readonly met: boolean;
  /** Summed TriRun time measured, and the summed time that would meet the target (FP16's / target). */
  readonly trirunUs: number;
  readonly neededUs: number;
  /** How the point was timed: "interleaved" or "sustained <ms> ms" (see measure.ts). */
  readonly timing: string;
}

export interface TargetReport {
  readonly device: string;
  readonly groupsize: number;
  readonly checks: readonly TargetCheck[];
  /** Target cells the results have no complete measurement for (model set or batch size not run). */
  readonly unmeasured: readonly SpeedTarget[];
}

/**
 * Checks `results` (group size `groupsize`, 128 by default as in the issue) against `targets`. With
 * several results files (all of one device), a later file's point replaces an earlier one's.
 */
export function checkTargets(
  results: BenchResults | readonly BenchResults[],
  options: { groupsize?: number; targets?: readonly SpeedTarget[] } = {},
): TargetReport {
  const files: readonly BenchResults[] = Array.isArray(results) ? results : [results as BenchResults];
  if (files.length === 0) throw new RangeError("checkTargets: no results given");
  const device = files[0].meta.device.name;
  const other = files.find((f) => f.meta.device.name !== device);
  if (other !== undefined) {
    throw new RangeError(
      `checkTargets: the results come from different devices (${device}, ${other.meta.device.name}); check each device on its own`,
    );
  }
  // The targets are for cold weights; one file's hot timings must not replace another's cold ones unseen.
  const { mode, fp16Layout } = files[0].meta;
  const unlike = files.find((f) => f.meta.mode !== mode || f.meta.fp16Layout !== fp16Layout);
  if (unlike !== undefined) {
    throw new RangeError(
      `checkTargets: the results differ in weight mode or FP16 layout (${mode} / ${fp16Layout}, ${unlike.meta.mode} / ${unlike.meta.fp16Layout}); check each on its own`,
    );
  }
  const groupsize = options.groupsize ?? 128;
  const targets = options.targets ?? SPEED_TARGETS;
  const byPoint = new Map<string, TargetCheck>();
  for (const file of files) {
    for (const s of summarizeModels(file)) {
      if (s.groupsize !== groupsize || s.speedup === null || s.fp16Us === null || s.trirunUs === null)
        continue;
      const target = targets.find((t) => t.model === s.model && s.m >= t.mFrom && s.m <= t.mTo);
      if (target === undefined) continue;
      byPoint.set(`${s.model}\u0000${s.m}`, {
        model: s.model,
        m: s.m,
        target,
        speedup: s.speedup,
        met: s.speedup >= target.minSpeedup,
        trirunUs: s.trirunUs,
        neededUs: s.fp16Us / target.minSpeedup,
        timing: timingMethod(file),
      });
    }
  }
  // In the order of the targets (model sets as the issue lists them), then by m.
  const order = (c: TargetCheck) => targets.findIndex((t) => t.model === c.model);
  const checks = [...byPoint.values()].sort((a, b) => order(a) - order(b) || a.m - b.m);
  const covered = new Set(checks.map((c) => c.target));
  return {
    device,
    groupsize,
    checks,
    unmeasured: targets.filter((t) => !covered.has(t)),
  };
}

function range(t: SpeedTarget): string {
  return t.mFrom === t.mTo ? `m=${t.mFrom}` : `m=${t.mFrom}-${t.mTo}`;
}

const HEAD = ["model", "m", "speedup", "target", "met", "TriRun us", "needed us", "timing"];

function cells(c: TargetCheck): string[] {
  return [
    c.model,
    String(c.m),
    `${c.speedup.toFixed(2)}x`,
    `>= ${c.target.minSpeedup.toFixed(1)}x`,
    c.met ? "yes" : "no",
    c.trirunUs.toFixed(1),
    c.neededUs.toFixed(1),
    c.timing,
  ];
}

function summaryLine(report: TargetReport): string {
  const met = report.checks.filter((c) => c.met).length;
  return `${met} of ${report.checks.length} measured points meet their target (${report.device}, g${report.groupsize})`;
}

function unmeasuredLine(report: TargetReport): string | undefined {
  if (report.unmeasured.length === 0) return undefined;
  return `not measured: ${report.unmeasured.map((t) => `${t.model} ${range(t)}`).join(", ")}`;
}

/** Terminal table: every measured point, then how many meet their target and which cells were not run. */
export function formatTargetsTable(report: TargetReport): string {
  const table = new Table({ head: HEAD, style: { head: [], border: [] } });
  for (const c of report.checks) table.push(cells(c));
  return [table.toString(), summaryLine(report), unmeasuredLine(report)]
    .filter((l) => l !== undefined)
    .join("\n");
}

/** The same as a markdown table. */
export function targetsToMarkdown(report: TargetReport): string {
  const line = (values: readonly string[]) => `| ${values.join(" | ")} |`;
  const out = [line(HEAD), line(HEAD.map(() => "---")), ...report.checks.map((c) => line(cells(c)))];
  out.push("", summaryLine(report));
  const missing = unmeasuredLine(report);
  if (missing !== undefined) out.push("", missing);
  return `${out.join("\n")}\n`;
}
