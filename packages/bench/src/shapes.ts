/**
 * Layer shapes to benchmark, grouped in model sets.
 *
 * Every shape is `(k, n) = (in_features, out_features)`: the kernel computes
 * `C(m, n) = A(m, k) @ W(k, n)`. The kernel needs `k % 128 == 0` and `n % 256 == 0`.
 */

/** One linear layer: `k` inputs, `n` outputs. */
export interface LayerShape {
  /** Short layer name, e.g. `qkv`, `o`, `gate_up`, `down`. */
  readonly layer: string;
  /** Input features (the kernel's `k`). */
  readonly k: number;
  /** Output features (the kernel's `n`). */
  readonly n: number;
}

/** A model's set of layer shapes; a benchmark sums its times over the set. */
export interface ModelSet {
  /** Identifier used on the command line, e.g. `llama2-7b`. */
  readonly id: string;
  /** Human-readable title for tables and charts. */
  readonly title: string;
  /** Where the shapes come from. */
  readonly source: string;
  readonly layers: readonly LayerShape[];
}

/** The kernel's divisibility requirements. */
export const K_MULTIPLE = 128;
export const N_MULTIPLE = 256;

/** Batch sizes (the `m` of the matmul) benchmarked by default. */
export const DEFAULT_BATCH_SIZES: readonly number[] = [
  1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
];

/** Group sizes benchmarked by default: 128 and per column (`-1`, one group spanning all of `k`). */
export const DEFAULT_GROUPSIZES: readonly number[] = [128, -1];

const MAX_DIMENSION = 1 << 20;

function layer(name: string, k: number, n: number): LayerShape {
  return { layer: name, k, n };
}

/** Model sets with fixed shapes. `ideal` depends on the SM count: see {@link idealModelSet}. */
export const FIXED_MODEL_SETS: readonly ModelSet[] = [
  {
    id: "trilm-3.9b",
    title: "TriLM 3.9B (3072-wide)",
    source: "TriLM/Spectra 3.9B: hidden 3072, intermediate 9216, 24 heads (no GQA)",
    layers: [
      layer("qkv", 3072, 9216),
      layer("o", 3072, 3072),
      layer("gate_up", 3072, 18432),
      layer("down", 9216, 3072),
    ],
  },
  {
    id: "bitnet-2b",
    title: "BitNet b1.58 2B4T (2560-wide)",
    source: "BitNet b1.58 2B4T: hidden 2560, intermediate 6912, 20 query and 5 key/value heads of 128",
    layers: [
      layer("qkv", 2560, 2560 + 2 * 5 * 128),
      layer("o", 2560, 2560),
      layer("gate_up", 2560, 2 * 6912),
      layer("down", 6912, 2560),
    ],
  },
  {
    id: "llama2-7b",
    title: "Llama-2 7B",
    source: "Llama-2 7B: hidden 4096, intermediate 11008, 32 heads (no GQA)",
    layers: [
      layer("qkv", 4096, 12288),
      layer("o", 4096, 4096),
      layer("gate_up", 4096, 22016),
      layer("down", 11008, 4096),
    ],
  },
  {
    id: "llama2-13b",
    title: "Llama-2 13B",
    source: "Llama-2 13B: hidden 5120, intermediate 13824, 40 heads (no GQA)",
    layers: [
      layer("qkv", 5120, 15360),
      layer("o", 5120, 5120),
      layer("gate_up", 5120, 27648),
      layer("down", 13824, 5120),
    ],
  },
  {
    id: "llama-33b",
    title: "LLaMA 33B",
    source: "LLaMA 33B (34B-class): hidden 6656, intermediate 17920, 52 heads (no GQA)",
    layers: [
      layer("qkv", 6656, 19968),
      layer("o", 6656, 6656),
      layer("gate_up", 6656, 35840),
      layer("down", 17920, 6656),
    ],
  },
  {
    id: "llama2-70b",
    title: "Llama-2 70B (reference set)",
    source:
      "the reference benchmark's 70B set, used by the kernel speed targets: hidden 8192, qkv 3 x 8192, intermediate 21760",
    layers: [
      layer("qkv", 8192, 24576),
      layer("o", 8192, 8192),
      layer("gate_up", 8192, 43520),
      layer("down", 21760, 8192),
    ],
  },
  {
    id: "llama2-70b-gqa",
    title: "Llama-2 70B (GQA)",
    source: "Llama-2 70B as released: hidden 8192, 64 query and 8 key/value heads of 128, intermediate 28672",
    layers: [
      layer("qkv", 8192, 10240),
      layer("o", 8192, 8192),
      layer("gate_up", 8192, 57344),
      layer("down", 28672, 8192),
    ],
  },
  {
    id: "falcon-180b",
    title: "Falcon 180B",
    source: "Falcon 180B-sized: hidden 14848, qkv 3 x 14848, intermediate 4 x 14848",
    layers: [
      layer("qkv", 14848, 44544),
      layer("o", 14848, 14848),
      layer("up", 14848, 59392),
      layer("down", 59392, 14848),
    ],
  },
];

/**
 * The `ideal` set: one shape whose work splits evenly over the SMs, as in the reference
 * benchmark: `n = 256 * smCount` gives every SM exactly one 256-wide column slice (no
 * partial slices, no global reduction) and `k = 4 * n` makes each launch long enough
 * (and its weights large enough) to stream at full bandwidth.
 */
