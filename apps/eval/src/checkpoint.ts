import { readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Backend, TriRunLinear } from "@trirun/layers";
import {
  CheckpointError,
  encodeF16,
  decodeF16,
  packCodes,
  quantizationConfig,
  tensorNamesOf,
  type TensorToWrite,
  type TriRunLayer,
} from "@trirun/packing";
import { openTriRunCheckpoint, writeTriRunCheckpoint } from "@trirun/packing/node";
import { headSize, type LlamaConfig } from "./model/config.js";
import { ModelLoadError } from "./model/loaders/errors.js";
import {
  assembleHfModel,
  configFromHf,
  markTensorsRead,
  readConfigJson,
  readMatrix,
} from "./model/loaders/hf.js";
import { float16LinearFactory } from "./model/loaders/linear-factory.js";
import { type LlamaModel, listLinears } from "./model/llama.js";
import { hostWeightOf } from "./model/linear.js";
import type { Levels } from "./quantize/calibrators.js";
import type { QuantizedLayerRecord } from "./quantize/sequential.js";
import { type CheckpointOutputOptions, prepareCheckpointOutput, removeReplaced } from "./output.js";

/** What the eval app records about how a checkpoint was made (config.json quantization_config.eval). */
export interface CheckpointMeta {
  method: string;
  groupsize: 128 | -1;
  levels: Levels;
  /** The model the checkpoint was made from (file name). */
  source: string;
  /**
   * The block linears' inputs during quantization: "int8" when GPTQ calibrated on 8-bit activations
   * (`--activations int8`), which the checkpoint should then be run with. Absent: not recorded.
   */
  activations?: "fp" | "int8";
}

/** A loaded checkpoint's description: levels are "unknown" when nothing in it says. */
export interface LoadedCheckpointMeta extends Omit<CheckpointMeta, "levels"> {
  levels: Levels | "unknown";
}

/** One quantized module of a checkpoint, as its metadata lists it (features before padding). */
export interface CheckpointModule {
  module: string;
  inFeatures: number;
  outFeatures: number;
}

export interface LoadedCheckpoint {
  model: LlamaModel;
  meta: LoadedCheckpointMeta;
  bytes: number;
  /** The quantized modules listed in the checkpoint's metadata. */
  modules: CheckpointModule[];
}

/**
 * The Hugging Face LlamaConfig (BitNetConfig for BitNet's block) for a model (rotate-half RoPE:
 * interleaved q/k are permuted on export).
 */
export function hfConfigOf(c: LlamaConfig): Record<string, unknown> {
  if (c.mlpActivation !== "silu" && !c.subNorms) {
    throw new RangeError(`a Llama block with hidden_act ${c.mlpActivation} has no Hugging Face config`);
  }
  // A bias on q/k/v only is Qwen2's block; on all four attention layers Llama's attention_bias.
  const qwen2 = c.qkvBias === true && c.oBias !== true;
  if (c.qkvBias !== c.oBias && !qwen2)
    throw new RangeError("a bias on o_proj without one on q/k/v has no Hugging Face config");
  return {
    architectures: [c.subNorms ? "BitNetForCausalLM" : qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
    model_type: c.subNorms ? "bitnet" : qwen2 ? "qwen2" : "llama",
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tiedClassifier,
    hidden_act: c.mlpActivation,
    attention_bias: c.oBias === true,
    mlp_bias: c.mlpBias === true,
    torch_dtype: "float16",
  };
}

/**
 * Reorders the output features of q/k from llama2.c's interleaved RoPE pairs (2i, 2i+1) to Hugging Face's
 * halves (i, i + hs/2), head by head, so that the checkpoint runs with the Hugging Face convention.
 * Codes are (in, out), scales (rows, out): both are permuted along `out`.
 */
export function interleavedToHalf(q: QuantizedLayerRecord, heads: number, hs: number): QuantizedLayerRecord {
  const n = q.outFeatures;
  if (heads * hs !== n) throw new RangeError(`${q.path}: ${heads} heads x ${hs} != ${n} output features`);
  const source = new Int32Array(n); // new column -> old column
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hs / 2; i++) {
      for (let c = 0; c < 2; c++) source[h * hs + c * (hs / 2) + i] = h * hs + 2 * i + c;
    }
  }
  const permute = <T extends Uint8Array | Uint16Array>(a: T, rows: number): T => {
    const out = a.slice() as T;
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) out[r * n + j] = a[r * n + source[j]];
    return out;
  };
  return {
    ...q,
    codes: permute(q.codes, q.inFeatures),
    scales: permute(q.scales, q.scales.length / n),
  };
}

/** fp16 when every value survives the round trip, else fp32: norms and embeddings stay exact. */
function exactTensor(name: string, data: Float32Array, shape: number[]): TensorToWrite {
  const bits = encodeF16(data);
  const back = decodeF16(bits);
  const exact = back.every((v, i) => v === data[i]);
  return exact ? { name, dtype: "F16", shape, data: bits } : { name, dtype: "F32", shape, data };
}

