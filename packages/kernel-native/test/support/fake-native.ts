// A host-memory stand-in for the native addon, so that the TypeScript layer
// and the device check's logic run end to end on machines without a GPU.
// Its "kernel" unpacks the reference layout with the inverse permutations and
// multiplies in fp32, like the real one is meant to; faults can be injected to
// prove that the check notices them.
import { packScales, weightPermutation } from "../../src/device/layout.js";
import { f16ToF32, toF16Bits } from "../../src/device/numeric.js";
import type {
  NativeAddon,
  NativeBuffer,
  NativeDeviceProperties,
  NativeEvent,
  NativeGraph,
  NativeProbe,
  NativeStream,
  NativeTrirunConfig,
} from "../../src/native.js";

export interface FakeFaults {
  /** Devices the stand-in reports (default 1); buffers belong to the device current at allocation. */
  devices?: number;
  /** The kernel leaves the last element of C unwritten. */
  skipLastElement?: boolean;
  /** The kernel writes one element past the end of C. */
  writePastEnd?: boolean;
  /** The kernel adds this relative error to every output. */
  relativeError?: number;
}

type ErrorClass = new (message: string, code: string) => Error;

const CAPACITY = 1 << 30;

class FakeBuffer implements NativeBuffer {
  static allocated = 0;
  static nextAddress = 0x7f0000000000n;
  /** The current device (setDevice), which new buffers belong to, as cudaMalloc's do. */
  static current = 0;
  readonly bytes: Uint8Array;
  readonly device = FakeBuffer.current;
  readonly address: bigint;
  freed = false;
  constructor(readonly byteLength: number) {
    this.bytes = new Uint8Array(byteLength);
    this.address = FakeBuffer.nextAddress;
    FakeBuffer.nextAddress += BigInt(Math.ceil((byteLength + 1) / 256) * 256);
    FakeBuffer.allocated += byteLength;
  }
  free(): void {
    if (!this.freed) FakeBuffer.allocated -= this.byteLength;
    this.freed = true;
  }
}