export function idealModelSet(smCount: number): ModelSet {
  if (!Number.isInteger(smCount) || smCount < 1 || smCount > 4096) {
    throw new RangeError(`smCount must be an integer in [1, 4096], got ${String(smCount)}`);
  }
  const n = N_MULTIPLE * smCount;
  const k = 4 * n;
  return {
    id: "ideal",
    title: `Ideal (${smCount} SMs)`,
    source: `reference benchmark's ideal shape: n = 256 * ${smCount} SMs, k = 4 * n`,
    layers: [layer("ideal", k, n)],
  };
}

/** Identifiers of every built-in model set, `ideal` first. */
export const MODEL_SET_IDS: readonly string[] = ["ideal", ...FIXED_MODEL_SETS.map((set) => set.id)];

/** Throws a RangeError unless `(k, n)` is a shape the kernel accepts. */
export function validateShape(k: number, n: number, what = "shape"): void {
  if (!Number.isInteger(k) || k < K_MULTIPLE || k > MAX_DIMENSION || k % K_MULTIPLE !== 0) {
    throw new RangeError(
      `${what}: k (input features) must be a positive multiple of ${K_MULTIPLE} up to ${MAX_DIMENSION}, got ${String(k)}`,
    );
  }
  if (!Number.isInteger(n) || n < N_MULTIPLE || n > MAX_DIMENSION || n % N_MULTIPLE !== 0) {
    throw new RangeError(
      `${what}: n (output features) must be a positive multiple of ${N_MULTIPLE} up to ${MAX_DIMENSION}, got ${String(n)}`,
    );
  }
}

/** Parses `"k,n"` (e.g. `"4096,11008"`) into a custom layer shape. */
export function parseShape(text: string): LayerShape {
  const match = /^\s*(\d+)\s*[,x]\s*(\d+)\s*$/.exec(text);
  if (!match) {
    throw new RangeError(`--shape: expected "k,n" (two positive integers), got "${text}"`);
  }
  const k = Number(match[1]);
  const n = Number(match[2]);
  validateShape(k, n, `--shape ${text}`);
  return layer(`${k}x${n}`, k, n);
}

/** A model set made of custom shapes from `--shape`. */
export function customModelSet(shapes: readonly LayerShape[]): ModelSet {
  if (shapes.length === 0) {
    throw new RangeError("customModelSet: at least one shape is required");
  }
  // A shape given twice would be measured twice under one name: a results file render refuses.
  const layers: LayerShape[] = [];
  for (const shape of shapes) if (!layers.some((l) => l.layer === shape.layer)) layers.push(shape);
  return { id: "custom", title: "Custom shapes", source: "--shape", layers };
}

/** Resolves model set identifiers (`"all"` for every built-in set) for a device with `smCount` SMs. */
export function resolveModelSets(ids: readonly string[], smCount: number): ModelSet[] {
  const wanted = ids.includes("all") ? MODEL_SET_IDS : ids;
  const sets: ModelSet[] = [];
  for (const id of wanted) {
    if (sets.some((set) => set.id === id)) continue;
    if (id === "ideal") {
      sets.push(idealModelSet(smCount));
      continue;
    }
    const set = FIXED_MODEL_SETS.find((candidate) => candidate.id === id);
    if (!set) {
      throw new RangeError(
        `--models: unknown model set "${id}"; expected one of all, ${MODEL_SET_IDS.join(", ")}`,
      );
    }
    sets.push(set);
  }
  return sets;
}

function parsePositiveIntegerList(text: string, what: string): number[] {
  const parts = text.split(",").map((part) => part.trim());
  if (parts.length === 0 || parts.some((part) => !/^-?\d+$/.test(part))) {
    throw new RangeError(`${what}: expected a comma-separated list of integers, got "${text}"`);
  }
  return parts.map(Number);
}

/** Parses a batch size list such as `"1,2,4,16"`; each must be in [1, 65536]. */
export function parseBatchSizes(text: string): number[] {
  const sizes = parsePositiveIntegerList(text, "--batch");
  for (const m of sizes) {
    if (m < 1 || m > 65536) {
      throw new RangeError(`--batch: each batch size must be in [1, 65536], got ${m}`);
    }
  }
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** Parses a group size list such as `"128,-1"`; each must be 128 or -1 (per column). */
export function parseGroupsizes(text: string): number[] {
  const sizes = parsePositiveIntegerList(text, "--groupsize");
  for (const g of sizes) {
    if (g !== 128 && g !== -1) {
      throw new RangeError(`--groupsize: each group size must be 128 or -1 (per column), got ${g}`);
    }
  }
  return [...new Set(sizes)];
}

/** Rows of the scale tensor `s` for a layer of `k` inputs at group size `groupsize` (-1: per column). */
export function scaleRows(k: number, groupsize: number): number {
  return groupsize === -1 || groupsize === k ? 1 : k / groupsize;
}

/** Bytes of the packed 2-bit weights `B` (k/16 x n int32) plus the fp16 scales `s`. */
export function packedWeightBytes(k: number, n: number, groupsize: number): number {
  return (k * n) / 4 + scaleRows(k, groupsize) * n * 2;
}

/** Bytes of the fp16 weight matrix of the same layer. */
export function fp16WeightBytes(k: number, n: number): number {
  return k * n * 2;
}
