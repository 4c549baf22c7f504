// Model operations of a Llama-architecture forward pass (fp16 storage, fp32
// math): embedding gather, RMSNorm, RoPE, SiLU-gate multiply, residual add,
// causal grouped-query attention (prefill and decode with a KV cache),
// log-softmax and the negative log-likelihood of targets. Every call
// validates its arguments (ops-validate.ts) before anything launches and is
// asynchronous on opts.stream (the default stream otherwise).
import { type NativeAddon, type NativeBuffer, type NativeStream, requireNative } from "./native.js";
import {
  type AttentionDecodeBatchOptions,
  type AttentionDecodeOptions,
  type AttentionHeads,
  type NormOptions,
  type RopeOptions,
  validateAttentionDecodeArgs,
  validateAttentionDecodeBatchArgs,
  validateAttentionPrefillArgs,
  validateElementwiseArgs,
  validateQuantizeRowsArgs,
  validateEmbeddingArgs,
  validateLogSoftmaxArgs,
  validateNllArgs,
  validateAddRmsNormArgs,
  validateRelu2MulRmsNormArgs,
  validateRmsNormArgs,
  validateRopeArgs,
} from "./ops-validate.js";
import { nativeStream, type Stream } from "./stream.js";
import { type DeviceTensor, nativeTensor } from "./tensor.js";

export type {
  AttentionDecodeBatchOptions,
  AttentionDecodeOptions,
  AttentionHeads,
  AttentionRopeOptions,
  NormOptions,
  RopeOptions,
  RopeStyle,
} from "./ops-validate.js";
export { OPS_MAX_HEAD_DIM } from "./ops-validate.js";

/** Every operation takes a stream (default: the legacy default stream). */
export interface StreamOption {
  stream?: Stream;
}

type S = NativeStream | null;
type Buf = NativeBuffer;

/** The addon's ops entry points (src/addon/ops.cc). */
interface NativeOps {
  opsEmbedding(
    ids: Buf,
    io: number,
    table: Buf,
    to: number,
    out: Buf,
    oo: number,
    n: number,
    vocab: number,
    dim: number,
    s: S,
  ): void;
  opsRmsNorm(
    x: Buf,
    xo: number,
    w: Buf,
    wo: number,
    wF32: boolean,
    out: Buf,
    oo: number,
    rows: number,
    dim: number,
    eps: number,
    s: S,
    quantizeBits: number,
  ): void;
  opsAddRmsNorm(
    x: Buf,
    xo: number,
    d: Buf,
    dOff: number,
    w: Buf,
    wo: number,
    wF32: boolean,
    out: Buf,
    oo: number,
    rows: number,
    dim: number,
    eps: number,
    s: S,
    quantizeBits: number,
  ): void;
  opsRelu2MulRmsNorm(
    gate: Buf,
    go: number,
    up: Buf,
    uo: number,
    w: Buf,
    wo: number,
    wF32: boolean,
    out: Buf,
    oo: number,
    rows: number,
    dim: number,
    eps: number,
    s: S,
    quantizeBits: number,
  ): void;
  opsRope(
    x: Buf,
    xo: number,
    pos: Buf,
    po: number,
    tokens: number,
    heads: number,
    headDim: number,
    theta: number,
    style: number,
    s: S,
  ): void;
  opsSiluMul(gate: Buf, go: number, up: Buf, uo: number, out: Buf, oo: number, n: number, s: S): void;
  opsRelu2Mul(gate: Buf, go: number, up: Buf, uo: number, out: Buf, oo: number, n: number, s: S): void;
  opsQuantizeRows(
    x: Buf,
    xo: number,
    out: Buf,
    oo: number,
    rows: number,
    dim: number,
    bits: number,
    s: S,
  ): void;
  opsAdd(a: Buf, ao: number, b: Buf, bo: number, out: Buf, oo: number, n: number, s: S): void;
  opsAttention(
    q: Buf,
    qo: number,
    k: Buf,
    ko: number,
    v: Buf,
    vo: number,
    out: Buf,
    oo: number,
    nq: number,
    start: number,
    kvRows: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    s: S,
  ): void;
  opsCacheAppend(
    src: Buf,
    so: number,
    cache: Buf,
    co: number,
    n: number,
    start: number,
    cacheRows: number,
    kvHeads: number,
    headDim: number,
    s: S,
  ): void;
  opsAttentionDecodeBatch(
    q: Buf,
    qo: number,
    kCache: Buf,
    ko: number,
    vCache: Buf,
    vo: number,
    positions: Buf,
    po: number,
    out: Buf,
    oo: number,
    batch: number,
    maxT: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    s: S,
  ): void;
  opsAttentionDecodeBatchRope(
    q: Buf,
    qo: number,
    kNew: Buf,
    kno: number,
    vNew: Buf,
    vno: number,
    kCache: Buf,
    ko: number,
    vCache: Buf,
    vo: number,
    positions: Buf,
    po: number,
    out: Buf,
    oo: number,
    batch: number,
    maxT: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    theta: number,
    style: number,
    s: S,
  ): void;
  opsCacheAppendKvBatch(
    ks: Buf,
    kso: number,
    kc: Buf,
    kco: number,
    vs: Buf,
    vso: number,
    vc: Buf,
    vco: number,
    pos: Buf,
    po: number,
    batch: number,
    maxT: number,
    kvHeads: number,
    headDim: number,
    s: S,
  ): void;
  opsCacheAppendBatch(
    src: Buf,
    so: number,
    cache: Buf,
    co: number,
    positions: Buf,
    po: number,
    batch: number,
    maxT: number,
    kvHeads: number,
    headDim: number,
    s: S,
  ): void;
  opsLogSoftmax(
    logits: Buf,
    lo: number,
    f32: boolean,
    out: Buf,
    oo: number,
    rows: number,
    vocab: number,
    s: S,
  ): void;
  opsNll(
    logits: Buf,
    lo: number,
    f32: boolean,
    targets: Buf,
    to: number,
    out: Buf,
    oo: number,
    rows: number,
    vocab: number,
    s: S,
  ): void;
}

