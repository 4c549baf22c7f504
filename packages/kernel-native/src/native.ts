// Loads the Node-API addon and decides whether a usable CUDA device exists.
// Loading is lazy (first use), never throws, and remembers why it failed so
// that the module itself always loads.
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CudaError, NoCudaDeviceError } from "./errors.js";

/** Environment variable naming a .node file to load instead of the package's build (self-contained bundles). */
export const NATIVE_PATH_ENV = "TRIRUN_NATIVE_PATH";

export interface NativeBuffer {
  readonly byteLength: number;
  readonly device: number;
  readonly freed: boolean;
  readonly address: bigint;
  free(): void;
}

export interface NativeStream {
  readonly destroyed: boolean;
  readonly device: number;
  synchronize(): void;
  query(): boolean;
  destroy(): void;
}

export interface NativeEvent {
  readonly destroyed: boolean;
  record(stream: NativeStream | null): void;
  synchronize(): void;
  query(): boolean;
  elapsedMs(start: NativeEvent): number;
  destroy(): void;
}

export interface NativeGraph {
  readonly destroyed: boolean;
  readonly nodes: number;
  readonly device: number;
  launch(stream: NativeStream | null): void;
  destroy(): void;
}

export interface NativeProbe {
  count: number;
  runtimeVersion: number;
  driverVersion: number;
  errorName?: string;
  errorMessage?: string;
}

export interface NativeDeviceProperties {
  name: string;
  major: number;
  minor: number;
  multiProcessorCount: number;
  l2CacheSize: number;
  totalGlobalMem: number;
  sharedMemPerBlockOptin: number;
  sharedMemPerMultiprocessor: number;
  memoryClockKHz: number;
  memoryBusWidthBits: number;
  pciBusId: string;
}

export interface NativeTrirunConfig {
  threadK: number;
  threadN: number;
  mBlocks: number;
  /** Kernel used: 0 general, 1 small-batch (8-row blocks). */
  variant: number;
  stages: number;
  sms: number;
  maxParallel: number;
  threads: number;
  workspaceBytes: number;
}

type Stream = NativeStream | null;

export interface NativeAddon {
  DeviceBuffer: new (byteLength: number) => NativeBuffer;
  Stream: new () => NativeStream;
  Event: new () => NativeEvent;
  probe(): NativeProbe;
  deviceProperties(index: number): NativeDeviceProperties;
  memoryInfo(): { freeBytes: number; totalBytes: number };
  synchronize(): void;
  getDevice(): number;
  setDevice(index: number): void;
  setErrorClass(errorClass: new (message: string, code: string) => Error): void;
  copyHostToDevice(buffer: NativeBuffer, byteOffset: number, data: ArrayBufferView, stream: Stream): void;
  copyDeviceToHost(buffer: NativeBuffer, byteOffset: number, out: ArrayBufferView, stream: Stream): void;
  copyDeviceToDevice(
    dst: NativeBuffer,
    dstByteOffset: number,
    src: NativeBuffer,
    srcByteOffset: number,
    byteLength: number,
    stream: Stream,
  ): void;
  copy2D(
    dst: NativeBuffer,
    dstByteOffset: number,
    dstPitch: number,
    src: NativeBuffer,
    srcByteOffset: number,
    srcPitch: number,
    widthBytes: number,
    rows: number,
    stream: Stream,
  ): void;
  memset(buffer: NativeBuffer, byteOffset: number, value: number, byteLength: number, stream: Stream): void;
  gemmF16(
    a: NativeBuffer,
    aOffset: number,
    w: NativeBuffer,
    wOffset: number,
    c: NativeBuffer,
    cOffset: number,
    m: number,
    n: number,
    k: number,
    transposeW: boolean,
    outputF32: boolean,
    stream: Stream,
  ): void;
  gemmF32(
    a: NativeBuffer,
    aOffset: number,
    b: NativeBuffer,
    bOffset: number,
    c: NativeBuffer,
    cOffset: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    alpha: number,
    beta: number,
    stream: Stream,
  ): void;
  cublasInfo(): { path: string };
  trirunMatmul(
    a: NativeBuffer,
    aOffset: number,
    b: NativeBuffer,
    bOffset: number,
    s: NativeBuffer,
    sOffset: number,
    c: NativeBuffer,
    cOffset: number,
    m: number,
    n: number,
    k: number,
    groupsize: number,
    stream: Stream,
    threadK: number,
    threadN: number,
    sms: number,
    maxParallel: number,
  ): NativeTrirunConfig;
  workspaceBytes(n: number, maxParallel: number): number;
  captureGraph(device: number, record: () => void): NativeGraph;
}

interface NativeState {
  addon: NativeAddon | null; // loaded addon (even when no device is usable)
  loadedFrom: string | undefined;
  probe: NativeProbe | undefined;
  reason: string | undefined; // why GPU calls are unavailable; undefined when available
}

