import { allocate, type Executor } from "../executor.js";
import type { Backend, GramAccumulator, SweepState } from "./types.js";

/**
 * The part of `@trirun/kernel-native` this backend uses, typed here so that this package builds and
 * type-checks without it (it is an optional peer dependency, loaded only through dynamic import).
 */
export interface DeviceTensorLike {
  readonly shape: readonly number[];
  upload(data: Float32Array): void;
  download(): ArrayLike<number>;
  view(shape: readonly number[], elementOffset?: number): DeviceTensorLike;
  dispose(): void;
}

export interface KernelNativeLike {
  available(): boolean;
  unavailableReason(): string | undefined;
  DeviceTensor: {
    empty(dtype: "f32", shape: readonly number[]): DeviceTensorLike;
    fromArray(data: Float32Array, shape: readonly number[], dtype?: "f32"): DeviceTensorLike;
  };
  gemmF32(
    a: DeviceTensorLike,
    b: DeviceTensorLike,
    c: DeviceTensorLike,
    opts?: { transposeA?: boolean; transposeB?: boolean; alpha?: number; beta?: number },
  ): void;
}

/** The optional peer that provides the CUDA backend. */
const KERNEL_NATIVE = "@trirun/kernel-native";

/** Why the CUDA backend could not be loaded, or undefined when it can. */
export interface KernelNativeProbe {
  native: KernelNativeLike | undefined;
  reason: string | undefined;
}

let probe: Promise<KernelNativeProbe> | undefined;

/** Loads `@trirun/kernel-native` once; never throws. */
export function probeKernelNative(): Promise<KernelNativeProbe> {
  // A literal specifier, so that bundlers (the GPU test bundle, apps) can resolve it; the package is
  // an optional peer, and a missing one lands in the rejection handler below.
  probe ??= import("@trirun/kernel-native").then(
    (mod: unknown): KernelNativeProbe => {
      // ESM namespace, or a CommonJS module seen through `default`.
      const ns = mod as Partial<KernelNativeLike> & { default?: Partial<KernelNativeLike> };
      const loaded = typeof ns.available === "function" ? ns : (ns.default ?? {});
      if (typeof loaded.available !== "function" || typeof loaded.gemmF32 !== "function") {
        return { native: undefined, reason: `${KERNEL_NATIVE} does not export available() and gemmF32()` };
      }
      if (!loaded.available()) {
        return { native: undefined, reason: loaded.unavailableReason?.() ?? "no CUDA device" };
      }
      return { native: loaded as KernelNativeLike, reason: undefined };
    },
    (error: unknown) => ({
      native: undefined,
      reason: `${KERNEL_NATIVE} is not installed or failed to load: ${error instanceof Error ? error.message : String(error)}`,
    }),
  );
  return probe;
}

/** Hessian accumulation and block updates with cuBLAS SGEMM; tokens are summed on the device in fp32 */
export class CudaBackend implements Backend {
  readonly name = "cuda";
  constructor(
    private readonly native: KernelNativeLike,
    private readonly exec: Executor,
  ) {}

  createGramAccumulator(n: number): GramAccumulator {
    return new CudaGramAccumulator(this.native, n);
  }

  async createSweep(wt: Float32Array, n: number, out: number, u: Float64Array): Promise<SweepState> {
    return new CudaSweep(this.native, this.exec, wt, n, out, u);
  }
}

/** A copy in ordinary memory when `a` lives in a SharedArrayBuffer (host copies take plain buffers). */
function unshared(a: Float32Array): Float32Array {
  return typeof SharedArrayBuffer !== "undefined" && a.buffer instanceof SharedArrayBuffer ? a.slice() : a;
}

/** Tokens summed in fp32 on the device before the partial sum moves to the float64 host sum. */
const DEVICE_TOKENS_PER_FLUSH = 65536;

class CudaGramAccumulator implements GramAccumulator {
  private readonly host: Float64Array;
  private device: DeviceTensorLike | undefined;
  private deviceTokens = 0;

  constructor(
    private readonly native: KernelNativeLike,
    private readonly n: number,
  ) {
    this.host = new Float64Array(n * n);
  }

  async add(x: Float32Array, tokens: number): Promise<void> {
    const n = this.n;
    this.device ??= this.native.DeviceTensor.empty("f32", [n, n]);
    const batch = this.native.DeviceTensor.fromArray(unshared(x.subarray(0, tokens * n)), [tokens, n], "f32");
    try {
      // beta = 0 on the first batch after a flush: the device sum starts over.
      this.native.gemmF32(batch, batch, this.device, {
        transposeA: true,
        beta: this.deviceTokens === 0 ? 0 : 1,
      });
    } finally {
      batch.dispose();
    }
    this.deviceTokens += tokens;
    if (this.deviceTokens >= DEVICE_TOKENS_PER_FLUSH) this.flushDevice();
  }

  private flushDevice(): void {
    if (!this.device || this.deviceTokens === 0) return;
    const partial = this.device.download();
    const host = this.host;
    for (let i = 0; i < host.length; i++) host[i] += partial[i];
    this.deviceTokens = 0;
  }

  async flushInto(into: Float64Array): Promise<void> {
    this.flushDevice();
    const host = this.host;
    for (let i = 0; i < host.length; i++) into[i] += host[i];
    host.fill(0);
  }

  dispose(): void {
    this.device?.dispose();
    this.device = undefined;
  }
}

class CudaSweep implements SweepState {
  private readonly weight: DeviceTensorLike;
  private readonly factorBlock: DeviceTensorLike;
  private readonly errBlock: DeviceTensorLike;
  private disposed = false;

  constructor(
    private readonly native: KernelNativeLike,
    private readonly exec: Executor,
    wt: Float32Array,
    private readonly n: number,
    private readonly out: number,
    private readonly u: Float64Array,
  ) {
    this.weight = native.DeviceTensor.fromArray(unshared(wt), [n, out], "f32");
    // Scratch for the largest block (blockSize <= 1024); each block uses a view of its own shape.
    const maxBlock = Math.min(n, 1024);
    this.factorBlock = native.DeviceTensor.empty("f32", [maxBlock * n]);
    this.errBlock = native.DeviceTensor.empty("f32", [maxBlock * out]);
  }

  async readRows(r0: number, r1: number): Promise<Float32Array> {
    const rows = this.weight.view([r1 - r0, this.out], r0 * this.out).download();
    const host = allocate(Float32Array, (r1 - r0) * this.out, this.exec);
    host.set(rows);
    return host;
  }

  async rankUpdate(r0: number, r1: number, err: Float32Array): Promise<void> {
    const n = this.n;
    const out = this.out;
    const u = this.u;
    if (r1 >= n) return;
    const count = r1 - r0;
    if (count > Math.min(n, 1024)) throw new RangeError(`rankUpdate: a block of ${count} rows exceeds 1024`);
    const width = n - r1;
    const factor = new Float32Array(count * width);
    for (let t = 0; t < count; t++) {
      const src = (r0 + t) * n + r1;
      for (let j = 0; j < width; j++) factor[t * width + j] = u[src + j];
    }
    const a = this.factorBlock.view([count, width], 0);
    a.upload(factor);
    const b = this.errBlock.view([count, out], 0);
    b.upload(unshared(err.subarray(0, count * out)));
    const c = this.weight.view([width, out], r1 * out);
    this.native.gemmF32(a, b, c, { transposeA: true, alpha: -1, beta: 1 });
    // Retiring a view frees nothing; queued work keeps using the scratch memory.
    a.dispose();
    b.dispose();
    c.dispose();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.weight.dispose();
    this.factorBlock.dispose();
    this.errBlock.dispose();
  }
}