function opsAddon(): NativeOps {
  const native = requireNative() as NativeAddon & Partial<NativeOps>;
  if (typeof native.opsEmbedding !== "function") {
    throw new Error(
      "the loaded native addon has no model ops: rebuild it (pnpm --filter @trirun/kernel-native build:native)",
    );
  }
  return native as NativeAddon & NativeOps;
}

/**
 * The addon, for a call that needs the fused row ops (opts.quantizeBits, relu2MulRmsNorm): an addon built
 * before them would ignore quantizeBits and return unquantized rows, so it is refused instead.
 */
function fusedRowOpsAddon(): NativeOps {
  const native = opsAddon() as NativeOps & { opsRelu2MulRmsNorm?: unknown };
  if (typeof native.opsRelu2MulRmsNorm !== "function") {
    throw new Error(
      "the loaded native addon predates the fused row ops (opts.quantizeBits, relu2MulRmsNorm): rebuild it (pnpm --filter @trirun/kernel-native build:native)",
    );
  }
  return native;
}

type Operand = { buffer: NativeBuffer; byteOffset: number; bytes: number; name: string };

function operand(t: DeviceTensor, name: string): Operand {
  const n = nativeTensor(t, name);
  return { buffer: n.buffer, byteOffset: n.byteOffset, bytes: t.byteLength, name };
}

function overlaps(a: Operand, b: Operand): boolean {
  return (
    a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.bytes && b.byteOffset < a.byteOffset + a.bytes
  );
}

/** `out` must not share memory with any of `inputs`, except an exact alias where `inPlace` allows it. */
function checkNoOverlap(out: Operand, inputs: readonly Operand[], inPlace = false): void {
  for (const input of inputs) {
    if (!overlaps(out, input)) continue;
    if (inPlace && input.byteOffset === out.byteOffset && input.bytes === out.bytes) continue;
    throw new RangeError(
      `${out.name}: must not share memory with ${input.name}${inPlace ? " (other than being exactly the same tensor)" : ""}`,
    );
  }
}

function streamOf(opts: StreamOption | undefined): S {
  if (opts !== undefined && (opts === null || typeof opts !== "object")) {
    throw new TypeError("opts: expected an options object");
  }
  return nativeStream(opts?.stream, "opts.stream");
}