let state: NativeState | undefined;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function loadAddon(): { addon: NativeAddon; from: string } {
  const require = createRequire(import.meta.url);
  const setting = process.env[NATIVE_PATH_ENV];
  if (setting) {
    // Resolve against the working directory: require() would treat "dir/x.node" as a package name.
    const override = resolve(setting);
    try {
      return { addon: require(override) as NativeAddon, from: override };
    } catch (error) {
      throw new Error(`${NATIVE_PATH_ENV}=${override} could not be loaded: ${errorText(error)}`);
    }
  }
  // src/ and dist/ both sit one level below the package root.
  const root = fileURLToPath(new URL("..", import.meta.url));
  const nodeGypBuild = require("node-gyp-build") as ((dir: string) => unknown) & {
    path(dir: string): string;
  };
  const from = nodeGypBuild.path(root);
  return { addon: require(from) as NativeAddon, from };
}

function cudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** Turns a failed cudaGetDeviceCount into a sentence a user can act on. */
export function describeProbeFailure(probe: NativeProbe): string {
  const detail = `${probe.errorName}: ${probe.errorMessage}`;
  if (probe.errorName === "cudaErrorInsufficientDriver") {
    if (probe.driverVersion === 0) return `no NVIDIA driver/GPU found (${detail})`;
    return (
      `the NVIDIA driver supports CUDA ${cudaVersion(probe.driverVersion)}, older than the CUDA runtime ` +
      `${cudaVersion(probe.runtimeVersion)} this addon was built with; update the driver (${detail})`
    );
  }
  if (probe.errorName === "cudaErrorNoDevice") return `no CUDA-capable GPU found (${detail})`;
  return `CUDA initialisation failed (${detail})`;
}

function initialise(preloaded?: { addon: NativeAddon; from: string }): NativeState {
  let loaded: { addon: NativeAddon; from: string };
  try {
    loaded = preloaded ?? loadAddon();
  } catch (error) {
    return {
      addon: null,
      loadedFrom: undefined,
      probe: undefined,
      reason: `native addon not built or not loadable: ${errorText(error)}`,
    };
  }
  const { addon, from } = loaded;
  try {
    addon.setErrorClass(CudaError);
    const probe = addon.probe();
    if (probe.errorName !== undefined) {
      return { addon, loadedFrom: from, probe, reason: describeProbeFailure(probe) };
    }
    if (probe.count === 0) return { addon, loadedFrom: from, probe, reason: "no CUDA-capable GPU found" };
    const capable: string[] = [];
    const names: string[] = [];
    for (let i = 0; i < probe.count; i++) {
      const p = addon.deviceProperties(i);
      names.push(`${p.name} (sm_${p.major}${p.minor})`);
      if (p.major >= 8) capable.push(p.name);
    }
    if (capable.length === 0) {
      return {
        addon,
        loadedFrom: from,
        probe,
        reason: `no GPU with compute capability 8.0 or newer (found ${names.join(", ")})`,
      };
    }
    return { addon, loadedFrom: from, probe, reason: undefined };
  } catch (error) {
    return {
      addon,
      loadedFrom: from,
      probe: undefined,
      reason: `probing CUDA devices failed: ${errorText(error)}`,
    };
  }
}

/**
 * @internal Test hook: use `addon` (e.g. a host-memory fake) instead of the
 * real one, or go back to lazy loading with undefined.
 */
export function setNativeAddonForTesting(addon: NativeAddon | undefined): void {
  state = addon === undefined ? undefined : initialise({ addon, from: "(test double)" });
}

function current(): NativeState {
  state ??= initialise();
  return state;
}

/** True when the addon is loaded and a CUDA device of compute capability >= 8.0 is present. */
export function available(): boolean {
  return current().reason === undefined;
}

/** Why available() is false; undefined when it is true. */
export function unavailableReason(): string | undefined {
  return current().reason;
}

/** The addon, or a NoCudaDeviceError that says why GPU calls cannot run. */
export function requireNative(): NativeAddon {
  const s = current();
  if (s.reason !== undefined || s.addon === null)
    throw new NoCudaDeviceError(s.reason ?? "native addon missing");
  return s.addon;
}

/** Where the addon was loaded from and what CUDA reported, for reports and diagnostics. */
export function nativeInfo(): {
  loaded: boolean;
  path: string | undefined;
  runtimeVersion: string | undefined;
  driverVersion: string | undefined;
  deviceCount: number;
  reason: string | undefined;
} {
  const s = current();
  return {
    loaded: s.addon !== null,
    path: s.loadedFrom,
    runtimeVersion: s.probe ? cudaVersion(s.probe.runtimeVersion) : undefined,
    driverVersion: s.probe && s.probe.driverVersion > 0 ? cudaVersion(s.probe.driverVersion) : undefined,
    deviceCount: s.probe?.count ?? 0,
    reason: s.reason,
  };
}
