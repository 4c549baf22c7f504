import type { RopeStyle } from "./config.js";

/** fp32 host kernels for the non-linear parts of a Llama block (the linears run in @trirun/layers). */

export function embed(
  table: Float32Array,
  dim: number,
  vocab: number,
  tokens: ArrayLike<number>,
): Float32Array {
  const out = new Float32Array(tokens.length * dim);
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(`tokens[${t}] = ${id} is outside the vocabulary [0, ${vocab})`);
    }
    out.set(table.subarray(id * dim, (id + 1) * dim), t * dim);
  }
  return out;
}

/** y = x / sqrt(mean(x^2) + eps) * w, row by row. */
export function rmsNorm(
  x: Float32Array,
  rows: number,
  dim: number,
  w: Float32Array,
  eps: number,
): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[o + i] = x[o + i] * inv * w[i];
  }
  return out;
}

/** cos/sin of position * theta^(-2i/headSize), cached per (headSize, theta) up to the longest position seen. */
export class RopeTable {
  private cos = new Float32Array(0);
  private sin = new Float32Array(0);
  private positions = 0;
  private readonly half: number;

  constructor(
    private readonly headSize: number,
    private readonly theta: number,
  ) {
    this.half = headSize / 2;
  }

  private ensure(positions: number): void {
    if (positions <= this.positions) return;
    const n = Math.max(positions, this.positions * 2, 64);
    const cos = new Float32Array(n * this.half);
    const sin = new Float32Array(n * this.half);
    for (let p = 0; p < n; p++) {
      for (let i = 0; i < this.half; i++) {
        const angle = p * this.theta ** ((-2 * i) / this.headSize);
        cos[p * this.half + i] = Math.cos(angle);
        sin[p * this.half + i] = Math.sin(angle);
      }
    }
    this.cos = cos;
    this.sin = sin;
    this.positions = n;
  }

  /** Rotates `x` (rows, nHeads * headSize) in place; row r sits at position pos0 + r. */
  apply(x: Float32Array, rows: number, nHeads: number, pos0: number, style: RopeStyle): void {
    this.ensure(pos0 + rows);
    const hs = this.headSize;
    const half = this.half;
    for (let r = 0; r < rows; r++) {
      const tableRow = (pos0 + r) * half;
      for (let h = 0; h < nHeads; h++) {
        const base = (r * nHeads + h) * hs;
        for (let i = 0; i < half; i++) {
          const c = this.cos[tableRow + i];
          const s = this.sin[tableRow + i];
          const a = style === "interleaved" ? base + 2 * i : base + i;
          const b = style === "interleaved" ? a + 1 : a + half;
          const x0 = x[a];
          const x1 = x[b];
          x[a] = x0 * c - x1 * s;
          x[b] = x0 * s + x1 * c;
        }
      }
    }
  }
}

export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headSize: number;
}

/**
 * Causal grouped-query attention. q: (rows, nHeads*hs) at positions pos0..pos0+rows-1;
 * keys/values: (pos0 + rows, nKvHeads*hs), all positions up to the last query.
 *
 * Query rows go in pairs: row r + 1 sees every key row r sees plus one, so the pair shares each
 * key and value load (about 1.4x the speed of one row at a time). Each row's dot products, softmax
 * sums and output sums still run in key order, so the results are those of one row at a time.
 */
