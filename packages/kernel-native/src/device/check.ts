// The self-contained GPU check of @trirun/kernel-native (bundled by
// scripts/device-bundle.mjs into .device/check.mjs with the addon beside it).
//
//   node check.mjs [--out DIR] [--only api,correctness,speed,sanitize] [--quick] [--seed N] [--reps N]
//
// Writes DIR/report.json and prints a short summary. Exit status: 0 all
// checks passed, 1 a check failed, 2 no usable CUDA device (or addon).
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { arch, cpus, hostname, platform, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { devices, memoryInfo } from "../device.js";
import { cublasLibraryPath } from "../matmul.js";
import { available, nativeInfo, unavailableReason } from "../native.js";
import { type ApiResult, runApiChecks } from "./api.js";
import {
  ALL_MS,
  type CorrectnessRow,
  configSpecs,
  QUICK_MS,
  REL_TOLERANCE,
  runSweep,
  type SweepCase,
  summarize,
} from "./correctness.js";
import { registry, runRegistered, type TestOutcome } from "./mini-vitest.js";
import { Rng } from "./numeric.js";
import { runSpeed, SPEED_SHAPES_70B, type SpeedRow, sumsByM, TARGET_SPEEDUP } from "./speed.js";

declare const __TRIRUN_BUILD__: { commit: string; builtAt: string; cudaArchs: string } | undefined;
const build = typeof __TRIRUN_BUILD__ === "undefined" ? undefined : __TRIRUN_BUILD__;

const PARTS = ["api", "correctness", "speed", "sanitize", "tests"] as const;
type Part = (typeof PARTS)[number];

const SMALL_SHAPES: [number, number][] = [
  [128, 256],
  [256, 512],
  [512, 768],
  // 48 column-slices of 2 x 128: the narrow layers' dispatch rules on sm_90 (mid pairs, unsplit tails)
  [2048, 3072],
];
const LLAMA_SHAPES: [number, number][] = [
  [4096, 12288],
  [8192, 8192],
  [11008, 4096],
];

function logToStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

export interface CheckOptions {
  out: string;
  parts: Part[];
  quick: boolean;
  seed: number;
  reps: number;
}

/** Parses the command line; throws RangeError on bad flags. Returns undefined after printing --help. */
export function parseCheckArgs(argv: string[]): CheckOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string", default: "device-out" },
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      seed: { type: "string" },
      reps: { type: "string" },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      "usage: check.mjs [--out DIR] [--only api,correctness,speed,sanitize,tests] [--quick] [--seed N] [--reps N]\n" +
        "  default parts: api,correctness,speed,tests. sanitize: a small sweep for compute-sanitizer (fp64 CPU\n" +
        "  reference, no cuBLAS). tests: the GPU test files of the workspace bundled beside the check (tests/*.mjs).\n",
    );
    return undefined;
  }
  const parts = (values.only ?? "api,correctness,speed,tests").split(",").map((p) => p.trim());
  for (const p of parts) {
    if (!(PARTS as readonly string[]).includes(p))
      throw new RangeError(`--only: unknown part "${p}" (${PARTS.join(", ")})`);
  }
  const seed =
    values.seed === undefined ? (Date.now() ^ (process.pid << 8)) >>> 0 : Number(values.seed) >>> 0;
  const reps = values.reps === undefined ? (values.quick ? 50 : 100) : Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1)
    throw new RangeError(`--reps: expected a positive integer, got ${values.reps}`);
  return { out: resolve(values.out), parts: parts as Part[], quick: values.quick, seed, reps };
}

function correctnessPlan(quick: boolean, smCount: number): SweepCase[] {
  const specs = configSpecs(smCount, !quick);
  const cases: SweepCase[] = [];
  const shapes = quick ? [...SMALL_SHAPES, LLAMA_SHAPES[0]] : [...SMALL_SHAPES, ...LLAMA_SHAPES];
  for (const [k, n] of shapes) {
    for (const groupsize of [128, -1]) {
      const ms = quick ? QUICK_MS : ALL_MS;
      cases.push({ k, n, groupsize, ms, configs: specs });
    }
  }
  return cases;
}

