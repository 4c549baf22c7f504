/**
 * `trirun-bench`: measure TriRun against cuBLAS FP16 on a GPU (`run`, the default),
 * list the shapes (`shapes`), or render charts and markdown from a results file
 * without a GPU (`render`).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Command, CommanderError, Option } from "commander";
import { comparisonToMarkdown, compareResults, formatComparisonTable } from "./compare.js";
import { type KernelLoadResult, loadKernel } from "./kernel-api.js";
import { type Fp16Layout, runBenchmark } from "./measure.js";
import { createProgressReporter } from "./progress.js";
import { freshSeed } from "./random.js";
import { formatSummaryTable, toCsv, toMarkdown } from "./report.js";
import { type BenchResults, type ResultRow, readResultsFile, resultsToJson } from "./results.js";
import { checkTargets, formatTargetsTable, targetsToMarkdown } from "./targets.js";
import {
  customModelSet,
  DEFAULT_BATCH_SIZES,
  DEFAULT_GROUPSIZES,
  idealModelSet,
  FIXED_MODEL_SETS,
  type LayerShape,
  MODEL_SET_IDS,
  type ModelSet,
  parseBatchSizes,
  parseGroupsizes,
  parseShape,
  resolveModelSets,
} from "./shapes.js";
import {
  type MeasuringWindow,
  summarizeTelemetry,
  summarizeWindows,
  type TelemetrySample,
} from "./telemetry.js";
import { startTelemetry, type TelemetryStart } from "./telemetry-recorder.js";

/** Exit status when no GPU (or no kernel addon) is available. */
export const EXIT_NO_GPU = 2;

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  readonly stderrIsTTY?: boolean;
}

export interface CliDependencies {
  loadKernel(): Promise<KernelLoadResult>;
  /** Loads the chart module (vega, resvg); absent from device bundles. */
  loadChart(): Promise<typeof import("./chart.js")>;
  /** Starts sampling GPU clocks and power (default: nvidia-smi, telemetry-recorder.ts). */
  startTelemetry?: typeof startTelemetry;
}

// Not a string literal, so that bundlers leave the chart's heavy dependencies out of
// the measuring bundle; `render` then runs where the package is installed.
const CHART_MODULE = "./chart.js";

const defaultDependencies: CliDependencies = {
  loadKernel,
  loadChart: () => import(/* @vite-ignore */ CHART_MODULE) as Promise<typeof import("./chart.js")>,
};

const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stderrIsTTY: process.stderr.isTTY,
};

class UsageError extends Error {}

function positiveInteger(what: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1) {
      throw new UsageError(`${what}: expected a positive integer, got "${value}"`);
    }
    return Number(value);
  };
}

function positiveNumber(what: string) {
  return (value: string): number => {
    const number = Number(value);
    if (value.trim() === "" || !Number.isFinite(number) || number <= 0) {
      throw new UsageError(`${what}: expected a positive number, got "${value}"`);
    }
    return number;
  };
}

function wrapRange<T>(parse: (value: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
  };
}

interface RunOptions {
  models?: string;
  shape: LayerShape[];
  batch: number[];
  groupsize: number[];
  quick?: boolean;
  hot?: boolean;
  coldFactor: number;
  samples?: number;
  minSampleUs: number;
  warmupUs: number;
  sustainMs?: number;
  fp16Layout: Fp16Layout;
  seed?: number;
  json?: string;
  csv?: string;
  markdown?: string;
  out?: string;
  commit?: string;
  layers: boolean;
  perLayerMarkdown: boolean;
  timeLimit?: number;
  telemetry: boolean;
  telemetryInterval: number;
}

const QUICK_BATCH_SIZES = [1, 16, 64, 256, 1024];

function noGpuMessage(reason: string): string {
  return (
    `trirun-bench: no CUDA GPU available: ${reason.split("\n")[0]}\n` +
    "The benchmark measures on an NVIDIA GPU (compute capability 8.0 or newer) through @trirun/kernel-native.\n" +
    "Without a GPU you can still list the shapes (`trirun-bench shapes`) and render charts and markdown\n" +
    "from a results file written on a GPU machine (`trirun-bench render results.json --out dir`).\n"
  );
}

