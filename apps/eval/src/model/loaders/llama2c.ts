import { readFileSync, statSync } from "node:fs";
import { headSize, type LlamaConfig, kvDim, validateConfig } from "../config.js";
import {
  BLOCK_LINEARS,
  type BlockLinearName,
  type LlamaBlock,
  type LlamaModel,
  linearPath,
} from "../llama.js";
import type { Backend } from "@trirun/layers";
import { float16LinearFactory, type LinearFactory } from "./linear-factory.js";
import { ModelLoadError } from "./errors.js";

const HEADER_BYTES = 7 * 4;
/** "ak42": llama2.c's versioned exports start with this magic; only the legacy layout is read here. */
const VERSIONED_MAGIC = 0x616b3432;

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  tiedClassifier: boolean;
}

export function parseLlama2cHeader(bytes: Uint8Array, file: string): Llama2cHeader {
  if (bytes.byteLength < HEADER_BYTES) {
    throw new ModelLoadError(
      "ERR_MODEL_TRUNCATED",
      `${file}: ${bytes.byteLength} bytes is shorter than the 28-byte llama2.c header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const f = Array.from({ length: 7 }, (_, i) => view.getInt32(4 * i, true));
  if (f[0] === VERSIONED_MAGIC) {
    throw new ModelLoadError(
      "ERR_MODEL_HEADER",
      `${file}: this is a versioned llama2.c export (magic "ak42"); only the legacy format is supported`,
    );
  }
  const names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
  f.forEach((v, i) => {
    const ok = i === 5 ? v !== 0 && Math.abs(v) <= 1 << 24 : v > 0 && v <= 1 << 20;
    if (!ok) {
      throw new ModelLoadError(
        "ERR_MODEL_HEADER",
        `${file}: header field ${names[i]} = ${v} is not a plausible llama2.c value (expected a positive size)`,
      );
    }
  });
  return {
    dim: f[0],
    hiddenDim: f[1],
    nLayers: f[2],
    nHeads: f[3],
    nKvHeads: f[4],
    vocabSize: Math.abs(f[5]),
    seqLen: f[6],
    // llama2.c: a negative vocab_size says the classifier is stored separately after the RoPE tables.
    tiedClassifier: f[5] > 0,
  };
}

function configFromHeader(h: Llama2cHeader, file: string): LlamaConfig {
  try {
    return validateConfig(
      {
        dim: h.dim,
        hiddenDim: h.hiddenDim,
        nLayers: h.nLayers,
        nHeads: h.nHeads,
        nKvHeads: h.nKvHeads,
        vocabSize: h.vocabSize,
        maxSeqLen: h.seqLen,
        normEps: 1e-5,
        ropeTheta: 10000,
        ropeStyle: "interleaved",
        tiedClassifier: h.tiedClassifier,
      },
      file,
    );
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_HEADER", (err as Error).message, { cause: err });
  }
}

/** Number of float32 values after the header, RoPE tables and optional classifier included. */
export function llama2cFloatCount(c: LlamaConfig): number {
  const { dim, hiddenDim: hid, nLayers: L, vocabSize: V } = c;
  const kv = kvDim(c);
  const perLayer = dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hid * dim;
  const rope = c.maxSeqLen * headSize(c); // freq_cis_real and freq_cis_imag, (seq_len, hs/2) each
  return V * dim + L * perLayer + dim + rope + (c.tiedClassifier ? 0 : V * dim);
}

export interface LoadOptions {
  /** Builds the unquantized linear layers (default: Float16Linear on `backend`). */
  linearFactory?: LinearFactory;
  /** Backend of the @trirun/layers modules (default: the layers' choice: CUDA when available). */
  backend?: Backend;
}

/** Loads a legacy llama2.c checkpoint (header + fp32 tensors, see the models README). */
export function loadLlama2c(file: string, opts: LoadOptions = {}): LlamaModel {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    throw new ModelLoadError("ERR_MODEL_NOT_FOUND", `${file}: cannot read the llama2.c checkpoint`, {
      cause: err,
    });
  }
  const bytes = new Uint8Array(readFileSync(file));
  const config = configFromHeader(parseLlama2cHeader(bytes, file), file);
  const expected = HEADER_BYTES + 4 * llama2cFloatCount(config);
  if (size < expected) {
    throw new ModelLoadError(
      "ERR_MODEL_TRUNCATED",
      `${file}: ${size} bytes, but the header (dim ${config.dim}, ${config.nLayers} layers, vocab ${config.vocabSize}) needs ${expected}; the file is truncated`,
    );
  }
  if (size > expected) {
    throw new ModelLoadError(
      "ERR_MODEL_FORMAT",
      `${file}: ${size} bytes, but the header needs exactly ${expected}; ${size - expected} unexpected trailing bytes (wrong header?)`,
    );
  }
  const floats = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset + HEADER_BYTES, bytes.byteOffset + size),
  );
  let offset = 0;
  const take = (n: number): Float32Array => {
    const out = floats.subarray(offset, offset + n);
    offset += n;
    return out;
  };
  const { dim, hiddenDim: hid, nLayers: L, vocabSize: V } = config;
  const kv = kvDim(config);
  const embedding = take(V * dim);
  const attnNorm = take(L * dim);
  const wq = take(L * dim * dim);
  const wk = take(L * kv * dim);
  const wv = take(L * kv * dim);
  const wo = take(L * dim * dim);
  const ffnNorm = take(L * dim);
  const w1 = take(L * hid * dim);
  const w2 = take(L * dim * hid);
  const w3 = take(L * hid * dim);
  const finalNorm = take(dim);
  take(config.maxSeqLen * headSize(config)); // legacy RoPE tables, recomputed at run time
  const classifierWeight = config.tiedClassifier ? embedding : take(V * dim);
  for (const [name, t] of [
    ["embedding", embedding],
    ["classifier", classifierWeight],
    ["rms weights", attnNorm],
    ["ffn rms weights", ffnNorm],
    ["final rms weight", finalNorm],
  ] as const) {
    if (!t.every(Number.isFinite)) {
      throw new ModelLoadError("ERR_MODEL_TENSOR", `${file}: ${name} contains non-finite values`);
    }
  }

  const factory = opts.linearFactory ?? float16LinearFactory(opts.backend);
  const shapes: Record<BlockLinearName, [Float32Array, number, number]> = {
    "self_attn.q_proj": [wq, dim, dim],
    "self_attn.k_proj": [wk, kv, dim],
    "self_attn.v_proj": [wv, kv, dim],
    "self_attn.o_proj": [wo, dim, dim],
    "mlp.gate_proj": [w1, hid, dim],
    "mlp.up_proj": [w3, hid, dim],
    "mlp.down_proj": [w2, dim, hid],
  };
  const blocks: LlamaBlock[] = [];
  for (let l = 0; l < L; l++) {
    const linears = {} as LlamaBlock["linears"];
    for (const name of BLOCK_LINEARS) {
      const [all, out, inF] = shapes[name];
      const w = all.subarray(l * out * inF, (l + 1) * out * inF);
      // Checked here so that the error names the file (the layer's own check does not know it).
      const bad = w.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new ModelLoadError(
          "ERR_MODEL_TENSOR",
          `${file}: ${linearPath(l, name)} has a non-finite value (${w[bad]}) at [${Math.floor(bad / inF)}, ${bad % inF}]`,
        );
      }
      linears[name] = factory(linearPath(l, name), w, out, inF);
    }
    blocks.push({
      attnNorm: attnNorm.slice(l * dim, (l + 1) * dim),
      ffnNorm: ffnNorm.slice(l * dim, (l + 1) * dim),
      linears,
    });
  }
  return {
    config,
    embedding: embedding.slice(),
    blocks,
    finalNorm: finalNorm.slice(),
    classifier: factory("lm_head", classifierWeight, V, dim),
    source: file,
  };
}
