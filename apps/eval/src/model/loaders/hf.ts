import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  BITNET_VALUES_PER_BYTE,
  type BitNetLinearClass,
  bitNetLayerScale,
  bitNetQuantization,
  CheckpointError,
  decodeBf16,
  decodeF16,
  type SafetensorsCheckpoint,
  unpackBitNetCodes,
} from "@trirun/packing";
import { openCheckpoint } from "@trirun/packing/node";
import { kvDim, type LlamaConfig, validateConfig } from "../config.js";
import type { ModelLinear } from "../linear.js";
import { BLOCK_LINEARS, type LlamaBlock, type LlamaModel, linearHasBias, linearPath } from "../llama.js";
import { ModelLoadError } from "./errors.js";
import type { LoadOptions } from "./llama2c.js";
import { float16LinearFactory } from "./linear-factory.js";

type Json = Record<string, unknown>;

function readConfigJson(dir: string): Json {
  const file = join(dir, "config.json");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_NOT_FOUND", `${file}: cannot read the model config`, { cause: err });
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    return parsed as Json;
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_CONFIG", `${file}: not a JSON object (${(err as Error).message})`, {
      cause: err,
    });
  }
}

/** A BitNet b1.58 config (transformers' BitNetForCausalLM: the Llama block with sub-norms). */
export function isBitNetConfig(cfg: Json): boolean {
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures : [];
  return cfg.model_type === "bitnet" || archs.includes("BitNetForCausalLM");
}

/**
 * Maps a Hugging Face LlamaConfig (or BitNetConfig) to ours; anything this runtime does not implement
 * is refused.
 */
export function configFromHf(cfg: Json, file: string): LlamaConfig {
  const fail = (msg: string): never => {
    throw new ModelLoadError("ERR_MODEL_CONFIG", `${file}: ${msg}`);
  };
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures : [];
  const bitnet = isBitNetConfig(cfg);
  // Mistral is the Llama block with sliding-window attention: exact as Llama while a sequence fits the
  // window, so the window caps the positions this runtime accepts.
  const mistral = cfg.model_type === "mistral" || archs.includes("MistralForCausalLM");
  // Qwen2 is the Llama block with a bias on q/k/v.
  const qwen2 = cfg.model_type === "qwen2" || archs.includes("Qwen2ForCausalLM");
  if (!bitnet && !mistral && !qwen2 && cfg.model_type !== "llama" && !archs.includes("LlamaForCausalLM")) {
    fail(
      `model_type is ${JSON.stringify(cfg.model_type)}; only Llama-architecture models ("llama", "mistral", "qwen2") and BitNet b1.58 ("bitnet") are supported`,
    );
  }
  if (qwen2 && cfg.use_sliding_window === true) fail("use_sliding_window is not supported");
  const window = mistral ? cfg.sliding_window : undefined;
  if (
    window !== undefined &&
    window !== null &&
    (typeof window !== "number" || !Number.isInteger(window) || window < 1)
  ) {
    fail(`sliding_window must be a positive integer or null, got ${JSON.stringify(window)}`);
  }
  const quantization = cfg.quantization_config as Json | undefined;
  if (quantization?.quant_method === "bitnet" && quantization.use_rms_norm === true) {
    fail("quantization_config.use_rms_norm (an RMSNorm inside every BitNet linear layer) is not supported");
  }
  // BitNetConfig's default activation is relu2, LlamaConfig's silu; a BitNet config may name either.
  const act = cfg.hidden_act ?? (bitnet ? "relu2" : "silu");
  if (act !== "silu" && !(bitnet && act === "relu2")) {
    fail(
      `hidden_act ${JSON.stringify(cfg.hidden_act)} is not supported (expected "silu"${bitnet ? ' or "relu2"' : ""})`,
    );
  }
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) fail("rope_scaling is not supported");
  const attentionBias = cfg.attention_bias === true;
  const heads = cfg.num_attention_heads;
  if (
    cfg.head_dim !== undefined &&
    typeof heads === "number" &&
    cfg.head_dim !== (cfg.hidden_size as number) / heads
  ) {
    fail(`head_dim ${String(cfg.head_dim)} differs from hidden_size / num_attention_heads`);
  }
  try {
    return validateConfig(
      {
        dim: cfg.hidden_size,
        hiddenDim: cfg.intermediate_size,
        nLayers: cfg.num_hidden_layers,
        nHeads: heads,
        nKvHeads: cfg.num_key_value_heads ?? heads,
        vocabSize: cfg.vocab_size,
        maxSeqLen: Math.min(
          (cfg.max_position_embeddings as number | undefined) ?? 2048,
          typeof window === "number" ? window : Number.POSITIVE_INFINITY,
        ),
        normEps: cfg.rms_norm_eps ?? 1e-6,
        ropeTheta: cfg.rope_theta ?? 10000,
        ropeStyle: "half",
        tiedClassifier: cfg.tie_word_embeddings ?? false,
        mlpActivation: act,
        subNorms: bitnet,
        qkvBias: qwen2 || attentionBias,
        oBias: attentionBias,
        mlpBias: cfg.mlp_bias === true,
      },
      file,
    );
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_CONFIG", (err as Error).message, { cause: err });
  }
}