function sanitizePlan(smCount: number): SweepCase[] {
  // Every tile shape and the batch-slice loop, on problems small enough for racecheck.
  const specs = configSpecs(smCount, false);
  const ms = [1, 9, 16, 17, 64, 65, 129];
  return [
    { k: 256, n: 512, groupsize: 128, ms, configs: specs },
    { k: 256, n: 512, groupsize: -1, ms, configs: specs },
    { k: 1024, n: 1024, groupsize: 128, ms: [1, 12, 33, 129], configs: specs },
    // 64 tiles of 128 columns: on sm_90 the dispatcher's own choice for 129..224 rows there is one Hopper
    // slice of the rows rounded up to 16 (144 and 176 here).
    { k: 1024, n: 8192, groupsize: 128, ms: [129, 176], configs: specs.filter((s) => s.label === "auto") },
  ];
}

/** Imports each bundled test file and runs what it registered (see mini-vitest.ts). */
async function runBundledTests(dir: string | undefined, log: (line: string) => void): Promise<TestOutcome[]> {
  if (dir === undefined || !existsSync(dir)) {
    log("tests: no bundled test files");
    return [];
  }
  const outcomes: TestOutcome[] = [];
  for (const name of readdirSync(dir)
    .filter((f) => f.endsWith(".mjs"))
    .sort()) {
    registry().file = name;
    try {
      await import(pathToFileURL(join(dir, name)).href);
      const results = await runRegistered(name);
      outcomes.push(...results);
      for (const r of results)
        log(`tests ${r.status.padEnd(7)} ${name}: ${r.name}${r.error ? `: ${r.error}` : ""}`);
    } catch (error) {
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      outcomes.push({ file: name, name: "(loading the file)", status: "failed", ms: 0, error: detail });
      log(`tests failed  ${name}: ${detail}`);
    }
  }
  return outcomes;
}

function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => c.padStart(widths[i])).join("  ")).join("\n");
}