/**
 * Writes a TriRun checkpoint folder: model.safetensors (packed `<module>.B`/`.s` for every block linear,
 * embedding, norms and an untied classifier as they are) and config.json (Hugging Face LlamaConfig with a
 * TriRun quantization_config). Returns the size of model.safetensors (what `loadQuantizedCheckpoint`
 * reports as the checkpoint's bytes: config.json is not counted). The folder must not be `opts.input` and,
 * unless `opts.overwrite`, must not hold checkpoint files already (see checkCheckpointOutput); with
 * `overwrite`, another checkpoint's shards and index are removed so that they are not read with ours.
 */
export async function writeQuantizedCheckpoint(
  dir: string,
  fp: LlamaModel,
  layers: QuantizedLayerRecord[],
  meta: CheckpointMeta,
  opts: CheckpointOutputOptions = {},
): Promise<number> {
  const c = fp.config;
  const hs = headSize(c);
  const packed: TriRunLayer[] = layers.map((record) => {
    let q = record;
    if (c.ropeStyle === "interleaved") {
      if (record.path.endsWith("self_attn.q_proj")) q = interleavedToHalf(record, c.nHeads, hs);
      if (record.path.endsWith("self_attn.k_proj")) q = interleavedToHalf(record, c.nKvHeads, hs);
    }
    if (q.groupsize !== meta.groupsize) {
      throw new RangeError(
        `${q.path}: groupsize ${q.groupsize} differs from the checkpoint's ${meta.groupsize}`,
      );
    }
    return packCodes(q.path, q.codes, q.scales, q.inFeatures, q.outFeatures, q.groupsize);
  });
  const tensors: TensorToWrite[] = [
    exactTensor("model.embed_tokens.weight", fp.embedding, [c.vocabSize, c.dim]),
  ];
  for (const record of layers) {
    if (record.bias !== undefined)
      tensors.push(exactTensor(`${record.path}.bias`, record.bias, [record.outFeatures]));
  }
  fp.blocks.forEach((b, l) => {
    tensors.push(exactTensor(`model.layers.${l}.input_layernorm.weight`, b.attnNorm, [c.dim]));
    tensors.push(exactTensor(`model.layers.${l}.post_attention_layernorm.weight`, b.ffnNorm, [c.dim]));
    if (c.subNorms) {
      if (b.attnSubNorm === undefined || b.ffnSubNorm === undefined)
        throw new TypeError(`block ${l}: the config has sub-norms but the block has none`);
      tensors.push(exactTensor(`model.layers.${l}.self_attn.attn_sub_norm.weight`, b.attnSubNorm, [c.dim]));
      tensors.push(exactTensor(`model.layers.${l}.mlp.ffn_sub_norm.weight`, b.ffnSubNorm, [c.hiddenDim]));
    }
  });
  tensors.push(exactTensor("model.norm.weight", fp.finalNorm, [c.dim]));
  if (!c.tiedClassifier) {
    const w = hostWeightOf(fp.classifier);
    if (w === undefined) throw new TypeError("lm_head: expected an unquantized classifier with host weights");
    tensors.push(exactTensor("lm_head.weight", w, [c.vocabSize, c.dim]));
  }
  const replaced = prepareCheckpointOutput(dir, opts);
  const method = `${meta.method}-${meta.levels}`;
  const bytes = await writeTriRunCheckpoint(join(dir, "model.safetensors"), {
    layers: packed,
    tensors,
    groupsize: meta.groupsize,
    method,
  });
  const quantization = quantizationConfig({
    groupsize: meta.groupsize,
    method,
    modules: packed.map(({ B: _B, s: _s, ...info }) => info),
  });
  const config = { ...hfConfigOf(c), quantization_config: { ...quantization, eval: meta } };
  const text = `${JSON.stringify(config, null, 2)}\n`;
  writeFileSync(join(dir, "config.json"), text);
  removeReplaced(dir, replaced);
  return bytes;
}

/** True when a folder's config.json declares a TriRun quantization. */
export function isTriRunConfig(cfg: Record<string, unknown>): boolean {
  const q = cfg.quantization_config as { quant_method?: unknown } | undefined;
  return q?.quant_method === "trirun";
}

/**
 * The levels a checkpoint's codes use, from what it records: our `eval` block, else the method name
 * in its metadata. The format's grid is always {-1, 0, 1, 2}; @trirun/packing's absmean, absmax and
 * bitnet quantizers clamp to [-1, 1] (ternary), mse uses the whole grid (int2), our writer names the
 * method "<method>-<levels>". Anything else (e.g. "exact", which keeps whatever levels the weights
 * had) is "unknown" rather than a guess.
 */
