import type { LlamaConfig } from "./config.js";
import type { ModelLinear } from "./linear.js";

/** Names of the seven linear layers of one decoder block, in Hugging Face naming. */
export const BLOCK_LINEARS = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
] as const;
export type BlockLinearName = (typeof BLOCK_LINEARS)[number];

export interface LlamaBlock {
  /** RMSNorm weight before attention (dim). */
  attnNorm: Float32Array;
  /** RMSNorm weight before the MLP (dim). */
  ffnNorm: Float32Array;
  /** With `config.subNorms` (BitNet b1.58): RMSNorm weights before o_proj (dim) and down_proj (hiddenDim). */
  attnSubNorm?: Float32Array;
  ffnSubNorm?: Float32Array;
  linears: Record<BlockLinearName, ModelLinear>;
}

/** A Llama decoder: host-side norms and embedding, linear layers as @trirun/layers modules. */
export interface LlamaModel {
  readonly config: LlamaConfig;
  /** Token embedding (vocab, dim), fp32. */
  readonly embedding: Float32Array;
  readonly blocks: LlamaBlock[];
  readonly finalNorm: Float32Array;
  classifier: ModelLinear;
  /** Where the model came from, for reports. */
  readonly source: string;
}

/** Whether a block linear of this architecture has a bias. */
export function linearHasBias(config: LlamaConfig, name: BlockLinearName): boolean {
  if (name === "self_attn.o_proj") return config.oBias === true;
  if (name.startsWith("self_attn.")) return config.qkvBias === true;
  return config.mlpBias === true;
}

export function linearPath(layer: number, name: BlockLinearName): string {
  return `model.layers.${layer}.${name}`;
}

/** Every linear layer with its Hugging Face style path, blocks first, classifier last. */
export function listLinears(model: LlamaModel): { path: string; layer: ModelLinear }[] {
  const out: { path: string; layer: ModelLinear }[] = [];
  model.blocks.forEach((block, i) => {
    for (const name of BLOCK_LINEARS) out.push({ path: linearPath(i, name), layer: block.linears[name] });
  });
  out.push({ path: "lm_head", layer: model.classifier });
  return out;
}

export function disposeModel(model: LlamaModel): void {
  for (const { layer } of listLinears(model)) layer.dispose();
}
