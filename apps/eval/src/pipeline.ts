import type { Backend } from "@trirun/layers";
import { sampleSequences } from "./data/sampling.js";
import type { TextTokenizer } from "./data/tokenizer.js";
import type { TokenFileFormat } from "./data/tokens.js";
import { readTokenFile, toWindows } from "./data/tokens.js";
import { compareModels } from "./metrics.js";
import { BLOCK_LINEARS, type LlamaModel, listLinears } from "./model/llama.js";
import { hostWeightOf } from "./model/linear.js";
import type { LlamaRuntime } from "./model/runtime.js";
import { createRuntime, describeRuntime, type RuntimeKind } from "./model/runtime-select.js";
import { startProgress } from "./progress.js";
import { type Levels, type QuantizationMethod, rtnCalibrator } from "./quantize/calibrators.js";
import { type GptqSettings, gptqCalibrator } from "./quantize/gptq-calibrator.js";
import { type QuantizedLayerRecord, quantizeSequential } from "./quantize/sequential.js";
import { DataError } from "./data/errors.js";
import type { EvalReport } from "./report.js";
import { checkChoiceItems, evaluateChoices, readChoiceTasks } from "./tasks.js";

/** 128 when every block linear's input size is a multiple of 128, else -1 (one scale per column). */
export function chooseGroupsize(model: LlamaModel): 128 | -1 {
  return model.blocks.every((b) => BLOCK_LINEARS.every((n) => b.linears[n].inFeatures % 128 === 0))
    ? 128
    : -1;
}

/** The levels a method quantizes to: absmean/absmax are ternary, mse 2-bit, GPTQ as asked. */
export function levelsOf(method: QuantizationMethod, gptqLevels: Levels): Levels {
  if (method === "gptq") return gptqLevels;
  return method === "mse" ? "int2" : "ternary";
}

/** Reads the (out, in) fp32 host weight of an unquantized layer (hostWeightOf). */
export function hostWeight(model: LlamaModel, path: string): Float32Array {
  const weight = hostWeightOf(listLinears(model).find((e) => e.path === path)?.layer);
  if (weight === undefined) {
    throw new TypeError(`${path}: expected an unquantized layer with a host weight copy`);
  }
  return weight;
}

/** What a report says about the calibration rows: real counts, ragged rows included. */
export interface CalibrationInfo {
  source: string;
  sequences: number;
  /** The longest row. */
  seqLen: number;
  /** The shortest row (equal to seqLen when all rows have one length). */
  minSeqLen: number;
  /** Tokens in all rows. */
  tokens: number;
}

/** Counts for the report from the rows actually used. */
export function describeCalibration(source: string, rows: readonly Int32Array[]): CalibrationInfo {
  const lengths = rows.map((r) => r.length);
  return {
    source,
    sequences: rows.length,
    seqLen: Math.max(0, ...lengths),
    minSeqLen: lengths.length ? Math.min(...lengths) : 0,
    tokens: lengths.reduce((a, b) => a + b, 0),
  };
}

/**
 * Reads calibration rows from a token file (the first `limit`), as they are: rows may differ in
 * length (the sequential driver takes each row's own length), but an empty row or one longer than
 * the model's positions is refused, naming the file and the row, instead of being cut silently.
 */
export function readCalibration(
  file: string,
  opts: { seqLen: number; vocabSize: number; maxSeqLen: number; limit: number; seqLenFlag?: string },
): { sequences: Int32Array[]; info: CalibrationInfo } {
  const sequences = readTokenFile(file, { seqLen: opts.seqLen, vocabSize: opts.vocabSize }).slice(
    0,
    opts.limit,
  );
  sequences.forEach((row, r) => {
    if (row.length === 0) {
      throw new DataError("ERR_DATA_FORMAT", `${file}: calibration sequence ${r} is empty`);
    }
    if (row.length > opts.maxSeqLen) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${file}: calibration sequence ${r} has ${row.length} tokens, more than the model's ${opts.maxSeqLen} positions${opts.seqLenFlag ? ` (use a shorter ${opts.seqLenFlag} for a raw token file)` : ""}`,
      );
    }
  });
  return { sequences, info: describeCalibration(file, sequences) };
}

export interface QuantizeSettings {
  method: QuantizationMethod;
  groupsize: 128 | -1;
  levels: Levels;
  calibration: Int32Array[];
  /** Backend of the TriRunLinear layers (default: the layers' choice). */
  backend?: Backend;
  /** GPTQ only: options passed to @trirun/gptq (act-order, damp, negative scales). */
  gptq?: Pick<GptqSettings, "actOrder" | "damp" | "negativeScales">;
  quiet?: boolean;
}

