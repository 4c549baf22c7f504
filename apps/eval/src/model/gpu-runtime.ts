import {
  available,
  DeviceTensor,
  OPS_MAX_HEAD_DIM,
  ops,
  synchronize,
  unavailableReason,
} from "@trirun/kernel-native";
import { decodeF16, encodeF16 } from "@trirun/packing";
import { headSize, kvDim } from "./config.js";
import { type LlamaModel, listLinears } from "./llama.js";
import type { ForwardOptions, KvCache, LlamaRuntime } from "./runtime.js";

/** Activation buffers grow in steps of this many rows, so that windows of varying length reuse them. */
const ROW_STEP = 64;

/** Thrown when the CUDA runtime is asked for but cannot run here. */
export class CudaRuntimeUnavailableError extends Error {
  readonly code = "ERR_NO_CUDA_RUNTIME";
  constructor(message: string) {
    super(message);
    this.name = "CudaRuntimeUnavailableError";
  }
}

/** Checks that every linear layer of `model` runs on the CUDA backend (their forward then stays on the device). */
export function checkCudaLayers(model: LlamaModel): void {
  for (const { path, layer } of listLinears(model)) {
    if (layer.backend !== "cuda") {
      throw new TypeError(
        `${path}: the CUDA runtime needs linear layers on the "cuda" backend, got "${layer.backend}" (load the model with backend "cuda")`,
      );
    }
  }
}

/** Token ids as i32, each checked against the vocabulary (the device gather would give NaN rows instead). */
export function tokenIds(tokens: ArrayLike<number>, vocab: number): Int32Array {
  const ids = new Int32Array(tokens.length);
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(`tokens[${t}] = ${id} is outside the vocabulary [0, ${vocab})`);
    }
    ids[t] = id;
  }
  return ids;
}

/** Keys and values of every layer on the device: (capacity, kvDim) f16 per layer. */
export class CudaKvCache implements KvCache {
  length = 0;
  readonly keys: DeviceTensor[];
  readonly values: DeviceTensor[];

