import { f16round, getFloat16 } from "@petamoriken/float16";
import { choleskyUpper, inverse } from "./linalg.js";

/** Independent float64 references for tests: dequantization, RTN baselines, unblocked GPTQ. */

export function roundHalfEvenRef(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function fp16BitsToNumbers(bits: Uint16Array): Float64Array {
  const view = new DataView(bits.buffer, bits.byteOffset, bits.byteLength);
  const out = new Float64Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = getFloat16(view, 2 * i, true);
  return out;
}

/** Dequantized weight (out, n) from codes (n, out) and fp16 scales (n/g, out). */
export function dequantize(
  codes: Uint8Array,
  scaleBits: Uint16Array,
  n: number,
  out: number,
  g: number,
): Float64Array {
  const scales = fp16BitsToNumbers(scaleBits);
  const q = new Float64Array(out * n);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < out; o++) {
      q[o * n + i] = (codes[i * out + o] - 1) * scales[Math.floor(i / g) * out + o];
    }
  }
  return q;
}

/** ||X (W - Q)^T||_F for X (tokens, n), W and Q (out, n). */
export function outputError(
  x: Float32Array,
  tokens: number,
  w: ArrayLike<number>,
  q: ArrayLike<number>,
  n: number,
  out: number,
): number {
  const d = new Float64Array(out * n);
  for (let i = 0; i < d.length; i++) d[i] = w[i] - q[i];
  let s = 0;
  for (let t = 0; t < tokens; t++) {
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += x[t * n + i] * d[o * n + i];
      s += acc * acc;
    }
  }
  return Math.sqrt(s);
}

export interface LevelSet {
  qmin: number;
  qmax: number;
}
export const INT2: LevelSet = { qmin: -1, qmax: 2 };
export const TERNARY: LevelSet = { qmin: -1, qmax: 1 };

function quantizeValue(w: number, s: number, levels: LevelSet): number {
  if (s === 0) return 0;
  return Math.min(levels.qmax, Math.max(levels.qmin, roundHalfEvenRef(w / s))) * s;
}

function clampScale(s: number): number {
  return Math.min(65504, Math.max(2 ** -24, s));
}

/** Round-to-nearest baselines: "absmax" (no clipping) and "mse" (grid search of the plain squared error). */
export function rtn(
  w: ArrayLike<number>,
  n: number,
  out: number,
  g: number,
  levels: LevelSet,
  method: "absmax" | "mse",
): Float64Array {
  const q = new Float64Array(out * n);
  for (let o = 0; o < out; o++) {
    for (let g0 = 0; g0 < n; g0 += g) {
      let mx = 0;
      let mn = 0;
      for (let i = g0; i < g0 + g; i++) {
        mx = Math.max(mx, w[o * n + i]);
        mn = Math.min(mn, w[o * n + i]);
      }
      const base = Math.max(mx / levels.qmax, mn / levels.qmin);
      let best = base === 0 ? 0 : clampScale(f16round(base));
      if (method === "mse" && base > 0) {
        let bestErr = Number.POSITIVE_INFINITY;
        for (let k = 0; k < 200; k++) {
          const s = clampScale(f16round(base * (1 - (0.9 * k) / 199)));
          let e = 0;
          for (let i = g0; i < g0 + g; i++) e += (w[o * n + i] - quantizeValue(w[o * n + i], s, levels)) ** 2;
          if (e < bestErr) {
            bestErr = e;
            best = s;
          }
        }
      }
      for (let i = g0; i < g0 + g; i++) q[o * n + i] = quantizeValue(w[o * n + i], best, levels);
    }
  }
  return q;
}

/**
 * Unblocked float64 GPTQ following the reference algorithm (H^-1 by Gauss-Jordan, then its upper
 * Cholesky factor), one output row at a time, in the given processing order, with the same
 * group scale search rule as the package. Returns the dequantized weight (out, n) and the loss.
 */
export function referenceGptq(
  w: ArrayLike<number>,
  hIn: Float64Array,
  n: number,
  out: number,
  opts: { g: number; levels: LevelSet; damp: number; grid: number; minShrink: number; perm?: Int32Array },
): { q: Float64Array; loss: number } {
  const perm = opts.perm ?? Int32Array.from({ length: n }, (_, i) => i);
  const h = new Float64Array(n * n);
  const dead = new Array<boolean>(n).fill(false);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) h[a * n + b] = hIn[perm[a] * n + perm[b]];
  for (let a = 0; a < n; a++) {
    if (h[a * n + a] === 0) {
      h[a * n + a] = 1;
      dead[a] = true;
    }
  }
  let mean = 0;
  for (let a = 0; a < n; a++) mean += h[a * n + a] / n;
  for (let a = 0; a < n; a++) h[a * n + a] += opts.damp * mean;
  const u = choleskyUpper(inverse(h, n), n);
  const q = new Float64Array(out * n);
  let loss = 0;
  const { g, levels } = opts;
  for (let o = 0; o < out; o++) {
    const row = new Float64Array(n);
    for (let a = 0; a < n; a++) row[a] = dead[a] ? 0 : w[o * n + perm[a]];
    let s = 0;
    for (let p = 0; p < n; p++) {
      if (p % g === 0) {
        let mx = 0;
        let mn = 0;
        for (let r = p; r < p + g; r++) {
          mx = Math.max(mx, row[r]);
          mn = Math.min(mn, row[r]);
        }
        const base = Math.max(mx / levels.qmax, mn / levels.qmin);
        s = 0;
        if (base > 0) {
          let bestErr = Number.POSITIVE_INFINITY;
          for (let k = 0; k < opts.grid; k++) {
            const f = opts.grid > 1 ? 1 - ((1 - opts.minShrink) * k) / (opts.grid - 1) : 1;
            const cand = clampScale(f16round(base * f));
            let e = 0;
            for (let r = p; r < p + g; r++) {
              e += (row[r] - quantizeValue(row[r], cand, levels)) ** 2 / u[r * n + r] ** 2;
            }
            if (e < bestErr) {
              bestErr = e;
              s = cand;
            }
          }
        }
      }
      const qv = quantizeValue(row[p], s, levels);
      q[o * n + perm[p]] = qv;
      const d = u[p * n + p];
      const e = (row[p] - qv) / d;
      loss += (e * e) / 2;
      for (let j = p + 1; j < n; j++) row[j] -= e * u[p * n + j];
    }
  }
  return { q, loss };
}

/** Dequantized weights (out, n) from every round-to-nearest method of @trirun/packing that fits the level set. */
export function packingRtn(
  quantize: (
    weight: { data: Float32Array; dtype: "F32"; outFeatures: number; inFeatures: number },
    options: { method: "absmean" | "absmax" | "mse"; groupsize: number },
  ) => { codes: Uint8Array; scales: Uint16Array; groupLength: number },
  w: Float32Array,
  n: number,
  out: number,
  groupsize: number,
  levels: LevelSet,
): Float64Array[] {
  const methods =
    levels.qmax === 2 ? (["absmean", "absmax", "mse"] as const) : (["absmean", "absmax"] as const);
  return methods.map((method) => {
    const q = quantize({ data: w, dtype: "F32", outFeatures: out, inFeatures: n }, { method, groupsize });
    return dequantize(q.codes, q.scales, n, out, q.groupLength);
  });
}
