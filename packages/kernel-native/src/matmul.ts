// The matrix multiplications: the TriRun FP16 x INT2 kernel and the cuBLAS
// baselines. Arguments are validated (validate.ts) before anything launches.
import { currentDevice, deviceInfo } from "./device.js";
import { type NativeBuffer, requireNative } from "./native.js";
import { nativeStream, type Stream } from "./stream.js";
import { type DeviceTensor, nativeTensor } from "./tensor.js";
import {
  type TrirunKnobs,
  validateGemmF16Args,
  validateGemmF32Args,
  validateTrirunArgs,
  validateTrirunNormArgs,
} from "./validate.js";

export interface TrirunMatmulOptions extends TrirunKnobs {
  /** 128 or k (-1 also means k); default: inferred from s.shape. */
  groupsize?: number;
  stream?: Stream;
  /** Tile shape knobs (see TRIRUN_TILES); automatic by default. */
  threadK?: number;
  threadN?: number;
  /** Thread blocks (one per SM at most); all SMs by default. */
  sms?: number;
  /** Batch slices (64 rows; 128 in the Hopper kernel above 64 rows) per launch (1..16); 16 by default. */
  maxParallel?: number;
}

/** The configuration a trirunMatmul call ran with (for benchmarks and reports). */
export interface TrirunConfig {
  threadK: number;
  threadN: number;
  /**
   * Which kernel ran: the small-batch one (m <= 32), the Hopper one (wgmma, sm_90, chosen from
   * m = 33 when no tile is requested) or the general one (mma.sync, every GPU).
   */
  kernel: "small" | "general" | "hopper";
  /**
   * Blocks of `blockRows` rows of A per tile: 1, 2 or 4 of 8 rows (small), 1..4 of 16 rows (general),
   * 4, 8 or 16 of 16 rows (hopper).
   */
  mBlocks: number;
  blockRows: number;
  /** Copy pipeline depth (cp.async stages, or the TMA kernels' mbarrier ring). */
  stages: number;
  sms: number;
  maxParallel: number;
  threads: number;
  groupsize: number;
  workspaceBytes: number;
}

function checkNoOverlap(
  out: { buffer: NativeBuffer; byteOffset: number },
  outBytes: number,
  outName: string,
  inputs: readonly [{ buffer: NativeBuffer; byteOffset: number }, number, string][],
): void {
  for (const [input, bytes, name] of inputs) {
    if (input.buffer !== out.buffer) continue;
    const disjoint =
      input.byteOffset + bytes <= out.byteOffset || out.byteOffset + outBytes <= input.byteOffset;
    if (!disjoint) throw new RangeError(`${outName}: must not share memory with ${name}`);
  }
}

/**
 * C (m, n) f16 = A (m, k) f16 @ dequant(B (k/16, n) i32, s (k/g, n) f16), fp32
 * accumulation, asynchronous on opts.stream. B and s are in the reference TriRun
 * layout (@trirun/packing). Throws TypeError/RangeError before launching on bad
 * arguments, CudaError when CUDA fails. Returns the configuration used.
 */
export function trirunMatmul(
  A: DeviceTensor,
  B: DeviceTensor,
  s: DeviceTensor,
  C: DeviceTensor,
  opts: TrirunMatmulOptions = {},
): TrirunConfig {
  const native = requireNative();
  const a = nativeTensor(A, "A");
  const b = nativeTensor(B, "B");
  const sc = nativeTensor(s, "s");
  const c = nativeTensor(C, "C");
  const p = validateTrirunArgs(
    { A, B, s, C },
    opts,
    opts.sms === undefined ? undefined : deviceInfo(A.device).smCount,
  );
  checkNoOverlap(c, C.byteLength, "C", [
    [a, A.byteLength, "A"],
    [b, B.byteLength, "B"],
    [sc, s.byteLength, "s"],
  ]);
  const config = native.trirunMatmul(
    a.buffer,
    a.byteOffset,
    b.buffer,
    b.byteOffset,
    sc.buffer,
    sc.byteOffset,
    c.buffer,
    c.byteOffset,
    p.m,
    p.n,
    p.k,
    p.groupsize === p.k ? -1 : p.groupsize,
    nativeStream(opts.stream, "opts.stream"),
    p.threadK,
    p.threadN,
    p.sms,
    p.maxParallel,
  );
  const { variant, ...rest } = config;
  const small = variant === 1;
  return {
    ...rest,
    kernel: small ? "small" : variant === 2 ? "hopper" : "general",
    mBlocks: config.mBlocks,
    blockRows: small ? 8 : 16,
    groupsize: p.groupsize,
  };
}

