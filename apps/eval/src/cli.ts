#!/usr/bin/env node
import { existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Backend, resolveBackend } from "@trirun/layers";
import { Command, InvalidArgumentError, Option } from "commander";
import { generate, sampleSequences } from "./data/sampling.js";
import { loadTokenizer, type TextTokenizer } from "./data/tokenizer.js";
import type { TokenFileFormat } from "./data/tokens.js";
import { detectModelFormat, loadModel } from "./model/loaders/index.js";
import {
  checkCheckpointMatchesModel,
  type LoadedCheckpoint,
  loadQuantizedCheckpoint,
  recordedActivations,
  writeQuantizedCheckpoint,
} from "./checkpoint.js";
import { ModelLoadError } from "./model/loaders/errors.js";
import { checkCheckpointOutput, checkOutputFile, writeOutputFile } from "./output.js";
import { checkChoiceItems, readChoiceTasks } from "./tasks.js";
import { withActivationBits } from "./model/config.js";
import { CpuLlamaRuntime } from "./model/cpu-runtime.js";
import type { LlamaModel } from "./model/llama.js";
import type { LlamaRuntime } from "./model/runtime.js";
import {
  chooseRuntime,
  createRuntime,
  RUNTIME_REQUESTS,
  type RuntimeKind,
  type RuntimeRequest,
  runtimeEnvironment,
} from "./model/runtime-select.js";
import {
  chooseGroupsize,
  type CalibrationInfo,
  describeCalibration,
  type EvalData,
  evaluatePair,
  levelsOf,
  prepareEvalData,
  quantizeModel,
  readCalibration,
} from "./pipeline.js";
import type { Levels, QuantizationMethod } from "./quantize/calibrators.js";
import { QUANTIZATION_METHODS } from "./quantize/calibrators.js";
import { type EvalReport, formatMarkdown, formatTerminal } from "./report.js";
import { parseBatchList, SPEED_SHAPE_NAMES, type WeightFormat } from "./speed/shapes.js";

/** ../shared next to the repository, from the package folder (dist/ or src/ sit one level below it). */
const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const sharedModels = resolve(packageDir, "../../../shared/models");
const DEFAULT_MODEL = join(sharedModels, "stories260K.bin");
const DEFAULT_CALIBRATION = join(sharedModels, "stories260K-samples-8192x256.u16");