/**
 * Tensor names read from each open checkpoint, so that assembleHfModel can refuse weights its
 * config leaves unused (e.g. layers beyond num_hidden_layers) instead of dropping them silently.
 */
const tensorsRead = new WeakMap<SafetensorsCheckpoint, Set<string>>();

/** Records tensors a loader consumed without readMatrix (packed codes, scales). */
export function markTensorsRead(ckpt: SafetensorsCheckpoint, names: readonly string[]): void {
  let set = tensorsRead.get(ckpt);
  if (set === undefined) {
    set = new Set();
    tensorsRead.set(ckpt, set);
  }
  for (const n of names) set.add(n);
}

/**
 * Unused tensors that real Hugging Face checkpoints carry and that change nothing: RoPE buffers
 * (recomputed from rope_theta), and a copy of the embedding as lm_head when the classifier is tied.
 */
function isBenignUnused(name: string, config: LlamaConfig): boolean {
  if (/(^|\.)rotary_emb\.(inv_freq|cos_cached|sin_cached)$/.test(name)) return true;
  return config.tiedClassifier && name === "lm_head.weight";
}

/** Model-weight names (Hugging Face Llama naming); other unused tensors are left alone. */
const looksLikeWeight = (name: string): boolean => /^(model\.|lm_head\.)/.test(name);

/** Refuses weights that the config did not use: config.json and the tensors disagree. */
function checkUnusedTensors(ckpt: SafetensorsCheckpoint, config: LlamaConfig, dir: string): void {
  const used = tensorsRead.get(ckpt) ?? new Set<string>();
  const unused = ckpt.names().filter((n) => !used.has(n) && looksLikeWeight(n) && !isBenignUnused(n, config));
  if (unused.length === 0) return;
  const first = unused[0];
  const file = ckpt.shardOf(first).file;
  throw new ModelLoadError(
    "ERR_MODEL_CONFIG",
    `${file}: tensor "${first}"${unused.length > 1 ? ` (and ${unused.length - 1} more)` : ""} is not used by the model that ${join(dir, "config.json")} describes (${config.nLayers} layers, hidden size ${config.dim}); config.json and the weights disagree`,
  );
}

