/**
 * Round-to-nearest quantizers from PyTorch-style `(out, in)` weights to TriRun codes and scales.
 *
 * Output orientation: codes `(k, n)` = `(in, out)` row-major, values 0..3 (level = code - 1 in
 * {-1, 0, 1, 2}); scales `(ceil(k/g), n)` fp16 bits. Every scale is rounded to fp16 first and the
 * levels are computed against that rounded scale, so `(code - 1) * scale` is what the kernel sees.
 * Level = round(w / s), half to even (as torch.round), clamped to [-1, 1] (absmean, absmax) or
 * [-1, 2] (mse, exact). A group whose scale is 0 gets code 1 (weight 0). `bitnet` is BitNet b1.58's
 * own quantizer, with one scale for the whole tensor and its fp32 arithmetic (./bitnet.ts).
 */
import { decodeBf16, f16DecodeTable, numberToF16Bits, roundToF16 } from "./fp16.js";
import { bitNetTensorQuantize } from "./bitnet.js";
import { checkWeightShape, packColumnBlock, packScales, packWeights, resolveGroupSize } from "./layout.js";

export type FloatDType = "F64" | "F32" | "F16" | "BF16";
export type QuantMethod = "absmean" | "absmax" | "mse" | "exact" | "bitnet";
export const QUANT_METHODS: readonly QuantMethod[] = ["absmean", "absmax", "mse", "exact", "bitnet"];

/** A PyTorch-style `Linear.weight`: `outFeatures` rows of `inFeatures` values. */
export interface WeightMatrix {
  /** Float64Array/Float32Array for F64/F32, Uint16Array of bits for F16/BF16. */
  data: Float64Array | Float32Array | Uint16Array;
  dtype: FloatDType;
  outFeatures: number;
  inFeatures: number;
}

export interface QuantizeOptions {
  method: QuantMethod;
  /** 128 (or any positive group length), or -1 for one group per output column. */
  groupsize: number;
  /** Name used in error messages (e.g. the tensor name). */
  name?: string;
}

export interface QuantizedWeights {
  /** `(inFeatures, outFeatures)` row-major codes 0..3. */
  codes: Uint8Array;
  /** `(ceil(inFeatures / groupLength), outFeatures)` row-major fp16 bits. */
  scales: Uint16Array;
  inFeatures: number;
  outFeatures: number;
  /** The group length along `in` (inFeatures when the option was -1). */
  groupLength: number;
}

/** Fractions of max |w| tried by the `mse` search (1.00, 0.99, ..., 0.21), as in GPTQ's grid. */
export const MSE_GRID: readonly number[] = Array.from({ length: 80 }, (_, i) => 1 - i / 100);

/** Tolerance (in units of the scale) for `exact`: fp16 rounding of w and s is far below it. */
export const EXACT_TOLERANCE = 1 / 256;

/** Adding and subtracting 1.5 * 2^52 rounds a double to an integer, half to even. */
const ROUND_MAGIC = 6755399441055744;

/** Output columns quantized together, so that code rows are written a cache line at a time. */
const COLUMN_BLOCK = 64;

function describe(name: string | undefined): string {
  return name === undefined ? "weight" : `tensor "${name}"`;
}

function checkWeight(weight: WeightMatrix): void {
  if (typeof weight !== "object" || weight === null)
    throw new TypeError("weight must be a WeightMatrix object");
  const { data, dtype, outFeatures, inFeatures } = weight;
  for (const [v, label] of [
    [outFeatures, "weight.outFeatures"],
    [inFeatures, "weight.inFeatures"],
  ] as const) {
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new RangeError(`${label} must be a positive integer, got ${String(v)}`);
    }
  }
  const expected =
    dtype === "F64"
      ? Float64Array
      : dtype === "F32"
        ? Float32Array
        : dtype === "F16" || dtype === "BF16"
          ? Uint16Array
          : undefined;
  if (expected === undefined) {
    throw new TypeError(`weight.dtype must be F64, F32, F16 or BF16, got ${String(dtype)}`);
  }
  if (!(data instanceof expected))
    throw new TypeError(`weight.data must be a ${expected.name} for dtype ${dtype}`);
  if (data.length !== outFeatures * inFeatures) {
    throw new RangeError(
      `weight.data must have outFeatures * inFeatures = ${outFeatures * inFeatures} elements, got ${data.length}`,
    );
  }
}