function int(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

function parseGroupsize(v: string): 128 | -1 | "auto" {
  if (v === "auto") return "auto";
  if (v === "128") return 128;
  if (v === "-1") return -1;
  throw new InvalidArgumentError('groupsize must be 128, -1 (one scale per output column) or "auto"');
}

interface CalibrationFlags {
  activations: ActivationsFlag;
  method: QuantizationMethod;
  groupsize: 128 | -1 | "auto";
  levels: Levels;
  calib?: string;
  calibSeqLen: number;
  calibSamples: number;
  seed: number;
  actOrder?: boolean;
  negativeScales?: boolean;
  damp?: number;
  backend: "auto" | Backend;
  quiet?: boolean;
}

/**
 * --backend: "auto" leaves the choice to @trirun/layers (CUDA when a device is usable); an explicit
 * "cuda" without a device fails here, with the flag's name in the message.
 */
function backendOf(flag: "auto" | Backend): Backend | undefined {
  return flag === "auto" ? undefined : resolveBackend(flag, "--backend");
}

/** run/quantize need the unquantized model: a TriRun checkpoint as <model> would fail deep inside. */
function requireUnquantized(modelPath: string): void {
  if (detectModelFormat(modelPath) === "trirun") {
    throw new ModelLoadError(
      "ERR_MODEL_FORMAT",
      `${modelPath}: this is a TriRun checkpoint (already quantized); <model> must be the unquantized model (give the checkpoint with --quantized)`,
    );
  }
}

/**
 * Loads --quantized and refuses a checkpoint that was made from another model; one made from other
 * weights of the same architecture is run, with a warning on stderr (returned for the report too).
 */
async function loadCheckpointFor(
  fp: LlamaModel,
  modelPath: string,
  checkpointPath: string,
  backend: Backend | undefined,
): Promise<{ loaded: LoadedCheckpoint; warning?: string }> {
  const loaded = await loadQuantizedCheckpoint(checkpointPath, { backend });
  const warning = checkCheckpointMatchesModel(fp, modelPath, loaded, checkpointPath);
  if (warning === undefined) return { loaded };
  process.stderr.write(`trirun-eval: warning: ${warning}\n`);
  return { loaded, warning };
}

function backendOption(): Option {
  return new Option("--backend <backend>", "backend of the linear layers")
    .choices(["auto", "cpu", "cuda"])
    .default("auto");
}

type ActivationsFlag = "fp" | "int8";

function activationsOption(): Option {
  return new Option(
    "--activations <kind>",
    "inputs of the block linear layers: fp (as computed) or int8 (quantized per row, as BitNet b1.58 runs: W1.58A8)",
  )
    .choices(["fp", "int8"])
    .default("fp");
}

/**
 * The activation mode to run a checkpoint with: --activations when given on the command line (with a
 * note on stderr when it differs from what the checkpoint was quantized with), else the checkpoint's
 * recorded mode, else fp. GPTQ with int8 activations fits the weights to 8-bit inputs: running them
 * with fp inputs would measure another model than the one quantized.
 */
function activationsFor(
  cmd: Command,
  flag: ActivationsFlag,
  checkpointPath: string | undefined,
): ActivationsFlag {
  if (checkpointPath === undefined) return flag;
  const recorded = recordedActivations(checkpointPath);
  if (cmd.getOptionValueSource("activations") !== "cli") return recorded ?? flag;
  if (recorded !== undefined && recorded !== flag) {
    process.stderr.write(
      `trirun-eval: note: ${checkpointPath} was quantized with ${recorded} activations; running with ${flag} as --activations asks\n`,
    );
  }
  return flag;
}

/** The model with the activation quantization the flag asks for. */
function withActivations(model: LlamaModel, flag: ActivationsFlag): LlamaModel {
  return flag === "int8" ? withActivationBits(model, 8) : model;
}

function runtimeOption(): Option {
  return new Option(
    "--runtime <runtime>",
    "where the model ops run: cuda (the whole forward pass on the GPU), cpu (fp32 reference) or auto (cuda when a GPU holds the layers)",
  )
    .choices([...RUNTIME_REQUESTS])
    .default("auto");
}

/** The runtime for `models` as loaded; throws a clear error when an explicit "cuda" cannot run. */
function pickRuntime(request: RuntimeRequest, models: LlamaModel[]): RuntimeKind {
  return chooseRuntime(request, runtimeEnvironment(models));
}

function parseFormats(v: string): WeightFormat[] {
  const list = v.split(",").map((x) => x.trim());
  if (list.length === 0 || list.some((x) => x !== "fp16" && x !== "trirun")) {
    throw new InvalidArgumentError('formats must be a comma-separated list of "fp16" and "trirun"');
  }
  return [...new Set(list)] as WeightFormat[];
}

function addQuantizeOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--method <method>", "quantizer").choices([...QUANTIZATION_METHODS]).default("gptq"),
    )
    .addOption(
      new Option(
        "--groupsize <g>",
        "128, -1 (one scale per output column) or auto (128 when every input size allows)",
      )
        .argParser(parseGroupsize)
        .default("auto"),
    )
    .addOption(
      new Option("--levels <levels>", "GPTQ grid: ternary {-1,0,1} or int2 {-1,0,1,2}")
        .choices(["ternary", "int2"])
        .default("int2"),
    )
    .option(
      "--calib <file>",
      "calibration tokens (u16/u32 with --calib-seq-len, or JSON); default: sampled from the model",
    )
    .option("--calib-seq-len <n>", "tokens per row of a raw calibration file", int("calib-seq-len", 2), 256)
    .option("--calib-samples <n>", "calibration sequences", int("calib-samples", 1), 128)
    .option("--seed <n>", "seed for sampled sequences", int("seed", 0), 0)
    .option(
      "--act-order",
      "GPTQ: quantize input features by decreasing Hessian diagonal (@trirun/gptq's default)",
    )
    .option("--no-act-order", "GPTQ: quantize input features in their natural order")
    .option("--negative-scales", "GPTQ int2: allow negative scales (the extra level +2 on the negative side)")
    .option(
      "--damp <fraction>",
      "GPTQ: Hessian dampening, fraction of its mean diagonal (default 0.01)",
      (v: string) => {
        const x = Number(v);
        if (!Number.isFinite(x) || x < 0) throw new InvalidArgumentError("damp must be a number >= 0");
        return x;
      },
    )
    .addOption(backendOption())
    .addOption(activationsOption())
    .option("--quiet", "no progress output");
}