export interface QuantizeOutcome {
  model: LlamaModel;
  layers: QuantizedLayerRecord[];
  seconds: number;
}

/** Quantizes every block linear of `model` (sequentially for GPTQ); the classifier stays unquantized. */
export async function quantizeModel(model: LlamaModel, s: QuantizeSettings): Promise<QuantizeOutcome> {
  const t0 = performance.now();
  const progress = startProgress(`quantize (${s.method})`, { quiet: s.quiet });
  const calibrator =
    s.method === "gptq"
      ? gptqCalibrator({ ...s.gptq, groupsize: s.groupsize, levels: s.levels })
      : rtnCalibrator(s.method, s.groupsize);
  try {
    const out = await quantizeSequential(model, {
      calibrator,
      calibration: s.calibration,
      weightOf: (path) => hostWeight(model, path),
      backend: s.backend,
      onLayer: (path, done, total) => progress.update(done, total, path),
    });
    return { ...out, seconds: (performance.now() - t0) / 1000 };
  } finally {
    progress.stop();
  }
}

export interface EvalDataSettings {
  /** Token or text file; without one, sequences are sampled from the unquantized model. */
  file?: string;
  format?: TokenFileFormat;
  seqLen?: number;
  windowLength: number;
  maxWindows?: number;
  /** Sequences of the file to skip first (e.g. the rows used for calibration). */
  skipSequences?: number;
  /** Sampling when there is no file: count sequences of windowLength tokens. */
  sampleCount: number;
  seed: number;
  tokenizer?: TextTokenizer;
  quiet?: boolean;
}

export interface EvalData {
  windows: Int32Array[];
  source: string;
  sampledFromModel: boolean;
  seed?: number;
}

