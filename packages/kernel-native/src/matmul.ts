// The matrix multiplications: the TriRun FP16 x INT2 kernel and the cuBLAS
// baselines. Arguments are validated (validate.ts) before anything launches.
import { deviceInfo } from "./device.js";
import { type NativeBuffer, requireNative } from "./native.js";
import { nativeStream, type Stream } from "./stream.js";
import { type DeviceTensor, nativeTensor } from "./tensor.js";
import {
  type TrirunKnobs,
  validateGemmF16Args,
  validateGemmF32Args,
  validateTrirunArgs,
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
   * m = 33 when no tile is requested, and from m = 17 on layers at most 4096 wide) or the general
   * one (mma.sync, every GPU).
   */
  kernel: "small" | "general" | "hopper";
  /**
   * Blocks of `blockRows` rows of A per tile: 1, 2 or 4 of 8 rows (small), 1..4 of 16 rows (general),
   * 2..16 of 16 rows (hopper: slices of 32, 64, 128, 144..224 in steps of 16, or 256 rows). With several
   * launches (a Hopper call's split-off last rows) it describes the first.
   */
  mBlocks: number;
  blockRows: number;
  /** Copy pipeline depth (cp.async stages, or the TMA kernels' mbarrier ring). */
  stages: number;
  /** Thread blocks launched (on sm_90 a small-batch launch may use a cluster of blocks per column: TRIRUN_SMALL_CLUSTERS). */
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