export function levelsFromCheckpoint(evalLevels: unknown, method: string | undefined): Levels | "unknown" {
  if (evalLevels === "ternary" || evalLevels === "int2") return evalLevels;
  if (method === undefined) return "unknown";
  if (method === "absmean" || method === "absmax" || method === "bitnet") return "ternary";
  if (method === "mse") return "int2";
  const suffix = /-(ternary|int2)$/.exec(method);
  return suffix ? (suffix[1] as Levels) : "unknown";
}

function metaFrom(
  cfg: Record<string, unknown>,
  groupsize: 128 | -1,
  method: string | undefined,
): LoadedCheckpointMeta {
  const e =
    (cfg.quantization_config as { eval?: Partial<Record<keyof CheckpointMeta, unknown>> } | undefined)
      ?.eval ?? {};
  const meta: LoadedCheckpointMeta = {
    method: typeof e.method === "string" ? e.method : (method ?? "unknown"),
    groupsize,
    levels: levelsFromCheckpoint(e.levels, method),
    source: typeof e.source === "string" ? e.source : "unknown",
  };
  if (e.activations === "fp" || e.activations === "int8") meta.activations = e.activations;
  return meta;
}

/**
 * The activation mode a checkpoint records (config.json quantization_config.eval.activations), read
 * before the model is loaded so that both models of a comparison can run with it; undefined when the
 * checkpoint does not say (or has no readable config.json: loading it reports that).
 */
