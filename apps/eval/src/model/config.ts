/** RoPE pairing: llama2.c rotates interleaved pairs (2i, 2i+1); Hugging Face Llama rotates halves (i, i + d/2). */
export type RopeStyle = "interleaved" | "half";

/** The MLP's gate activation: Llama's SiLU, or BitNet b1.58's squared ReLU (`relu2`). */
export type MlpActivation = "silu" | "relu2";

/** Architecture of a Llama-style decoder, independent of where it was loaded from. */
export interface LlamaConfig {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly vocabSize: number;
  readonly maxSeqLen: number;
  readonly normEps: number;
  readonly ropeTheta: number;
  readonly ropeStyle: RopeStyle;
  /** true when the classifier reuses the token embedding matrix. */
  readonly tiedClassifier: boolean;
  /** `act(gate(x)) * up(x)`: "silu" (Llama), "relu2" (BitNet b1.58). */
  readonly mlpActivation: MlpActivation;
  /**
   * BitNet b1.58's block: an RMSNorm on the attention output before o_proj (dim wide) and one on the
   * MLP activation before down_proj (hiddenDim wide).
   */
  readonly subNorms: boolean;
  /**
   * BitNet b1.58's activation quantization: every linear layer's input fake-quantized per row to
   * this many signed bits (absmax scale, transformers' ActQuant; 8 for BitNet). Undefined: none.
   */
  readonly activationBits?: number;
  /**
   * Linear layers with a bias: q/k/v (Qwen2, Llama with attention_bias), o (Llama with
   * attention_bias), gate/up/down (mlp_bias). Undefined: none.
   */
  readonly qkvBias?: boolean;
  readonly oBias?: boolean;
  readonly mlpBias?: boolean;
}

/**
 * The same model with its linear layers' inputs fake-quantized to `bits` per row (8: BitNet b1.58's
 * W1.58A8), or unquantized (undefined). Shares the weights.
 */
export function withActivationBits<M extends { readonly config: LlamaConfig }>(
  model: M,
  bits: number | undefined,
): M {
  const { activationBits: _old, ...rest } = model.config;
  const config = validateConfig(
    bits === undefined ? rest : { ...rest, activationBits: bits },
    "withActivationBits",
  );
  return { ...model, config };
}

export function headSize(config: LlamaConfig): number {
  return config.dim / config.nHeads;
}

export function kvDim(config: LlamaConfig): number {
  return headSize(config) * config.nKvHeads;
}

function positiveInt(value: unknown, name: string, source: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${source}: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function positiveNumber(value: unknown, name: string, source: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${source}: ${name} must be a positive finite number, got ${String(value)}`);
  }
  return value;
}

/** Checks every field and the divisibility rules attention needs; `source` names the file in errors. */
export function validateConfig(
  raw: Partial<Record<keyof LlamaConfig, unknown>>,
  source: string,
): LlamaConfig {
  const dim = positiveInt(raw.dim, "dim", source);
  const nHeads = positiveInt(raw.nHeads, "nHeads", source);
  const nKvHeads = positiveInt(raw.nKvHeads, "nKvHeads", source);
  if (dim % nHeads !== 0) {
    throw new RangeError(`${source}: dim (${dim}) must be divisible by nHeads (${nHeads})`);
  }
  if (nHeads % nKvHeads !== 0) {
    throw new RangeError(`${source}: nHeads (${nHeads}) must be divisible by nKvHeads (${nKvHeads})`);
  }
  if ((dim / nHeads) % 2 !== 0) {
    throw new RangeError(`${source}: head size (${dim / nHeads}) must be even for RoPE`);
  }
  const ropeStyle = raw.ropeStyle;
  if (ropeStyle !== "interleaved" && ropeStyle !== "half") {
    throw new RangeError(`${source}: ropeStyle must be "interleaved" or "half", got ${String(ropeStyle)}`);
  }
  if (typeof raw.tiedClassifier !== "boolean") {
    throw new TypeError(`${source}: tiedClassifier must be a boolean, got ${String(raw.tiedClassifier)}`);
  }
  const mlpActivation = raw.mlpActivation ?? "silu";
  if (mlpActivation !== "silu" && mlpActivation !== "relu2") {
    throw new RangeError(`${source}: mlpActivation must be "silu" or "relu2", got ${String(mlpActivation)}`);
  }
  const subNorms = raw.subNorms ?? false;
  if (typeof subNorms !== "boolean") {
    throw new TypeError(`${source}: subNorms must be a boolean, got ${String(subNorms)}`);
  }
  const activationBits = raw.activationBits;
  if (
    activationBits !== undefined &&
    (typeof activationBits !== "number" ||
      !Number.isInteger(activationBits) ||
      activationBits < 2 ||
      activationBits > 8)
  ) {
    throw new RangeError(
      `${source}: activationBits must be an integer from 2 to 8, got ${String(activationBits)}`,
    );
  }
  const biases: Partial<Record<"qkvBias" | "oBias" | "mlpBias", boolean>> = {};
  for (const key of ["qkvBias", "oBias", "mlpBias"] as const) {
    const v = raw[key];
    if (v === undefined || v === false) continue;
    if (v !== true) throw new TypeError(`${source}: ${key} must be a boolean, got ${String(v)}`);
    biases[key] = true;
  }
  return {
    ...(activationBits === undefined ? {} : { activationBits }),
    ...biases,
    dim,
    hiddenDim: positiveInt(raw.hiddenDim, "hiddenDim", source),
    nLayers: positiveInt(raw.nLayers, "nLayers", source),
    nHeads,
    nKvHeads,
    vocabSize: positiveInt(raw.vocabSize, "vocabSize", source),
    maxSeqLen: positiveInt(raw.maxSeqLen, "maxSeqLen", source),
    normEps: positiveNumber(raw.normEps, "normEps", source),
    ropeTheta: positiveNumber(raw.ropeTheta, "ropeTheta", source),
    ropeStyle,
    tiedClassifier: raw.tiedClassifier,
    mlpActivation,
    subNorms,
  };
}