// ---- Statistics and code writers. Two variants each: fp16 bits read through a decode table, and
// ---- float arrays. They are written out twice (not parameterised) so that V8 keeps each loop
// ---- monomorphic; the arithmetic is identical. Branch-free where signs are random.

/**
 * Four independent sums to break the dependency on add latency. For fp16 inputs the order does not
 * matter: every fp16 is a multiple of 2^-24, so partial sums stay exact in a double while they are
 * below 2^29 (any group of 128, and any real weight row).
 */
function sumAbsF16(bits: Uint16Array, table: Float32Array, off: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const end = off + len;
  let i = off;
  for (; i + 4 <= end; i += 4) {
    s0 += Math.abs(table[bits[i]]);
    s1 += Math.abs(table[bits[i + 1]]);
    s2 += Math.abs(table[bits[i + 2]]);
    s3 += Math.abs(table[bits[i + 3]]);
  }
  for (; i < end; i++) s0 += Math.abs(table[bits[i]]);
  return s0 + s1 + (s2 + s3);
}

/** Max |w| through the magnitude bits, which are monotonic in value (NaN bits sort above Inf). */
function maxAbsF16(bits: Uint16Array, table: Float32Array, off: number, len: number): number {
  let max = 0;
  for (let i = off; i < off + len; i++) max = Math.max(max, bits[i] & 0x7fff);
  return table[max];
}

function sumAbsFloat(values: Float32Array | Float64Array, off: number, len: number): number {
  let sum = 0;
  for (let i = off; i < off + len; i++) sum += Math.abs(values[i]);
  return sum;
}

function maxAbsFloat(values: Float32Array | Float64Array, off: number, len: number): number {
  let max = 0;
  for (let i = off; i < off + len; i++) max = Math.max(max, Math.abs(values[i]));
  return max;
}

/**
 * Codes of one group of one output column by division: `len` weights from `off`, written
 * contiguously to `out[dst..]`. Rounding and clamping run in integers without branches: |w / s| is
 * bounded by the group length (s >= mean |w|), far inside int32. `s` is Infinity for a zero scale.
 */
function groupCodesFloat(
  values: Float32Array | Float64Array,
  off: number,
  len: number,
  s: number,
  out: Uint8Array,
  dst: number,
  maxCode: number,
): void {
  for (let i = 0; i < len; i++) {
    const x = values[off + i] / s;
    let t = ((x + ROUND_MAGIC - ROUND_MAGIC) | 0) + 1;
    t &= ~(t >> 31);
    const over = t - maxCode;
    out[dst + i] = t - (over & ~(over >> 31));
  }
}

/*
 * Threshold form of the same rounding, for inputs whose magnitude bits are monotonic in value
 * (fp16 bits; fp32 bits, which bf16 decodes to exactly). For a group scale s: level 1 (or -1) iff
 * |w| > s/2 (ties go to 0, the even level), level 2 iff w >= 3s/2 (ties go to 2), level -2 clamps
 * to -1. `over1`/`over2` are the largest magnitude bits still below those bounds, so a level is a
 * couple of integer compares done as sign-bit arithmetic: no division, no float, no branch. The
 * result equals round-half-even(w / s) exactly: w / s of two fp16/fp32 values never rounds onto a
 * tie it is not on, as their significands are far shorter than a double's.
 */
function groupCodesBits16(
  bits: Uint16Array,
  off: number,
  len: number,
  over1: number,
  over2: number,
  out: Uint8Array,
  dst: number,
): void {
  for (let i = 0; i < len; i++) {
    const b = bits[off + i];
    const m = b & 0x7fff;
    const neg = -(b >> 15);
    const pos = ~neg;
    const above1 = (over1 - m) >> 31;
    const above2 = (over2 - m) >> 31;
    out[dst + i] = 1 + (neg & above1) - (pos & above1) - (pos & above2);
  }
}