/** Options of addQuantizeOptions that only say how to quantize (not where layers run). */
const QUANTIZE_ONLY_OPTIONS: readonly string[] = [
  "method",
  "groupsize",
  "levels",
  "calib",
  "calibSeqLen",
  "calibSamples",
  "actOrder",
  "negativeScales",
  "damp",
];

/**
 * Refuses quantization options given on the command line where nothing is quantized (a checkpoint
 * says how it was made): silently ignoring them would report the checkpoint's method as if it were
 * the one asked for.
 */
function refuseQuantizeOptions(cmd: Command, because: string): void {
  for (const name of QUANTIZE_ONLY_OPTIONS) {
    if (cmd.getOptionValueSource(name) !== "cli") continue;
    const option = cmd.options.find((o) => o.attributeName() === name);
    const flag = option?.long ?? name;
    throw new RangeError(
      `${flag} has no effect with ${because}: the checkpoint was quantized already (its method and group size are reported); drop ${flag}`,
    );
  }
}

function calibrationData(
  fp: LlamaModel,
  f: CalibrationFlags,
): { sequences: Int32Array[]; info: CalibrationInfo } {
  if (f.calib) {
    // Rows as they are (ragged JSON rows included); too long or empty rows are refused.
    return readCalibration(f.calib, {
      seqLen: f.calibSeqLen,
      vocabSize: fp.config.vocabSize,
      maxSeqLen: fp.config.maxSeqLen,
      limit: f.calibSamples,
      seqLenFlag: "--calib-seq-len",
    });
  }
  const seqLen = Math.min(fp.config.maxSeqLen, f.calibSeqLen);
  // Calibration sampling uses a different seed range from evaluation sampling.
  const sequences = sampleSequences(new CpuLlamaRuntime(fp), {
    count: f.calibSamples,
    length: seqLen,
    seed: 1_000_000 + f.seed,
  });
  return { sequences, info: describeCalibration("sampled from the unquantized model", sequences) };
}

async function quantizeFlow(fp: LlamaModel, f: CalibrationFlags) {
  const groupsize = f.groupsize === "auto" ? chooseGroupsize(fp) : f.groupsize;
  const levels = levelsOf(f.method, f.levels);
  // RTN needs no calibration data.
  const calib = f.method === "gptq" ? calibrationData(fp, f) : undefined;
  const out = await quantizeModel(fp, {
    method: f.method,
    groupsize,
    levels,
    calibration: calib?.sequences ?? [],
    backend: backendOf(f.backend),
    gptq: { actOrder: f.actOrder, negativeScales: f.negativeScales, damp: f.damp },
    quiet: f.quiet,
  });
  return { ...out, groupsize, levels, calibration: calib?.info };
}

/** --json / --markdown targets are checked before the work, so that a bad path fails at once. */
function checkReportTargets(opts: { json?: string; markdown?: string }): void {
  if (opts.json) checkOutputFile(opts.json, "--json");
  if (opts.markdown) checkOutputFile(opts.markdown, "--markdown");
}

function emitReport(report: EvalReport, opts: { json?: string; markdown?: string }): void {
  process.stdout.write(`${formatTerminal(report)}\n`);
  if (opts.json) writeOutputFile(opts.json, `${JSON.stringify(report, null, 2)}\n`, "--json");
  if (opts.markdown) writeOutputFile(opts.markdown, formatMarkdown(report), "--markdown");
}