/** out (n, dim) f16 = table (vocab, dim) f16 rows ids (n) i32. An id outside 0..vocab-1 gives a row of NaN. */
export function embedding(
  table: DeviceTensor,
  ids: DeviceTensor,
  out: DeviceTensor,
  opts?: StreamOption,
): void {
  const t = operand(table, "table");
  const i = operand(ids, "ids");
  const o = operand(out, "out");
  const p = validateEmbeddingArgs({ table, ids, out });
  checkNoOverlap(o, [t, i]);
  const stream = streamOf(opts);
  opsAddon().opsEmbedding(
    i.buffer,
    i.byteOffset,
    t.buffer,
    t.byteOffset,
    o.buffer,
    o.byteOffset,
    p.n,
    p.vocab,
    p.dim,
    stream,
  );
}

/**
 * out (rows, dim) f16 = x * rsqrt(mean(x^2) + eps) * weight, per row, in fp32;
 * weight f16 or f32 (dim). out may be x itself. eps defaults to 1e-5. With
 * opts.quantizeBits, out is then quantized as quantizeRows does, in the same
 * launch (what rmsnorm followed by quantizeRows gives, bit for bit).
 */
export function rmsnorm(
  x: DeviceTensor,
  weight: DeviceTensor,
  out: DeviceTensor,
  opts: StreamOption & NormOptions = {},
): void {
  const xo = operand(x, "x");
  const w = operand(weight, "weight");
  const o = operand(out, "out");
  const p = validateRmsNormArgs({ x, weight, out }, opts);
  checkNoOverlap(o, [xo], true);
  checkNoOverlap(o, [w]);
  const stream = streamOf(opts);
  (p.quantizeBits > 0 ? fusedRowOpsAddon() : opsAddon()).opsRmsNorm(
    xo.buffer,
    xo.byteOffset,
    w.buffer,
    w.byteOffset,
    p.weightF32,
    o.buffer,
    o.byteOffset,
    p.rows,
    p.dim,
    p.eps,
    stream,
    p.quantizeBits,
  );
}

/**
 * The residual add of one sub-block and the norm of the next, in one launch:
 * x += delta (each sum rounded to fp16 once), then out = rmsnorm(x) * weight.
 * Gives what add(x, delta, x) followed by rmsnorm(x, weight, out) gives (x bit for bit).
 * x, delta, out f16 (rows, dim); weight f16 or f32 (dim); out must not overlap
 * x or delta. opts.quantizeBits quantizes out as rmsnorm's does.
 */
export function addRmsNorm(
  x: DeviceTensor,
  delta: DeviceTensor,
  weight: DeviceTensor,
  out: DeviceTensor,
  opts: StreamOption & NormOptions = {},
): void {
  const xo = operand(x, "x");
  const d = operand(delta, "delta");
  const w = operand(weight, "weight");
  const o = operand(out, "out");
  const p = validateAddRmsNormArgs({ x, delta, weight, out }, opts);
  checkNoOverlap(o, [xo, d, w]);
  checkNoOverlap(xo, [w]);
  const stream = streamOf(opts);
  (p.quantizeBits > 0 ? fusedRowOpsAddon() : opsAddon()).opsAddRmsNorm(
    xo.buffer,
    xo.byteOffset,
    d.buffer,
    d.byteOffset,
    w.buffer,
    w.byteOffset,
    p.weightF32,
    o.buffer,
    o.byteOffset,
    p.rows,
    p.dim,
    p.eps,
    stream,
    p.quantizeBits,
  );
}

/**
 * BitNet b1.58's MLP between gate/up and down in one launch: out = rmsnorm(max(gate, 0)^2 * up) *
 * weight, then (opts.quantizeBits) quantized as quantizeRows does; what relu2Mul(gate, up, out),
 * rmsnorm(out, weight, out) and quantizeRows(out, out) give, bit for bit. gate, up, out f16 (rows, dim);
 * weight f16 or f32 (dim); out may be gate or up.
 */