async function writeOutputs(results: BenchResults, options: RunOptions, io: CliIo, deps: CliDependencies) {
  const written: string[] = [];
  const write = async (file: string, text: string) => {
    // "-" writes to standard output (the tables go there too unless --no-layers).
    if (file === "-") {
      io.stdout(text);
      return;
    }
    await writeFile(file, text);
    written.push(file);
  };
  if (options.json) await write(options.json, resultsToJson(results));
  if (options.csv) await write(options.csv, toCsv(results));
  const perLayer = { perLayer: options.perLayerMarkdown };
  if (options.markdown) await write(options.markdown, toMarkdown(results, perLayer));
  if (options.out) {
    await mkdir(options.out, { recursive: true });
    await write(join(options.out, "results.json"), resultsToJson(results));
    await write(join(options.out, "results.csv"), toCsv(results));
    try {
      const chart = await deps.loadChart();
      const files = await chart.renderReport(results, options.out, perLayer);
      written.push(files.svg, files.png, files.markdown);
    } catch (error) {
      const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
      await write(join(options.out, "benchmarks.md"), toMarkdown(results, perLayer));
      io.stderr(
        `trirun-bench: chart not rendered here (${reason}); render it elsewhere with ` +
          `\`trirun-bench render ${join(options.out, "results.json")} --out <dir>\`\n`,
      );
    }
  }
  for (const file of written) io.stderr(`wrote ${file}\n`);
}

async function runCommand(
  options: RunOptions,
  commandLine: string,
  io: CliIo,
  deps: CliDependencies,
): Promise<number> {
  const modelIds = options.models ? options.models.split(",").map((id) => id.trim()) : [];
  const batchSizes =
    options.quick && options.batch === DEFAULT_BATCH_SIZES ? QUICK_BATCH_SIZES : options.batch;
  const samples = options.samples ?? (options.quick ? 10 : 25);
  // Validate the model names before looking for a GPU (the SM count only matters for `ideal`).
  resolveModelSets(modelIds, 1);

  const kernel = await deps.loadKernel();
  if (!kernel.ok) {
    io.stderr(noGpuMessage(kernel.reason));
    return EXIT_NO_GPU;
  }
  const device = kernel.api.devices()[0];
  const telemetry: TelemetryStart = options.telemetry
    ? (deps.startTelemetry ?? startTelemetry)({
        gpu: device.pciBusId || "0",
        intervalMs: options.telemetryInterval,
      })
    : { ok: false, reason: "turned off (--no-telemetry)" };
  if (!telemetry.ok) {
    io.stderr(`trirun-bench: GPU clocks and power not recorded: ${telemetry.reason}\n`);
  }
  const modelSets: ModelSet[] = resolveModelSets(
    modelIds.length === 0 && options.shape.length === 0 ? ["all"] : modelIds,
    device.smCount,
  );
  if (options.shape.length > 0) modelSets.push(customModelSet(options.shape));
  io.stderr(
    `device: ${device.name} (sm_${device.computeCapability.replace(".", "")}, ${device.smCount} SMs, ` +
      `${(device.l2Bytes / 2 ** 20).toFixed(0)} MiB L2); ${options.hot ? "hot" : "cold"} weights; ` +
      `sets: ${modelSets.map((s) => s.id).join(", ")}; m: ${batchSizes.join(",")}; ` +
      `group sizes: ${options.groupsize.join(",")}\n`,
  );

  // With `--json -` (or --csv/--markdown) standard output carries only that data.
  const dataOnStdout = [options.json, options.csv, options.markdown].includes("-");
  const reporter = createProgressReporter(
    { write: io.stderr, isTTY: io.stderrIsTTY },
    options.layers && !dataOnStdout ? io.stdout : undefined,
  );
  let results: BenchResults;
  const windows: (MeasuringWindow & { rows: readonly ResultRow[] })[] = [];
  let gpuSamples: TelemetrySample[] = [];
  try {
    results = runBenchmark(kernel.api, {
      modelSets,
      batchSizes,
      groupsizes: options.groupsize,
      mode: options.hot ? "hot" : "cold",
      coldFactor: options.coldFactor,
      samples,
      minSampleUs: options.minSampleUs,
      warmupUs: options.warmupUs,
      sustainUs: (options.sustainMs ?? 0) * 1000,
      fp16Layout: options.fp16Layout,
      seed: options.seed ?? freshSeed(),
      command: commandLine,
      commit: options.commit ?? process.env.TRIRUN_COMMIT ?? null,
      timeLimitS: options.timeLimit,
      onProgress: (event) => {
        if (event.kind === "rows") windows.push(event);
        reporter.onProgress(event);
      },
    });
  } finally {
    reporter.stop();
    if (telemetry.ok) gpuSamples = await telemetry.recorder.stop();
  }
  results = withTelemetry(results, telemetry, gpuSamples, windows);
  (dataOnStdout ? io.stderr : io.stdout)(`${formatSummaryTable(results)}\n`);
  if (results.meta.stoppedEarly) {
    io.stderr(
      `trirun-bench: stopped at the time limit (${options.timeLimit} s); the results are incomplete\n`,
    );
  }
  await writeOutputs(results, options, io, deps);
  return 0;
}

