/**
 * Host-side preparation of TriRun weights: validation, dequantization, and the padding to the
 * kernel's shapes (`in` to a multiple of 128, `out` to a multiple of 256) done once at pack time.
 *
 * A bias is folded into the weights for the kernel: one extra group of 128 input rows whose first
 * row has code 2 (level +1) and scale `bias[o]`, multiplied by a constant 1.0 activation column.
 * That adds the fp16 bias inside the kernel's fp32 accumulation, exactly, with no extra kernel.
 * It needs grouped scales, so a per-column (`-1`) layer with a bias repeats its scale per group.
 */
import { f16DecodeTable, packScales, packWeights, unpackScales, unpackWeights } from "@trirun/packing";
import type { QuantizedWeights } from "./types.js";

/** Kernel constraint on `k` (input features). */
export const K_ALIGN = 128;
/** Kernel constraint on `n` (output features). */
export const N_ALIGN = 256;
/** The only group length besides "one group per column". */
export const GROUP = 128;

const CODE_ZERO = 1;
const CODE_PLUS_ONE = 2;

export function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/** Rows of the natural scale matrix: one per 128 inputs, or one when `groupsize` is -1. */
export function scaleRows(inFeatures: number, groupsize: number): number {
  return groupsize === -1 ? 1 : Math.ceil(inFeatures / GROUP);
}