export function relu2MulRmsNorm(
  gate: DeviceTensor,
  up: DeviceTensor,
  weight: DeviceTensor,
  out: DeviceTensor,
  opts: StreamOption & NormOptions = {},
): void {
  const g = operand(gate, "gate");
  const u = operand(up, "up");
  const w = operand(weight, "weight");
  const o = operand(out, "out");
  const p = validateRelu2MulRmsNormArgs({ gate, up, weight, out }, opts);
  checkNoOverlap(o, [g, u], true);
  checkNoOverlap(o, [w]);
  const stream = streamOf(opts);
  fusedRowOpsAddon().opsRelu2MulRmsNorm(
    g.buffer,
    g.byteOffset,
    u.buffer,
    u.byteOffset,
    w.buffer,
    w.byteOffset,
    p.weightF32,
    o.buffer,
    o.byteOffset,
    p.rows,
    p.dim,
    p.eps,
    stream,
    p.quantizeBits,
  );
}

/**
 * Rotary position embedding in place on x (tokens, heads, headDim) or
 * (tokens, heads * headDim) f16; token t is at position positions[t] (i32).
 * Call it on q and on k. opts.style picks the pair convention (no default:
 * the wrong one gives plausible but wrong results); theta defaults to 10000.
 */
export function rope(x: DeviceTensor, positions: DeviceTensor, opts: RopeOptions & StreamOption): void {
  const xo = operand(x, "x");
  const po = operand(positions, "positions");
  const p = validateRopeArgs({ x, positions }, opts);
  checkNoOverlap(xo, [po]);
  const stream = streamOf(opts);
  opsAddon().opsRope(
    xo.buffer,
    xo.byteOffset,
    po.buffer,
    po.byteOffset,
    p.tokens,
    p.heads,
    p.headDim,
    p.theta,
    p.style,
    stream,
  );
}

/**
 * The shared path of the two-input elementwise ops: f16 operands of one shape, `out` equal to an
 * input or apart from both, then one launch of the addon's `entry`.
 */
function binaryElementwise(
  entry: "opsSiluMul" | "opsRelu2Mul" | "opsAdd",
  [a, aName]: [DeviceTensor, string],
  [b, bName]: [DeviceTensor, string],
  out: DeviceTensor,
  opts: StreamOption | undefined,
): void {
  const ao = operand(a, aName);
  const bo = operand(b, bName);
  const o = operand(out, "out");
  const p = validateElementwiseArgs(
    [
      [a, aName],
      [b, bName],
    ],
    out,
  );
  checkNoOverlap(o, [ao, bo], true);
  const stream = streamOf(opts);
  opsAddon()[entry](ao.buffer, ao.byteOffset, bo.buffer, bo.byteOffset, o.buffer, o.byteOffset, p.n, stream);
}

/** out = silu(gate) * up elementwise (f16, same shapes, fp32 math); out may be gate or up. */
export function siluMul(gate: DeviceTensor, up: DeviceTensor, out: DeviceTensor, opts?: StreamOption): void {
  binaryElementwise("opsSiluMul", [gate, "gate"], [up, "up"], out, opts);
}

/**
 * out = max(gate, 0)^2 * up elementwise (BitNet b1.58's squared-ReLU gate; f16, same shapes, fp32
 * math); out may be gate or up.
 */
export function relu2Mul(gate: DeviceTensor, up: DeviceTensor, out: DeviceTensor, opts?: StreamOption): void {
  binaryElementwise("opsRelu2Mul", [gate, "gate"], [up, "up"], out, opts);
}

/** out = a + b elementwise (f16, same shapes; the residual add); out may be a or b. */
export function add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor, opts?: StreamOption): void {
  binaryElementwise("opsAdd", [a, "a"], [b, "b"], out, opts);
}

/**
 * Per-row absmax fake quantization, as BitNet b1.58 quantizes activations (transformers' ActQuant):
 * with `q = 2^(bits-1) - 1` and `s = q / max(max |row|, 1e-5)`, `out = clamp(round(x * s), -q - 1, q) / s`
 * in fp32 (ties to even), rounded to fp16. x and out f16 (rows, dim); out may be x. `bits` 2..8
 * (default 8). A row holding a NaN or an infinity comes out all NaN, as torch gives.
 */
export function quantizeRows(
  x: DeviceTensor,
  out: DeviceTensor,
  opts: StreamOption & { bits?: number } = {},
): void {
  const xo = operand(x, "x");
  const o = operand(out, "out");
  const p = validateQuantizeRowsArgs({ x, out }, opts);
  checkNoOverlap(o, [xo], true);
  const stream = streamOf(opts);
  opsAddon().opsQuantizeRows(xo.buffer, xo.byteOffset, o.buffer, o.byteOffset, p.rows, p.dim, p.bits, stream);
}

