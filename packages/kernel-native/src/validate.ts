// Argument validation for the kernels, as pure functions over descriptors
// (dtype, shape, byte offset, device), so that every rule is testable without
// a GPU. Each failure names the argument and the expected value.
import {
  checkAligned,
  checkDTypeOf,
  checkPositiveDims,
  checkSameDevice,
  checkTensor,
} from "./descriptor-checks.js";
import type { DType } from "./dtype.js";
import { formatShape } from "./shape.js";

/** What validation needs to know about a tensor argument. DeviceTensor satisfies it. */
export interface TensorDescriptor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Byte offset of element 0 in its allocation (allocations are 256-byte aligned). Default 0. */
  readonly byteOffset?: number;
  readonly byteLength?: number;
  readonly device?: number;
  readonly disposed?: boolean;
}

/**
 * Tile shapes (threadK x threadN) the kernel can run (src/kernel/trirun.cu):
 * the small-batch tiles only up to `maxM` rows (32, or 16 for 128x512; they
 * also take a k that is not a multiple of threadK), the general ones for any
 * m (threadK must divide k). threadN must divide n in every case. Requesting
 * one pins that kernel; without a request, m >= 33 (and 17..32 where n <= 4096
 * or 3072 <= k <= 4096) runs the Hopper kernel on sm_90 (its 128x128 tile is not
 * requestable) and the general one elsewhere.
 */
export interface TrirunTile {
  readonly threadK: number;
  readonly threadN: number;
  readonly kernel: "small" | "general";
  /** Largest m the tile runs (small-batch tiles only). */
  readonly maxM?: number;
}

export const TRIRUN_TILES: readonly TrirunTile[] = Object.freeze([
  Object.freeze({ threadK: 128, threadN: 512, kernel: "small" as const, maxM: 16 }),
  Object.freeze({ threadK: 256, threadN: 256, kernel: "small" as const, maxM: 32 }),
  Object.freeze({ threadK: 512, threadN: 128, kernel: "small" as const, maxM: 32 }),
  Object.freeze({ threadK: 128, threadN: 128, kernel: "general" as const }),
  Object.freeze({ threadK: 64, threadN: 256, kernel: "general" as const }),
]);

/** Largest m for which the small-batch kernel runs (with its 256x256 and 512x128 tiles). */
export const TRIRUN_SMALL_MAX_M = 32;

/** Upper bound of opts.maxParallel (batch slices per launch). */
export const TRIRUN_MAX_PARALLEL = 16;

export interface TrirunKnobs {
  /** 128 or k (-1 also means k); inferred from s.shape when omitted. */
  groupsize?: number;
  threadK?: number;
  threadN?: number;
  sms?: number;
  maxParallel?: number;
}

export interface TrirunProblem {
  m: number;
  n: number;
  k: number;
  /** The group size along k (128, or k for one group). */
  groupsize: number;
  /** Values for the native call: 0 means automatic. */
  threadK: number;
  threadN: number;
  sms: number;
  maxParallel: number;
}

function check2d(t: TensorDescriptor, name: string, layout: string): [number, number] {
  if (t.shape.length !== 2) {
    throw new RangeError(`${name}: expected a 2-D tensor ${layout}, got shape ${formatShape(t.shape)}`);
  }
  return [t.shape[0], t.shape[1]];
}

function expectShape(t: TensorDescriptor, name: string, expected: readonly number[], layout: string): void {
  if (t.shape[0] !== expected[0] || t.shape[1] !== expected[1]) {
    throw new RangeError(
      `${name}: expected shape ${layout} = ${formatShape(expected)}, got ${formatShape(t.shape)}`,
    );
  }
}

function optionalInteger(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") throw new TypeError(`${name}: expected a number, got ${typeof value}`);
  if (!Number.isInteger(value)) throw new RangeError(`${name}: expected an integer, got ${value}`);
  return value;
}

/**
 * Validates trirunMatmul(A, B, s, C, opts): A f16 (m, k), B i32 (k/16, n),
 * s f16 (k/g, n) with g in {128, k}, C f16 (m, n); k % 128 == 0, n % 256 == 0;
 * 16-byte aligned data; one device; valid tile knobs. `smCount` bounds opts.sms.
 */