export interface TrirunMatmulNormOptions {
  /** The norm's weights, (k) f32 or f16. */
  weight: DeviceTensor;
  /** Added inside the square root; default 1e-5. */
  eps?: number;
  /** Added to x first (f16, x's shape); without it the rows of x are normalised as they are. */
  delta?: DeviceTensor;
  /** Receives x + delta (f16, x's shape; needs delta; must not share memory with x, delta or C). */
  residualOut?: DeviceTensor;
  /** 128 or k (-1 also means k); default: inferred from s.shape. */
  groupsize?: number;
  stream?: Stream;
}

/**
 * Whether trirunMatmulNorm runs for m rows of width k on `device` (default: the current device): the
 * TMA-fed small-batch kernel (compute capability 9.0 with the sm_90a build), m <= 4, k <= 8192.
 */
export function trirunMatmulNormSupported(m: number, k: number, device?: number): boolean {
  const native = requireNative();
  for (const [value, name] of [
    [m, "m"],
    [k, "k"],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
      throw new RangeError(`${name}: expected an integer 1..2^31-1, got ${value}`);
    }
  }
  return native.trirunMatmulNormSupported(m, k, device ?? currentDevice());
}

/**
 * C (m, n) f16 = rmsnorm(x + delta) @ dequant(B, s) in one launch, and residualOut = x + delta: the
 * same values as `ops.addRmsNorm(x, delta, weight, h)` (x + delta rounded to fp16, fp32 sums) followed
 * by `trirunMatmul(h, B, s, C)`, without the norm's own kernel (every block of the matmul normalises
 * the rows itself). Only where trirunMatmulNormSupported(m, k) says so; elsewhere a RangeError (run
 * the two steps). Decoding inside a CUDA graph is what it is for: there each kernel costs its chain of
 * memory round trips, not only its arithmetic.
 */
export function trirunMatmulNorm(
  x: DeviceTensor,
  B: DeviceTensor,
  s: DeviceTensor,
  C: DeviceTensor,
  opts: TrirunMatmulNormOptions,
): TrirunConfig {
  const native = requireNative();
  if (opts === null || typeof opts !== "object")
    throw new TypeError("opts: expected { weight, eps?, delta? }");
  const xo = nativeTensor(x, "x");
  const b = nativeTensor(B, "B");
  const sc = nativeTensor(s, "s");
  const c = nativeTensor(C, "C");
  const w = nativeTensor(opts.weight, "opts.weight");
  const d = opts.delta === undefined ? undefined : nativeTensor(opts.delta, "opts.delta");
  const r = opts.residualOut === undefined ? undefined : nativeTensor(opts.residualOut, "opts.residualOut");
  const p = validateTrirunArgs({ A: x, B, s, C }, { groupsize: opts.groupsize });
  const norm = validateTrirunNormArgs(
    { x, weight: opts.weight, delta: opts.delta, residualOut: opts.residualOut },
    { eps: opts.eps },
  );
  type Operand = [{ buffer: NativeBuffer; byteOffset: number }, number, string];
  const inputs: Operand[] = [
    [xo, x.byteLength, "x"],
    [b, B.byteLength, "B"],
    [sc, s.byteLength, "s"],
    [w, opts.weight.byteLength, "opts.weight"],
  ];
  if (d !== undefined && opts.delta !== undefined) inputs.push([d, opts.delta.byteLength, "opts.delta"]);
  // Other blocks may still read x and delta while one stores x + delta.
  if (r !== undefined && opts.residualOut !== undefined) {
    checkNoOverlap(r, opts.residualOut.byteLength, "opts.residualOut", inputs);
    checkNoOverlap(c, C.byteLength, "C", [...inputs, [r, opts.residualOut.byteLength, "opts.residualOut"]]);
  } else {
    checkNoOverlap(c, C.byteLength, "C", inputs);
  }
  const config = native.trirunMatmulNorm(
    xo.buffer,
    xo.byteOffset,
    d?.buffer ?? null,
    d?.byteOffset ?? 0,
    w.buffer,
    w.byteOffset,
    norm.weightF32,
    norm.eps,
    r?.buffer ?? null,
    r?.byteOffset ?? 0,
    b.buffer,
    b.byteOffset,
    sc.buffer,
    sc.byteOffset,
    c.buffer,
    c.byteOffset,
    p.m,
    p.n,
    p.k,
    p.groupsize === p.k ? -1 : p.groupsize,
    nativeStream(opts.stream, "opts.stream"),
  );
  const { variant, ...rest } = config;
  return {
    ...rest,
    kernel: variant === 1 ? "small" : variant === 2 ? "hopper" : "general",
    blockRows: 8,
    groupsize: p.groupsize,
  };
}