/**
 * Causal grouped-query self-attention over T tokens: out[t, h] = softmax_s<=t
 * (q[t, h] . k[s, h / (heads / kvHeads)] / sqrt(headDim)) v[s, ...], scores
 * and softmax in fp32. q, out (T, heads[, ]headDim); k, v (T, kvHeads[, ]headDim).
 */
export function attentionPrefill(
  q: DeviceTensor,
  k: DeviceTensor,
  v: DeviceTensor,
  out: DeviceTensor,
  opts: AttentionHeads & StreamOption,
): void {
  const qo = operand(q, "q");
  const ko = operand(k, "k");
  const vo = operand(v, "v");
  const o = operand(out, "out");
  const p = validateAttentionPrefillArgs({ q, k, v, out }, opts);
  checkNoOverlap(o, [qo, ko, vo]);
  const stream = streamOf(opts);
  opsAddon().opsAttention(
    qo.buffer,
    qo.byteOffset,
    ko.buffer,
    ko.byteOffset,
    vo.buffer,
    vo.byteOffset,
    o.buffer,
    o.byteOffset,
    p.tokens,
    0,
    p.tokens,
    p.heads,
    p.kvHeads,
    p.headDim,
    stream,
  );
}

/**
 * Decoding with a KV cache (one sequence): writes the new tokens' keys and
 * values (kNew, vNew: (n, kvHeads[, ]headDim)) into cache rows
 * position..position+n-1, then the query row i (q: (n, heads[, ]headDim)) at
 * position + i attends to cache rows 0..position+i. n is usually 1; a larger n
 * continues a prompt on top of the cache. Caches (maxT, kvHeads[, ]headDim), one
 * pair per layer.
 */
export function attentionDecode(
  q: DeviceTensor,
  kNew: DeviceTensor,
  vNew: DeviceTensor,
  kCache: DeviceTensor,
  vCache: DeviceTensor,
  out: DeviceTensor,
  opts: AttentionDecodeOptions & StreamOption,
): void {
  const qo = operand(q, "q");
  const kn = operand(kNew, "kNew");
  const vn = operand(vNew, "vNew");
  const kc = operand(kCache, "kCache");
  const vc = operand(vCache, "vCache");
  const o = operand(out, "out");
  const p = validateAttentionDecodeArgs({ q, kNew, vNew, kCache, vCache, out }, opts);
  checkNoOverlap(kc, [qo, kn, vn, vc]);
  checkNoOverlap(vc, [qo, kn, vn]);
  checkNoOverlap(o, [qo, kn, vn, kc, vc]);
  const stream = streamOf(opts);
  const native = opsAddon();
  const common = [p.tokens, p.position, p.cacheRows, p.kvHeads, p.headDim] as const;
  native.opsCacheAppend(kn.buffer, kn.byteOffset, kc.buffer, kc.byteOffset, ...common, stream);
  native.opsCacheAppend(vn.buffer, vn.byteOffset, vc.buffer, vc.byteOffset, ...common, stream);
  native.opsAttention(
    qo.buffer,
    qo.byteOffset,
    kc.buffer,
    kc.byteOffset,
    vc.buffer,
    vc.byteOffset,
    o.buffer,
    o.byteOffset,
    p.tokens,
    p.position,
    p.cacheRows,
    p.heads,
    p.kvHeads,
    p.headDim,
    stream,
  );
}

/**
 * Decoding one new token for each of a batch of sequences with per-sequence
 * caches and positions: the token of sequence b (q row b, kNew/vNew row b) is
 * at position positions[b] (i32, on the device, so that a captured CUDA graph
 * can replay with new positions); its k/v go to row positions[b] of cache b,
 * and it attends to rows 0..positions[b]. Caches (batch, maxT,
 * kvHeads[, ]headDim). Positions are read on the device: one outside
 * 0..maxT-1 writes nothing to the caches and gives NaN outputs for that
 * sequence.
 *
 * Without opts.rope q and kNew are taken as rotated already (two launches:
 * cache append, attention). With opts.rope ({ style, theta? }, as ops.rope
 * takes them, headDim even) they are taken unrotated and the op rotates them
 * itself, appends and attends in one launch: outputs and caches are bit for
 * bit those of ops.rope(q), ops.rope(kNew), then this op without rope. q and
 * kNew are read, not written (they stay unrotated).
 */