export function prepareEvalData(fp: LlamaRuntime, s: EvalDataSettings): EvalData {
  const maxLen = fp.model.config.maxSeqLen;
  if (s.windowLength > maxLen) {
    throw new RangeError(`window length ${s.windowLength} exceeds the model's maxSeqLen ${maxLen}`);
  }
  if (s.file) {
    const seqs = readTokenFile(s.file, {
      format: s.format,
      seqLen: s.seqLen,
      tokenizer: s.tokenizer,
      vocabSize: fp.model.config.vocabSize,
    });
    const skip = s.skipSequences ?? 0;
    if (skip >= seqs.length) {
      throw new RangeError(`skip: ${s.file} has ${seqs.length} sequences, cannot skip ${skip}`);
    }
    let windows = toWindows(seqs.slice(skip), s.windowLength);
    if (windows.length === 0) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${s.file}: no sequence${skip > 0 ? ` after the first ${skip} (--skip)` : ""} has the 2 tokens a window needs`,
      );
    }
    if (s.maxWindows !== undefined) windows = windows.slice(0, s.maxWindows);
    return { windows, source: s.file, sampledFromModel: false };
  }
  const progress = startProgress("sample eval data", { quiet: s.quiet });
  // --max-windows bounds sampled windows too.
  const count = Math.min(s.sampleCount, s.maxWindows ?? s.sampleCount);
  const windows = sampleSequences(fp, { count, length: s.windowLength, seed: s.seed }, (done) =>
    progress.update(done, count),
  );
  progress.stop();
  return { windows, source: "sampled from the unquantized model", sampledFromModel: true, seed: s.seed };
}

export interface EvaluateSettings {
  modelName: string;
  method: string;
  groupsize: number;
  /** "unknown" for a checkpoint that does not say. */
  levels: Levels | "unknown";
  data: EvalData;
  tasksFile?: string;
  tokenizer?: TextTokenizer;
  quantizeSeconds?: number;
  calibration?: EvalReport["calibration"];
  checkpoint?: EvalReport["checkpoint"];
  /** Notes of the caller's, added to the report's (e.g. a checkpoint made from other weights). */
  notes?: readonly string[];
  /** Where the model ops run (default: the CPU reference). */
  runtime?: RuntimeKind;
  quiet?: boolean;
}

function fp16Bytes(model: LlamaModel): number {
  return model.blocks.reduce(
    (sum, b) =>
      sum + BLOCK_LINEARS.reduce((s, n) => s + 2 * b.linears[n].inFeatures * b.linears[n].outFeatures, 0),
    0,
  );
}

/** Packed bytes of the block linears as the kernel stores them: 2-bit codes + fp16 scales, padded. */
function packedBytes(model: LlamaModel, groupsize: number): number {
  const up = (v: number, m: number) => Math.ceil(v / m) * m;
  return model.blocks.reduce(
    (sum, b) =>
      sum +
      BLOCK_LINEARS.reduce((s, n) => {
        const k = up(b.linears[n].inFeatures, 128);
        const nOut = up(b.linears[n].outFeatures, 256);
        return s + (k * nOut) / 4 + 2 * nOut * (groupsize === -1 ? 1 : k / 128);
      }, 0),
    0,
  );
}

/** Evaluates the quantized model against the unquantized one and assembles the report. */
export function evaluatePair(fpModel: LlamaModel, qModel: LlamaModel, s: EvaluateSettings): EvalReport {
  const runtime = s.runtime ?? "cpu";
  const fp = createRuntime(fpModel, runtime);
  const q = createRuntime(qModel, runtime);
  try {
    return evaluateWith(fp, q, s, runtime);
  } finally {
    fp.dispose();
    q.dispose();
  }
}

function evaluateWith(
  fp: LlamaRuntime,
  q: LlamaRuntime,
  s: EvaluateSettings,
  runtime: RuntimeKind,
): EvalReport {
  const fpModel = fp.model;
  const qModel = q.model;
  // Task items are checked (ids, lengths) before the long comparison, not after it.
  const items = s.tasksFile ? readChoiceTasks(s.tasksFile) : undefined;
  if (s.tasksFile && items) checkChoiceItems(s.tasksFile, items, fpModel.config, s.tokenizer);
  const t0 = performance.now();
  const progress = startProgress("evaluate fp vs quant", { quiet: s.quiet });
  const cmp = compareModels(fp, q, s.data.windows, (done, total) => progress.update(done, total));
  progress.stop();
  let tasks: EvalReport["tasks"];
  if (s.tasksFile && items) {
    const tp = startProgress("tasks fp + quant", { quiet: s.quiet });
    const a = evaluateChoices(fp, items, s.tokenizer, (d, t) => tp.update(d, 2 * t));
    const b = evaluateChoices(q, items, s.tokenizer, (d, t) => tp.update(t + d, 2 * t));
    tp.stop();
    tasks = {
      file: s.tasksFile,
      items: items.length,
      fp: { acc: a.acc, acc_norm: a.accNorm },
      quantized: { acc: b.acc, acc_norm: b.accNorm },
    };
  }
  const backends = new Set(
    listLinears(qModel).map((e) => (e.layer as { backend?: string }).backend ?? "cpu"),
  );
  const notes: string[] = [...(s.notes ?? [])];
  if (s.data.sampledFromModel) {
    // Say why: only a model without tokenizer.json really has no text to evaluate on.
    const why = s.tokenizer
      ? "no evaluation data was given"
      : "no evaluation data was given and the model has no tokenizer";
    notes.push(
      `${why}: perplexity and KL are measured on sequences sampled from the unquantized model with a fixed seed, so its perplexity is that of its own samples`,
    );
  }
  notes.push("the classifier (lm_head) and the embedding stay unquantized, as in GPTQ for Llama");
  const bits = qModel.config.activationBits;
  if (bits !== undefined) {
    notes.push(
      `every block linear layer's input is quantized to ${bits} bits per row (absmax), in both models, as BitNet b1.58 runs (W1.58A8 for 8)`,
    );
  }
  return {
    model: s.modelName,
    method: s.method,
    groupsize: s.groupsize,
    levels: s.levels,
    backend: [...backends].join("+"),
    runtime: describeRuntime(runtime),
    checkpoint: s.checkpoint,
    calibration: s.calibration,
    data: {
      source: s.data.source,
      sampledFromModel: s.data.sampledFromModel,
      seed: s.data.seed,
      windows: s.data.windows.length,
      windowLength: Math.max(...s.data.windows.map((w) => w.length)),
    },
    fp: cmp.fp,
    quantized: {
      perplexity: cmp.quantized.perplexity,
      nll: cmp.quantized.nll,
      kl_mean: cmp.quantized.klMean,
      kl_p99: cmp.quantized.klP99,
      top1_agreement: cmp.quantized.top1Agreement,
      positions: cmp.quantized.positions,
    },
    tasks,
    weights: { fpLinearBytes: fp16Bytes(fpModel), quantizedLinearBytes: packedBytes(qModel, s.groupsize) },
    seconds: { quantize: s.quantizeSeconds, evaluate: (performance.now() - t0) / 1000 },
    notes,
    createdAt: new Date().toISOString(),
  };
}