function correctnessTable(rows: readonly CorrectnessRow[]): string {
  const groups = new Map<string, CorrectnessRow[]>();
  for (const r of rows) {
    const key = `${r.k}|${r.n}|${r.groupsize}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return formatTable(
    ["k", "n", "g", "runs", "failed", "worst rel err", "tiles used"],
    [...groups.values()].map((g) => {
      const s = summarize(g);
      return [
        g[0].k,
        g[0].n,
        g[0].groupsize,
        s.runs,
        s.failed,
        s.worstRelError.toExponential(2),
        s.tiles.join(", "),
      ];
    }),
  );
}

function speedTable(rows: readonly SpeedRow[], groupsize: number): string {
  return formatTable(
    ["m", "trirun us (sum)", "cublas us (sum)", "speedup", `>= ${TARGET_SPEEDUP}x`],
    sumsByM(rows, groupsize).map((s) => [
      s.m,
      s.trirunUs.toFixed(1),
      s.cublasUs.toFixed(1),
      s.speedup.toFixed(2),
      s.m <= 16 ? (s.speedup >= TARGET_SPEEDUP ? "yes" : "NO") : "-",
    ]),
  );
}

/** Test hooks: smaller plans than the acceptance sweep. */
export interface CheckOverrides {
  /** Folder of bundled GPU test files (part "tests"). */
  testsDir?: string;
  correctnessPlan?: SweepCase[];
  sanitizePlan?: SweepCase[];
  log?: (line: string) => void;
  print?: (text: string) => void;
}

/** Runs the selected parts, writes <out>/report.json; returns the exit status (0 ok, 1 failures, 2 no device). */
export async function runCheck(args: CheckOptions, overrides: CheckOverrides = {}): Promise<number> {
  const log = overrides.log ?? logToStderr;
  const print = overrides.print ?? ((text: string) => process.stdout.write(text));
  mkdirSync(args.out, { recursive: true });
  const reportPath = join(args.out, "report.json");
  const report: Record<string, unknown> = {
    schema: "trirun-device-check/1",
    startedAt: new Date().toISOString(),
    build,
    args: { ...args, out: undefined },
    host: {
      hostname: hostname(),
      platform: platform(),
      arch: arch(),
      cpus: cpus().length,
      memoryBytes: totalmem(),
      node: process.version,
    },
  };
  const failures: string[] = [];
  const write = () => {
    report.finishedAt = new Date().toISOString();
    report.failures = failures;
    report.ok = failures.length === 0;
    writeFileSync(reportPath, `${JSON.stringify(report, null, 1)}\n`);
  };

  report.native = nativeInfo();
  if (!available()) {
    const reason = unavailableReason();
    report.available = false;
    report.reason = reason;
    failures.push(`no usable CUDA device: ${reason}`);
    write();
    print(`trirun device check: NO CUDA DEVICE: ${reason}\nreport: ${reportPath}\n`);
    return 2;
  }
  report.available = true;
  const device = devices()[0];
  report.devices = devices();
  report.memory = memoryInfo();
  try {
    report.cublas = cublasLibraryPath();
  } catch (error) {
    report.cublas = { error: (error as Error).message };
  }
  log(
    `device: ${device.name} (sm_${device.major}${device.minor}, ${device.smCount} SMs, L2 ${(device.l2Bytes / 2 ** 20).toFixed(0)} MiB); seed ${args.seed}`,
  );
  const rng = new Rng(args.seed);
  const durations: Record<string, number> = {};
  report.durations = durations;
  const summary: string[] = [
    `trirun device check on ${device.name} (sm_${device.major}${device.minor}), seed ${args.seed}`,
  ];

  for (const part of args.parts) {
    const started = performance.now();
    try {
      if (part === "api") {
        const results: ApiResult[] = runApiChecks(rng, log);
        report.api = results;
        const failed = results.filter((r) => !r.pass);
        for (const f of failed) failures.push(`api: ${f.name}: ${f.detail}`);
        summary.push(`api: ${results.length - failed.length}/${results.length} checks passed`);
      } else if (part === "correctness" || part === "sanitize") {
        const plan =
          part === "sanitize"
            ? (overrides.sanitizePlan ?? sanitizePlan(device.smCount))
            : (overrides.correctnessPlan ?? correctnessPlan(args.quick, device.smCount));
        const rows = runSweep(plan, rng, { useCublas: part === "correctness", log });
        const s = summarize(rows);
        report[part] = { tolerance: REL_TOLERANCE, summary: s, rows };
        if (s.failed > 0) failures.push(`${part}: ${s.failed} of ${s.runs} runs failed`);
        summary.push(
          `${part}: ${s.runs - s.failed}/${s.runs} runs passed, worst rel error ${s.worstRelError.toExponential(2)} (tolerance ${REL_TOLERANCE}), reference vs fp64 ${s.worstReferenceRelError.toExponential(2)}, row blocks ${s.mBlocks.join(", ")}, tiles ${s.tiles.join(", ")}`,
          correctnessTable(rows),
        );
      } else if (part === "tests") {
        const outcomes = await runBundledTests(overrides.testsDir, log);
        report.tests = outcomes;
        const failed = outcomes.filter((o) => o.status === "failed");
        for (const f of failed) failures.push(`tests: ${f.file}: ${f.name}: ${f.error}`);
        const passed = outcomes.filter((o) => o.status === "passed").length;
        const skippedCount = outcomes.filter((o) => o.status === "skipped").length;
        summary.push(
          `tests: ${passed} passed, ${failed.length} failed, ${skippedCount} skipped (bundled GPU test files)`,
        );
      } else if (part === "speed") {
        const ms = args.quick
          ? [1, 2, 4, 8, 16, 64]
          : [...Array.from({ length: 16 }, (_, i) => i + 1), 32, 64, 128, 256];
        const groupsizes = args.quick ? [128] : [128, -1];
        const { rows, copyBandwidth } = runSpeed(rng, {
          ms,
          shapes: SPEED_SHAPES_70B,
          groupsizes,
          reps: args.reps,
          warmup: 10,
          device,
          log,
        });
        const sums = Object.fromEntries(groupsizes.map((g) => [g, sumsByM(rows, g)]));
        const target = sumsByM(rows, 128).filter((s) => s.m <= 16);
        const met = target.length > 0 && target.every((s) => s.speedup >= TARGET_SPEEDUP);
        report.speed = { targetSpeedup: TARGET_SPEEDUP, targetMet: met, copyBandwidth, sums, rows };
        summary.push(
          `speed (70B shapes summed, g=128, cold weights, median of ${args.reps}): target ${TARGET_SPEEDUP}x for m<=16 ${met ? "MET" : "NOT met"}; device copy ${(copyBandwidth / 1e12).toFixed(2)} TB/s`,
          speedTable(rows, 128),
        );
      }
    } catch (error) {
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      failures.push(`${part}: aborted: ${detail}`);
      summary.push(`${part}: ABORTED: ${detail}`);
      log(`${part}: aborted: ${(error as Error).stack ?? detail}`);
    }
    durations[part] = (performance.now() - started) / 1000;
    write(); // keep what is done if a later part hangs or crashes
  }
  write();
  summary.push(
    failures.length === 0
      ? "RESULT: all checks passed"
      : `RESULT: ${failures.length} failure(s):\n  ${failures.join("\n  ")}`,
  );
  print(`${summary.join("\n")}\nreport: ${reportPath}\n`);
  return failures.length === 0 ? 0 : 1;
}
