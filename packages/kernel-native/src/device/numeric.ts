// Host-side numerics of the device check: random inputs, fp16 decoding,
// dequantized weights, fp64 references and error norms.
import { getFloat16, setFloat16 } from "@petamoriken/float16";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

/** A seeded generator (pure-rand's xoroshiro128+), so that a failing run can be replayed with --seed. */
export class Rng {
  readonly #generator: ReturnType<typeof xoroshiro128plus>;
  constructor(seed: number) {
    this.#generator = xoroshiro128plus(seed | 0);
  }
  nextU32(): number {
    return this.#generator.next() >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }
}

const F16_TO_F32 = (() => {
  const table = new Float32Array(65536);
  const view = new DataView(new ArrayBuffer(2));
  for (let bits = 0; bits < 65536; bits++) {
    view.setUint16(0, bits, true);
    table[bits] = getFloat16(view, 0, true);
  }
  return table;
})();

export function f16ToF32(bits: number): number {
  return F16_TO_F32[bits];
}

export function toF16Bits(value: number): number {
  const view = new DataView(new ArrayBuffer(2));
  setFloat16(view, 0, value, true);
  return view.getUint16(0, true);
}

/** Codes 0..3 over the full grid {-1, 0, 1, 2}. */
export function randomCodes(rng: Rng, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i += 16) {
    let r = rng.nextU32();
    const end = Math.min(count, i + 16);
    for (let j = i; j < end; j++, r >>>= 2) out[j] = r & 3;
  }
  return out;
}

/** fp16 scales, uniform in [lo, hi]. */
export function randomScales(rng: Rng, count: number, lo = 0.005, hi = 0.02): Uint16Array {
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = toF16Bits(lo + (hi - lo) * rng.next());
  return out;
}

/** fp16 activations with random sign and magnitude in [2^-8, 1), built from bits (fast). */
export function randomActivations(rng: Rng, count: number): Uint16Array {
  const out = new Uint16Array(count);
  // 14 random bits per value (sign, 3 exponent bits, 10 mantissa bits): two values per draw.
  const value = (r: number) => ((r & 0x2000) << 2) | ((7 + ((r >>> 10) & 7)) << 10) | (r & 0x3ff); // biased exponent 7..14
  for (let i = 0; i < count; i += 2) {
    const r = rng.nextU32();
    out[i] = value(r);
    if (i + 1 < count) out[i + 1] = value(r >>> 16);
  }
  return out;
}

/**
 * Dequantized weights W (k, n) as fp16 bits: (code - 1) * scale, exact in fp16
 * (times -1 flips the sign, times 2 adds one to the exponent of a normal scale).
 */
export function dequantizeF16(
  codes: Uint8Array,
  scales: Uint16Array,
  k: number,
  n: number,
  groupsize: number,
): Uint16Array {
  const out = new Uint16Array(k * n);
  for (let r = 0; r < k; r++) {
    const srow = Math.floor(r / groupsize) * n;
    const row = r * n;
    for (let c = 0; c < n; c++) {
      const s = scales[srow + c];
      const code = codes[row + c];
      out[row + c] = code === 1 ? 0 : code === 0 ? s ^ 0x8000 : code === 2 ? s : s + 0x400;
    }
  }
  return out;
}

/** fp64 reference C (m, n) = A (m, k) @ W (k, n), both fp16 bits. */
export function matmulF64(a: Uint16Array, w: Uint16Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  const wf = new Float64Array(k * n);
  for (let i = 0; i < k * n; i++) wf[i] = F16_TO_F32[w[i]];
  for (let i = 0; i < m; i++) {
    const row = out.subarray(i * n, (i + 1) * n);
    for (let r = 0; r < k; r++) {
      const x = F16_TO_F32[a[i * k + r]];
      if (x === 0) continue;
      const wrow = r * n;
      for (let c = 0; c < n; c++) row[c] += x * wf[wrow + c];
    }
  }
  return out;
}

export interface Comparison {
  relError: number;
  maxAbsError: number;
  /** Elements that are NaN or infinite (e.g. never written over the NaN poison). */
  nonFinite: number;
  firstNonFinite: number;
}

/** ||C - ref|| / ||ref|| over all elements; C given as fp16 bits or floats. */
export function compare(c: Uint16Array | Float32Array, ref: Float32Array | Float64Array): Comparison {
  // Two loops rather than a per-element branch on the type: this runs over billions of elements.
  const values = c instanceof Uint16Array ? decodeF16(c) : c;
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  let nonFinite = 0;
  let firstNonFinite = -1;
  for (let i = 0; i < ref.length; i++) {
    const v = values[i];
    const r = ref[i];
    const d = v - r;
    if (d - d !== 0) {
      // NaN or infinite
      if (nonFinite === 0) firstNonFinite = i;
      nonFinite++;
      continue;
    }
    num += d * d;
    den += r * r;
    const ad = d < 0 ? -d : d;
    if (ad > maxAbs) maxAbs = ad;
  }
  return {
    relError: den > 0 ? Math.sqrt(num / den) : Math.sqrt(num),
    maxAbsError: maxAbs,
    nonFinite,
    firstNonFinite,
  };
}

function decodeF16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = F16_TO_F32[bits[i]];
  return out;
}
