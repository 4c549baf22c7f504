import { type LlamaConfig, validateConfig } from "../model/config.js";

/** Architectures of the `speed` command: real model shapes, filled with seeded random weights. */
export const SPEED_SHAPES = {
  "llama2-7b": {
    dim: 4096,
    hiddenDim: 11008,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 32,
    vocabSize: 32000,
    maxSeqLen: 4096,
  },
  "llama2-13b": {
    dim: 5120,
    hiddenDim: 13824,
    nLayers: 40,
    nHeads: 40,
    nKvHeads: 40,
    vocabSize: 32000,
    maxSeqLen: 4096,
  },
  // Llama-2 70B as released: grouped-query attention with 8 key/value heads.
  "llama2-70b": {
    dim: 8192,
    hiddenDim: 28672,
    nLayers: 80,
    nHeads: 64,
    nKvHeads: 8,
    vocabSize: 32000,
    maxSeqLen: 4096,
  },
  // TriLM (Spectra suite) 3.9B: 30 blocks of 3072 wide, 24 heads, MLP 9216, GPT-NeoX vocabulary.
  "trilm-3.9b": {
    dim: 3072,
    hiddenDim: 9216,
    nLayers: 30,
    nHeads: 24,
    nKvHeads: 24,
    vocabSize: 50304,
    maxSeqLen: 2048,
  },
  // BitNet b1.58 2B4T: 30 blocks of 2560 wide, 20 query / 5 key-value heads of 128, MLP 6912, the
  // Llama 3 vocabulary; BitNet's block (sub-norms before o_proj and down_proj, squared-ReLU gate).
  "bitnet-2b": {
    dim: 2560,
    hiddenDim: 6912,
    nLayers: 30,
    nHeads: 20,
    nKvHeads: 5,
    vocabSize: 128256,
    maxSeqLen: 4096,
    mlpActivation: "relu2",
    subNorms: true,
  },
} as const;
export type SpeedShape = keyof typeof SPEED_SHAPES;
export const SPEED_SHAPE_NAMES = Object.keys(SPEED_SHAPES) as SpeedShape[];

/** The config of `shape`, with only the first `layers` blocks when given (so that a big model fits). */
export function speedConfig(shape: string, layers?: number): LlamaConfig {
  if (!(shape in SPEED_SHAPES)) {
    throw new RangeError(
      `shape: expected one of ${SPEED_SHAPE_NAMES.join(", ")}, got ${JSON.stringify(shape)}`,
    );
  }
  const s = SPEED_SHAPES[shape as SpeedShape];
  if (layers !== undefined && (!Number.isInteger(layers) || layers < 1 || layers > s.nLayers)) {
    throw new RangeError(
      `layers: ${shape} has ${s.nLayers} blocks; expected an integer in 1..${s.nLayers}, got ${layers}`,
    );
  }
  return validateConfig(
    {
      ...s,
      nLayers: layers ?? s.nLayers,
      normEps: 1e-5,
      ropeTheta: 10000,
      ropeStyle: "half",
      tiedClassifier: false,
    },
    shape,
  );
}

/** "1,4,16,32" -> [1, 4, 16, 32]: positive integers, no repeats. */
export function parseBatchList(text: string): number[] {
  const parts = text.split(",").map((p) => p.trim());
  const out: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (p === "" || !Number.isInteger(n) || n < 1 || n > 4096) {
      throw new RangeError(
        `batch: expected comma-separated integers in 1..4096, got ${JSON.stringify(text)}`,
      );
    }
    if (out.includes(n)) throw new RangeError(`batch: ${n} is listed twice in ${JSON.stringify(text)}`);
    out.push(n);
  }
  return out;
}

export type WeightFormat = "fp16" | "trirun";

/** Shapes (out, in) of one block's seven linear layers. */
export function blockLinearShapes(c: LlamaConfig): [number, number][] {
  const kv = (c.dim / c.nHeads) * c.nKvHeads;
  return [
    [c.dim, c.dim],
    [kv, c.dim],
    [kv, c.dim],
    [c.dim, c.dim],
    [c.hiddenDim, c.dim],
    [c.hiddenDim, c.dim],
    [c.dim, c.hiddenDim],
  ];
}

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

/**
 * Device bytes of the weights: block linears in fp16 or as TriRun 2-bit codes with fp16 scales per
 * 128 inputs (padded to the kernel's tiles), plus the fp16 embedding and classifier, which stay
 * unquantized in both.
 */
export function weightBytes(c: LlamaConfig, format: WeightFormat): number {
  let block = 0;
  for (const [out, inp] of blockLinearShapes(c)) {
    if (format === "fp16") block += 2 * out * inp;
    else {
      const k = roundUp(inp, 128);
      const n = roundUp(out, 256);
      block += (k * n) / 4 + 2 * n * (k / 128);
    }
  }
  return c.nLayers * block + 2 * 2 * c.vocabSize * c.dim;
}

/** Device bytes of fp16 keys and values for `batch` sequences of `positions` tokens. */
export function kvCacheBytes(c: LlamaConfig, batch: number, positions: number): number {
  return 2 * 2 * c.nLayers * batch * positions * (c.dim / c.nHeads) * c.nKvHeads;
}