export function validateTrirunArgs(
  args: { A: TensorDescriptor; B: TensorDescriptor; s: TensorDescriptor; C: TensorDescriptor },
  options: TrirunKnobs | null = {},
  smCount?: number,
): TrirunProblem {
  const opts = options ?? {};
  const A = checkTensor(args.A, "A");
  const B = checkTensor(args.B, "B");
  const s = checkTensor(args.s, "s");
  const C = checkTensor(args.C, "C");
  checkDTypeOf(A, "A", ["f16"]);
  checkDTypeOf(B, "B", ["i32"]);
  checkDTypeOf(s, "s", ["f16"]);
  checkDTypeOf(C, "C", ["f16"]);
  const [m, k] = check2d(A, "A", "(m, k)");
  const [bRows, n] = check2d(B, "B", "(k/16, n)");
  check2d(s, "s", "(k/groupsize, n)");
  check2d(C, "C", "(m, n)");
  checkPositiveDims({ "m (A.shape[0])": m, "k (A.shape[1])": k, "n (B.shape[1])": n });
  if (k % 128 !== 0) throw new RangeError(`k: A.shape[1] = ${k} must be a multiple of 128`);
  if (n % 256 !== 0) throw new RangeError(`n: B.shape[1] = ${n} must be a multiple of 256`);
  if (bRows * 16 !== k) {
    throw new RangeError(
      `B: expected shape (k/16, n) = ${formatShape([k / 16, n])} for k = ${k}, got ${formatShape(B.shape)}`,
    );
  }
  expectShape(C, "C", [m, n], "(m, n)");

  let groupsize: number;
  const requested = optionalInteger(opts.groupsize, "opts.groupsize");
  if (requested !== undefined) {
    if (requested !== 128 && requested !== -1 && requested !== k) {
      throw new RangeError(`opts.groupsize: expected 128 or k (${k}) or -1, got ${requested}`);
    }
    groupsize = requested === -1 ? k : requested;
    expectShape(s, "s", [k / groupsize, n], `(k/groupsize, n) for groupsize ${groupsize}`);
  } else if (s.shape[1] === n && s.shape[0] === 1) {
    groupsize = k;
  } else if (s.shape[1] === n && s.shape[0] === k / 128) {
    groupsize = 128;
  } else {
    throw new RangeError(
      `s: expected shape (k/128, n) = ${formatShape([k / 128, n])} for groupsize 128 or (1, n) = ${formatShape([1, n])} for groupsize k, got ${formatShape(s.shape)}`,
    );
  }

  checkAligned(A, "A", 16);
  checkAligned(B, "B", 16);
  checkAligned(s, "s", 16);
  checkAligned(C, "C", 16);
  checkSameDevice([
    [A, "A"],
    [B, "B"],
    [s, "s"],
    [C, "C"],
  ]);

  const threadK = optionalInteger(opts.threadK, "opts.threadK");
  const threadN = optionalInteger(opts.threadN, "opts.threadN");
  if ((threadK === undefined) !== (threadN === undefined)) {
    throw new RangeError("opts.threadK, opts.threadN: give both (a tile shape) or neither (automatic)");
  }
  if (threadK !== undefined && threadN !== undefined) {
    const tile = TRIRUN_TILES.find((t) => t.threadK === threadK && t.threadN === threadN);
    if (tile === undefined) {
      const list = (kernel: string) =>
        TRIRUN_TILES.filter((t) => t.kernel === kernel)
          .map((t) =>
            t.maxM === undefined ? `${t.threadK}x${t.threadN}` : `${t.threadK}x${t.threadN} (m <= ${t.maxM})`,
          )
          .join(", ");
      throw new RangeError(
        `opts.threadK x opts.threadN: expected one of ${list("general")} (any m) or ${list("small")}, got ${threadK}x${threadN}`,
      );
    }
    if (tile.maxM !== undefined && m > tile.maxM) {
      throw new RangeError(
        `opts.threadK x opts.threadN: the ${threadK}x${threadN} tile is for m <= ${tile.maxM}, got m = ${m}`,
      );
    }
    if (tile.kernel === "general" && k % threadK !== 0) {
      throw new RangeError(`opts.threadK: ${threadK} does not divide k = ${k}`);
    }
    if (n % threadN !== 0) throw new RangeError(`opts.threadN: ${threadN} does not divide n = ${n}`);
  }
  const sms = optionalInteger(opts.sms, "opts.sms");
  if (sms !== undefined && (sms < 1 || (smCount !== undefined && sms > smCount))) {
    throw new RangeError(`opts.sms: expected 1..${smCount ?? "the SM count"}, got ${sms}`);
  }
  const maxParallel = optionalInteger(opts.maxParallel, "opts.maxParallel");
  if (maxParallel !== undefined && (maxParallel < 1 || maxParallel > TRIRUN_MAX_PARALLEL)) {
    throw new RangeError(`opts.maxParallel: expected 1..${TRIRUN_MAX_PARALLEL}, got ${maxParallel}`);
  }
  return {
    m,
    n,
    k,
    groupsize,
    threadK: threadK ?? 0,
    threadN: threadN ?? 0,
    sms: sms ?? 0,
    maxParallel: maxParallel ?? 0,
  };
}