class FakeStream implements NativeStream {
  destroyed = false;
  readonly device = 0;
  synchronize(): void {}
  query(): boolean {
    return true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

class FakeEvent implements NativeEvent {
  destroyed = false;
  time = -1;
  record(): void {
    this.time = performance.now();
  }
  synchronize(): void {}
  query(): boolean {
    return true;
  }
  elapsedMs(start: NativeEvent): number {
    return this.time - (start as FakeEvent).time;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

function live(buffer: NativeBuffer, name: string): FakeBuffer {
  const b = buffer as FakeBuffer;
  if (!(b instanceof FakeBuffer)) throw new TypeError(`${name}: expected a device buffer`);
  if (b.freed) throw new Error(`${name}: the tensor's memory has been disposed`);
  // As the addon's calls do (UseDevice): the operands' device becomes the current one, and stays.
  FakeBuffer.current = b.device;
  return b;
}

function range(b: FakeBuffer, offset: number, bytes: number, name: string): Uint8Array {
  if (offset < 0 || offset + bytes > b.byteLength) throw new RangeError(`${name}: bytes outside the buffer`);
  return b.bytes.subarray(offset, offset + bytes);
}

function halves(b: FakeBuffer, offset: number, count: number): Uint16Array {
  return new Uint16Array(b.bytes.buffer, b.bytes.byteOffset + offset, count);
}

function floats(b: FakeBuffer, offset: number, count: number): Float32Array {
  return new Float32Array(b.bytes.buffer, b.bytes.byteOffset + offset, count);
}

/** Codes (k, n) from B (k/16, n) by inverting the packing of src/device/layout.ts. */
function unpackCodes(words: Int32Array, k: number, n: number): Uint8Array {
  const perm = weightPermutation();
  const codes = new Uint8Array(k * n);
  for (let tr = 0; tr < k / 16; tr++) {
    for (let col = 0; col < n; col++) {
      const word = words[tr * n + col];
      const chunk = Math.floor(col / 64);
      for (let j = 0; j < 16; j++) {
        const pos = chunk * 1024 + perm[(col % 64) * 16 + j];
        const tile = pos >> 8;
        const i = (pos & 255) >> 4;
        codes[(16 * tr + i) * n + tile * 16 + (pos & 15)] = (word >>> (2 * j)) & 3;
      }
    }
  }
  return codes;
}

/** Natural scales from permuted ones: the permutation inverted by probing it with indices. */
function unpackScales(permuted: Uint16Array, groups: number, n: number): Uint16Array {
  // Probed in two 16-bit halves: more than 65536 scales (k = 4096, n = 2560) would wrap one index array.
  const low = packScales(
    new Uint16Array(groups * n).map((_, i) => i & 0xffff),
    groups,
    n,
  );
  const high = packScales(
    new Uint16Array(groups * n).map((_, i) => i >>> 16),
    groups,
    n,
  );
  const out = new Uint16Array(groups * n);
  // low/high[t] = the natural index at permuted position t
  for (let t = 0; t < low.length; t++) out[low[t] + high[t] * 65536] = permuted[t];
  return out;
}

/** Set while a capture asks the fake TriRun kernel for its config only (nothing runs during a capture). */
let dryRun = false;

/** Addon entry points that launch nothing (they run normally during a capture). */
const NOT_LAUNCHES = new Set([
  "DeviceBuffer",
  "Stream",
  "Event",
  "probe",
  "deviceProperties",
  "memoryInfo",
  "getDevice",
  "setDevice",
  "setErrorClass",
  "cublasInfo",
  "workspaceBytes",
  "captureGraph",
  "allocatedBytes",
]);
/** Entry points the real addon refuses inside a capture. */
const NOT_CAPTURABLE = new Set(["copyHostToDevice", "copyDeviceToHost", "synchronize"]);

const GRAPH_STATE = Symbol("fake graph state");
/** A capture is being recorded (device allocation is refused then, as on a GPU). */
let capturing = false;
const WRAPPED = Symbol("fake graph wrapper");

type AnyFn = ((...args: unknown[]) => unknown) & { [WRAPPED]?: true };

/**
 * Graph capture for the stand-in, with the real addon's rules: during captureGraph every launch is
 * recorded (not run) and an explicit stream, an upload, a download or a synchronize is refused; launch()
 * replays the recorded calls. Wraps the entry points present now, in place; call it again after adding
 * more (withFakeOps does).
 */
export function withFakeGraphs<T extends NativeAddon>(addon: T): T {
  const target = addon as unknown as Record<string | symbol, unknown>;
  type State = { recording: (() => void)[] | undefined; buffers?: Set<FakeBuffer> };
  if (target[GRAPH_STATE] === undefined) target[GRAPH_STATE] = { recording: undefined } satisfies State;
  const state = target[GRAPH_STATE] as State;
  for (const name of Object.keys(target)) {
    const fn = target[name] as AnyFn;
    if (typeof fn !== "function" || NOT_LAUNCHES.has(name) || fn[WRAPPED]) continue;
    const wrapper: AnyFn = (...args: unknown[]) => {
      const recording = state.recording;
      if (recording === undefined) return fn(...args);
      if (NOT_CAPTURABLE.has(name)) throw new TypeError(`${name}: not allowed inside captureGraph`);
      if (args.some((a) => a instanceof FakeStream)) {
        throw new TypeError("stream: inside captureGraph launches take no stream");
      }
      for (const a of args) if (a instanceof FakeBuffer) state.buffers?.add(a);
      recording.push(() => {
        fn(...args);
      });
      if (name !== "trirunMatmul") return undefined;
      dryRun = true;
      try {
        return fn(...args);
      } finally {
        dryRun = false;
      }
    };
    wrapper[WRAPPED] = true;
    target[name] = wrapper;
  }
  target.captureGraph = (device: number, record: () => void): NativeGraph => {
    if (state.recording !== undefined) throw new TypeError("captureGraph: a capture is already in progress");
    const steps: (() => void)[] = [];
    const buffers = new Set<FakeBuffer>();
    state.recording = steps;
    state.buffers = buffers;
    capturing = true;
    try {
      record();
    } finally {
      state.recording = undefined;
      state.buffers = undefined;
      capturing = false;
    }
    let destroyed = false;
    return {
      get destroyed() {
        return destroyed;
      },
      nodes: steps.length,
      device,
      launch: () => {
        if (destroyed) throw new Error("graph: the graph has been disposed");
        for (const b of buffers) {
          if (b.freed) throw new Error("graph: a device tensor used by the graph has been disposed");
        }
        for (const step of steps) step();
      },
      destroy: () => {
        destroyed = true;
      },
    };
  };
  return addon;
}

export function createFakeNative(faults: FakeFaults = {}): NativeAddon & { allocatedBytes(): number } {
  let errorClass: ErrorClass | undefined;
  const deviceCount = faults.devices ?? 1;
  FakeBuffer.current = 0;
  const cudaError = (message: string, code: string): Error => {
    if (errorClass) return new errorClass(message, code);
    return Object.assign(new Error(message), { code });
  };
  const props: NativeDeviceProperties = {
    name: "Fake GPU (host memory)",
    major: 9,
    minor: 0,
    multiProcessorCount: 132,
    l2CacheSize: 50 * 2 ** 20,
    totalGlobalMem: CAPACITY,
    sharedMemPerBlockOptin: 232448,
    sharedMemPerMultiprocessor: 233472,
    memoryClockKHz: 2619000,
    memoryBusWidthBits: 5120,
    pciBusId: "0000:00:00.0",
  };
  const addon: NativeAddon & { allocatedBytes(): number } = {
    DeviceBuffer: class extends FakeBuffer {
      constructor(byteLength: number) {
        // As the real cudaMalloc in a capture of this thread: refused (and the capture is lost).
        if (capturing && byteLength > 0) {
          throw cudaError(
            "cudaMalloc: operation not permitted when stream is capturing",
            "cudaErrorStreamCaptureUnsupported",
          );
        }
        if (FakeBuffer.allocated + byteLength > CAPACITY) {
          throw cudaError(
            `cudaMalloc of ${byteLength} bytes on device 0 failed: out of memory`,
            "cudaErrorMemoryAllocation",
          );
        }
        super(byteLength);
      }
    },
    Stream: FakeStream,
    Event: FakeEvent,
    allocatedBytes: () => FakeBuffer.allocated,
    probe: (): NativeProbe => ({ count: deviceCount, runtimeVersion: 13000, driverVersion: 13000 }),
    deviceProperties: () => props,
    memoryInfo: () => ({ freeBytes: CAPACITY - FakeBuffer.allocated, totalBytes: CAPACITY }),
    synchronize: () => {},
    getDevice: () => FakeBuffer.current,
    setDevice: (index: number) => {
      if (!Number.isInteger(index) || index < 0 || index >= deviceCount) {
        throw cudaError("cudaSetDevice: invalid device ordinal", "cudaErrorInvalidDevice");
      }
      FakeBuffer.current = index;
    },
    setErrorClass: (c) => {
      errorClass = c;
    },
    copyHostToDevice: (buffer, offset, data) => {
      const b = live(buffer, "tensor");
      range(b, offset, data.byteLength, "data").set(
        new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      );
    },
    copyDeviceToHost: (buffer, offset, out) => {
      const b = live(buffer, "tensor");
      new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(range(b, offset, out.byteLength, "out"));
    },
    copyDeviceToDevice: (dst, dstOffset, src, srcOffset, bytes) => {
      const from = range(live(src, "source"), srcOffset, bytes, "source").slice();
      range(live(dst, "destination"), dstOffset, bytes, "destination").set(from);
    },
    copy2D: (dst, dstOffset, dstPitch, src, srcOffset, srcPitch, width, rows) => {
      const from = live(src, "source");
      const to = live(dst, "destination");
      for (let r = 0; r < rows; r++) {
        const row = range(from, srcOffset + r * srcPitch, width, "source").slice();
        range(to, dstOffset + r * dstPitch, width, "destination").set(row);
      }
    },
    memset: (buffer, offset, value, bytes) => {
      range(live(buffer, "tensor"), offset, bytes, "tensor").fill(value);
    },
    gemmF16: (a, aOff, w, wOff, c, cOff, m, n, k, transposeW, outputF32) => {
      const A = halves(live(a, "A"), aOff, m * k);
      const W = halves(live(w, "W"), wOff, k * n);
      const out = new Float32Array(m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let r = 0; r < k; r++) {
            acc = Math.fround(acc + f16ToF32(A[i * k + r]) * f16ToF32(W[transposeW ? j * k + r : r * n + j]));
          }
          out[i * n + j] = acc;
        }
      const C = live(c, "C");
      if (outputF32) {
        floats(C, cOff, m * n).set(out);
      } else {
        const h = halves(C, cOff, m * n);
        for (let i = 0; i < m * n; i++) h[i] = toF16Bits(out[i]);
      }
    },
    gemmF32: (a, aOff, b, bOff, c, cOff, m, n, k, tA, tB, alpha, beta) => {
      const A = floats(live(a, "A"), aOff, m * k);
      const B = floats(live(b, "B"), bOff, k * n);
      const C = floats(live(c, "C"), cOff, m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let r = 0; r < k; r++) acc += A[tA ? r * m + i : i * k + r] * B[tB ? j * k + r : r * n + j];
          C[i * n + j] = alpha * acc + beta * C[i * n + j];
        }
    },
    cublasInfo: () => ({ path: "(fake cuBLAS)" }),
    trirunMatmul: (
      a,
      aOff,
      b,
      bOff,
      s,
      sOff,
      c,
      cOff,
      m,
      n,
      k,
      groupsize,
      _stream,
      threadK,
      threadN,
      sms,
      maxPar,
    ) => {
      if (k % 128 !== 0 || n % 256 !== 0) throw new RangeError("trirunMatmul: unsupported shape");
      const g = groupsize === -1 ? k : groupsize;
      const compute = (): void => {
        const groups = k / g;
        const Bb = live(b, "B");
        const words = new Int32Array(Bb.bytes.buffer, Bb.bytes.byteOffset + bOff, (k / 16) * n);
        const codes = unpackCodes(words, k, n);
        const scales = unpackScales(halves(live(s, "s"), sOff, groups * n), groups, n);
        const A = halves(live(a, "A"), aOff, m * k);
        const Cb = live(c, "C");
        const C = halves(Cb, cOff, m * n);
        const w = new Float32Array(k * n);
        for (let r = 0; r < k; r++)
          for (let j = 0; j < n; j++)
            w[r * n + j] = (codes[r * n + j] - 1) * f16ToF32(scales[Math.floor(r / g) * n + j]);
        const count = faults.skipLastElement ? m * n - 1 : m * n;
        for (let idx = 0; idx < count; idx++) {
          const i = Math.floor(idx / n);
          const j = idx % n;
          let acc = 0;
          for (let r = 0; r < k; r++) acc = Math.fround(acc + f16ToF32(A[i * k + r]) * w[r * n + j]);
          C[idx] = toF16Bits(acc * (1 + (faults.relativeError ?? 0)));
        }
        if (faults.writePastEnd && cOff + m * n * 2 + 2 <= Cb.byteLength)
          halves(Cb, cOff + m * n * 2, 1)[0] = 0;
      };
      // Nothing runs during a capture: the graph replays the call later.
      if (!dryRun) compute();
      // Tile choice as in trirun.cu: small-batch tiles for m <= 32 (128x512 only to 16),
      // general ones otherwise.
      const small =
        m <= 32 &&
        (threadK <= 0 ||
          ([128 * 512, 256 * 256, 512 * 128].includes(threadK * threadN) && (m <= 16 || threadN !== 512)));
      const smallTn = m <= 16 && n % 512 === 0 && n / 512 >= 132 ? 512 : 128;
      const tn = threadN > 0 ? threadN : small ? smallTn : m <= 16 ? 128 : 256;
      const tk = threadK > 0 ? threadK : small ? 65536 / tn : m <= 16 ? 128 : 64;
      const config: NativeTrirunConfig = {
        threadK: tk,
        threadN: tn,
        mBlocks: small ? (m <= 8 ? 1 : m <= 16 ? 2 : 4) : Math.min(4, Math.ceil(Math.min(m, 64) / 16)),
        variant: small ? 1 : 0,
        stages: 4,
        sms: sms > 0 ? sms : props.multiProcessorCount,
        maxParallel: maxPar > 0 ? maxPar : 16,
        threads: 256,
        workspaceBytes: (n / 128) * (maxPar > 0 ? maxPar : 16) * 4,
      };
      return config;
    },
    workspaceBytes: (n, maxPar) => (n / 128) * (maxPar > 0 ? maxPar : 16) * 4,
    captureGraph: () => {
      throw new Error("replaced by withFakeGraphs");
    },
  };
  return withFakeGraphs(addon);
}
