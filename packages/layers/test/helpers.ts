/**
 * Test helpers: a seeded random source (fresh seed per run, printed on failure) and fp64 references
 * written independently of the package's code.
 */

export interface Rng {
  readonly seed: number;
  next(): number;
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  normal(): number;
}

export function makeRng(seed = Math.floor(Math.random() * 2 ** 31)): Rng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    normal: () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()),
  };
}

/** fp16 bits -> number, from the IEEE 754 definition (independent of @trirun/packing). */
export function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Random positive fp16 scale bits with values in roughly [2^-8, 2^-3]. */
export function randomScaleBits(rng: Rng): number {
  const exp = rng.int(15 - 8, 15 - 3);
  return (exp << 10) | rng.int(0, 1023);
}

/** Random fp16 bits of a value in (-4, 4), normal-ish. */
export function randomHalfBits(rng: Rng, scale = 1): number {
  const v = rng.normal() * scale;
  // Truncate to fp16 precision by constructing bits directly.
  if (v === 0 || Math.abs(v) < 2 ** -14) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.min(Math.abs(v), 60000);
  const e = Math.floor(Math.log2(a));
  const frac = Math.min(1023, Math.floor((a / 2 ** e - 1) * 1024));
  return sign | ((e + 15) << 10) | frac;
}

export function randomFloats(rng: Rng, length: number, scale = 1): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.normal() * scale;
  return out;
}

/** fp64 reference: `y (rows, out) = x (rows, in) @ W^T + bias`, with `W (out, in)`. */
export function referenceLinear(
  x: ArrayLike<number>,
  rows: number,
  inFeatures: number,
  weight: ArrayLike<number>,
  outFeatures: number,
  bias?: ArrayLike<number>,
): { y: Float64Array; magnitude: Float64Array } {
  const y = new Float64Array(rows * outFeatures);
  const magnitude = new Float64Array(rows * outFeatures);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outFeatures; o++) {
      let s = bias === undefined ? 0 : bias[o];
      let m = bias === undefined ? 0 : Math.abs(bias[o]);
      for (let i = 0; i < inFeatures; i++) {
        const p = x[r * inFeatures + i] * weight[o * inFeatures + i];
        s += p;
        m += Math.abs(p);
      }
      y[r * outFeatures + o] = s;
      magnitude[r * outFeatures + o] = m;
    }
  }
  return { y, magnitude };
}

/** `(out, in)` weights from natural codes `(in, out)` and fp16 scales `(groups, out)`, in fp64. */
export function referenceDequantize(
  codes: Uint8Array,
  scales: Uint16Array,
  inFeatures: number,
  outFeatures: number,
  groupsize: number,
): Float64Array {
  const w = new Float64Array(outFeatures * inFeatures);
  for (let i = 0; i < inFeatures; i++) {
    const g = groupsize === -1 ? 0 : Math.floor(i / groupsize);
    for (let o = 0; o < outFeatures; o++) {
      w[o * inFeatures + i] = (codes[i * outFeatures + o] - 1) * halfToNumber(scales[g * outFeatures + o]);
    }
  }
  return w;
}

/** Largest |actual - expected| / (magnitude * relTol + absTol); <= 1 means within tolerance. */
export function worstError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  magnitude: ArrayLike<number>,
  relTol: number,
  absTol = 0,
): { ratio: number; index: number } {
  let ratio = 0;
  let index = -1;
  if (actual.length !== expected.length) return { ratio: Number.POSITIVE_INFINITY, index: -1 };
  for (let i = 0; i < actual.length; i++) {
    const r = Math.abs(actual[i] - expected[i]) / (magnitude[i] * relTol + absTol);
    if (!(r <= ratio)) {
      ratio = r;
      index = i;
    }
  }
  return { ratio, index };
}

/** Random natural quantized weights for an `(in -> out)` layer. */
export function randomQuantized(
  rng: Rng,
  inFeatures: number,
  outFeatures: number,
  groupsize: 128 | -1,
): { codes: Uint8Array; scales: Uint16Array; groupsize: 128 | -1 } {
  const codes = new Uint8Array(inFeatures * outFeatures);
  for (let i = 0; i < codes.length; i++) codes[i] = rng.int(0, 3);
  const rows = groupsize === -1 ? 1 : Math.ceil(inFeatures / 128);
  const scales = new Uint16Array(rows * outFeatures);
  for (let i = 0; i < scales.length; i++) scales[i] = randomScaleBits(rng);
  return { codes, scales, groupsize };
}