async function readMatrix(
  ckpt: SafetensorsCheckpoint,
  name: string,
  shape: number[],
  dir: string,
): Promise<Float32Array> {
  if (!ckpt.has(name)) {
    throw new ModelLoadError("ERR_MODEL_TENSOR", `${dir}: tensor "${name}" is missing from the checkpoint`);
  }
  markTensorsRead(ckpt, [name]);
  const info = ckpt.info(name);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
    throw new ModelLoadError(
      "ERR_MODEL_CONFIG",
      `${dir}: tensor "${name}" has shape [${info.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`,
    );
  }
  const t = await ckpt.readTensor(name);
  let data: Float32Array;
  if (t.dtype === "F32") data = (t.data as Float32Array).slice();
  else if (t.dtype === "F16") data = decodeF16(t.data as Uint16Array);
  else if (t.dtype === "BF16") data = decodeBf16(t.data as Uint16Array);
  else throw new TypeError(`${dir}: tensor "${name}" has dtype ${t.dtype}, expected F16, BF16 or F32`);
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new ModelLoadError("ERR_MODEL_TENSOR", `${dir}: tensor "${name}" has a non-finite value at ${bad}`);
  return data;
}

/** Builds one linear layer of a model being loaded. */
/** Builds one linear layer; `bias`: the architecture gives this layer a bias (`<path>.bias`, out values). */
export type LinearReader = (
  path: string,
  outFeatures: number,
  inFeatures: number,
  bias: boolean,
) => Promise<ModelLinear>;

/**
 * Assembles a Llama model from Hugging Face tensor names: embedding, norms and (through `linear`) the
 * linear layers; the classifier is the embedding when tied.
 */
export async function assembleHfModel(
  config: LlamaConfig,
  ckpt: SafetensorsCheckpoint,
  dir: string,
  linear: LinearReader,
): Promise<LlamaModel> {
  const { dim, hiddenDim: hid, vocabSize: V } = config;
  const kv = kvDim(config);
  const shapes: Record<(typeof BLOCK_LINEARS)[number], [number, number]> = {
    "self_attn.q_proj": [dim, dim],
    "self_attn.k_proj": [kv, dim],
    "self_attn.v_proj": [kv, dim],
    "self_attn.o_proj": [dim, dim],
    "mlp.gate_proj": [hid, dim],
    "mlp.up_proj": [hid, dim],
    "mlp.down_proj": [dim, hid],
  };
  const embedding = await readMatrix(ckpt, "model.embed_tokens.weight", [V, dim], dir);
  const blocks: LlamaBlock[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = `model.layers.${l}`;
    const linears = {} as LlamaBlock["linears"];
    for (const name of BLOCK_LINEARS) {
      const [out, inF] = shapes[name];
      linears[name] = await linear(linearPath(l, name), out, inF, linearHasBias(config, name));
    }
    const block: LlamaBlock = {
      attnNorm: await readMatrix(ckpt, `${p}.input_layernorm.weight`, [dim], dir),
      ffnNorm: await readMatrix(ckpt, `${p}.post_attention_layernorm.weight`, [dim], dir),
      linears,
    };
    if (config.subNorms) {
      block.attnSubNorm = await readMatrix(ckpt, `${p}.self_attn.attn_sub_norm.weight`, [dim], dir);
      block.ffnSubNorm = await readMatrix(ckpt, `${p}.mlp.ffn_sub_norm.weight`, [hid], dir);
    }
    blocks.push(block);
  }
  const finalNorm = await readMatrix(ckpt, "model.norm.weight", [dim], dir);
  let classifier: ModelLinear;
  if (config.tiedClassifier) {
    classifier = await linear("model.embed_tokens", V, dim, false);
  } else {
    if (!ckpt.has("lm_head.weight")) {
      throw new ModelLoadError(
        "ERR_MODEL_CONFIG",
        `${dir}: config.json says tie_word_embeddings is false but there is no "lm_head.weight" tensor`,
      );
    }
    classifier = await linear("lm_head", V, dim, false);
  }
  checkUnusedTensors(ckpt, config, dir);
  return { config, embedding, blocks, finalNorm, classifier, source: dir };
}

export async function openWeights(dir: string): Promise<SafetensorsCheckpoint> {
  try {
    return await openCheckpoint(dir);
  } catch (err) {
    const code = err instanceof CheckpointError ? err.code : "unknown";
    throw new ModelLoadError(
      "ERR_MODEL_FORMAT",
      `${dir}: cannot open the safetensors weights (${code}: ${(err as Error).message})`,
      { cause: err },
    );
  }
}