/** "1,403,407" (ids) or, with a tokenizer, text. */
export function parsePrompt(
  prompt: string,
  tokenizer: TextTokenizer | undefined,
  vocabSize: number,
): number[] {
  // Digits, commas, signs and spaces only: meant as ids, so a malformed list is an error, not text.
  if (/^[\s\d,+-]+$/.test(prompt) && /\d/.test(prompt) && !/^\s*\d+(\s*[, ]\s*\d+)*\s*$/.test(prompt)) {
    throw new RangeError(
      `--prompt ${JSON.stringify(prompt)}: not a list of token ids (non-negative integers separated by commas or spaces, e.g. 1,403,407)`,
    );
  }
  if (/^\s*\d+(\s*[, ]\s*\d+)*\s*$/.test(prompt)) {
    const ids = prompt
      .trim()
      .split(/[\s,]+/)
      .map(Number);
    const bad = ids.find((id) => id >= vocabSize);
    if (bad !== undefined)
      throw new RangeError(`--prompt: token ${bad} is outside the vocabulary of ${vocabSize}`);
    return ids;
  }
  if (!tokenizer) {
    throw new RangeError(
      `--prompt ${JSON.stringify(prompt)} is text, but this model has no tokenizer (tokenizer.json); give token ids such as 1,403,407`,
    );
  }
  return tokenizer.encode(prompt);
}

function tokenizerFor(modelPath: string): TextTokenizer | undefined {
  return existsSync(modelPath) && !modelPath.endsWith(".bin") ? loadTokenizer(modelPath) : undefined;
}

interface RunFlags extends CalibrationFlags {
  runtime: RuntimeRequest;
  quantized?: string;
  data?: string;
  format?: TokenFileFormat;
  seqLen?: number;
  window?: number;
  maxWindows?: number;
  skip?: number;
  sample: number;
  tasks?: string;
  json?: string;
  markdown?: string;
}

function evalDataFor(
  fp: LlamaModel,
  f: RunFlags,
  tokenizer: TextTokenizer | undefined,
  runtime: RuntimeKind,
): EvalData {
  const windowLength = f.window ?? Math.min(256, fp.config.maxSeqLen);
  const rt = createRuntime(fp, runtime);
  try {
    return evalDataWith(rt, f, windowLength, tokenizer);
  } finally {
    rt.dispose();
  }
}

function evalDataWith(
  rt: LlamaRuntime,
  f: RunFlags,
  windowLength: number,
  tokenizer: TextTokenizer | undefined,
): EvalData {
  return prepareEvalData(rt, {
    file: f.data,
    format: f.format,
    seqLen: f.seqLen,
    windowLength,
    maxWindows: f.maxWindows,
    skipSequences: f.skip,
    sampleCount: f.sample,
    seed: f.seed,
    tokenizer,
    quiet: f.quiet,
  });
}