export function recordedActivations(path: string): "fp" | "int8" | undefined {
  let dir = path;
  try {
    if (statSync(path).isFile()) dir = dirname(path);
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as {
      quantization_config?: { eval?: { activations?: unknown } };
    };
    const a = cfg.quantization_config?.eval?.activations;
    return a === "fp" || a === "int8" ? a : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Loads a TriRun checkpoint folder (or its model.safetensors) with its config.json: quantized modules
 * become TriRunLinear (padding stripped by the layer), every other linear a Float16Linear.
 */
export async function loadQuantizedCheckpoint(
  path: string,
  opts: { backend?: Backend } = {},
): Promise<LoadedCheckpoint> {
  let dir = path;
  try {
    if (statSync(path).isFile()) dir = dirname(path);
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_NOT_FOUND", `${path}: no such TriRun checkpoint`, { cause: err });
  }
  const cfg = readConfigJson(dir);
  const config = configFromHf(cfg, join(dir, "config.json"));
  let opened: Awaited<ReturnType<typeof openTriRunCheckpoint>>;
  try {
    opened = await openTriRunCheckpoint(path);
  } catch (err) {
    const code = err instanceof CheckpointError ? err.code : "unknown";
    throw new ModelLoadError(
      "ERR_MODEL_FORMAT",
      `${path}: not a readable TriRun checkpoint (${code}: ${(err as Error).message})`,
      {
        cause: err,
      },
    );
  }
  const ckpt = opened.checkpoint;
  try {
    const model = await assembleHfModel(config, ckpt.files, dir, async (module, out, inF, hasBias) => {
      const info = ckpt.module(module);
      const bias = hasBias ? await readMatrix(ckpt.files, `${module}.bias`, [out], dir) : undefined;
      if (info === undefined) {
        const weightName = module === "model.embed_tokens" ? "model.embed_tokens.weight" : `${module}.weight`;
        return float16LinearFactory(opts.backend)(
          module,
          await readMatrix(ckpt.files, weightName, [out, inF], dir),
          out,
          inF,
          bias,
        );
      }
      if (info.inFeatures !== inF || info.outFeatures !== out) {
        throw new ModelLoadError(
          "ERR_MODEL_CONFIG",
          `${dir}: module "${module}" is ${info.inFeatures} -> ${info.outFeatures} in the checkpoint but config.json implies ${inF} -> ${out}`,
        );
      }
      const names = tensorNamesOf(module);
      markTensorsRead(ckpt.files, [names.B, names.s]);
      const layer = await ckpt.readLayer(module);
      return TriRunLinear.fromPacked(bias === undefined ? layer : { ...layer, bias }, {
        backend: opts.backend,
      });
    });
    let bytes = 0;
    for (const f of ckpt.files.shards) bytes += statSync(f.file).size;
    return {
      model,
      meta: metaFrom(cfg, ckpt.metadata.groupsize, ckpt.metadata.method),
      bytes,
      modules: ckpt.metadata.modules.map(({ module, inFeatures, outFeatures }) => ({
        module,
        inFeatures,
        outFeatures,
      })),
    };
  } finally {
    await ckpt.close();
  }
}

/** The config fields a checkpoint must share with its model, by their config.json names. */
const ARCHITECTURE_FIELDS: readonly [string, (c: LlamaConfig) => unknown][] = [
  ["hidden_size", (c) => c.dim],
  ["intermediate_size", (c) => c.hiddenDim],
  ["num_hidden_layers", (c) => c.nLayers],
  ["num_attention_heads", (c) => c.nHeads],
  ["num_key_value_heads", (c) => c.nKvHeads],
  ["vocab_size", (c) => c.vocabSize],
  ["hidden_act", (c) => c.mlpActivation],
  ["sub-norms (BitNet)", (c) => c.subNorms === true],
  ["q/k/v bias", (c) => c.qkvBias === true],
  ["o_proj bias", (c) => c.oBias === true],
  ["mlp_bias", (c) => c.mlpBias === true],
];

/**
 * The unquantized weights a checkpoint carries over from its model (copied, possibly rounded to
 * fp16): the token embedding and every norm, by their Hugging Face names.
 */
function carriedWeights(m: LlamaModel): [string, Float32Array | undefined][] {
  const out: [string, Float32Array | undefined][] = [["model.embed_tokens.weight", m.embedding]];
  m.blocks.forEach((b, i) => {
    out.push([`model.layers.${i}.input_layernorm.weight`, b.attnNorm]);
    out.push([`model.layers.${i}.post_attention_layernorm.weight`, b.ffnNorm]);
    out.push([`model.layers.${i}.self_attn.attn_sub_norm.weight`, b.attnSubNorm]);
    out.push([`model.layers.${i}.mlp.ffn_sub_norm.weight`, b.ffnSubNorm]);
  });
  out.push(["model.norm.weight", m.finalNorm]);
  return out;
}

/** Index of the first element of `got` that is not `want` rounded to fp16 or kept (relative 2^-10), else -1. */
function firstDifference(want: Float32Array, got: Float32Array): number {
  if (want.length !== got.length) return 0;
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as number;
    const g = got[i] as number;
    // fp16 keeps 11 significant bits: rounding moves a value by at most 2^-11 of it (2^-24 absolute
    // below fp16's normal range); NaN never matches.
    if (!(Math.abs(w - g) <= Math.abs(w) * 2 ** -10 + 2 ** -24)) return i;
  }
  return -1;
}

/**
 * Refuses a checkpoint that was not made from `fp`: the architecture in the checkpoint's
 * config.json, then every quantized module (name and in/out features), must match the model.
 * Evaluating a foreign checkpoint would print plausible but meaningless numbers (same vocabulary,
 * different network). Throws a one-line ERR_CHECKPOINT_MISMATCH naming both paths and the first
 * difference.
 *
 * Then compares the weights the checkpoint carries unquantized (token embedding, norms) with the
 * model's, up to fp16 rounding. A difference means other weights of the same architecture (another
 * fine-tune, a wrong path): a legitimate pair for some comparisons, so it is not refused; the
 * returned warning says so, for stderr and the report's notes. Undefined when they match.
 */
export function checkCheckpointMatchesModel(
  fp: LlamaModel,
  modelPath: string,
  loaded: LoadedCheckpoint,
  checkpointPath: string,
): string | undefined {
  const source = loaded.meta.source !== "unknown" ? ` (made from ${loaded.meta.source})` : "";
  const fail = (what: string): never => {
    throw new ModelLoadError(
      "ERR_CHECKPOINT_MISMATCH",
      `${checkpointPath}${source} is not a checkpoint of ${modelPath}: ${what}`,
    );
  };
  const q = loaded.model.config;
  for (const [name, get] of ARCHITECTURE_FIELDS) {
    if (get(q) !== get(fp.config)) {
      fail(
        `${name} is ${String(get(q))} in the checkpoint's config.json but ${String(get(fp.config))} in the model`,
      );
    }
  }
  const linears = new Map(listLinears(fp).map((e) => [e.path, e.layer]));
  for (const m of loaded.modules) {
    const layer = linears.get(m.module);
    if (layer === undefined) fail(`the checkpoint quantizes "${m.module}", which the model does not have`);
    else if (layer.inFeatures !== m.inFeatures || layer.outFeatures !== m.outFeatures) {
      fail(
        `"${m.module}" is ${m.inFeatures} -> ${m.outFeatures} in the checkpoint but ${layer.inFeatures} -> ${layer.outFeatures} in the model`,
      );
    }
  }
  const carried = new Map(carriedWeights(loaded.model));
  for (const [name, want] of carriedWeights(fp)) {
    const got = carried.get(name);
    if (want === undefined || got === undefined) continue; // (the architecture check covers presence)
    const at = firstDifference(want, got);
    if (at >= 0) {
      return (
        `${checkpointPath}${source} was made from other weights than ${modelPath}: its ${name} differs ` +
        `(element ${at}: ${got[at]} against ${want[at]}); the fp figures and KL compare with ${modelPath}, ` +
        "so they measure more than quantization"
      );
    }
  }
  return undefined;
}