export { readConfigJson, readMatrix };

/**
 * The float weight (out, in) of a packed BitNet b1.58 layer (transformers' offline format: U8 levels
 * four to a byte and one `weight_scale`): level * the layer scale, with the scale rounded to fp16 as
 * @trirun/packing imports it (the layers hold fp16 weights either way).
 */
async function readBitNetPacked(
  ckpt: SafetensorsCheckpoint,
  path: string,
  out: number,
  inF: number,
  linearClass: BitNetLinearClass,
  dir: string,
): Promise<Float32Array> {
  const weightName = `${path}.weight`;
  const info = ckpt.info(weightName);
  const rows = out / BITNET_VALUES_PER_BYTE;
  if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== inF) {
    throw new ModelLoadError(
      "ERR_MODEL_CONFIG",
      `${dir}: packed BitNet tensor "${weightName}" has shape [${info.shape.join(", ")}] but config.json implies [${rows}, ${inF}] (out / 4, in)`,
    );
  }
  const scaleName = `${path}.weight_scale`;
  // One value, stored as [1] (transformers) or as a 0-d tensor.
  const scaleShape = ckpt.has(scaleName) ? [...ckpt.info(scaleName).shape] : [1];
  if (scaleShape.reduce((a, b) => a * b, 1) !== 1) {
    throw new ModelLoadError(
      "ERR_MODEL_TENSOR",
      `${dir}: tensor "${scaleName}" must hold one value, has shape [${scaleShape.join(", ")}]`,
    );
  }
  const scaleTensor = await readMatrix(ckpt, scaleName, scaleShape, dir);
  let scale: number;
  try {
    scale = bitNetLayerScale(scaleTensor[0], linearClass, scaleName);
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_TENSOR", `${dir}: ${(err as Error).message}`, { cause: err });
  }
  markTensorsRead(ckpt, [weightName]);
  const codes = unpackBitNetCodes((await ckpt.readTensor(weightName, "U8")).data, rows, inF);
  const weight = new Float32Array(out * inF);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inF; i++) weight[o * inF + i] = (codes[i * out + o] - 1) * scale;
  return weight;
}

/**
 * Loads a Hugging Face Llama or BitNet b1.58 folder: config.json and model.safetensors (single or
 * sharded). A packed BitNet checkpoint's layers are read as their ternary weights times their scale.
 */
export async function loadHfFolder(dir: string, opts: LoadOptions = {}): Promise<LlamaModel> {
  const cfg = readConfigJson(dir);
  const configFile = join(dir, "config.json");
  const config = configFromHf(cfg, configFile);
  let bitnet: ReturnType<typeof bitNetQuantization>;
  try {
    bitnet = bitNetQuantization(cfg);
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_CONFIG", `${configFile}: ${(err as Error).message}`, { cause: err });
  }
  const ckpt = await openWeights(dir);
  const factory = opts.linearFactory ?? float16LinearFactory(opts.backend);
  try {
    return await assembleHfModel(config, ckpt, dir, async (path, out, inF, hasBias) => {
      const name = `${path}.weight`;
      const packed = ckpt.has(name) && ckpt.info(name).dtype === "U8";
      if (packed && bitnet?.mode !== "offline") {
        throw new ModelLoadError(
          "ERR_MODEL_CONFIG",
          `${dir}: tensor "${name}" is U8 (packed BitNet weights?) but ${configFile} has no offline BitNet quantization_config saying how its weight_scale applies`,
        );
      }
      const weight =
        packed && bitnet !== undefined
          ? await readBitNetPacked(ckpt, path, out, inF, bitnet.linearClass, dir)
          : await readMatrix(ckpt, name, [out, inF], dir);
      const bias = hasBias ? await readMatrix(ckpt, `${path}.bias`, [out], dir) : undefined;
      return factory(path, weight, out, inF, bias);
    });
  } finally {
    await ckpt.close();
  }
}