/** The results with the run's telemetry summary and each row's, or a note saying why there is none. */
function withTelemetry(
  results: BenchResults,
  telemetry: TelemetryStart,
  samples: readonly TelemetrySample[],
  windows: readonly (MeasuringWindow & { rows: readonly ResultRow[] })[],
): BenchResults {
  if (!telemetry.ok)
    return { ...results, meta: { ...results.meta, telemetry: null, telemetryNote: telemetry.reason } };
  const run = summarizeTelemetry(samples);
  if (run === null) {
    const note = `${telemetry.recorder.source} returned no samples`;
    return { ...results, meta: { ...results.meta, telemetry: null, telemetryNote: note } };
  }
  const gpuOf = new Map<ResultRow, ReturnType<typeof summarizeTelemetry>>();
  const summaries = summarizeWindows(samples, windows);
  windows.forEach((w, i) => {
    for (const row of w.rows) gpuOf.set(row, summaries[i]);
  });
  return {
    ...results,
    meta: {
      ...results.meta,
      telemetry: { ...run, source: telemetry.recorder.source, intervalMs: telemetry.recorder.intervalMs },
    },
    rows: results.rows.map((row) => ({ ...row, gpu: gpuOf.get(row) ?? null })),
  };
}

function shapesCommand(sms: number | undefined, io: CliIo): number {
  const sets: ModelSet[] = [...(sms ? [idealModelSet(sms)] : []), ...FIXED_MODEL_SETS];
  const lines: string[] = [];
  if (!sms) lines.push("ideal: n = 256 x SM count, k = 4 x n (pass --sms N to see it)");
  for (const set of sets) {
    const layers = set.layers.map((l) => `${l.layer} (${l.k}, ${l.n})`).join(", ");
    lines.push(`${set.id}: ${layers}  [${set.source}]`);
  }
  io.stdout(`${lines.join("\n")}\n`);
  return 0;
}

/**
 * A command's terminal table on standard output, and with `--markdown FILE` its markdown in that file;
 * with `--markdown -` standard output carries only the markdown, as `run` does.
 */
async function printWithMarkdown(
  table: string,
  markdown: () => string,
  markdownFile: string | undefined,
  io: CliIo,
): Promise<void> {
  if (markdownFile === "-") {
    io.stdout(markdown());
    return;
  }
  io.stdout(`${table}\n`);
  if (markdownFile) {
    await writeFile(markdownFile, markdown());
    io.stderr(`wrote ${markdownFile}\n`);
  }
}

async function compareCommand(
  beforeFile: string,
  afterFile: string,
  markdownFile: string | undefined,
  io: CliIo,
): Promise<number> {
  const comparison = compareResults(await readResultsFile(beforeFile), await readResultsFile(afterFile));
  await printWithMarkdown(
    formatComparisonTable(comparison),
    () => comparisonToMarkdown(comparison),
    markdownFile,
    io,
  );
  return comparison.rows.length > 0 ? 0 : 1;
}