export function causalAttention(
  q: Float32Array,
  rows: number,
  pos0: number,
  keys: Float32Array,
  values: Float32Array,
  shape: AttentionShape,
): Float32Array {
  const { nHeads, nKvHeads, headSize: hs } = shape;
  const qDim = nHeads * hs;
  const kvDim = nKvHeads * hs;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(hs);
  const out = new Float32Array(rows * qDim);
  const scoresA = new Float32Array(pos0 + rows);
  const scoresB = new Float32Array(pos0 + rows);
  let r = 0;
  for (; r + 2 <= rows; r += 2) {
    const spanA = pos0 + r + 1; // row r + 1 sees one key more: index spanA
    for (let h = 0; h < nHeads; h++) {
      const qa = r * qDim + h * hs;
      const qb = qa + qDim;
      const kvo = Math.floor(h / group) * hs;
      let maxA = Number.NEGATIVE_INFINITY;
      let maxB = Number.NEGATIVE_INFINITY;
      for (let s = 0; s < spanA; s++) {
        const ko = s * kvDim + kvo;
        let dotA = 0;
        let dotB = 0;
        for (let i = 0; i < hs; i++) {
          const k = keys[ko + i];
          dotA += q[qa + i] * k;
          dotB += q[qb + i] * k;
        }
        const va = dotA * scale;
        const vb = dotB * scale;
        scoresA[s] = va;
        scoresB[s] = vb;
        if (va > maxA) maxA = va;
        if (vb > maxB) maxB = vb;
      }
      {
        const ko = spanA * kvDim + kvo;
        let dotB = 0;
        for (let i = 0; i < hs; i++) dotB += q[qb + i] * keys[ko + i];
        const vb = dotB * scale;
        scoresB[spanA] = vb;
        if (vb > maxB) maxB = vb;
      }
      let sumA = 0;
      let sumB = 0;
      for (let s = 0; s < spanA; s++) {
        const ea = Math.exp(scoresA[s] - maxA);
        const eb = Math.exp(scoresB[s] - maxB);
        scoresA[s] = ea;
        scoresB[s] = eb;
        sumA += ea;
        sumB += eb;
      }
      const eLast = Math.exp(scoresB[spanA] - maxB);
      scoresB[spanA] = eLast;
      sumB += eLast;
      const invA = 1 / sumA;
      const invB = 1 / sumB;
      for (let s = 0; s < spanA; s++) {
        const pa = scoresA[s] * invA;
        const pb = scoresB[s] * invB;
        const vo = s * kvDim + kvo;
        for (let i = 0; i < hs; i++) {
          const v = values[vo + i];
          out[qa + i] += pa * v;
          out[qb + i] += pb * v;
        }
      }
      const pLast = scoresB[spanA] * invB;
      const vo = spanA * kvDim + kvo;
      for (let i = 0; i < hs; i++) out[qb + i] += pLast * values[vo + i];
    }
  }
  for (; r < rows; r++) {
    const span = pos0 + r + 1;
    for (let h = 0; h < nHeads; h++) {
      const qo = r * qDim + h * hs;
      const kvo = Math.floor(h / group) * hs;
      let max = Number.NEGATIVE_INFINITY;
      for (let s = 0; s < span; s++) {
        const ko = s * kvDim + kvo;
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += q[qo + i] * keys[ko + i];
        const v = dot * scale;
        scoresA[s] = v;
        if (v > max) max = v;
      }
      let sum = 0;
      for (let s = 0; s < span; s++) {
        const e = Math.exp(scoresA[s] - max);
        scoresA[s] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let s = 0; s < span; s++) {
        const p = scoresA[s] * inv;
        const vo = s * kvDim + kvo;
        for (let i = 0; i < hs; i++) out[qo + i] += p * values[vo + i];
      }
    }
  }
  return out;
}

/** silu(gate) * up, elementwise, written into gate's copy. */
export function swiGlu(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
  return out;
}

/**
 * Per-row absmax fake quantization to `bits` signed bits, in fp32 as transformers' ActQuant (BitNet
 * b1.58's activations): s = q / max(max |row|, 1e-5) with q = 2^(bits-1) - 1, then
 * clamp(round_half_even(x * s), -q - 1, q) / s. Returns a new array.
 */
export function quantizeRows(x: Float32Array, rows: number, dim: number, bits: number): Float32Array {
  const q = 2 ** (bits - 1) - 1;
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    let max = 0;
    for (let j = 0; j < dim; j++) max = Math.max(max, Math.abs(x[base + j]));
    const s = Math.fround(q / Math.max(max, Math.fround(1e-5)));
    for (let j = 0; j < dim; j++) {
      const t = Math.fround(x[base + j] * s);
      let level = Math.round(t);
      if (level - t === 0.5 && level % 2 !== 0) level -= 1; // Math.round rounds ties up; torch to even
      out[base + j] = (level < -q - 1 ? -q - 1 : level > q ? q : level) / s;
    }
  }
  return out;
}

/** BitNet b1.58's MLP activation: relu(gate)^2 * up. */
export function relu2Mul(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i] > 0 ? gate[i] : 0;
    out[i] = g * g * up[i];
  }
  return out;
}

export function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}