/** The command line; with `embedded`, errors throw instead of exiting (for tests and other hosts). */
export function buildProgram(opts: { embedded?: boolean } = {}): Command {
  const program = new Command("trirun-eval")
    .description(
      "Quantize a Llama model to TriRun 2-bit weights and evaluate it against the unquantized model",
    )
    .showHelpAfterError();

  addQuantizeOptions(
    program
      .command("quantize")
      .description("quantize a model (GPTQ block by block, or RTN) and write a TriRun checkpoint")
      .argument("<model>", "llama2.c .bin or Hugging Face folder")
      .requiredOption(
        "-o, --out <dir>",
        "checkpoint folder to write (config.json + model.safetensors); never the input model's folder",
      )
      .option(
        "--force",
        "replace config.json / model.safetensors already in --out and remove another checkpoint's shards and index there",
      ),
  ).action(async (modelPath: string, f: CalibrationFlags & { out: string; force?: boolean }) => {
    // The output is checked before the (possibly long) quantization; nothing is removed until the write.
    const output = { input: modelPath, overwrite: f.force === true };
    checkCheckpointOutput(f.out, output);
    requireUnquantized(modelPath);
    const fp = withActivations(await loadModel(modelPath, { backend: backendOf(f.backend) }), f.activations);
    const q = await quantizeFlow(fp, f);
    const bytes = await writeQuantizedCheckpoint(
      f.out,
      fp,
      q.layers,
      {
        method: f.method,
        groupsize: q.groupsize,
        levels: q.levels,
        source: basename(modelPath),
        activations: f.activations,
      },
      output,
    );
    const losses = q.layers.filter((l) => l.loss !== undefined);
    process.stdout.write(
      `wrote ${f.out} (${(bytes / 2 ** 20).toFixed(3)} MiB): ${q.layers.length} layers, ${f.method} (${q.levels}), groupsize ${q.groupsize}, ${q.seconds.toFixed(1)} s` +
        (losses.length
          ? `, mean GPTQ loss ${(losses.reduce((s, l) => s + (l.loss ?? 0), 0) / losses.length).toPrecision(4)}`
          : "") +
        "\n",
    );
  });

  addQuantizeOptions(
    program
      .command("run")
      .description(
        "evaluate a quantized model (a checkpoint, or quantized now) against the unquantized model",
      )
      .argument("<model>", "the unquantized model: llama2.c .bin or Hugging Face folder")
      .option(
        "--quantized <checkpoint>",
        "TriRun checkpoint of this model (otherwise it is quantized with --method)",
      )
      .option(
        "--data <file>",
        "tokens (.u16/.u32 with --seq-len, .json) or text (.txt, needs tokenizer.json)",
      )
      .addOption(new Option("--format <format>", "data format").choices(["u16", "u32", "json", "text"]))
      .option("--seq-len <n>", "tokens per row of a raw token file", int("seq-len", 2))
      .option("--window <n>", "evaluation window length (default min(256, maxSeqLen))", int("window", 2))
      .option("--max-windows <n>", "evaluate at most this many windows", int("max-windows", 1))
      .option(
        "--skip <n>",
        "skip the first n sequences of --data (e.g. the calibration rows)",
        int("skip", 0),
      )
      .option("--sample <n>", "sequences to sample when there is no --data", int("sample", 1), 32)
      .option("--tasks <file>", "multiple-choice JSONL (context, choices, gold)")
      .option("--json <file>", "write the report as JSON")
      .option("--markdown <file>", "write the report as markdown")
      .addOption(runtimeOption()),
  ).action(async (modelPath: string, f: RunFlags, cmd: Command) => {
    checkReportTargets(f);
    if (f.quantized) refuseQuantizeOptions(cmd, "--quantized");
    requireUnquantized(modelPath);
    const activations = activationsFor(cmd, f.activations, f.quantized);
    const fp = withActivations(await loadModel(modelPath, { backend: backendOf(f.backend) }), activations);
    // Checked before the (possibly long) quantization; the quantized layers share the backend flag.
    let runtime = pickRuntime(f.runtime, [fp]);
    const tokenizer = tokenizerFor(modelPath);
    if (f.tasks) checkChoiceItems(f.tasks, readChoiceTasks(f.tasks), fp.config, tokenizer);
    let qModel: LlamaModel;
    let method: string = f.method;
    let groupsize: number;
    let levels: Levels | "unknown";
    let quantizeSeconds: number | undefined;
    let calibration: EvalReport["calibration"];
    let checkpoint: EvalReport["checkpoint"];
    const notes: string[] = [];
    if (f.quantized) {
      const { loaded, warning } = await loadCheckpointFor(fp, modelPath, f.quantized, backendOf(f.backend));
      if (warning !== undefined) notes.push(warning);
      qModel = withActivations(loaded.model, activations);
      method = loaded.meta.method;
      groupsize = loaded.meta.groupsize;
      levels = loaded.meta.levels;
      checkpoint = { path: f.quantized, bytes: loaded.bytes };
    } else {
      const q = await quantizeFlow(fp, f);
      qModel = q.model;
      groupsize = q.groupsize;
      levels = q.levels;
      quantizeSeconds = q.seconds;
      calibration = q.calibration;
    }
    runtime = pickRuntime(runtime, [fp, qModel]);
    const data = evalDataFor(fp, f, tokenizer, runtime);
    const report = evaluatePair(fp, qModel, {
      runtime,
      modelName: basename(modelPath),
      method,
      groupsize,
      levels,
      data,
      tasksFile: f.tasks,
      tokenizer,
      quantizeSeconds,
      calibration,
      checkpoint,
      notes,
      quiet: f.quiet,
    });
    emitReport(report, f);
  });

  program
    .command("generate")
    .description("continue a prompt with the unquantized model and, with --quantized, the quantized one")
    .argument("<model>", "llama2.c .bin, Hugging Face folder or TriRun checkpoint")
    .option("--quantized <checkpoint>", "also continue with this TriRun checkpoint")
    .option("--prompt <prompt>", 'token ids ("1,403,407") or, with a tokenizer, text', "1")
    .option("--length <n>", "total tokens, prompt included", int("length", 2), 48)
    .option(
      "--temperature <t>",
      "0 for greedy",
      (v: string) => {
        const x = Number(v);
        if (!Number.isFinite(x) || x < 0) throw new InvalidArgumentError("temperature must be a number >= 0");
        return x;
      },
      0,
    )
    .option("--seed <n>", "sampling seed", int("seed", 0), 0)
    .addOption(backendOption())
    .addOption(runtimeOption())
    .addOption(activationsOption())
    .action(
      async (
        modelPath: string,
        f: {
          activations: ActivationsFlag;
          quantized?: string;
          prompt: string;
          length: number;
          temperature: number;
          seed: number;
          backend: "auto" | Backend;
          runtime: RuntimeRequest;
        },
        cmd: Command,
      ) => {
        const backend = backendOf(f.backend);
        const activations = activationsFor(cmd, f.activations, f.quantized);
        const fp = withActivations(await loadModel(modelPath, { backend }), activations);
        // Checked before any token is computed: the sequence must fit the model's positions.
        if (f.length > fp.config.maxSeqLen) {
          throw new RangeError(
            `--length ${f.length} exceeds the model's ${fp.config.maxSeqLen} positions (${modelPath})`,
          );
        }
        const tokenizer = tokenizerFor(modelPath);
        const prompt = parsePrompt(f.prompt, tokenizer, fp.config.vocabSize);
        if (prompt.length > f.length) {
          throw new RangeError(
            `--prompt has ${prompt.length} tokens, more than --length ${f.length} (the total, prompt included)`,
          );
        }
        const models: [string, LlamaModel][] = [["fp", fp]];
        if (f.quantized) {
          const { loaded } = await loadCheckpointFor(fp, modelPath, f.quantized, backend);
          models.push(["quantized", withActivations(loaded.model, activations)]);
        }
        const runtime = pickRuntime(
          f.runtime,
          models.map(([, m]) => m),
        );
        for (const [name, model] of models) {
          const rt = createRuntime(model, runtime);
          let ids: Int32Array;
          try {
            ids = generate(rt, prompt, { length: f.length, temperature: f.temperature, seed: f.seed });
          } finally {
            rt.dispose();
          }
          const text = tokenizer ? `\n  ${JSON.stringify(tokenizer.decode(Array.from(ids)))}` : "";
          process.stdout.write(`${name}: ${Array.from(ids).join(" ")}${text}\n`);
        }
      },
    );

  program
    .command("speed")
    .description(
      "decoding throughput of a model shape with seeded random weights: FP16 (cuBLAS) vs TriRun, batch by batch (needs a GPU)",
    )
    .addOption(
      new Option("--shape <shape>", "model shape").choices([...SPEED_SHAPE_NAMES]).makeOptionMandatory(),
    )
    .option("--batch <list>", "comma-separated batch sizes", "1,4,16,32")
    .option("--layers <n>", "keep only the first n blocks (so that a large shape fits)", int("layers", 1))
    .option("--steps <n>", "timed decoding steps per batch size", int("steps", 1), 32)
    .option("--warmup <n>", "untimed steps first", int("warmup", 0), 3)
    .option("--seed <n>", "weight seed", int("seed", 0), 0)
    .addOption(
      new Option("--formats <list>", "weight formats to measure")
        .default(["fp16", "trirun"], "fp16,trirun")
        .argParser(parseFormats),
    )
    .option("--no-graphs", "launch every kernel from JavaScript instead of replaying CUDA graphs")
    .option("--no-fuse", "run q/k/v and gate/up as separate matmuls instead of one fused matmul each")
    .option(
      "--fuse-row-ops",
      "BitNet b1.58 shapes: norms that quantize their outputs, and the relu2 gate, sub-norm and quantization in one launch (same results; the default)",
    )
    .option("--no-fuse-row-ops", "BitNet b1.58 shapes: each norm, gate and quantization its own launch")
    .addOption(activationsOption())
    .option(
      "--breakdown",
      "also time each step with one part of every block left out in turn (q/k/v, attention, o, norms, gate/up, activation, down, ...): where the step's time goes",
    )
    .option("--json <file>", "write the measurements as JSON")
    .action(
      async (f: {
        shape: string;
        batch: string;
        layers?: number;
        steps: number;
        warmup: number;
        seed: number;
        formats: WeightFormat[];
        graphs: boolean;
        fuse: boolean;
        fuseRowOps?: boolean;
        activations: ActivationsFlag;
        breakdown?: boolean;
        json?: string;
      }) => {
        if (f.json) checkOutputFile(f.json, "--json");
        const { runSpeed, formatSpeed } = await import("./speed/run-speed.js");
        const report = runSpeed({
          shape: f.shape,
          batches: parseBatchList(f.batch),
          layers: f.layers,
          steps: f.steps,
          warmup: f.warmup,
          seed: f.seed,
          formats: f.formats,
          graphs: f.graphs,
          fuse: f.fuse,
          fuseRowOps: f.fuseRowOps ?? true,
          activationBits: f.activations === "int8" ? 8 : undefined,
          breakdown: f.breakdown ?? false,
          onStatus: (line) => process.stderr.write(`speed: ${line}\n`),
        });
        process.stdout.write(`${formatSpeed(report)}\n`);
        if (f.json) {
          writeOutputFile(
            f.json,
            `${JSON.stringify({ ...report, createdAt: new Date().toISOString() }, null, 2)}\n`,
            "--json",
          );
        }
      },
    );

  program
    .command("main")
    .description("the whole pipeline on the default model: GPTQ, pack, write, load back, evaluate")
    .option("--model <path>", "model to quantize", DEFAULT_MODEL)
    .option("--out <dir>", "folder for the checkpoint and reports", join(packageDir, "out"))
    .option(
      "--calib <file>",
      "calibration tokens (u16 rows of 256); default: the stories260K samples file when present, else sampled",
    )
    .option("--calib-samples <n>", "calibration sequences", int("calib-samples", 1), 128)
    .option("--sample <n>", "evaluation sequences sampled from the model", int("sample", 1), 32)
    .addOption(backendOption())
    .option("--quiet", "no progress output")
    .action(
      async (f: {
        model: string;
        out: string;
        calib?: string;
        calibSamples: number;
        sample: number;
        backend: "auto" | Backend;
        quiet?: boolean;
      }) => {
        const { runMainJob } = await import("./main-job.js");
        await runMainJob({
          ...f,
          backend: backendOf(f.backend),
          calib: f.calib ?? (existsSync(DEFAULT_CALIBRATION) ? DEFAULT_CALIBRATION : undefined),
        });
      },
    );
  if (opts.embedded) {
    for (const cmd of [program, ...program.commands]) {
      cmd.exitOverride().configureOutput({ writeErr: () => {} });
    }
  }
  return program;
}

const isEntry = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isEntry) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      const e = err as Error & { code?: string };
      process.stderr.write(`trirun-eval: ${e.code ? `[${e.code}] ` : ""}${e.message}\n`);
      process.exitCode = 1;
    });
}