function groupCodesBits32(
  bits: Int32Array,
  off: number,
  len: number,
  over1: number,
  over2: number,
  out: Uint8Array,
  dst: number,
): void {
  for (let i = 0; i < len; i++) {
    const b = bits[off + i];
    const m = b & 0x7fffffff;
    const neg = b >> 31;
    const pos = ~neg;
    const above1 = (over1 - m) >> 31;
    const above2 = (over2 - m) >> 31;
    out[dst + i] = 1 + (neg & above1) - (pos & above1) - (pos & above2);
  }
}

const f32Scratch = new Float32Array(1);
const i32Scratch = new Int32Array(f32Scratch.buffer);

/** Largest fp16 magnitude bits whose value is <= x (x >= 0). */
function f16FloorBits(x: number, table: Float32Array): number {
  let b = numberToF16Bits(x) & 0x7fff;
  if (table[b] > x) b--;
  return b;
}

/** Largest fp32 magnitude bits whose value is <= x (x >= 0). */
function f32FloorBits(x: number): number {
  f32Scratch[0] = x;
  let b = i32Scratch[0];
  if (f32Scratch[0] > x) b--;
  return b;
}

/**
 * Bounds for the threshold writers, into `bounds`: magnitudes above `bounds[0]` leave level 0,
 * those above `bounds[1]` reach level 2 (never when the method stops at 1, or for a zero scale).
 */
function thresholds(
  s: number,
  maxCode: number,
  wide: boolean,
  table: Float32Array,
  bounds: Int32Array,
): void {
  const never = wide ? 0x7fffffff : 0x7fff;
  bounds[0] = never;
  bounds[1] = never;
  if (s === 0) return;
  bounds[0] = wide ? f32FloorBits(0.5 * s) : f16FloorBits(0.5 * s, table);
  if (maxCode < 3) return;
  // Largest magnitude strictly below 1.5 s.
  const limit = 1.5 * s;
  let over2 = wide ? f32FloorBits(limit) : f16FloorBits(limit, table);
  i32Scratch[0] = over2;
  if ((wide ? f32Scratch[0] : table[over2]) === limit) over2--;
  bounds[1] = over2;
}

/** Level of w / s on [-1, 2]: round half to even, clamped in integers (branch-free). */
function level2(x: number): number {
  let q = (x + ROUND_MAGIC - ROUND_MAGIC) | 0;
  q -= (q + 1) & ((q + 1) >> 31); // max(q, -1)
  return q - ((q - 2) & ~((q - 2) >> 31)); // min(q, 2)
}

/** Sum of squared errors of a group quantized onto levels [-1, 2] with scale s, in element order. */
function groupError(group: Float64Array, len: number, s: number): number {
  let e = 0;
  for (let i = 0; i < len; i++) {
    const w = group[i];
    const d = w - level2(w / s) * s;
    e += d * d;
  }
  return e;
}

const mseCandidates = new Float64Array(MSE_GRID.length);
const mseFastErrors = new Float64Array(MSE_GRID.length);
const mseLinear = new Float64Array(MSE_GRID.length + 1);
const mseQuadratic = new Float64Array(MSE_GRID.length + 1);

/**
 * The first candidate index j with `w > t * s_j` (the candidates shrink, so once true it stays
 * true), searched from a guess; `count` when there is none.
 */
function crossing(w: number, t: number, guess: number, count: number): number {
  let j = guess < 0 ? 0 : guess > count ? count : guess;
  while (j > 0 && w > t * mseCandidates[j - 1]) j--;
  while (j < count && !(w > t * mseCandidates[j])) j++;
  return j;
}

/**
 * The first of the candidate scales `p * max |w|` (rounded to fp16) with the least squared error,
 * as the plain search defines it (each candidate's error summed in element order, strict `<`), at a
 * fraction of its cost.
 *
 * First pass, every candidate at once: as the scale shrinks, each weight's level only moves away
 * from 0, so a weight changes level at most twice along the candidates (0 -> -1; or 0 -> 1 -> 2).
 * Each weight adds its changes to the candidate where they happen, and one sweep over the candidates
 * then has each one's sum of (w - q s)^2 = sum w^2 - 2 s sum q w + s^2 sum q^2. The boundaries are
 * compared without dividing (w > 0.5 s instead of round(w / s) >= 1); a weight that this puts on
 * the other side of a boundary sits on it, where both levels' errors agree to rounding.
 *
 * Second pass: those errors differ from the plain ones by rounding only (at most `tolerance`
 * apart), so the plain search's winner is among the candidates rated within 2 * tolerance of the
 * best; only those are summed again the plain way, which keeps every scale bit-identical to the
 * plain search's, ties included.
 */
