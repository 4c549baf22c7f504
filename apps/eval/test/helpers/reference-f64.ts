/**
 * An independent fp64 Llama forward pass for tests: plain nested loops over weights parsed here from the
 * files themselves, sharing no code with src/.
 */
import { existsSync, readFileSync } from "node:fs";
import { f16round } from "@petamoriken/float16";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** ../shared next to the repository, located from the package directory. */
export const SHARED = resolve(here, "../../../../../shared");
export const MODELS = join(SHARED, "models");
export const STORIES_BIN = join(MODELS, "stories260K.bin");
export const STUDENT_DIR = join(MODELS, "stories-student-3M");
export const SAMPLES_U16 = join(MODELS, "stories260K-samples-8192x256.u16");
export const haveShared = existsSync(STORIES_BIN) && existsSync(STUDENT_DIR) && existsSync(SAMPLES_U16);
if (!haveShared)
  console.warn(`[eval tests] ${MODELS} is missing: tests that need the shared models are skipped`);

export interface RefWeights {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  eps: number;
  theta: number;
  interleaved: boolean;
  emb: Float64Array; // (vocab, dim)
  attnNorm: Float64Array[];
  ffnNorm: Float64Array[];
  wq: Float64Array[]; // (out, in)
  wk: Float64Array[];
  wv: Float64Array[];
  wo: Float64Array[];
  w1: Float64Array[];
  w2: Float64Array[];
  w3: Float64Array[];
  finalNorm: Float64Array;
  cls: Float64Array; // (vocab, dim)
  /** BitNet b1.58's block: RMSNorms before o_proj (dim) and down_proj (hidden), and relu(g)^2 * u. */
  attnSubNorm?: Float64Array[];
  ffnSubNorm?: Float64Array[];
  relu2?: boolean;
  /** Qwen2-style q/k/v biases, per layer. */
  bq?: Float64Array[];
  bk?: Float64Array[];
  bv?: Float64Array[];
}

/**
 * stories260K as the model under test defines it: linear layers (and the tied classifier) hold fp16 weights,
 * the embedding and norms stay fp32. `fp16Linears: false` keeps the file's fp32 values.
 */
export function readStoriesBin(file = STORIES_BIN, opts: { fp16Linears?: boolean } = {}): RefWeights {
  const buf = readFileSync(file);
  const hdr = (i: number) => buf.readInt32LE(4 * i);
  const [dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen] = [0, 1, 2, 3, 4, 5, 6].map(hdr);
  const vocab = Math.abs(vocabRaw);
  let off = 28;
  const f = (n: number) => {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = buf.readFloatLE(off + 4 * i);
    off += 4 * n;
    return a;
  };
  const kv = (dim / heads) * kvHeads;
  const per = (n: number) => Array.from({ length: layers }, () => f(n));
  const emb = f(vocab * dim);
  const attnNorm = per(dim);
  const wq = per(dim * dim);
  const wk = per(kv * dim);
  const wv = per(kv * dim);
  const wo = per(dim * dim);
  const ffnNorm = per(dim);
  const w1 = per(hidden * dim);
  const w2 = per(dim * hidden);
  const w3 = per(hidden * dim);
  const finalNorm = f(dim);
  off += seqLen * (dim / heads) * 4;
  const cls = vocabRaw > 0 ? emb.slice() : f(vocab * dim);
  if (opts.fp16Linears ?? true) {
    for (const t of [...wq, ...wk, ...wv, ...wo, ...w1, ...w2, ...w3, cls]) {
      for (let i = 0; i < t.length; i++) t[i] = f16round(t[i]);
    }
  }
  return {
    dim,
    hidden,
    layers,
    heads,
    kvHeads,
    vocab,
    eps: 1e-5,
    theta: 10000,
    interleaved: true,
    emb,
    attnNorm,
    ffnNorm,
    wq,
    wk,
    wv,
    wo,
    w1,
    w2,
    w3,
    finalNorm,
    cls,
  };
}