  constructor(
    layers: number,
    readonly capacity: number,
    width: number,
  ) {
    this.keys = [];
    this.values = [];
    try {
      for (let l = 0; l < layers; l++) {
        this.keys.push(DeviceTensor.empty("f16", [capacity, width]));
        this.values.push(DeviceTensor.empty("f16", [capacity, width]));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  reset(): void {
    this.length = 0;
  }

  /** Device bytes held by the cache. */
  get byteLength(): number {
    return [...this.keys, ...this.values].reduce((s, t) => s + t.byteLength, 0);
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

/**
 * Keys and values of `batch` sequences decoded together: (batch, capacity, kvDim) f16 per layer, the
 * layout of the batched decode attention kernel (one launch per layer for the whole batch).
 */
export class CudaBatchKvCache {
  /** Positions stored per sequence. */
  readonly lengths: number[];
  readonly keys: DeviceTensor[] = [];
  readonly values: DeviceTensor[] = [];

  constructor(
    layers: number,
    readonly batch: number,
    readonly capacity: number,
    width: number,
  ) {
    this.lengths = new Array<number>(batch).fill(0);
    try {
      for (let l = 0; l < layers; l++) {
        this.keys.push(DeviceTensor.empty("f16", [batch, capacity, width]));
        this.values.push(DeviceTensor.empty("f16", [batch, capacity, width]));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  reset(): void {
    this.lengths.fill(0);
  }

  get byteLength(): number {
    return [...this.keys, ...this.values].reduce((s, t) => s + t.byteLength, 0);
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

/** Views of the workspace for one batch size: whole buffers, plus per-sequence rows for attention. */
interface BatchViews {
  x: DeviceTensor;
  h: DeviceTensor;
  q: DeviceTensor;
  k: DeviceTensor;
  v: DeviceTensor;
  att: DeviceTensor;
  proj: DeviceTensor;
  gate: DeviceTensor;
  up: DeviceTensor;
  logits: DeviceTensor;
  ids: DeviceTensor;
  positions: DeviceTensor;
  qRows: DeviceTensor[];
  kRows: DeviceTensor[];
  vRows: DeviceTensor[];
  attRows: DeviceTensor[];
}

/** Row-capacity activation buffers of one forward pass; views of `rows` rows are handed out per call. */
class Workspace {
  readonly tensors: Record<
    "x" | "h" | "q" | "k" | "v" | "att" | "proj" | "gate" | "up" | "logits",
    DeviceTensor
  >;
  readonly ids: DeviceTensor;
  readonly positions: DeviceTensor;

  constructor(
    readonly capacity: number,
    widths: { dim: number; kv: number; hidden: number; vocab: number },
  ) {
    const made: DeviceTensor[] = [];
    const f16 = (width: number): DeviceTensor => {
      const t = DeviceTensor.empty("f16", [capacity, width]);
      made.push(t);
      return t;
    };
    try {
      this.tensors = {
        x: f16(widths.dim),
        h: f16(widths.dim),
        q: f16(widths.dim),
        k: f16(widths.kv),
        v: f16(widths.kv),
        att: f16(widths.dim),
        proj: f16(widths.dim),
        gate: f16(widths.hidden),
        up: f16(widths.hidden),
        logits: f16(widths.vocab),
      };
      this.ids = DeviceTensor.empty("i32", [capacity]);
      made.push(this.ids);
      this.positions = DeviceTensor.empty("i32", [capacity]);
      made.push(this.positions);
    } catch (error) {
      for (const t of made) t.dispose();
      throw error;
    }
  }

  /** The first `rows` rows of a buffer. */
  rows(name: keyof Workspace["tensors"], rows: number): DeviceTensor {
    const t = this.tensors[name];
    return t.view([rows, t.shape[1]]);
  }

  get byteLength(): number {
    return (
      Object.values(this.tensors).reduce((s, t) => s + t.byteLength, 0) +
      this.ids.byteLength +
      this.positions.byteLength
    );
  }

  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
    this.ids.dispose();
    this.positions.dispose();
  }
}

/**
 * The whole forward pass on the GPU: fp16 activations, fp32 math inside the kernels of
 * @trirun/kernel-native (embedding, RMSNorm, RoPE, attention, SiLU-gate, residual adds) and the model's
 * own @trirun/layers CUDA linears fed device tensors, so nothing returns to the host between layers.
 * Norm weights stay fp32 on the device; the embedding is stored in fp16.
 */
export class CudaLlamaRuntime implements LlamaRuntime {
  readonly backend = "cuda" as const;
  readonly #embedding: DeviceTensor;
  readonly #attnNorms: DeviceTensor[] = [];
  readonly #ffnNorms: DeviceTensor[] = [];
  readonly #finalNorm: DeviceTensor;
  #workspace: Workspace | undefined;
  /** Views of the workspace for decodeBatch, per batch size (made once: the decode loop is hot). */
  readonly #batchViews = new Map<number, BatchViews>();
  #disposed = false;

  constructor(readonly model: LlamaModel) {
    checkCudaLayers(model);
    if (!available()) {
      throw new CudaRuntimeUnavailableError(
        `the CUDA runtime needs a usable CUDA device: ${unavailableReason() ?? "unknown reason"}`,
      );
    }
    const c = model.config;
    if (headSize(c) > OPS_MAX_HEAD_DIM) {
      throw new RangeError(
        `model: head size ${headSize(c)} exceeds the attention kernels' limit of ${OPS_MAX_HEAD_DIM}`,
      );
    }
    this.#embedding = DeviceTensor.fromArray(encodeF16(model.embedding), [c.vocabSize, c.dim], "f16");
    this.#finalNorm = DeviceTensor.fromArray(model.finalNorm, [c.dim], "f32");
    for (const block of model.blocks) {
      this.#attnNorms.push(DeviceTensor.fromArray(block.attnNorm, [c.dim], "f32"));
      this.#ffnNorms.push(DeviceTensor.fromArray(block.ffnNorm, [c.dim], "f32"));
    }
  }

  /** A KV cache on the device for up to `capacity` positions (default: the model's maxSeqLen). */
  newCache(capacity = this.model.config.maxSeqLen): CudaKvCache {
    const c = this.model.config;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > c.maxSeqLen) {
      throw new RangeError(`capacity: expected an integer in 1..${c.maxSeqLen}, got ${capacity}`);
    }
    return new CudaKvCache(c.nLayers, capacity, kvDim(c));
  }

  /** A cache for `batch` sequences decoded together by decodeBatch, up to `capacity` positions each. */
  newBatchCache(batch: number, capacity = this.model.config.maxSeqLen): CudaBatchKvCache {
    const c = this.model.config;
    if (!Number.isInteger(batch) || batch < 1) {
      throw new RangeError(`batch: expected a positive integer, got ${batch}`);
    }
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > c.maxSeqLen) {
      throw new RangeError(`capacity: expected an integer in 1..${c.maxSeqLen}, got ${capacity}`);
    }
    return new CudaBatchKvCache(c.nLayers, batch, capacity, kvDim(c));
  }

  /** Device bytes of the runtime's own tensors (embedding, norms, activation buffers; not the linears). */
  get byteLength(): number {
    return (
      this.#embedding.byteLength +
      this.#finalNorm.byteLength +
      [...this.#attnNorms, ...this.#ffnNorms].reduce((s, t) => s + t.byteLength, 0) +
      (this.#workspace?.byteLength ?? 0)
    );
  }

  #workspaceFor(rows: number): Workspace {
    if (this.#workspace !== undefined && this.#workspace.capacity >= rows) return this.#workspace;
    if (this.#workspace !== undefined) {
      // Queued kernels may still read the old buffers.
      synchronize();
      this.#workspace.dispose();
      this.#workspace = undefined;
      this.#batchViews.clear();
    }
    const c = this.model.config;
    const capacity = Math.max(ROW_STEP, Math.ceil(rows / ROW_STEP) * ROW_STEP);
    this.#workspace = new Workspace(capacity, {
      dim: c.dim,
      kv: kvDim(c),
      hidden: c.hiddenDim,
      vocab: c.vocabSize,
    });
    return this.#workspace;
  }

  /**
   * Runs the decoder over `tokens` at positions cache.length.. (0 without a cache) and leaves the
   * final-normed hidden states in the workspace's `h` buffer (only the last row's, first, with lastOnly).
   */
  #decoder(tokens: ArrayLike<number>, cache: CudaKvCache | undefined, lastOnly: boolean): Workspace {
    if (this.#disposed) throw new Error("CudaLlamaRuntime: used after dispose()");
    const c = this.model.config;
    const rows = tokens.length;
    if (rows === 0) throw new RangeError("tokens: expected at least one token");
    const pos0 = cache ? cache.length : 0;
    const limit = cache ? cache.capacity : c.maxSeqLen;
    if (pos0 + rows > limit) {
      throw new RangeError(
        `tokens: positions up to ${pos0 + rows} exceed the ${cache ? "cache capacity" : "model's maxSeqLen"} ${limit}`,
      );
    }
    const ids = tokenIds(tokens, c.vocabSize);
    const ws = this.#workspaceFor(rows);
    const idsView = ws.ids.view([rows]);
    const positions = ws.positions.view([rows]);
    idsView.upload(ids);
    positions.upload(Int32Array.from({ length: rows }, (_, i) => pos0 + i));

    const x = ws.rows("x", rows);
    const h = ws.rows("h", rows);
    const q = ws.rows("q", rows);
    const k = ws.rows("k", rows);
    const v = ws.rows("v", rows);
    const att = ws.rows("att", rows);
    const proj = ws.rows("proj", rows);
    const gate = ws.rows("gate", rows);
    const up = ws.rows("up", rows);
    const eps = c.normEps;
    const rope = { headDim: headSize(c), theta: c.ropeTheta, style: c.ropeStyle };
    const heads = { heads: c.nHeads, kvHeads: c.nKvHeads, headDim: headSize(c) };

    ops.embedding(this.#embedding, idsView, x);
    for (let l = 0; l < c.nLayers; l++) {
      const lin = this.model.blocks[l].linears;
      ops.rmsnorm(x, this.#attnNorms[l], h, { eps });
      lin["self_attn.q_proj"].forward(h, { out: q });
      lin["self_attn.k_proj"].forward(h, { out: k });
      lin["self_attn.v_proj"].forward(h, { out: v });
      ops.rope(q, positions, rope);
      ops.rope(k, positions, rope);
      if (cache) {
        ops.attentionDecode(q, k, v, cache.keys[l], cache.values[l], att, { ...heads, position: pos0 });
      } else {
        ops.attentionPrefill(q, k, v, att, heads);
      }
      lin["self_attn.o_proj"].forward(att, { out: proj });
      ops.add(x, proj, x);
      ops.rmsnorm(x, this.#ffnNorms[l], h, { eps });
      lin["mlp.gate_proj"].forward(h, { out: gate });
      lin["mlp.up_proj"].forward(h, { out: up });
      ops.siluMul(gate, up, gate);
      lin["mlp.down_proj"].forward(gate, { out: proj });
      ops.add(x, proj, x);
    }
    if (cache) cache.length = pos0 + rows;
    if (lastOnly) {
      ops.rmsnorm(x.view([1, c.dim], (rows - 1) * c.dim), this.#finalNorm, h.view([1, c.dim]), { eps });
    } else {
      ops.rmsnorm(x, this.#finalNorm, h, { eps });
    }
    return ws;
  }

  #cacheOf(cache: KvCache | undefined): CudaKvCache | undefined {
    if (cache !== undefined && !(cache instanceof CudaKvCache)) {
      throw new TypeError("cache: expected a cache made by this runtime's newCache()");
    }
    return cache;
  }

  /** Device logits (rows, vocab) f16 in the workspace for the rows left in `h`. */
  #classify(ws: Workspace, rows: number): DeviceTensor {
    const logits = ws.rows("logits", rows);
    this.model.classifier.forward(ws.rows("h", rows), { out: logits });
    return logits;
  }

  forward(tokens: ArrayLike<number>, cache?: KvCache, opts: ForwardOptions = {}): Float32Array {
    const ws = this.#decoder(tokens, this.#cacheOf(cache), opts.lastOnly === true);
    const rows = opts.lastOnly ? 1 : tokens.length;
    // One download per call: the logits, rounded to fp16 by the classifier's output.
    return decodeF16(this.#classify(ws, rows).download() as Uint16Array);
  }

  /**
   * Negative log-likelihood (nats) of tokens[1..] given the tokens before each, computed on the device
   * from the fp16 logits (fp32 log-softmax); only the per-token losses come back.
   */
  targetNll(tokens: ArrayLike<number>): Float64Array {
    if (tokens.length < 2) throw new RangeError(`tokens: expected at least 2 tokens, got ${tokens.length}`);
    const rows = tokens.length - 1;
    const ws = this.#decoder(tokens, undefined, false);
    const logits = this.#classify(ws, rows);
    const targets = DeviceTensor.fromArray(tokenIds(tokens, this.model.config.vocabSize).slice(1), [rows]);
    const out = DeviceTensor.empty("f32", [rows]);
    try {
      ops.nll(logits, targets, out);
      return Float64Array.from(out.download() as Float32Array);
    } finally {
      targets.dispose();
      out.dispose();
    }
  }

  #viewsFor(ws: Workspace, batch: number): BatchViews {
    let v = this.#batchViews.get(batch);
    if (v !== undefined) return v;
    const c = this.model.config;
    const kv = kvDim(c);
    const rowsOf = (t: DeviceTensor, width: number) =>
      Array.from({ length: batch }, (_, b) => t.view([1, width], b * width));
    const names = ["x", "h", "q", "k", "v", "att", "proj", "gate", "up", "logits"] as const;
    const full = Object.fromEntries(names.map((n) => [n, ws.rows(n, batch)])) as Record<
      (typeof names)[number],
      DeviceTensor
    >;
    v = {
      ...full,
      ids: ws.ids.view([batch]),
      positions: ws.positions.view([batch]),
      qRows: rowsOf(full.q, c.dim),
      kRows: rowsOf(full.k, kv),
      vRows: rowsOf(full.v, kv),
      attRows: rowsOf(full.att, c.dim),
    };
    this.#batchViews.set(batch, v);
    return v;
  }

  /** The per-sequence caches of a decodeBatch call, checked; or the batch cache. */
  #batchCaches(
    batch: number,
    caches: readonly KvCache[] | CudaBatchKvCache,
  ): CudaKvCache[] | CudaBatchKvCache {
    if (caches instanceof CudaBatchKvCache) {
      if (caches.batch !== batch) {
        throw new RangeError(`caches: a batch cache of ${caches.batch} sequences, got ${batch} tokens`);
      }
      const full = caches.lengths.findIndex((n) => n >= caches.capacity);
      if (full >= 0) throw new RangeError(`caches: sequence ${full} is full (${caches.capacity} positions)`);
      return caches;
    }
    if (!Array.isArray(caches) || caches.length !== batch) {
      throw new RangeError(`caches: expected one cache per token (${batch}), got ${caches.length}`);
    }
    return caches.map((cache: KvCache, b: number) => {
      if (!(cache instanceof CudaKvCache)) {
        throw new TypeError(`caches[${b}]: expected a cache made by this runtime's newCache()`);
      }
      if (cache.length >= cache.capacity) {
        throw new RangeError(`caches[${b}]: full (${cache.capacity} positions)`);
      }
      if (caches.indexOf(cache) !== b) throw new RangeError(`caches[${b}]: the same cache is listed twice`);
      return cache;
    });
  }

  /**
   * One decoding step for a batch of independent sequences: tokens[b] is appended to sequence b at its
   * current length, in a batch cache (newBatchCache: one attention launch per layer for the whole batch)
   * or in one cache per sequence (newCache: one launch per sequence and layer). Returns the logits
   * (batch, vocab) f16 on the device, a view of the workspace valid until the next call; nothing is
   * downloaded or synchronized.
   */
  decodeBatch(tokens: ArrayLike<number>, caches: readonly KvCache[] | CudaBatchKvCache): DeviceTensor {
    if (this.#disposed) throw new Error("CudaLlamaRuntime: used after dispose()");
    const c = this.model.config;
    const batch = tokens.length;
    if (batch === 0) throw new RangeError("tokens: expected at least one token");
    const owned = this.#batchCaches(batch, caches);
    const lengths = owned instanceof CudaBatchKvCache ? owned.lengths : owned.map((cache) => cache.length);
    const ids = tokenIds(tokens, c.vocabSize);
    const v = this.#viewsFor(this.#workspaceFor(batch), batch);
    v.ids.upload(ids);
    v.positions.upload(Int32Array.from(lengths));
    const eps = c.normEps;
    const rope = { headDim: headSize(c), theta: c.ropeTheta, style: c.ropeStyle };
    const heads = { heads: c.nHeads, kvHeads: c.nKvHeads, headDim: headSize(c) };
    ops.embedding(this.#embedding, v.ids, v.x);
    for (let l = 0; l < c.nLayers; l++) {
      const lin = this.model.blocks[l].linears;
      ops.rmsnorm(v.x, this.#attnNorms[l], v.h, { eps });
      lin["self_attn.q_proj"].forward(v.h, { out: v.q });
      lin["self_attn.k_proj"].forward(v.h, { out: v.k });
      lin["self_attn.v_proj"].forward(v.h, { out: v.v });
      ops.rope(v.q, v.positions, rope);
      ops.rope(v.k, v.positions, rope);
      if (owned instanceof CudaBatchKvCache) {
        ops.attentionDecodeBatch(v.q, v.k, v.v, owned.keys[l], owned.values[l], v.positions, v.att, heads);
      } else {
        for (let b = 0; b < batch; b++) {
          const cache = owned[b];
          ops.attentionDecode(
            v.qRows[b],
            v.kRows[b],
            v.vRows[b],
            cache.keys[l],
            cache.values[l],
            v.attRows[b],
            {
              ...heads,
              position: cache.length,
            },
          );
        }
      }
      lin["self_attn.o_proj"].forward(v.att, { out: v.proj });
      ops.add(v.x, v.proj, v.x);
      ops.rmsnorm(v.x, this.#ffnNorms[l], v.h, { eps });
      lin["mlp.gate_proj"].forward(v.h, { out: v.gate });
      lin["mlp.up_proj"].forward(v.h, { out: v.up });
      ops.siluMul(v.gate, v.up, v.gate);
      lin["mlp.down_proj"].forward(v.gate, { out: v.proj });
      ops.add(v.x, v.proj, v.x);
    }
    if (owned instanceof CudaBatchKvCache) for (let b = 0; b < batch; b++) owned.lengths[b]++;
    else for (const cache of owned) cache.length++;
    ops.rmsnorm(v.x, this.#finalNorm, v.h, { eps });
    this.model.classifier.forward(v.h, { out: v.logits });
    return v.logits;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    synchronize();
    this.#workspace?.dispose();
    this.#embedding.dispose();
    this.#finalNorm.dispose();
    for (const t of [...this.#attnNorms, ...this.#ffnNorms]) t.dispose();
  }
}
