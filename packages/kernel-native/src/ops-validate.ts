// Argument validation of the model operations (ops.ts), as pure functions
// over tensor descriptors, so that every rule is testable without a GPU.
// TypeError for a wrong type or dtype, RangeError for a wrong shape or value,
// DisposedError for a disposed tensor; each message names the argument.
import {
  checkAligned,
  checkDTypeOf,
  checkPositiveDims,
  checkSameDevice,
  checkTensor,
  INT32_MAX,
} from "./descriptor-checks.js";
import { formatShape, numelOf } from "./shape.js";
import type { TensorDescriptor } from "./validate.js";

/** Largest head dimension of the attention kernels (TRIRUN_OPS_MAX_HEAD_DIM in ops.h). */
export const OPS_MAX_HEAD_DIM = 256;

/** Pair convention of rotary embeddings: (2i, 2i+1) as in llama2.c / Meta, or (i, i + d/2) as in Hugging Face. */
export type RopeStyle = "interleaved" | "half";

function rank(t: TensorDescriptor, name: string, n: number, layout: string): readonly number[] {
  if (t.shape.length !== n) {
    throw new RangeError(`${name}: expected a ${n}-D tensor ${layout}, got shape ${formatShape(t.shape)}`);
  }
  return t.shape;
}

function sameShape(t: TensorDescriptor, name: string, like: TensorDescriptor, likeName: string): void {
  if (t.shape.length !== like.shape.length || t.shape.some((d, i) => d !== like.shape[i])) {
    throw new RangeError(
      `${name}: expected the shape of ${likeName} ${formatShape(like.shape)}, got ${formatShape(t.shape)}`,
    );
  }
}

function integerOption(value: unknown, name: string, min: number, max = INT32_MAX): number {
  if (typeof value !== "number") throw new TypeError(`${name}: expected a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name}: expected an integer in ${min}..${max}, got ${value}`);
  }
  return value;
}