function mseScale(group: Float64Array, len: number, maxAbs: number): number {
  let count = 0;
  let overflowed = false;
  for (const p of MSE_GRID) {
    const candidate = roundToF16(p * maxAbs);
    if (candidate === 0) break;
    // A candidate past fp16's range cannot be stored: the search is over the others (crossing()
    // walks from its guess, so the missing indices only cost steps).
    if (candidate === Number.POSITIVE_INFINITY) {
      overflowed = true;
      continue;
    }
    mseCandidates[count++] = candidate;
  }
  // Every candidate overflowed: the caller reports it, as for the other quantizers.
  if (count === 0) return overflowed ? Number.POSITIVE_INFINITY : 0;
  const linear = mseLinear;
  const quadratic = mseQuadratic;
  linear.fill(0, 0, count + 1);
  quadratic.fill(0, 0, count + 1);
  // Candidate j is about (1 - j / 100) maxAbs: level 1 from s < 2 w, level 2 from s < w / 1.5.
  const perMax = 100 / maxAbs;
  let squares = 0;
  for (let i = 0; i < len; i++) {
    const w = group[i];
    squares += w * w;
    if (w < 0) {
      // level -1 once -w > 0.5 s (w / s < -0.5)
      const j = crossing(-w, 0.5, Math.ceil(100 + 2 * w * perMax), count);
      linear[j] -= w;
      quadratic[j] += 1;
    } else if (w > 0) {
      const j1 = crossing(w, 0.5, Math.ceil(100 - 2 * w * perMax), count);
      linear[j1] += w;
      quadratic[j1] += 1;
      // level 2 once w > 1.5 s: q w grows by w more, q^2 by 3
      const j2 = crossing(w, 1.5, Math.ceil(100 - (w / 1.5) * perMax), count);
      linear[j2] += w;
      quadratic[j2] += 3;
    }
  }
  let runLinear = 0;
  let runQuadratic = 0;
  let fastBest = Number.POSITIVE_INFINITY;
  for (let j = 0; j < count; j++) {
    runLinear += linear[j];
    runQuadratic += quadratic[j];
    const s = mseCandidates[j];
    const error = squares - 2 * s * runLinear + s * s * runQuadratic;
    mseFastErrors[j] = error;
    if (error < fastBest) fastBest = error;
  }
  // How far the two sums of one candidate can differ: each is fewer than 3 len + 100 roundings of
  // terms adding up to at most 10 len maxAbs^2 (|w| <= maxAbs, s <= maxAbs, levels in [-1, 2]),
  // plus len weights on a boundary (2^-50 s^2 each); doubled for margin.
  const ulp = 2 ** -52;
  const tolerance = 2 * ulp * len * maxAbs * maxAbs * (10 * (3 * len + 100) + 4);
  let s = 0;
  let best = Number.POSITIVE_INFINITY;
  for (let j = 0; j < count; j++) {
    if (mseFastErrors[j] > fastBest + 2 * tolerance) continue;
    const error = groupError(group, len, mseCandidates[j]);
    if (error < best) {
      best = error;
      s = mseCandidates[j];
    }
  }
  return s;
}

/**
 * Recovers the scale of a fake-quantized group and checks every value against the grid.
 * Level -1 is the only negative level, so any negative weight is -s. A group without negatives is
 * read as ternary ({0, s}) when possible, else as {0, s, 2s}.
 */
