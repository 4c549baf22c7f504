import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CheckpointError, decodeBf16, decodeF16, type SafetensorsCheckpoint } from "@trirun/packing";
import { openCheckpoint } from "@trirun/packing/node";
import { kvDim, type LlamaConfig, validateConfig } from "../config.js";
import type { ModelLinear } from "../linear.js";
import { BLOCK_LINEARS, type LlamaBlock, type LlamaModel, linearPath } from "../llama.js";
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

/** Maps a Hugging Face LlamaConfig to ours; anything this runtime does not implement is refused. */
export function configFromHf(cfg: Json, file: string): LlamaConfig {
  const fail = (msg: string): never => {
    throw new ModelLoadError("ERR_MODEL_CONFIG", `${file}: ${msg}`);
  };
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures : [];
  if (cfg.model_type !== "llama" && !archs.includes("LlamaForCausalLM")) {
    fail(
      `model_type is ${JSON.stringify(cfg.model_type)}; only Llama-architecture models ("llama") are supported`,
    );
  }
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== "silu") {
    fail(`hidden_act ${JSON.stringify(cfg.hidden_act)} is not supported (expected "silu")`);
  }
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) fail("rope_scaling is not supported");
  if (cfg.attention_bias === true || cfg.mlp_bias === true)
    fail("attention_bias / mlp_bias are not supported");
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
        maxSeqLen: cfg.max_position_embeddings ?? 2048,
        normEps: cfg.rms_norm_eps ?? 1e-6,
        ropeTheta: cfg.rope_theta ?? 10000,
        ropeStyle: "half",
        tiedClassifier: cfg.tie_word_embeddings ?? false,
      },
      file,
    );
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_CONFIG", (err as Error).message, { cause: err });
  }
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
export type LinearReader = (path: string, outFeatures: number, inFeatures: number) => Promise<ModelLinear>;

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
      linears[name] = await linear(linearPath(l, name), out, inF);
    }
    blocks.push({
      attnNorm: await readMatrix(ckpt, `${p}.input_layernorm.weight`, [dim], dir),
      ffnNorm: await readMatrix(ckpt, `${p}.post_attention_layernorm.weight`, [dim], dir),
      linears,
    });
  }
  const finalNorm = await readMatrix(ckpt, "model.norm.weight", [dim], dir);
  let classifier: ModelLinear;
  if (config.tiedClassifier) {
    classifier = await linear("model.embed_tokens", V, dim);
  } else {
    if (!ckpt.has("lm_head.weight")) {
      throw new ModelLoadError(
        "ERR_MODEL_CONFIG",
        `${dir}: config.json says tie_word_embeddings is false but there is no "lm_head.weight" tensor`,
      );
    }
    classifier = await linear("lm_head", V, dim);
  }
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

/** Loads a Hugging Face Llama folder: config.json and model.safetensors (single or sharded). */
export async function loadHfFolder(dir: string, opts: LoadOptions = {}): Promise<LlamaModel> {
  const config = configFromHf(readConfigJson(dir), join(dir, "config.json"));
  const ckpt = await openWeights(dir);
  const factory = opts.linearFactory ?? float16LinearFactory(opts.backend);
  try {
    return await assembleHfModel(config, ckpt, dir, async (path, out, inF) =>
      factory(path, await readMatrix(ckpt, `${path}.weight`, [out, inF], dir), out, inF),
    );
  } finally {
    await ckpt.close();
  }
}