function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function readStudent(dir = STUDENT_DIR): RefWeights {
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  const buf = readFileSync(join(dir, "model.safetensors"));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const t = (name: string) => {
    const e = header[name];
    if (!e || e.dtype !== "F16") throw new Error(`reference: ${name} missing or not F16`);
    const [a, b] = e.data_offsets;
    const out = new Float64Array((b - a) / 2);
    for (let i = 0; i < out.length; i++) out[i] = halfToNumber(buf.readUInt16LE(8 + n + a + 2 * i));
    return out;
  };
  const L = cfg.num_hidden_layers;
  const per = (s: string) => Array.from({ length: L }, (_, i) => t(`model.layers.${i}.${s}.weight`));
  return {
    dim: cfg.hidden_size,
    hidden: cfg.intermediate_size,
    layers: L,
    heads: cfg.num_attention_heads,
    kvHeads: cfg.num_key_value_heads,
    vocab: cfg.vocab_size,
    eps: cfg.rms_norm_eps,
    theta: cfg.rope_theta,
    interleaved: false,
    emb: t("model.embed_tokens.weight"),
    attnNorm: per("input_layernorm"),
    ffnNorm: per("post_attention_layernorm"),
    wq: per("self_attn.q_proj"),
    wk: per("self_attn.k_proj"),
    wv: per("self_attn.v_proj"),
    wo: per("self_attn.o_proj"),
    w1: per("mlp.gate_proj"),
    w2: per("mlp.down_proj"),
    w3: per("mlp.up_proj"),
    finalNorm: t("model.norm.weight"),
    cls: cfg.tie_word_embeddings ? t("model.embed_tokens.weight") : t("lm_head.weight"),
  };
}

/** Logits (T, vocab) for a full sequence, everything in fp64. */
export function referenceLogits(w: RefWeights, tokens: number[]): Float64Array[] {
  const { dim, hidden, heads, kvHeads } = w;
  const hs = dim / heads;
  const T = tokens.length;
  const matvec = (W: Float64Array, x: Float64Array, out: number, inF: number) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += W[o * inF + i] * x[i];
      y[o] = s;
    }
    return y;
  };
  const norm = (x: Float64Array, g: Float64Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const r = 1 / Math.sqrt(ss / x.length + w.eps);
    return x.map((v, i) => v * r * g[i]);
  };
  const rope = (v: Float64Array, nh: number, pos: number) => {
    for (let h = 0; h < nh; h++) {
      for (let i = 0; i < hs / 2; i++) {
        const ang = pos / w.theta ** ((2 * i) / hs);
        const a = w.interleaved ? h * hs + 2 * i : h * hs + i;
        const b = w.interleaved ? a + 1 : a + hs / 2;
        const x0 = v[a];
        const x1 = v[b];
        v[a] = x0 * Math.cos(ang) - x1 * Math.sin(ang);
        v[b] = x0 * Math.sin(ang) + x1 * Math.cos(ang);
      }
    }
  };
  let xs = tokens.map((id) => w.emb.slice(id * dim, (id + 1) * dim));
  for (let l = 0; l < w.layers; l++) {
    const kvd = hs * kvHeads;
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const h = norm(xs[t], w.attnNorm[l]);
      const addBias = (v: Float64Array, b: Float64Array[] | undefined) =>
        b === undefined ? v : v.map((e, i) => e + b[l][i]);
      const q = addBias(matvec(w.wq[l], h, dim, dim), w.bq);
      const k = addBias(matvec(w.wk[l], h, kvd, dim), w.bk);
      rope(q, heads, t);
      rope(k, kvHeads, t);
      qs.push(q);
      ks.push(k);
      vs.push(addBias(matvec(w.wv[l], h, kvd, dim), w.bv));
    }
    xs = xs.map((x, t) => {
      const att = new Float64Array(dim);
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        const sc: number[] = [];
        for (let s = 0; s <= t; s++) {
          let d = 0;
          for (let i = 0; i < hs; i++) d += qs[t][h * hs + i] * ks[s][kh * hs + i];
          sc.push(d / Math.sqrt(hs));
        }
        const m = Math.max(...sc);
        const e = sc.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) {
          for (let i = 0; i < hs; i++) att[h * hs + i] += (e[s] / z) * vs[s][kh * hs + i];
        }
      }
      const o = matvec(w.wo[l], w.attnSubNorm ? norm(att, w.attnSubNorm[l]) : att, dim, dim);
      const x1 = x.map((v, i) => v + o[i]);
      const h2 = norm(x1, w.ffnNorm[l]);
      const g = matvec(w.w1[l], h2, hidden, dim);
      const u = matvec(w.w3[l], h2, hidden, dim);
      const a = g.map((v, i) => (w.relu2 ? Math.max(v, 0) ** 2 : v / (1 + Math.exp(-v))) * u[i]);
      const d = matvec(w.w2[l], w.ffnSubNorm ? norm(a, w.ffnSubNorm[l]) : a, dim, hidden);
      return x1.map((v, i) => v + d[i]);
    });
  }
  return xs.map((x) => matvec(w.cls, norm(x, w.finalNorm), w.vocab, dim));
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