async function targetsCommand(
  files: readonly string[],
  groupsize: number,
  markdownFile: string | undefined,
  io: CliIo,
): Promise<number> {
  const results = await Promise.all(files.map((file) => readResultsFile(file)));
  let report: ReturnType<typeof checkTargets>;
  try {
    report = checkTargets(results, { groupsize });
  } catch (error) {
    if (error instanceof RangeError) throw new UsageError(error.message.replace(/^checkTargets: /, ""));
    throw error;
  }
  if (report.checks.length === 0) {
    throw new UsageError(
      `${files.join(", ")} has no complete g${groupsize} timings of the target sets (llama2-70b, llama2-7b, trilm-3.9b) at a target's batch size`,
    );
  }
  await printWithMarkdown(formatTargetsTable(report), () => targetsToMarkdown(report), markdownFile, io);
  return 0;
}

async function renderCommand(
  file: string,
  out: string,
  perLayer: boolean,
  io: CliIo,
  deps: CliDependencies,
): Promise<number> {
  const results = await readResultsFile(file);
  let chart: typeof import("./chart.js");
  try {
    chart = await deps.loadChart();
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    io.stderr(`trirun-bench render: the chart libraries are not available here (${reason})\n`);
    return 1;
  }
  const files = await chart.renderReport(results, out, { perLayer });
  io.stdout(`${formatSummaryTable(results)}\n`);
  io.stderr(`wrote ${files.svg}\nwrote ${files.png}\nwrote ${files.markdown}\n`);
  return 0;
}

