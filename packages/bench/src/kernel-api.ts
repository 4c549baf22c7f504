/**
 * The part of `@trirun/kernel-native` the benchmark uses, as a structural type.
 *
 * The measuring code takes this interface instead of importing the addon, so that it
 * can be exercised on machines without a GPU (with a simulated device in the tests)
 * and so that loading the addon happens in one place, lazily, with a clear failure.
 */

export type BenchDType = "f16" | "f32" | "i32" | "u8" | "u16" | "i8" | "u32";
export type BenchHostArray = Uint16Array | Float32Array | Int32Array | Uint8Array | Int8Array | Uint32Array;

export interface BenchDeviceInfo {
  readonly index: number;
  readonly name: string;
  readonly computeCapability: string;
  readonly smCount: number;
  readonly l2Bytes: number;
  readonly memoryBytes: number;
  /** Theoretical DRAM bandwidth in bytes/s, where the kernel module reports it. */
  readonly peakMemoryBandwidth?: number;
  /** PCI bus id ("0000:19:00.0"), which names the same GPU to nvidia-smi whatever CUDA's order. */
  readonly pciBusId?: string;
}

export interface BenchStream {
  synchronize(): void;
  dispose(): void;
}

export interface BenchEvent {
  record(stream?: BenchStream): void;
  synchronize(): void;
  /** True when the event has completed (does not wait). */
  query(): boolean;
  /** Milliseconds from `start` to this event. */
  elapsedMs(start: BenchEvent): number;
  dispose(): void;
}

export interface BenchTensor {
  readonly dtype: BenchDType;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly byteLength: number;
  upload(data: BenchHostArray, stream?: BenchStream): void;
  copyFrom(src: BenchTensor, stream?: BenchStream): void;
  view(shape: readonly number[], elementOffset?: number): BenchTensor;
  dispose(): void;
}

/** The dispatcher's choice for one launch; printed and stored as returned. */
export type BenchTrirunConfig = object;

export interface BenchKernelApi {
  available(): boolean;
  unavailableReason(): string | undefined;
  devices(): readonly BenchDeviceInfo[];
  memoryInfo(): { freeBytes: number; totalBytes: number };
  synchronize(): void;
  readonly Stream: new () => BenchStream;
  readonly Event: new () => BenchEvent;
  readonly DeviceTensor: { empty(dtype: BenchDType, shape: readonly number[]): BenchTensor };
  trirunMatmul(
    A: BenchTensor,
    B: BenchTensor,
    s: BenchTensor,
    C: BenchTensor,
    opts?: { groupsize?: number; stream?: BenchStream },
  ): BenchTrirunConfig;
  gemmF16(
    A: BenchTensor,
    W: BenchTensor,
    C: BenchTensor,
    opts?: { transposeW?: boolean; stream?: BenchStream },
  ): void;
}

/** Result of trying to load the kernel: the API, or why there is none. */
export type KernelLoadResult =
  | { readonly ok: true; readonly api: BenchKernelApi }
  | { readonly ok: false; readonly reason: string };

const REQUIRED_FUNCTIONS = [
  "available",
  "unavailableReason",
  "devices",
  "memoryInfo",
  "synchronize",
  "trirunMatmul",
  "gemmF16",
] as const;

/** Checks that a loaded module has the members the benchmark calls. */
export function asBenchKernelApi(module: unknown): KernelLoadResult {
  if (typeof module !== "object" || module === null) {
    return { ok: false, reason: "@trirun/kernel-native did not load as a module" };
  }
  let record = module as Record<string, unknown>;
  // A CommonJS build seen through ESM interop puts the exports under `default`.
  if (
    typeof record.available !== "function" &&
    typeof record.default === "object" &&
    record.default !== null
  ) {
    record = record.default as Record<string, unknown>;
  }
  const missing = [...REQUIRED_FUNCTIONS, "Stream", "Event", "DeviceTensor"].filter(
    (name) => typeof record[name] !== "function",
  );
  if (missing.length > 0) {
    return { ok: false, reason: `@trirun/kernel-native lacks ${missing.join(", ")}` };
  }
  const api = record as unknown as BenchKernelApi;
  if (!api.available()) {
    return { ok: false, reason: api.unavailableReason() ?? "no CUDA device available" };
  }
  if (api.devices().length === 0) {
    return { ok: false, reason: "no CUDA device found" };
  }
  return { ok: true, api };
}

/** Loads `@trirun/kernel-native` lazily; never throws. */
export async function loadKernel(): Promise<KernelLoadResult> {
  let module: unknown;
  try {
    module = await import("@trirun/kernel-native");
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
    return { ok: false, reason: `@trirun/kernel-native could not be loaded (${message})` };
  }
  try {
    return asBenchKernelApi(module);
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
}