function finiteOption(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") throw new TypeError(`${name}: expected a number, got ${typeof value}`);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new RangeError(`${name}: expected a finite number in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/**
 * Rows of a per-head tensor: (rows, heads, headDim) or (rows, heads * headDim),
 * checked against the given head counts.
 */
function headRows(
  t: TensorDescriptor,
  name: string,
  heads: number,
  headDim: number,
  headsName: string,
): number {
  const s = t.shape;
  if (s.length === 3) {
    if (s[1] !== heads || s[2] !== headDim) {
      throw new RangeError(
        `${name}: expected shape (rows, ${headsName}, headDim) = (rows, ${heads}, ${headDim}), got ${formatShape(s)}`,
      );
    }
  } else if (s.length === 2) {
    if (s[1] !== heads * headDim) {
      throw new RangeError(
        `${name}: expected shape (rows, ${headsName} * headDim) = (rows, ${heads * headDim}), got ${formatShape(s)}`,
      );
    }
  } else {
    throw new RangeError(
      `${name}: expected a tensor (rows, ${headsName}, headDim) or (rows, ${headsName} * headDim), got shape ${formatShape(s)}`,
    );
  }
  return s[0];
}

/** embedding(table, ids, out): table f16 (vocab, dim), ids i32 (n), out f16 (n, dim). */
export function validateEmbeddingArgs(args: {
  table: TensorDescriptor;
  ids: TensorDescriptor;
  out: TensorDescriptor;
}): { n: number; vocab: number; dim: number } {
  const table = checkTensor(args.table, "table");
  const ids = checkTensor(args.ids, "ids");
  const out = checkTensor(args.out, "out");
  checkDTypeOf(table, "table", ["f16"]);
  checkDTypeOf(ids, "ids", ["i32"]);
  checkDTypeOf(out, "out", ["f16"]);
  const [vocab, dim] = rank(table, "table", 2, "(vocab, dim)");
  const [n] = rank(ids, "ids", 1, "(n)");
  rank(out, "out", 2, "(n, dim)");
  checkPositiveDims({ "vocab (table.shape[0])": vocab, "dim (table.shape[1])": dim, "n (ids.shape[0])": n });
  if (out.shape[0] !== n || out.shape[1] !== dim) {
    throw new RangeError(
      `out: expected shape (n, dim) = ${formatShape([n, dim])}, got ${formatShape(out.shape)}`,
    );
  }
  checkAligned(table, "table", 2);
  checkAligned(ids, "ids", 4);
  checkAligned(out, "out", 2);
  checkSameDevice([
    [table, "table"],
    [ids, "ids"],
    [out, "out"],
  ]);
  return { n, vocab, dim };
}

/** Options of the norms: eps, and the quantization of their result fused in (BitNet b1.58's 8-bit activations). */
export interface NormOptions {
  /** Added to the mean square; in [0, 1], default 1e-5. */
  eps?: number;
  /**
   * Quantize each normalized row as `quantizeRows` with these bits (2..8) does, in the same launch (the
   * results are those of the two calls one after the other). Default: no quantization.
   */
  quantizeBits?: number;
}

/** The validated norm options: quantizeBits 0 means none. */
export interface NormParams {
  rows: number;
  dim: number;
  weightF32: boolean;
  eps: number;
  quantizeBits: number;
}

/**
 * rmsnorm(x, weight, out): x, out f16 (rows, dim); weight f16 or f32 (dim); eps in [0, 1] (default 1e-5);
 * quantizeBits 2..8 or absent.
 */
export function validateRmsNormArgs(
  args: { x: TensorDescriptor; weight: TensorDescriptor; out: TensorDescriptor },
  opts: NormOptions = {},
): NormParams {
  return validateNorm(args.x, "x", args.weight, args.out, opts);
}

/** A norm's checks, its input named `inputName` in messages. */
function validateNorm(
  input: TensorDescriptor,
  inputName: string,
  weightArg: TensorDescriptor,
  outArg: TensorDescriptor,
  opts: NormOptions,
): NormParams {
  const x = checkTensor(input, inputName);
  const weight = checkTensor(weightArg, "weight");
  const out = checkTensor(outArg, "out");
  checkDTypeOf(x, inputName, ["f16"]);
  checkDTypeOf(weight, "weight", ["f16", "f32"]);
  checkDTypeOf(out, "out", ["f16"]);
  const [rows, dim] = rank(x, inputName, 2, "(rows, dim)");
  checkPositiveDims({ [`rows (${inputName}.shape[0])`]: rows, [`dim (${inputName}.shape[1])`]: dim });
  rank(weight, "weight", 1, "(dim)");
  if (weight.shape[0] !== dim) {
    throw new RangeError(`weight: expected shape (dim) = (${dim}), got ${formatShape(weight.shape)}`);
  }
  sameShape(out, "out", x, inputName);
  if (opts === null || typeof opts !== "object") throw new TypeError("opts: expected an options object");
  const eps = finiteOption((opts as { eps?: unknown }).eps, "opts.eps", 1e-5, 0, 1);
  const rawBits = (opts as { quantizeBits?: unknown }).quantizeBits;
  const quantizeBits = rawBits === undefined ? 0 : integerOption(rawBits, "opts.quantizeBits", 2, 8);
  checkAligned(x, inputName, 2);
  checkAligned(weight, "weight", weight.dtype === "f32" ? 4 : 2);
  checkAligned(out, "out", 2);
  checkSameDevice([
    [x, inputName],
    [weight, "weight"],
    [out, "out"],
  ]);
  return { rows, dim, weightF32: weight.dtype === "f32", eps, quantizeBits };
}

/** quantizeRows(x, out, { bits }): x and out f16 (rows, dim) of one shape; bits 2..8 (default 8). */
export function validateQuantizeRowsArgs(
  args: { x: TensorDescriptor; out: TensorDescriptor },
  options: { bits?: number } | null = {},
): { rows: number; dim: number; bits: number } {
  const opts = options ?? {};
  const x = checkTensor(args.x, "x");
  const out = checkTensor(args.out, "out");
  checkDTypeOf(x, "x", ["f16"]);
  checkDTypeOf(out, "out", ["f16"]);
  const [rows, dim] = rank(x, "x", 2, "(rows, dim)");
  checkPositiveDims({ "rows (x.shape[0])": rows, "dim (x.shape[1])": dim });
  sameShape(out, "out", x, "x");
  const rawBits = (opts as { bits?: unknown }).bits;
  const bits = rawBits === undefined ? 8 : integerOption(rawBits, "opts.bits", 2, 8);
  checkAligned(x, "x", 2);
  checkAligned(out, "out", 2);
  checkSameDevice([
    [x, "x"],
    [out, "out"],
  ]);
  return { rows, dim, bits };
}

/** addRmsNorm(x, delta, weight, out): as rmsnorm, plus delta f16 of x's shape. */
export function validateAddRmsNormArgs(
  args: { x: TensorDescriptor; delta: TensorDescriptor; weight: TensorDescriptor; out: TensorDescriptor },
  opts: NormOptions = {},
): NormParams {
  return validateNormWithSecondInput(args.x, "x", args.delta, "delta", args.weight, args.out, opts);
}

/** relu2MulRmsNorm(gate, up, weight, out): as rmsnorm of gate, plus up f16 of gate's shape. */
export function validateRelu2MulRmsNormArgs(
  args: { gate: TensorDescriptor; up: TensorDescriptor; weight: TensorDescriptor; out: TensorDescriptor },
  opts: NormOptions = {},
): NormParams {
  return validateNormWithSecondInput(args.gate, "gate", args.up, "up", args.weight, args.out, opts);
}

/** The norm's checks on (first, weight, out), then `second`: f16, first's shape, same device. */
function validateNormWithSecondInput(
  first: TensorDescriptor,
  firstName: string,
  second: TensorDescriptor,
  secondName: string,
  weight: TensorDescriptor,
  out: TensorDescriptor,
  opts: NormOptions,
): NormParams {
  const p = validateNorm(first, firstName, weight, out, opts);
  const f = checkTensor(first, firstName);
  const t = checkTensor(second, secondName);
  checkDTypeOf(t, secondName, ["f16"]);
  sameShape(t, secondName, f, firstName);
  checkAligned(t, secondName, 2);
  checkSameDevice([
    [f, firstName],
    [t, secondName],
  ]);
  return p;
}

export interface RopeOptions {
  /** Elements per head (even). */
  headDim: number;
  /** Base of the frequencies theta^(-2i/headDim); default 10000. */
  theta?: number;
  /** "interleaved": pairs (2i, 2i+1) (llama2.c, Meta); "half": pairs (i, i + headDim/2) (Hugging Face). */
  style: RopeStyle;
}

/** style and theta of RoPE options (`name` is how the options are named in messages), as the kernels take them. */
function ropeParams(
  opts: { style?: unknown; theta?: unknown },
  name: string,
): { theta: number; style: 0 | 1 } {
  const style = opts.style;
  if (style !== "interleaved" && style !== "half") {
    throw new TypeError(`${name}.style: expected "interleaved" or "half", got ${String(style)}`);
  }
  const theta = finiteOption(opts.theta, `${name}.theta`, 10000, 1.000001, 1e30);
  return { theta, style: style === "interleaved" ? 0 : 1 };
}

/** rope(x, positions, opts): x f16 (tokens, heads, headDim) or (tokens, heads * headDim); positions i32 (tokens). */
export function validateRopeArgs(
  args: { x: TensorDescriptor; positions: TensorDescriptor },
  opts: RopeOptions,
): { tokens: number; heads: number; headDim: number; theta: number; style: 0 | 1 } {
  const x = checkTensor(args.x, "x");
  const positions = checkTensor(args.positions, "positions");
  checkDTypeOf(x, "x", ["f16"]);
  checkDTypeOf(positions, "positions", ["i32"]);
  if (opts === null || typeof opts !== "object")
    throw new TypeError("opts: expected { headDim, style, theta? }");
  const headDim = integerOption(opts.headDim, "opts.headDim", 2, 1 << 16);
  if (headDim % 2 !== 0) throw new RangeError(`opts.headDim: expected an even number, got ${headDim}`);
  const { theta, style } = ropeParams(opts, "opts");
  const s = x.shape;
  if (s.length !== 2 && s.length !== 3) {
    throw new RangeError(
      `x: expected a tensor (tokens, heads, headDim) or (tokens, heads * headDim), got shape ${formatShape(s)}`,
    );
  }
  const width = s.length === 3 ? s[2] : s[1];
  if (s.length === 3 && s[2] !== headDim) {
    throw new RangeError(`x: shape ${formatShape(s)} has head dimension ${s[2]}, opts.headDim is ${headDim}`);
  }
  if (s.length === 2 && width % headDim !== 0) {
    throw new RangeError(`x: row width ${width} is not a multiple of opts.headDim = ${headDim}`);
  }
  const tokens = s[0];
  const heads = s.length === 3 ? s[1] : width / headDim;
  checkPositiveDims({ "tokens (x.shape[0])": tokens, heads });
  rank(positions, "positions", 1, "(tokens)");
  if (positions.shape[0] !== tokens) {
    throw new RangeError(
      `positions: expected shape (tokens) = (${tokens}), got ${formatShape(positions.shape)}`,
    );
  }
  checkAligned(x, "x", 2);
  checkAligned(positions, "positions", 4);
  checkSameDevice([
    [x, "x"],
    [positions, "positions"],
  ]);
  return { tokens, heads, headDim, theta, style };
}

/** siluMul / relu2Mul(gate, up, out) and add(a, b, out): f16 tensors of one shape. Returns the element count. */
export function validateElementwiseArgs(
  args: readonly [TensorDescriptor, string][],
  out: TensorDescriptor,
): { n: number } {
  const inputs = args.map(([t, name]) => [checkTensor(t, name), name] as [TensorDescriptor, string]);
  const o = checkTensor(out, "out");
  for (const [t, name] of inputs) checkDTypeOf(t, name, ["f16"]);
  checkDTypeOf(o, "out", ["f16"]);
  const [first, firstName] = inputs[0];
  for (const [t, name] of inputs.slice(1)) sameShape(t, name, first, firstName);
  sameShape(o, "out", first, firstName);
  const n = numelOf(first.shape);
  if (n < 1)
    throw new RangeError(
      `${firstName}: expected at least one element, got shape ${formatShape(first.shape)}`,
    );
  for (const [t, name] of inputs) checkAligned(t, name, 2);
  checkAligned(o, "out", 2);
  checkSameDevice([...inputs, [o, "out"]]);
  return { n };
}

export interface AttentionHeads {
  /** Query heads. */
  heads: number;
  /** Key/value heads; divides heads (grouped-query attention). */
  kvHeads: number;
  /** Elements per head, at most OPS_MAX_HEAD_DIM. */
  headDim: number;
}

function checkHeads(opts: AttentionHeads): AttentionHeads {
  if (opts === null || typeof opts !== "object")
    throw new TypeError("opts: expected { heads, kvHeads, headDim }");
  const heads = integerOption(opts.heads, "opts.heads", 1);
  const kvHeads = integerOption(opts.kvHeads, "opts.kvHeads", 1);
  const headDim = integerOption(opts.headDim, "opts.headDim", 1, OPS_MAX_HEAD_DIM);
  if (heads % kvHeads !== 0) {
    throw new RangeError(`opts.kvHeads: ${kvHeads} does not divide opts.heads = ${heads}`);
  }
  return { heads, kvHeads, headDim };
}

/**
 * attentionPrefill(q, k, v, out, opts): q, out f16 (T, heads, headDim) or
 * (T, heads * headDim); k, v f16 (T, kvHeads, headDim) or (T, kvHeads * headDim).
 */
export function validateAttentionPrefillArgs(
  args: { q: TensorDescriptor; k: TensorDescriptor; v: TensorDescriptor; out: TensorDescriptor },
  opts: AttentionHeads,
): AttentionHeads & { tokens: number } {
  const q = checkTensor(args.q, "q");
  const k = checkTensor(args.k, "k");
  const v = checkTensor(args.v, "v");
  const out = checkTensor(args.out, "out");
  for (const [t, name] of [
    [q, "q"],
    [k, "k"],
    [v, "v"],
    [out, "out"],
  ] as const)
    checkDTypeOf(t, name, ["f16"]);
  const h = checkHeads(opts);
  const tokens = headRows(q, "q", h.heads, h.headDim, "heads");
  checkPositiveDims({ "tokens (q.shape[0])": tokens });
  for (const [t, name] of [
    [k, "k"],
    [v, "v"],
  ] as const) {
    const rows = headRows(t, name, h.kvHeads, h.headDim, "kvHeads");
    if (rows !== tokens) throw new RangeError(`${name}: expected ${tokens} rows (q.shape[0]), got ${rows}`);
  }
  const outRows = headRows(out, "out", h.heads, h.headDim, "heads");
  if (outRows !== tokens) throw new RangeError(`out: expected ${tokens} rows (q.shape[0]), got ${outRows}`);
  for (const [t, name] of [
    [q, "q"],
    [k, "k"],
    [v, "v"],
    [out, "out"],
  ] as const)
    checkAligned(t, name, 2);
  checkSameDevice([
    [q, "q"],
    [k, "k"],
    [v, "v"],
    [out, "out"],
  ]);
  return { ...h, tokens };
}

export interface AttentionDecodeOptions extends AttentionHeads {
  /** Cache row of the first new token (the number of tokens already cached). */
  position: number;
}

/**
 * attentionDecode(q, kNew, vNew, kCache, vCache, out, opts): n new tokens at
 * positions position..position+n-1. q, out f16 (n, heads[, ]headDim); kNew, vNew
 * f16 (n, kvHeads[, ]headDim); caches f16 (maxT, kvHeads[, ]headDim) with
 * position + n <= maxT.
 */
export function validateAttentionDecodeArgs(
  args: {
    q: TensorDescriptor;
    kNew: TensorDescriptor;
    vNew: TensorDescriptor;
    kCache: TensorDescriptor;
    vCache: TensorDescriptor;
    out: TensorDescriptor;
  },
  opts: AttentionDecodeOptions,
): AttentionHeads & { tokens: number; position: number; cacheRows: number } {
  const names = ["q", "kNew", "vNew", "kCache", "vCache", "out"] as const;
  const t = Object.fromEntries(names.map((name) => [name, checkTensor(args[name], name)])) as Record<
    (typeof names)[number],
    TensorDescriptor
  >;
  for (const name of names) checkDTypeOf(t[name], name, ["f16"]);
  const h = checkHeads(opts);
  const position = integerOption(opts.position, "opts.position", 0);
  const tokens = headRows(t.q, "q", h.heads, h.headDim, "heads");
  checkPositiveDims({ "tokens (q.shape[0])": tokens });
  for (const name of ["kNew", "vNew"] as const) {
    const rows = headRows(t[name], name, h.kvHeads, h.headDim, "kvHeads");
    if (rows !== tokens) throw new RangeError(`${name}: expected ${tokens} rows (q.shape[0]), got ${rows}`);
  }
  const cacheRows = headRows(t.kCache, "kCache", h.kvHeads, h.headDim, "kvHeads");
  checkPositiveDims({ "maxT (kCache.shape[0])": cacheRows });
  const vRows = headRows(t.vCache, "vCache", h.kvHeads, h.headDim, "kvHeads");
  if (vRows !== cacheRows) {
    throw new RangeError(`vCache: expected ${cacheRows} rows (kCache.shape[0]), got ${vRows}`);
  }
  const outRows = headRows(t.out, "out", h.heads, h.headDim, "heads");
  if (outRows !== tokens) throw new RangeError(`out: expected ${tokens} rows (q.shape[0]), got ${outRows}`);
  if (position + tokens > cacheRows) {
    throw new RangeError(
      `opts.position: ${tokens} new token(s) at position ${position} do not fit the cache of ${cacheRows} rows`,
    );
  }
  for (const name of names) checkAligned(t[name], name, 2);
  checkSameDevice(names.map((name) => [t[name], name]));
  return { ...h, tokens, position, cacheRows };
}

/** Per-sequence caches: (batch, maxT, kvHeads, headDim) or (batch, maxT, kvHeads * headDim). */
function batchCacheDims(
  t: TensorDescriptor,
  name: string,
  kvHeads: number,
  headDim: number,
): [number, number] {
  const s = t.shape;
  const ok =
    (s.length === 4 && s[2] === kvHeads && s[3] === headDim) ||
    (s.length === 3 && s[2] === kvHeads * headDim);
  if (!ok) {
    throw new RangeError(
      `${name}: expected shape (batch, maxT, kvHeads, headDim) = (batch, maxT, ${kvHeads}, ${headDim}) or (batch, maxT, kvHeads * headDim), got ${formatShape(s)}`,
    );
  }
  return [s[0], s[1]];
}

/** RoPE done inside ops.attentionDecodeBatch: ops.rope's options less headDim (attention's own). */
export type AttentionRopeOptions = Omit<RopeOptions, "headDim">;

export interface AttentionDecodeBatchOptions extends AttentionHeads {
  /**
   * Rotate q and kNew inside the op (at position positions[b] for sequence b), in the same launch
   * as the cache append and attention: q and kNew are then taken unrotated. The results (outputs
   * and cache contents) are bit for bit those of ops.rope on q and on kNew with these options,
   * then this op without `rope`. headDim must be even.
   */
  rope?: AttentionRopeOptions;
}

/**
 * attentionDecodeBatch(q, kNew, vNew, kCache, vCache, positions, out, opts):
 * one new token per sequence. q, out f16 (batch, heads[, ]headDim); kNew, vNew
 * f16 (batch, kvHeads[, ]headDim); caches f16 (batch, maxT, kvHeads[, ]headDim);
 * positions i32 (batch), read on the device. opts.rope: style and theta
 * (default 10000) as ops.rope checks them; headDim even.
 */
export function validateAttentionDecodeBatchArgs(
  args: {
    q: TensorDescriptor;
    kNew: TensorDescriptor;
    vNew: TensorDescriptor;
    kCache: TensorDescriptor;
    vCache: TensorDescriptor;
    positions: TensorDescriptor;
    out: TensorDescriptor;
  },
  opts: AttentionDecodeBatchOptions,
): AttentionHeads & { batch: number; maxT: number; rope?: { theta: number; style: 0 | 1 } } {
  const names = ["q", "kNew", "vNew", "kCache", "vCache", "positions", "out"] as const;
  const t = Object.fromEntries(names.map((name) => [name, checkTensor(args[name], name)])) as Record<
    (typeof names)[number],
    TensorDescriptor
  >;
  for (const name of names) checkDTypeOf(t[name], name, [name === "positions" ? "i32" : "f16"]);
  const h = checkHeads(opts);
  const batch = headRows(t.q, "q", h.heads, h.headDim, "heads");
  checkPositiveDims({ "batch (q.shape[0])": batch });
  for (const name of ["kNew", "vNew"] as const) {
    const rows = headRows(t[name], name, h.kvHeads, h.headDim, "kvHeads");
    if (rows !== batch) throw new RangeError(`${name}: expected ${batch} rows (q.shape[0]), got ${rows}`);
  }
  const outRows = headRows(t.out, "out", h.heads, h.headDim, "heads");
  if (outRows !== batch) throw new RangeError(`out: expected ${batch} rows (q.shape[0]), got ${outRows}`);
  const [kb, maxT] = batchCacheDims(t.kCache, "kCache", h.kvHeads, h.headDim);
  if (kb !== batch) throw new RangeError(`kCache: expected ${batch} sequences (q.shape[0]), got ${kb}`);
  checkPositiveDims({ "maxT (kCache.shape[1])": maxT });
  const [vb, vT] = batchCacheDims(t.vCache, "vCache", h.kvHeads, h.headDim);
  if (vb !== batch || vT !== maxT) {
    throw new RangeError(
      `vCache: expected ${batch} sequences of ${maxT} rows like kCache, got ${formatShape(t.vCache.shape)}`,
    );
  }
  rank(t.positions, "positions", 1, "(batch)");
  if (t.positions.shape[0] !== batch) {
    throw new RangeError(
      `positions: expected shape (batch) = (${batch}), got ${formatShape(t.positions.shape)}`,
    );
  }
  for (const name of names) checkAligned(t[name], name, name === "positions" ? 4 : 2);
  checkSameDevice(names.map((name) => [t[name], name]));
  const rope = (opts as { rope?: unknown }).rope;
  if (rope === undefined) return { ...h, batch, maxT };
  if (rope === null || typeof rope !== "object") {
    throw new TypeError(`opts.rope: expected { style, theta? } or undefined, got ${String(rope)}`);
  }
  if (h.headDim % 2 !== 0) {
    throw new RangeError(`opts.headDim: expected an even number with opts.rope, got ${h.headDim}`);
  }
  return { ...h, batch, maxT, rope: ropeParams(rope, "opts.rope") };
}

/** logSoftmax(logits, out): logits f16 or f32 (rows, vocab), out f32 (rows, vocab). */
export function validateLogSoftmaxArgs(args: { logits: TensorDescriptor; out: TensorDescriptor }): {
  rows: number;
  vocab: number;
  logitsF32: boolean;
} {
  const logits = checkTensor(args.logits, "logits");
  const out = checkTensor(args.out, "out");
  checkDTypeOf(logits, "logits", ["f16", "f32"]);
  checkDTypeOf(out, "out", ["f32"]);
  const [rows, vocab] = rank(logits, "logits", 2, "(rows, vocab)");
  checkPositiveDims({ "rows (logits.shape[0])": rows, "vocab (logits.shape[1])": vocab });
  sameShape(out, "out", logits, "logits");
  const logitsF32 = logits.dtype === "f32";
  checkAligned(logits, "logits", logitsF32 ? 4 : 2);
  checkAligned(out, "out", 4);
  checkSameDevice([
    [logits, "logits"],
    [out, "out"],
  ]);
  return { rows, vocab, logitsF32 };
}

/** nll(logits, targets, out): logits f16 or f32 (rows, vocab), targets i32 (rows), out f32 (rows). */
export function validateNllArgs(args: {
  logits: TensorDescriptor;
  targets: TensorDescriptor;
  out: TensorDescriptor;
}): { rows: number; vocab: number; logitsF32: boolean } {
  const logits = checkTensor(args.logits, "logits");
  const targets = checkTensor(args.targets, "targets");
  const out = checkTensor(args.out, "out");
  checkDTypeOf(logits, "logits", ["f16", "f32"]);
  checkDTypeOf(targets, "targets", ["i32"]);
  checkDTypeOf(out, "out", ["f32"]);
  const [rows, vocab] = rank(logits, "logits", 2, "(rows, vocab)");
  checkPositiveDims({ "rows (logits.shape[0])": rows, "vocab (logits.shape[1])": vocab });
  rank(targets, "targets", 1, "(rows)");
  if (targets.shape[0] !== rows) {
    throw new RangeError(`targets: expected shape (rows) = (${rows}), got ${formatShape(targets.shape)}`);
  }
  rank(out, "out", 1, "(rows)");
  if (out.shape[0] !== rows) {
    throw new RangeError(`out: expected shape (rows) = (${rows}), got ${formatShape(out.shape)}`);
  }
  const logitsF32 = logits.dtype === "f32";
  checkAligned(logits, "logits", logitsF32 ? 4 : 2);
  checkAligned(targets, "targets", 4);
  checkAligned(out, "out", 4);
  checkSameDevice([
    [logits, "logits"],
    [targets, "targets"],
    [out, "out"],
  ]);
  return { rows, vocab, logitsF32 };
}
