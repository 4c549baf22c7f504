import { readFileSync } from "node:fs";

/** A minimal llama2.c checkpoint reader and float64 forward pass that records every linear layer's input. */

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seqLen: number;
}

export interface Llama2cLayer {
  attnNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  ffnNorm: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
  w3: Float32Array;
}

export interface Llama2cModel {
  config: Llama2cConfig;
  embedding: Float32Array;
  layers: Llama2cLayer[];
  finalNorm: Float32Array;
}

export function loadLlama2c(path: string): Llama2cModel {
  const bytes = readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true));
  const config: Llama2cConfig = {
    dim: h[0],
    hiddenDim: h[1],
    layers: h[2],
    heads: h[3],
    kvHeads: h[4],
    vocab: Math.abs(h[5]),
    seqLen: h[6],
  };
  if (h[5] < 0) throw new Error(`${path}: a separate classifier (negative vocab) is not supported here`);
  const floats = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset + 28, bytes.byteOffset + bytes.byteLength),
  );
  let at = 0;
  const take = (count: number): Float32Array => {
    if (at + count > floats.length) throw new Error(`${path}: truncated at float ${at}`);
    const t = floats.subarray(at, at + count);
    at += count;
    return t;
  };
  const { dim, hiddenDim, layers: L, heads, kvHeads, vocab } = config;
  const kvDim = (dim * kvHeads) / heads;
  const embedding = take(vocab * dim);
  const attnNorm = take(L * dim);
  const wq = take(L * dim * dim);
  const wk = take(L * kvDim * dim);
  const wv = take(L * kvDim * dim);
  const wo = take(L * dim * dim);
  const ffnNorm = take(L * dim);
  const w1 = take(L * hiddenDim * dim);
  const w2 = take(L * dim * hiddenDim);
  const w3 = take(L * hiddenDim * dim);
  const finalNorm = take(dim);
  const layers: Llama2cLayer[] = [];
  const slice = (a: Float32Array, l: number, size: number) => a.subarray(l * size, (l + 1) * size);
  for (let l = 0; l < L; l++) {
    layers.push({
      attnNorm: slice(attnNorm, l, dim),
      wq: slice(wq, l, dim * dim),
      wk: slice(wk, l, kvDim * dim),
      wv: slice(wv, l, kvDim * dim),
      wo: slice(wo, l, dim * dim),
      ffnNorm: slice(ffnNorm, l, dim),
      w1: slice(w1, l, hiddenDim * dim),
      w2: slice(w2, l, dim * hiddenDim),
      w3: slice(w3, l, hiddenDim * dim),
    });
  }
  return { config, embedding, layers, finalNorm };
}

/** y (T, out) = x (T, in) W^T with W (out, in). */
function linear(x: Float64Array, tokens: number, w: Float32Array, inF: number, outF: number): Float64Array {
  const y = new Float64Array(tokens * outF);
  for (let t = 0; t < tokens; t++) {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += x[t * inF + i] * w[o * inF + i];
      y[t * outF + o] = s;
    }
  }
  return y;
}

function rmsnorm(x: Float64Array, tokens: number, dim: number, weight: Float32Array): Float64Array {
  const y = new Float64Array(tokens * dim);
  for (let t = 0; t < tokens; t++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[t * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + 1e-5);
    for (let i = 0; i < dim; i++) y[t * dim + i] = x[t * dim + i] * inv * weight[i];
  }
  return y;
}

function rope(v: Float64Array, tokens: number, width: number, headSize: number): void {
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < width; i += 2) {
      const freq = 1 / 10000 ** ((i % headSize) / headSize);
      const c = Math.cos(t * freq);
      const s = Math.sin(t * freq);
      const a = v[t * width + i];
      const b = v[t * width + i + 1];
      v[t * width + i] = a * c - b * s;
      v[t * width + i + 1] = a * s + b * c;
    }
  }
}

/** Inputs of the linear layers of one transformer layer, (tokens, in) each. */
export interface LayerInputs {
  attn: Float64Array; // input of wq, wk, wv
  wo: Float64Array;
  ffn: Float64Array; // input of w1, w3
  w2: Float64Array;
}

/**
 * Runs one sequence and returns every layer's linear inputs plus the mean next-token negative
 * log-likelihood (a check that the forward pass is right).
 */
export function forwardSequence(
  model: Llama2cModel,
  tokens: ArrayLike<number>,
): { inputs: LayerInputs[]; nll: number } {
  const { dim, hiddenDim, heads, kvHeads, vocab } = model.config;
  const T = tokens.length;
  const headSize = dim / heads;
  const kvDim = (dim * kvHeads) / heads;
  const kvMul = heads / kvHeads;
  const x = new Float64Array(T * dim);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < dim; i++) x[t * dim + i] = model.embedding[tokens[t] * dim + i];
  const inputs: LayerInputs[] = [];
  for (const layer of model.layers) {
    const attnIn = rmsnorm(x, T, dim, layer.attnNorm);
    const q = linear(attnIn, T, layer.wq, dim, dim);
    const k = linear(attnIn, T, layer.wk, dim, kvDim);
    const v = linear(attnIn, T, layer.wv, dim, kvDim);
    rope(q, T, dim, headSize);
    rope(k, T, kvDim, headSize);
    const att = new Float64Array(T * dim);
    const scores = new Float64Array(T);
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / kvMul);
      for (let t = 0; t < T; t++) {
        let max = Number.NEGATIVE_INFINITY;
        for (let s = 0; s <= t; s++) {
          let d = 0;
          for (let i = 0; i < headSize; i++)
            d += q[t * dim + h * headSize + i] * k[s * kvDim + kvh * headSize + i];
          scores[s] = d / Math.sqrt(headSize);
          max = Math.max(max, scores[s]);
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) {
          scores[s] = Math.exp(scores[s] - max);
          sum += scores[s];
        }
        for (let s = 0; s <= t; s++) {
          const a = scores[s] / sum;
          for (let i = 0; i < headSize; i++)
            att[t * dim + h * headSize + i] += a * v[s * kvDim + kvh * headSize + i];
        }
      }
    }
    const o = linear(att, T, layer.wo, dim, dim);
    for (let i = 0; i < x.length; i++) x[i] += o[i];
    const ffnIn = rmsnorm(x, T, dim, layer.ffnNorm);
    const h1 = linear(ffnIn, T, layer.w1, dim, hiddenDim);
    const h3 = linear(ffnIn, T, layer.w3, dim, hiddenDim);
    const hb = new Float64Array(T * hiddenDim);
    for (let i = 0; i < hb.length; i++) hb[i] = (h1[i] / (1 + Math.exp(-h1[i]))) * h3[i];
    const down = linear(hb, T, layer.w2, hiddenDim, dim);
    for (let i = 0; i < x.length; i++) x[i] += down[i];
    inputs.push({ attn: attnIn, wo: att, ffn: ffnIn, w2: hb });
  }
  const final = rmsnorm(x, T, dim, model.finalNorm);
  const logits = linear(final, T, model.embedding, dim, vocab);
  let nll = 0;
  for (let t = 0; t + 1 < T; t++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < vocab; j++) max = Math.max(max, logits[t * vocab + j]);
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[t * vocab + j] - max);
    nll += Math.log(sum) + max - logits[t * vocab + tokens[t + 1]];
  }
  return { inputs, nll: nll / (T - 1) };
}