/**
 * cuBLAS FP16 GEMM with fp32 accumulation: C (m, n) = A (m, k) @ W, W (k, n)
 * row-major, or (n, k) (a PyTorch Linear.weight) with transposeW. C may be f16
 * or f32 (fp32 output for reference computations).
 */
export function gemmF16(
  A: DeviceTensor,
  W: DeviceTensor,
  C: DeviceTensor,
  opts: { transposeW?: boolean; stream?: Stream } = {},
): void {
  const native = requireNative();
  const a = nativeTensor(A, "A");
  const w = nativeTensor(W, "W");
  const c = nativeTensor(C, "C");
  const p = validateGemmF16Args({ A, W, C }, opts);
  checkNoOverlap(c, C.byteLength, "C", [
    [a, A.byteLength, "A"],
    [w, W.byteLength, "W"],
  ]);
  native.gemmF16(
    a.buffer,
    a.byteOffset,
    w.buffer,
    w.byteOffset,
    c.buffer,
    c.byteOffset,
    p.m,
    p.n,
    p.k,
    p.transposeW,
    p.outputF32,
    nativeStream(opts.stream, "opts.stream"),
  );
}

/** cuBLAS FP32 GEMM, row-major: C (m, n) = alpha * op(A) @ op(B) + beta * C. */
export function gemmF32(
  A: DeviceTensor,
  B: DeviceTensor,
  C: DeviceTensor,
  opts: { transposeA?: boolean; transposeB?: boolean; alpha?: number; beta?: number; stream?: Stream } = {},
): void {
  const native = requireNative();
  const a = nativeTensor(A, "A");
  const b = nativeTensor(B, "B");
  const c = nativeTensor(C, "C");
  const p = validateGemmF32Args({ A, B, C }, opts);
  checkNoOverlap(c, C.byteLength, "C", [
    [a, A.byteLength, "A"],
    [b, B.byteLength, "B"],
  ]);
  native.gemmF32(
    a.buffer,
    a.byteOffset,
    b.buffer,
    b.byteOffset,
    c.buffer,
    c.byteOffset,
    p.m,
    p.n,
    p.k,
    p.transposeA,
    p.transposeB,
    p.alpha,
    p.beta,
    nativeStream(opts.stream, "opts.stream"),
  );
}

/** Path of the cuBLAS library gemmF16/gemmF32 use; throws (code ERR_CUBLAS_UNAVAILABLE) when it cannot be opened. */
export function cublasLibraryPath(): string {
  return requireNative().cublasInfo().path;
}