function exactScale(
  group: Float64Array,
  len: number,
  name: string | undefined,
  out: number,
  in0: number,
): number {
  let maxNeg = 0;
  let maxPos = 0;
  for (let i = 0; i < len; i++) {
    maxNeg = Math.max(maxNeg, -group[i]);
    maxPos = Math.max(maxPos, group[i]);
  }
  let s = maxNeg;
  if (maxNeg === 0) {
    s = maxPos;
    for (let i = 0; i < len; i++) {
      if (group[i] !== 0 && group[i] !== maxPos) {
        s = maxPos / 2;
        break;
      }
    }
  }
  s = roundToF16(s);
  for (let i = 0; i < len; i++) {
    const w = group[i];
    const x = s === 0 ? (w === 0 ? 0 : Number.POSITIVE_INFINITY) : w / s;
    const q = Math.round(x);
    if (!(q >= -1 && q <= 2 && Math.abs(x - q) <= EXACT_TOLERANCE)) {
      throw new RangeError(
        `${describeAt(name, out, in0 + i)}: value ${w} is not on the grid {-1, 0, 1, 2} * s (group scale ${s})`,
      );
    }
  }
  return s;
}

/** Names a weight position `[out, in]` for errors. */
function describeAt(name: string | undefined, out: number, input: number): string {
  return `${describe(name)} at [${out}, ${input}]`;
}

function copyGroup(
  f16: Uint16Array | undefined,
  table: Float32Array,
  values: Float32Array | Float64Array,
  off: number,
  len: number,
  group: Float64Array,
): Float64Array {
  if (f16) for (let i = 0; i < len; i++) group[i] = table[f16[off + i]];
  else for (let i = 0; i < len; i++) group[i] = values[off + i];
  return group;
}

interface Plan {
  method: QuantMethod;
  name: string | undefined;
  k: number;
  n: number;
  /** Group length along `in`. */
  g: number;
  groups: number;
  maxCode: number;
}

function makePlan(weight: WeightMatrix, options: QuantizeOptions): Plan {
  checkWeight(weight);
  if (typeof options !== "object" || options === null) throw new TypeError("options must be an object");
  const { method, groupsize, name } = options;
  if (!QUANT_METHODS.includes(method)) {
    throw new TypeError(`options.method must be one of ${QUANT_METHODS.join(", ")}, got ${String(method)}`);
  }
  if (!Number.isInteger(groupsize) || (groupsize !== -1 && groupsize <= 0)) {
    throw new RangeError(`options.groupsize must be a positive integer or -1, got ${String(groupsize)}`);
  }
  const k = weight.inFeatures;
  const n = weight.outFeatures;
  const g = groupsize === -1 ? k : Math.min(groupsize, k);
  const maxCode = method === "absmean" || method === "absmax" || method === "bitnet" ? 2 : 3;
  return { method, name, k, n, g, groups: Math.ceil(k / g), maxCode };
}

/**
 * Codes of a block of output columns are first written in weight orientation (one row per output
 * column, contiguous reads and writes), into a scratch whose row stride is not a multiple of 4 KiB
 * so that the transposing consumer does not thrash one cache set.
 */
function scratchStride(k: number): number {
  let stride = Math.ceil(k / 64) * 64 + 64;
  if (stride % 4096 === 0) stride += 64;
  return stride;
}

/** Receives the codes of output columns [c0, c0+cols): code (r, c0+cc) is at `codesT[cc * stride + r]`. */
type BlockSink = (codesT: Uint8Array, stride: number, c0: number, cols: number) => void;

/**
 * Quantizes the weight one block of COLUMN_BLOCK output columns at a time: chooses each group's
 * fp16 scale (into `scales`, natural `(groups, n)` layout), writes the block's codes to a scratch in
 * weight orientation and hands it to `sink`.
 */