export function attentionDecodeBatch(
  q: DeviceTensor,
  kNew: DeviceTensor,
  vNew: DeviceTensor,
  kCache: DeviceTensor,
  vCache: DeviceTensor,
  positions: DeviceTensor,
  out: DeviceTensor,
  opts: AttentionDecodeBatchOptions & StreamOption,
): void {
  const qo = operand(q, "q");
  const kn = operand(kNew, "kNew");
  const vn = operand(vNew, "vNew");
  const kc = operand(kCache, "kCache");
  const vc = operand(vCache, "vCache");
  const po = operand(positions, "positions");
  const o = operand(out, "out");
  const p = validateAttentionDecodeBatchArgs({ q, kNew, vNew, kCache, vCache, positions, out }, opts);
  checkNoOverlap(kc, [qo, kn, vn, vc, po]);
  checkNoOverlap(vc, [qo, kn, vn, po]);
  checkNoOverlap(o, [qo, kn, vn, kc, vc, po]);
  const stream = streamOf(opts);
  const native = opsAddon();
  if (p.rope !== undefined) {
    native.opsAttentionDecodeBatchRope(
      qo.buffer,
      qo.byteOffset,
      kn.buffer,
      kn.byteOffset,
      vn.buffer,
      vn.byteOffset,
      kc.buffer,
      kc.byteOffset,
      vc.buffer,
      vc.byteOffset,
      po.buffer,
      po.byteOffset,
      o.buffer,
      o.byteOffset,
      p.batch,
      p.maxT,
      p.heads,
      p.kvHeads,
      p.headDim,
      p.rope.theta,
      p.rope.style,
      stream,
    );
    return;
  }
  const dims = [p.batch, p.maxT, p.kvHeads, p.headDim] as const;
  // Keys and values into the caches in one launch, then attention over them.
  native.opsCacheAppendKvBatch(
    kn.buffer,
    kn.byteOffset,
    kc.buffer,
    kc.byteOffset,
    vn.buffer,
    vn.byteOffset,
    vc.buffer,
    vc.byteOffset,
    po.buffer,
    po.byteOffset,
    ...dims,
    stream,
  );
  native.opsAttentionDecodeBatch(
    qo.buffer,
    qo.byteOffset,
    kc.buffer,
    kc.byteOffset,
    vc.buffer,
    vc.byteOffset,
    po.buffer,
    po.byteOffset,
    o.buffer,
    o.byteOffset,
    p.batch,
    p.maxT,
    p.heads,
    p.kvHeads,
    p.headDim,
    stream,
  );
}

/** out (rows, vocab) f32 = log_softmax(logits) per row; logits f16 or f32. */
export function logSoftmax(logits: DeviceTensor, out: DeviceTensor, opts?: StreamOption): void {
  const l = operand(logits, "logits");
  const o = operand(out, "out");
  const p = validateLogSoftmaxArgs({ logits, out });
  checkNoOverlap(o, [l]);
  const stream = streamOf(opts);
  opsAddon().opsLogSoftmax(
    l.buffer,
    l.byteOffset,
    p.logitsF32,
    o.buffer,
    o.byteOffset,
    p.rows,
    p.vocab,
    stream,
  );
}

/**
 * out[r] f32 = -log_softmax(logits[r])[targets[r]] (cross-entropy per row; its
 * mean is the loss, exp of the mean the perplexity). A target outside
 * 0..vocab-1 gives NaN.
 */
export function nll(
  logits: DeviceTensor,
  targets: DeviceTensor,
  out: DeviceTensor,
  opts?: StreamOption,
): void {
  const l = operand(logits, "logits");
  const t = operand(targets, "targets");
  const o = operand(out, "out");
  const p = validateNllArgs({ logits, targets, out });
  checkNoOverlap(o, [l, t]);
  const stream = streamOf(opts);
  opsAddon().opsNll(
    l.buffer,
    l.byteOffset,
    p.logitsF32,
    t.buffer,
    t.byteOffset,
    o.buffer,
    o.byteOffset,
    p.rows,
    p.vocab,
    stream,
  );
}