export function checkFeatures(value: unknown, argName: string): asserts value is number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${argName} must be an integer, got ${String(value)}`);
  }
  if (value <= 0) throw new RangeError(`${argName} must be a positive integer, got ${value}`);
}

export function checkGroupsize(groupsize: unknown, argName: string): asserts groupsize is 128 | -1 {
  if (groupsize !== GROUP && groupsize !== -1) {
    throw new RangeError(
      `${argName} must be 128 or -1 (one scale per output column), got ${String(groupsize)}`,
    );
  }
}

/** The smallest magnitude that rounds to Inf in fp16 (65504 is the largest finite value). */
const FP16_OVERFLOW = 65520;

/** Checks a bias vector and returns it. */
export function checkBias(bias: unknown, outFeatures: number, argName: string): Float32Array | undefined {
  if (bias === undefined) return undefined;
  if (!(bias instanceof Float32Array)) throw new TypeError(`${argName} must be a Float32Array`);
  if (bias.length !== outFeatures) {
    throw new RangeError(`${argName} must have outFeatures = ${outFeatures} elements, got ${bias.length}`);
  }
  // Both backends round the bias to fp16: past its range it would be Inf on the CPU and NaN on CUDA
  // (the bias rides in a weight column whose other rows hold zeros: 0 x Inf).
  for (let i = 0; i < bias.length; i++) {
    if (!(Math.abs(bias[i]) < FP16_OVERFLOW)) {
      throw new RangeError(`${argName}[${i}] = ${bias[i]} is not a finite value fp16 can hold (|b| < 65520)`);
    }
  }
  return bias;
}

/**
 * A quantizer's per-column result as this package names it: GPTQ (and others) report one group per
 * output column as a group of `inFeatures` rows, which is groupsize -1 here.
 */
export function asLayerGroupsize<Q extends QuantizedWeights>(q: Q, inFeatures: number): Q {
  if (typeof q !== "object" || q === null) return q;
  return q.groupsize === inFeatures && inFeatures !== GROUP ? { ...q, groupsize: -1 } : q;
}

/** Validates natural codes/scales for an `(inFeatures -> outFeatures)` layer. */
export function checkQuantized(
  q: QuantizedWeights,
  inFeatures: number,
  outFeatures: number,
  argName: string,
): void {
  if (typeof q !== "object" || q === null) throw new TypeError(`${argName} must be an object`);
  checkGroupsize(q.groupsize, `${argName}.groupsize`);
  if (!(q.codes instanceof Uint8Array)) throw new TypeError(`${argName}.codes must be a Uint8Array`);
  if (!(q.scales instanceof Uint16Array)) {
    throw new TypeError(`${argName}.scales must be a Uint16Array of fp16 bits`);
  }
  if (q.codes.length !== inFeatures * outFeatures) {
    throw new RangeError(
      `${argName}.codes must have inFeatures * outFeatures = ${inFeatures * outFeatures} elements (${inFeatures} x ${outFeatures}), got ${q.codes.length}`,
    );
  }
  const rows = scaleRows(inFeatures, q.groupsize);
  if (q.scales.length !== rows * outFeatures) {
    throw new RangeError(
      `${argName}.scales must have ${rows} x ${outFeatures} = ${rows * outFeatures} elements for groupsize ${q.groupsize}, got ${q.scales.length}`,
    );
  }
  for (let i = 0; i < q.codes.length; i++) {
    if (q.codes[i] > 3) {
      throw new RangeError(`${argName}.codes must be in 0..3; codes[${i}] = ${q.codes[i]}`);
    }
  }
}

/** `(out, in)` fp32 weights `(code - 1) * scale` (exact: every fp16 scale times -1..2 fits fp32). */
export function dequantizeNatural(
  q: QuantizedWeights,
  inFeatures: number,
  outFeatures: number,
): Float32Array {
  const table = f16DecodeTable();
  const out = new Float32Array(outFeatures * inFeatures);
  const perColumn = q.groupsize === -1;
  for (let i = 0; i < inFeatures; i++) {
    const scaleRow = perColumn ? 0 : Math.floor(i / GROUP) * outFeatures;
    const codeRow = i * outFeatures;
    for (let o = 0; o < outFeatures; o++) {
      out[o * inFeatures + i] = (q.codes[codeRow + o] - 1) * table[q.scales[scaleRow + o]];
    }
  }
  return out;
}

/**
 * The CPU backend's form of the same weights: levels `(out, in)` (code - 1) and scale values
 * `(out, groups)`, with one group per 128 inputs or (groupsize -1) one per output; a quarter of the
 * memory of {@link dequantizeNatural}'s fp32 weights and, weight for weight, the same values.
 */
export function levelsNatural(
  q: QuantizedWeights,
  inFeatures: number,
  outFeatures: number,
): { levels: Int8Array; scales: Float32Array; groupLength: number } {
  const table = f16DecodeTable();
  const perColumn = q.groupsize === -1;
  const groupLength = perColumn ? inFeatures : GROUP;
  const groups = Math.ceil(inFeatures / groupLength);
  const levels = new Int8Array(outFeatures * inFeatures);
  for (let i = 0; i < inFeatures; i++) {
    const codeRow = i * outFeatures;
    for (let o = 0; o < outFeatures; o++) levels[o * inFeatures + i] = q.codes[codeRow + o] - 1;
  }
  const scales = new Float32Array(outFeatures * groups);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < outFeatures; o++) scales[o * groups + g] = table[q.scales[g * outFeatures + o]];
  }
  return { levels, scales, groupLength };
}

/** Natural codes/scales in the kernel's padded shapes. */
export interface PaddedWeights {
  /** `(k, n)` codes, 1 (weight 0) in the padding. */
  codes: Uint8Array;
  /** `(k / g, n)` fp16 bits, natural order. */
  scales: Uint16Array;
  k: number;
  n: number;
  groupsize: 128 | -1;
  /** Input column that must hold 1.0 (the folded bias row), or -1 without a bias. */
  onesColumn: number;
}

/** Pads natural weights to the kernel's shapes and folds in an fp16 bias (see the module comment). */
export function padForKernel(
  q: QuantizedWeights,
  inFeatures: number,
  outFeatures: number,
  biasBits: Uint16Array | undefined,
): PaddedWeights {
  const kData = roundUp(inFeatures, K_ALIGN);
  const k = kData + (biasBits === undefined ? 0 : GROUP);
  const n = roundUp(outFeatures, N_ALIGN);
  const groupsize: 128 | -1 = biasBits === undefined ? (q.groupsize as 128 | -1) : GROUP;
  const codes = new Uint8Array(k * n).fill(CODE_ZERO);
  for (let i = 0; i < inFeatures; i++)
    codes.set(q.codes.subarray(i * outFeatures, (i + 1) * outFeatures), i * n);
  const scales = new Uint16Array((groupsize === -1 ? 1 : k / GROUP) * n);
  if (groupsize === -1 || q.groupsize === GROUP) {
    const rows = scaleRows(inFeatures, q.groupsize);
    for (let r = 0; r < rows; r++)
      scales.set(q.scales.subarray(r * outFeatures, (r + 1) * outFeatures), r * n);
  } else {
    // Per-column scales repeated for every data group, so that a bias group can follow.
    const row = q.scales.subarray(0, outFeatures);
    for (let r = 0; r < kData / GROUP; r++) scales.set(row, r * n);
  }
  if (biasBits !== undefined) {
    codes.fill(CODE_PLUS_ONE, kData * n, kData * n + outFeatures);
    scales.set(biasBits, (kData / GROUP) * n);
  }
  return { codes, scales, k, n, groupsize, onesColumn: biasBits === undefined ? -1 : kData };
}

/** Packed (reference layout) weights as the kernel and TriRun checkpoints hold them. */
export interface PackedWeights {
  /** `(k / 16, n)` int32. */
  B: Int32Array;
  /** `(k / g, n)` fp16 bits, permuted. */
  s: Uint16Array;
  k: number;
  n: number;
  groupsize: 128 | -1;
}

export function packPadded(p: PaddedWeights): PackedWeights {
  return {
    B: packWeights(p.codes, p.k, p.n),
    s: packScales(p.scales, p.k, p.n, p.groupsize),
    k: p.k,
    n: p.n,
    groupsize: p.groupsize,
  };
}

/** Checks packed weights for an `(inFeatures -> outFeatures)` layer; returns them with groupsize 128 | -1. */
export function checkPacked(
  p: Omit<PackedWeights, "groupsize"> & { groupsize: number },
  inFeatures: number,
  outFeatures: number,
  argName: string,
): PackedWeights {
  if (typeof p !== "object" || p === null) throw new TypeError(`${argName} must be an object`);
  checkFeatures(p.k, `${argName}.k`);
  checkFeatures(p.n, `${argName}.n`);
  const groupsize = packedGroupsize(p.groupsize, p.k);
  checkGroupsize(groupsize, `${argName}.groupsize`);
  if (p.k % K_ALIGN !== 0) throw new RangeError(`${argName}.k must be a multiple of ${K_ALIGN}, got ${p.k}`);
  if (p.n % N_ALIGN !== 0) throw new RangeError(`${argName}.n must be a multiple of ${N_ALIGN}, got ${p.n}`);
  if (inFeatures > p.k) throw new RangeError(`inFeatures (${inFeatures}) must be <= ${argName}.k (${p.k})`);
  if (outFeatures > p.n)
    throw new RangeError(`outFeatures (${outFeatures}) must be <= ${argName}.n (${p.n})`);
  if (!(p.B instanceof Int32Array)) throw new TypeError(`${argName}.B must be an Int32Array`);
  if (!(p.s instanceof Uint16Array)) throw new TypeError(`${argName}.s must be a Uint16Array of fp16 bits`);
  if (p.B.length !== (p.k / 16) * p.n) {
    throw new RangeError(
      `${argName}.B must have (k / 16) * n = ${(p.k / 16) * p.n} elements, got ${p.B.length}`,
    );
  }
  const sRows = groupsize === GROUP ? p.k / GROUP : 1;
  if (p.s.length !== sRows * p.n) {
    throw new RangeError(
      `${argName}.s must have ${sRows} x ${p.n} = ${sRows * p.n} elements, got ${p.s.length}`,
    );
  }
  return { B: p.B, s: p.s, k: p.k, n: p.n, groupsize };
}

/** Normalises a packed groupsize (`k` also means one group per column) to 128 | -1. */
export function packedGroupsize(groupsize: number, k: number): number {
  return groupsize === GROUP ? GROUP : groupsize === -1 || groupsize === k ? -1 : groupsize;
}

/** Unpacks kernel-shaped weights and strips the padding back to `(inFeatures, outFeatures)`. */
export function unpackToNatural(p: PackedWeights, inFeatures: number, outFeatures: number): QuantizedWeights {
  const codesFull = unpackWeights(p.B, p.k, p.n);
  const scalesFull = unpackScales(p.s, p.k, p.n, p.groupsize);
  const codes = new Uint8Array(inFeatures * outFeatures);
  for (let i = 0; i < inFeatures; i++) {
    codes.set(codesFull.subarray(i * p.n, i * p.n + outFeatures), i * outFeatures);
  }
  const rows = scaleRows(inFeatures, p.groupsize);
  const scales = new Uint16Array(rows * outFeatures);
  for (let r = 0; r < rows; r++)
    scales.set(scalesFull.subarray(r * p.n, r * p.n + outFeatures), r * outFeatures);
  return { codes, scales, groupsize: p.groupsize };
}

const ROUND_MAGIC = 6755399441055744;

/**
 * The reference `pack(linear, scales)`: codes `clamp(round(W / s) + 1, 0, 3)` from `(out, in)`
 * weights that lie on the grid of the given natural scales (round half to even, as torch.round).
 */
export function codesFromScales(
  weight: Float32Array,
  inFeatures: number,
  outFeatures: number,
  scales: Uint16Array,
  groupsize: 128 | -1,
): Uint8Array {
  const table = f16DecodeTable();
  const codes = new Uint8Array(inFeatures * outFeatures);
  for (let i = 0; i < inFeatures; i++) {
    const scaleRow = groupsize === -1 ? 0 : Math.floor(i / GROUP) * outFeatures;
    for (let o = 0; o < outFeatures; o++) {
      const s = table[scales[scaleRow + o]];
      let x = s === 0 ? 0 : weight[o * inFeatures + i] / s;
      if (Number.isNaN(x)) {
        throw new RangeError(
          `weight[${o}, ${i}] / scale is NaN (weight ${weight[o * inFeatures + i]}, scale ${s})`,
        );
      }
      x = x < -1 ? -1 : x > 2 ? 2 : x;
      codes[i * outFeatures + o] = x + ROUND_MAGIC - ROUND_MAGIC + 1;
    }
  }
  return codes;
}