function quantizeBlocks(weight: WeightMatrix, p: Plan, scales: Uint16Array, sink: BlockSink): void {
  const { method, name, k, n, g, groups, maxCode } = p;
  const table = f16DecodeTable();
  const stride = scratchStride(k);
  const codesT = new Uint8Array(COLUMN_BLOCK * stride);
  const group = new Float64Array(g);
  const f16 = weight.dtype === "F16" ? (weight.data as Uint16Array) : undefined;
  // bf16 -> f32 is exact: decode one row at a time into `row`.
  const row = new Float32Array(weight.dtype === "BF16" ? k : 0);
  const bounds = new Int32Array(2);
  // fp32 bits of the float source, for the threshold writer (fp64 keeps the division).
  const bits32 =
    weight.dtype === "BF16"
      ? new Int32Array(row.buffer)
      : weight.dtype === "F32"
        ? new Int32Array(weight.data.buffer, weight.data.byteOffset, weight.data.length)
        : undefined;

  for (let c0 = 0; c0 < n; c0 += COLUMN_BLOCK) {
    const cols = Math.min(COLUMN_BLOCK, n - c0);
    for (let cc = 0; cc < cols; cc++) {
      const c = c0 + cc;
      let values: Float32Array | Float64Array = row;
      let rowBase = 0;
      if (weight.dtype === "BF16") decodeBf16((weight.data as Uint16Array).subarray(c * k, c * k + k), row);
      else if (f16 === undefined) values = weight.data as Float32Array | Float64Array;
      if (weight.dtype !== "BF16") rowBase = c * k;
      for (let gi = 0; gi < groups; gi++) {
        const r0 = gi * g;
        const len = Math.min(g, k - r0);
        const off = rowBase + r0;
        let stat: number;
        if (method === "absmean") {
          stat = f16 ? sumAbsF16(f16, table, off, len) : sumAbsFloat(values, off, len);
        } else {
          stat = f16 ? maxAbsF16(f16, table, off, len) : maxAbsFloat(values, off, len);
        }
        if (!Number.isFinite(stat)) {
          // NaN or Inf somewhere in the group (the statistic propagates them): report the first.
          copyGroup(f16, table, values, off, len, group);
          const i = group.subarray(0, len).findIndex((v) => !Number.isFinite(v));
          throw new RangeError(`${describeAt(name, c, r0 + i)}: non-finite value ${group[i]}`);
        }
        let s: number;
        if (method === "absmean") s = roundToF16(stat / len);
        else if (method === "absmax") s = roundToF16(stat);
        else if (method === "mse") s = mseScale(copyGroup(f16, table, values, off, len, group), len, stat);
        else s = exactScale(copyGroup(f16, table, values, off, len, group), len, name, c, r0);
        if (!Number.isFinite(s)) {
          const what = method === "absmean" ? `mean |w| = ${stat / len}` : `max |w| = ${stat}`;
          throw new RangeError(
            `${describeAt(name, c, r0)}: the ${method} scale of this group (${what}) overflows fp16 (largest 65504)`,
          );
        }
        scales[gi * n + c] = numberToF16Bits(s);
        const dst = cc * stride + r0;
        if (f16 !== undefined || bits32 !== undefined) {
          thresholds(s, maxCode, f16 === undefined, table, bounds);
          if (f16 !== undefined) groupCodesBits16(f16, off, len, bounds[0], bounds[1], codesT, dst);
          else groupCodesBits32(bits32!, off, len, bounds[0], bounds[1], codesT, dst);
        } else {
          // A zero scale (all-zero group, or below the fp16 range): w / Inf = 0, code 1 everywhere.
          groupCodesFloat(values, off, len, s === 0 ? Number.POSITIVE_INFINITY : s, codesT, dst, maxCode);
        }
      }
    }
    sink(codesT, stride, c0, cols);
  }
}

/**
 * Quantizes a PyTorch-style `(out, in)` weight to TriRun codes `(in, out)` and fp16 scales.
 * Any `in`/`out` works here (a last group may be shorter); packing needs the layout's multiples.
 * @throws TypeError for a bad dtype/array type; RangeError for bad shapes, non-finite values,
 *   scale overflow, or (method `exact`) a weight off the grid, naming the tensor and index.
 */
export function quantize(weight: WeightMatrix, options: QuantizeOptions): QuantizedWeights {
  const p = makePlan(weight, options);
  const { k, n, g, groups } = p;
  if (p.method === "bitnet") {
    // One scale for the whole tensor, stored in every group.
    const { codes, scaleBits } = bitNetTensorQuantize(weight, describe(p.name));
    return {
      codes,
      scales: new Uint16Array(groups * n).fill(scaleBits),
      inFeatures: k,
      outFeatures: n,
      groupLength: g,
    };
  }
  const codes = new Uint8Array(k * n);
  const scales = new Uint16Array(groups * n);
  quantizeBlocks(weight, p, scales, (codesT, stride, c0, cols) => {
    for (let r = 0; r < k; r++) {
      const rowOff = r * n + c0;
      for (let cc = 0; cc < cols; cc++) codes[rowOff + cc] = codesT[cc * stride + r];
    }
  });
  return { codes, scales, inFeatures: k, outFeatures: n, groupLength: g };
}