function buildProgram(
  io: CliIo,
  deps: CliDependencies,
  argv: readonly string[],
  setResult: (p: Promise<number>) => void,
) {
  const program = new Command("trirun-bench")
    .description("Benchmark the TriRun FP16 x INT2 kernel against cuBLAS FP16")
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError("(run trirun-bench --help for usage)");

  program
    .command("run", { isDefault: true })
    .description("measure on the GPU (default command)")
    .option("--models <ids>", `model sets, comma-separated: all, ${MODEL_SET_IDS.join(", ")} (default: all)`)
    .option(
      "--shape <k,n>",
      "add a custom layer shape (k = in, n = out); repeatable",
      (value: string, previous: LayerShape[]) => [...previous, wrapRange(parseShape)(value)],
      [] as LayerShape[],
    )
    .option(
      "--batch <list>",
      "batch sizes m, comma-separated",
      wrapRange(parseBatchSizes),
      DEFAULT_BATCH_SIZES as number[],
    )
    .option("--groupsize <list>", "group sizes: 128 and/or -1 (per column)", wrapRange(parseGroupsizes), [
      ...DEFAULT_GROUPSIZES,
    ])
    .option("--quick", `fewer batch sizes (${QUICK_BATCH_SIZES.join(",")}) and 10 samples`)
    .option("--hot", "one weight buffer (L2-warm where it fits), as the reference benchmark; default: cold")
    .option(
      "--cold-factor <x>",
      "cold: weight copies per side exceed this many times L2",
      positiveNumber("--cold-factor"),
      4,
    )
    .option(
      "--samples <n>",
      "samples per side and row (default 25, --quick 10)",
      positiveInteger("--samples"),
    )
    .option("--min-sample-us <us>", "minimum GPU time of one sample", positiveNumber("--min-sample-us"), 200)
    .option("--warmup-us <us>", "warm-up GPU time per side and row", positiveNumber("--warmup-us"), 2000)
    .option(
      "--sustain-ms <ms>",
      "sustained timing, for rows at the GPU's power cap: each side runs alone, back to back, this long " +
        "before its samples (default: the sides' samples interleaved)",
      positiveNumber("--sustain-ms"),
    )
    .addOption(
      new Option("--fp16-layout <layout>", "FP16 weight layout: nk = (n, k) like Linear.weight, kn = (k, n)")
        .choices(["nk", "kn"])
        .default("nk"),
    )
    .option("--seed <n>", "seed of the random inputs (default: fresh)", positiveInteger("--seed"))
    .option("--json <file>", "write the results as JSON (- for standard output)")
    .option("--csv <file>", "write the rows as CSV (- for standard output)")
    .option("--markdown <file>", "write the markdown tables (- for standard output)")
    .option(
      "--out <dir>",
      "write results.json, results.csv, benchmarks.md and the chart (if renderable) to dir",
    )
    .option("--commit <rev>", "source revision to record (default: $TRIRUN_COMMIT)")
    .option("--no-layers", "print only the summary, not a table per layer")
    .option("--no-telemetry", "do not sample the GPU's clocks, power and clock reasons with nvidia-smi")
    .option(
      "--telemetry-interval <ms>",
      "nvidia-smi sampling interval (at least 100)",
      (value: string) => {
        const ms = positiveInteger("--telemetry-interval")(value);
        if (ms < 100) throw new UsageError(`--telemetry-interval: at least 100 ms, got ${ms}`);
        return ms;
      },
      200,
    )
    .option("--no-per-layer-markdown", "leave the per-layer table out of the markdown")
    .option(
      "--time-limit <s>",
      "start no new measurement after this many seconds; write what was measured",
      positiveNumber("--time-limit"),
    )
    .action((options: RunOptions) => {
      setResult(runCommand(options, `trirun-bench ${argv.join(" ")}`.trim(), io, deps));
    });

  program
    .command("shapes")
    .description("list the model sets and their (k, n) layer shapes")
    .option("--sms <n>", "SM count for the ideal shape", positiveInteger("--sms"))
    .action((options: { sms?: number }) => {
      setResult(Promise.resolve(shapesCommand(options.sms, io)));
    });

  program
    .command("compare")
    .description("compare two results files (e.g. before and after a kernel change); needs no GPU")
    .argument("<before.json>", "the earlier results")
    .argument("<after.json>", "the later results")
    .option("--markdown <file>", "also write the comparison as a markdown table (- for standard output)")
    .action((before: string, after: string, options: { markdown?: string }) => {
      setResult(compareCommand(resolve(before), resolve(after), options.markdown, io));
    });

  program
    .command("targets")
    .description(
      "check results files against the kernel's speed targets (issue #10: summed speedup per model set and batch size); needs no GPU",
    )
    .argument(
      "<results.json...>",
      "results written by `trirun-bench --json` or `--out`, of one device; a later file's (set, m) points " +
        "replace an earlier one's (e.g. interleaved timings, then sustained ones for large m)",
    )
    .option("--groupsize <g>", "group size whose timings to check", positiveInteger("--groupsize"), 128)
    .option("--markdown <file>", "also write the check as a markdown table (- for standard output)")
    .action((files: string[], options: { groupsize: number; markdown?: string }) => {
      setResult(
        targetsCommand(
          files.map((file) => resolve(file)),
          options.groupsize,
          options.markdown,
          io,
        ),
      );
    });

  program
    .command("render")
    .description("render the chart (SVG, PNG) and markdown from a results JSON file; needs no GPU")
    .argument("<results.json>", "results written by `trirun-bench --json` or `--out`")
    .option("--out <dir>", "output folder", ".")
    .option("--no-per-layer-markdown", "leave the per-layer table out of the markdown")
    .action((file: string, options: { out: string; perLayerMarkdown: boolean }) => {
      setResult(renderCommand(resolve(file), resolve(options.out), options.perLayerMarkdown, io, deps));
    });
  return program;
}

/** Runs the CLI with `argv` (without `node` and the script) and returns the exit status. */
export async function main(
  argv: readonly string[],
  io: CliIo = processIo,
  deps: CliDependencies = defaultDependencies,
): Promise<number> {
  let result: Promise<number> = Promise.resolve(0);
  const program = buildProgram(io, deps, argv, (p) => {
    result = p;
  });
  try {
    await program.parseAsync([...argv], { from: "user" });
    return await result;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === "commander.helpDisplayed" || error.code === "commander.version" ? 0 : 1;
    }
    if (error instanceof UsageError || error instanceof RangeError || error instanceof TypeError) {
      io.stderr(`trirun-bench: ${error.message}\n`);
      return 1;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`trirun-bench: ${message}\n`);
    return 1;
  }
}