/**
 * Validates gemmF16(A, W, C): A f16 (m, k); W f16 (k, n), or (n, k) with
 * transposeW; C f16 or f32 (m, n).
 */
export function validateGemmF16Args(
  args: { A: TensorDescriptor; W: TensorDescriptor; C: TensorDescriptor },
  options: { transposeW?: boolean } | null = {},
): { m: number; n: number; k: number; transposeW: boolean; outputF32: boolean } {
  const opts = options ?? {};
  const A = checkTensor(args.A, "A");
  const W = checkTensor(args.W, "W");
  const C = checkTensor(args.C, "C");
  const transposeW = opts.transposeW ?? false;
  if (typeof transposeW !== "boolean") throw new TypeError("opts.transposeW: expected a boolean");
  checkDTypeOf(A, "A", ["f16"]);
  checkDTypeOf(W, "W", ["f16"]);
  checkDTypeOf(C, "C", ["f16", "f32"]);
  const [m, k] = check2d(A, "A", "(m, k)");
  const [w0, w1] = check2d(W, "W", transposeW ? "(n, k)" : "(k, n)");
  const n = transposeW ? w0 : w1;
  check2d(C, "C", "(m, n)");
  checkPositiveDims({ "m (A.shape[0])": m, "k (A.shape[1])": k, n });
  if ((transposeW ? w1 : w0) !== k) {
    throw new RangeError(
      `W: expected shape ${transposeW ? "(n, k)" : "(k, n)"} with k = ${k} (A.shape[1]), got ${formatShape(W.shape)}`,
    );
  }
  expectShape(C, "C", [m, n], "(m, n)");
  checkSameDevice([
    [A, "A"],
    [W, "W"],
    [C, "C"],
  ]);
  return { m, n, k, transposeW, outputF32: C.dtype === "f32" };
}

/**
 * Validates gemmF32(A, B, C): f32 throughout, op(A) (m, k), op(B) (k, n),
 * C (m, n); alpha and beta finite.
 */
export function validateGemmF32Args(
  args: { A: TensorDescriptor; B: TensorDescriptor; C: TensorDescriptor },
  options: { transposeA?: boolean; transposeB?: boolean; alpha?: number; beta?: number } | null = {},
): {
  m: number;
  n: number;
  k: number;
  transposeA: boolean;
  transposeB: boolean;
  alpha: number;
  beta: number;
} {
  const opts = options ?? {};
  const A = checkTensor(args.A, "A");
  const B = checkTensor(args.B, "B");
  const C = checkTensor(args.C, "C");
  const transposeA = opts.transposeA ?? false;
  const transposeB = opts.transposeB ?? false;
  const alpha = opts.alpha ?? 1;
  const beta = opts.beta ?? 0;
  if (typeof transposeA !== "boolean") throw new TypeError("opts.transposeA: expected a boolean");
  if (typeof transposeB !== "boolean") throw new TypeError("opts.transposeB: expected a boolean");
  for (const [name, value] of [
    ["opts.alpha", alpha],
    ["opts.beta", beta],
  ] as const) {
    if (typeof value !== "number") throw new TypeError(`${name}: expected a number`);
    if (!Number.isFinite(value)) throw new RangeError(`${name}: expected a finite number, got ${value}`);
  }
  checkDTypeOf(A, "A", ["f32"]);
  checkDTypeOf(B, "B", ["f32"]);
  checkDTypeOf(C, "C", ["f32"]);
  const [a0, a1] = check2d(A, "A", transposeA ? "(k, m)" : "(m, k)");
  const [b0, b1] = check2d(B, "B", transposeB ? "(n, k)" : "(k, n)");
  check2d(C, "C", "(m, n)");
  const m = transposeA ? a1 : a0;
  const k = transposeA ? a0 : a1;
  const n = transposeB ? b0 : b1;
  checkPositiveDims({ m, k, n });
  if ((transposeB ? b1 : b0) !== k) {
    throw new RangeError(
      `B: expected shape ${transposeB ? "(n, k)" : "(k, n)"} with k = ${k}, got ${formatShape(B.shape)}`,
    );
  }
  expectShape(C, "C", [m, n], "(m, n)");
  checkSameDevice([
    [A, "A"],
    [B, "B"],
    [C, "C"],
  ]);
  return { m, n, k, transposeA, transposeB, alpha, beta };
}