/** The two tensors of a TriRun layer, in the reference layout. */
export interface PackedWeights {
  /** `(k/16, n)` int32 words (`<module>.B`). */
  B: Int32Array;
  /** `(k/g, n)` permuted fp16 bits (`<module>.s`). */
  s: Uint16Array;
  k: number;
  n: number;
  /** Group size as the reference names it: 128, or -1 for one group per column. */
  groupsize: number;
}

/**
 * Quantizes and packs in one pass (same bytes as packWeights/packScales of {@link quantize}'s
 * output, without the `(k, n)` code matrix), for a weight whose shape already fits the layout (`in % 16 == 0`,
 * `out % 64 == 0`, group size 128 with `in % 128 == 0`, or -1).
 */
export function quantizePacked(weight: WeightMatrix, options: QuantizeOptions): PackedWeights {
  const p = makePlan(weight, options);
  const { k, n, groups } = p;
  checkWeightShape(k, n);
  const groupsize = p.g === k ? -1 : p.g;
  resolveGroupSize(groupsize, k);
  if (p.method === "bitnet") {
    const q = quantize(weight, options);
    return { B: packWeights(q.codes, k, n), s: packScales(q.scales, k, n, groupsize), k, n, groupsize };
  }
  const B = new Int32Array((k / 16) * n);
  const scales = new Uint16Array(groups * n);
  // Codes go straight from the scratch into packed words: no (k, n) code matrix.
  quantizeBlocks(weight, p, scales, (codesT, stride, c0) => {
    packColumnBlock(codesT, 0, 1, stride, k, n, c0, B);
  });
  return { B, s: packScales(scales, k, n, groupsize), k, n, groupsize };
}

/**
 * Dequantizes codes `(k, n)` and fp16 scales `(ceil(k/g), n)` back to a PyTorch-style `(n, k)`
 * fp16 weight: `(code - 1) * scale`, exact in fp16 unless `2 * scale` overflows.
 */
export function dequantizeToF16(
  codes: Uint8Array,
  scales: Uint16Array,
  inFeatures: number,
  outFeatures: number,
  groupLength: number,
): Uint16Array {
  if (!(codes instanceof Uint8Array)) throw new TypeError("codes must be a Uint8Array");
  if (!(scales instanceof Uint16Array)) throw new TypeError("scales must be a Uint16Array of fp16 bits");
  const k = inFeatures;
  const n = outFeatures;
  for (const [v, label] of [
    [k, "inFeatures"],
    [n, "outFeatures"],
    [groupLength, "groupLength"],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${label} must be a positive integer, got ${v}`);
  }
  if (codes.length !== k * n) throw new RangeError(`codes must have ${k * n} elements, got ${codes.length}`);
  const groups = Math.ceil(k / groupLength);
  if (scales.length !== groups * n) {
    throw new RangeError(`scales must have ${groups * n} elements, got ${scales.length}`);
  }
  // Per scale, the fp16 bits of the four levels -1, 0, 1, 2 times the scale.
  const levels = new Uint16Array(4 * scales.length);
  const table = f16DecodeTable();
  for (let i = 0; i < scales.length; i++) {
    const s = table[scales[i]];
    levels[4 * i] = numberToF16Bits(-s);
    levels[4 * i + 1] = 0;
    levels[4 * i + 2] = numberToF16Bits(s);
    levels[4 * i + 3] = numberToF16Bits(2 * s);
  }
  const out = new Uint16Array(n * k);
  for (let r = 0; r < k; r++) {
    const g4 = Math.floor(r / groupLength) * n * 4;
    const rowOff = r * n;
    for (let c = 0; c < n; c++) {
      const code = codes[rowOff + c];
      if (code > 3) throw new RangeError(`codes must be in 0..3; codes[${rowOff + c}] = ${code}`);
      out[c * k + r] = levels[g4 + 4 * c + code];
    }
  }
  return out;
}
