/**
 * A simulated GPU implementing the benchmark's kernel interface, for CPU-only tests.
 *
 * It models what the measuring method must cope with: a host that needs time to
 * launch each call (so the GPU can run dry), a stream executing in order, events
 * timestamped on the GPU clock, and an LRU L2 cache that makes re-used weights
 * faster. Operation costs come from simple roofline formulas that the tests
 * recompute independently. Optionally (`powerTauUs` > 0) a power cap: every
 * operation demands a power (in units of the cap, at full clock), the GPU runs
 * at clock min(1, 1 / demand averaged over the last ~tau), and durations grow
 * by 1 / clock, so interleaved kernels share one clock and a kernel run alone
 * settles at 1 / its own demand. No device memory is allocated: tensors only record
 * their extent and which of their elements were uploaded with non-zero data.
 */
import type {
  BenchDeviceInfo,
  BenchDType,
  BenchEvent,
  BenchHostArray,
  BenchKernelApi,
  BenchStream,
  BenchTensor,
  BenchTrirunConfig,
} from "../src/kernel-api.js";

export interface SimulatedGpuSpec {
  readonly smCount: number;
  readonly l2Bytes: number;
  readonly memoryBytes: number;
  /** DRAM bandwidth (bytes read + written per us). */
  readonly dramBytesPerUs: number;
  /** Bandwidth for bytes that hit in L2 (per us). */
  readonly l2BytesPerUs: number;
  /** Tensor throughput of cuBLAS FP16 and of the TriRun kernel, FLOP per us. */
  readonly fp16FlopsPerUs: number;
  readonly trirunFlopsPerUs: number;
  /** Fixed GPU cost of every kernel launch, us. */
  readonly launchLatencyUs: number;
  /** Host time to enqueue one operation, us. */
  readonly hostLaunchUs: number;
  /** Relative jitter of each operation's duration (uniform in [-j, j]); 0 for none. */
  readonly jitter: number;
  /** Time constant of the power cap's clock control, us; 0: no power model (full clock always). */
  readonly powerTauUs: number;
  /** Power demand at full clock (units of the cap) of compute-bound cuBLAS and TriRun calls. */
  readonly fp16ComputePower: number;
  readonly trirunComputePower: number;
  readonly seed: number;
}

export const DEFAULT_SPEC: SimulatedGpuSpec = {
  smCount: 8,
  l2Bytes: 4 * 1024 * 1024,
  memoryBytes: 8 * 1024 ** 3,
  dramBytesPerUs: 2.0e6,
  l2BytesPerUs: 8.0e6,
  fp16FlopsPerUs: 400e6,
  trirunFlopsPerUs: 250e6,
  launchLatencyUs: 1,
  hostLaunchUs: 8,
  jitter: 0,
  powerTauUs: 0,
  fp16ComputePower: 1.5,
  trirunComputePower: 1.2,
  seed: 1,
};

let nextRootId = 1;

/** Power demands (units of the cap) of an idle GPU and of a device-to-device copy. */
const IDLE_POWER = 0.1;
const COPY_POWER = 0.6;

interface Root {
  readonly id: number;
  readonly dtype: BenchDType;
  readonly numel: number;
  /** Elements written by upload() with at least one non-zero value per upload. */
  uploaded: number;
  zeroUploads: number;
  disposed: boolean;
}

const BYTES: Record<BenchDType, number> = { f16: 2, u16: 2, f32: 4, i32: 4, u32: 4, u8: 1, i8: 1 };

const HOST_TYPES: Record<BenchDType, string> = {
  f16: "Uint16Array",
  u16: "Uint16Array",
  f32: "Float32Array",
  i32: "Int32Array",
  u32: "Uint32Array",
  u8: "Uint8Array",
  i8: "Int8Array",
};

export class SimulatedTensor implements BenchTensor {
  readonly numel: number;
  readonly byteLength: number;
  private ownDisposed = false;

  constructor(
    readonly gpu: SimulatedGpu,
    readonly root: Root,
    readonly offset: number,
    readonly shape: readonly number[],
  ) {
    this.numel = shape.reduce((a, b) => a * b, 1);
    this.byteLength = this.numel * BYTES[root.dtype];
  }

  get dtype(): BenchDType {
    return this.root.dtype;
  }

  get disposed(): boolean {
    return this.ownDisposed || this.root.disposed;
  }

  /** Identity of the memory this tensor covers, for the cache model. */
  get key(): string {
    return `${this.root.id}:${this.offset}:${this.numel}`;
  }

  private checkLive(what: string): void {
    if (this.disposed) throw new Error(`${what}: tensor is disposed`);
  }

  upload(data: BenchHostArray, _stream?: BenchStream): void {
    this.checkLive("upload");
    if (data.constructor.name !== HOST_TYPES[this.dtype]) {
      throw new TypeError(
        `upload: ${this.dtype} tensor needs a ${HOST_TYPES[this.dtype]}, got ${data.constructor.name}`,
      );
    }
    if (data.length !== this.numel) {
      throw new RangeError(`upload: expected ${this.numel} elements, got ${data.length}`);
    }
    let nonZero = false;
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== 0) {
        nonZero = true;
        break;
      }
    }
    if (nonZero) this.root.uploaded += this.numel;
    else this.root.zeroUploads++;
    this.gpu.hostNow += this.byteLength / 20e3; // ~20 GB/s over the bus, synchronous
  }

  copyFrom(src: BenchTensor, _stream?: BenchStream): void {
    this.checkLive("copyFrom");
    const source = src as SimulatedTensor;
    if (source.byteLength !== this.byteLength) throw new RangeError("copyFrom: byteLength differs");
    this.gpu.copies++;
    this.gpu.enqueue((this.byteLength * 2) / this.gpu.spec.dramBytesPerUs, [], this.byteLength * 2);
  }

  view(shape: readonly number[], elementOffset = 0): BenchTensor {
    this.checkLive("view");
    const numel = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(elementOffset) || elementOffset < 0 || elementOffset + numel > this.numel) {
      throw new RangeError(`view: [${shape}] at ${elementOffset} exceeds ${this.numel} elements`);
    }
    if (((this.offset + elementOffset) * BYTES[this.dtype]) % 16 !== 0) {
      throw new RangeError(`view: offset ${elementOffset} is not 16-byte aligned`);
    }
    return new SimulatedTensor(this.gpu, this.root, this.offset + elementOffset, shape);
  }

  dispose(): void {
    if (
      this.offset === 0 &&
      this.numel === this.root.numel &&
      this.shape.length === 1 &&
      !this.root.disposed
    ) {
      // Only the allocation itself (a flat tensor made by empty()) frees memory.
      if (this.gpu.roots.has(this.root.id) && this.gpu.rootTensors.get(this.root.id) === this) {
        this.root.disposed = true;
        this.gpu.allocatedBytes -= this.byteLength;
        this.gpu.roots.delete(this.root.id);
      }
    }
    this.ownDisposed = true;
  }
}

class SimulatedEvent implements BenchEvent {
  time = Number.NaN;

  constructor(private readonly gpu: SimulatedGpu) {}

  record(_stream?: BenchStream): void {
    this.gpu.hostNow += 0.5;
    this.time = Math.max(this.gpu.gpuFree, this.gpu.hostNow);
  }

  synchronize(): void {
    this.gpu.hostNow = Math.max(this.gpu.hostNow, this.time);
  }

  query(): boolean {
    return !Number.isNaN(this.time) && this.time <= this.gpu.hostNow;
  }

  elapsedMs(start: BenchEvent): number {
    const from = (start as SimulatedEvent).time;
    if (Number.isNaN(from) || Number.isNaN(this.time)) throw new Error("elapsedMs: event not recorded");
    return (this.time - from) / 1000;
  }

  dispose(): void {}
}

/** What a call's cost depends on: device, operation, shape (m, k, n), group size, weights in L2. */
type SimulatedCallArgs = [
  spec: SimulatedGpuSpec,
  op: "gemmF16" | "trirunMatmul",
  m: number,
  k: number,
  n: number,
  groupsize: number,
  hitL2: boolean,
];

/** One kernel call as the simulation saw it. */
export interface SimulatedCall {
  readonly op: "gemmF16" | "trirunMatmul";
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly groupsize: number;
  /** Identity of the weight buffers used. */
  readonly weightKey: string;
  readonly weightRoots: readonly number[];
  readonly hitL2: boolean;
}

export class SimulatedGpu {
  readonly spec: SimulatedGpuSpec;
  hostNow = 0;
  gpuFree = 0;
  allocatedBytes = 0;
  copies = 0;
  readonly roots = new Map<number, Root>();
  readonly rootTensors = new Map<number, SimulatedTensor>();
  readonly allRoots: Root[] = [];
  readonly calls: SimulatedCall[] = [];
  /** LRU of resident buffers (key -> bytes), most recent last. */
  private readonly l2 = new Map<string, number>();
  private l2Used = 0;
  private randomState: number;
  /** Power demand averaged over the last ~powerTauUs (units of the cap). */
  private powerAverage = IDLE_POWER;

  constructor(spec: Partial<SimulatedGpuSpec> = {}) {
    this.spec = { ...DEFAULT_SPEC, ...spec };
    this.randomState = this.spec.seed >>> 0 || 1;
  }

  private jitter(): number {
    // xorshift32
    let x = this.randomState;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.randomState = x;
    return 1 + this.spec.jitter * ((x / 4294967296) * 2 - 1);
  }

  /** The clock (fraction of full) while an average demand of `power` is sustained. */
  static steadyClock(power: number): number {
    return Math.min(1, 1 / power);
  }

  /**
   * Runs an operation of `durationUs` (at full clock) demanding `power` on the stream after the host
   * has launched it.
   */
  enqueue(durationUs: number, _keys: readonly string[], touchedBytes: number, power = COPY_POWER): void {
    this.hostNow += this.spec.hostLaunchUs;
    const start = Math.max(this.gpuFree, this.hostNow);
    let actualUs = durationUs * this.jitter();
    const tau = this.spec.powerTauUs;
    if (tau > 0) {
      const decay = (us: number, toward: number) => {
        this.powerAverage = toward + (this.powerAverage - toward) * Math.exp(-us / tau);
      };
      decay(start - this.gpuFree, IDLE_POWER);
      actualUs /= SimulatedGpu.steadyClock(this.powerAverage);
      decay(actualUs, power);
    }
    this.gpuFree = start + actualUs;
    // A copy streams its bytes through L2 and evicts what was there.
    if (touchedBytes >= this.spec.l2Bytes) {
      this.l2.clear();
      this.l2Used = 0;
    }
  }

  /** Marks `key` (of `bytes`) used; returns whether it was resident before. */
  touch(key: string, bytes: number): boolean {
    const hit = this.l2.has(key);
    if (hit) {
      this.l2.delete(key);
      this.l2Used -= bytes;
    }
    if (bytes <= this.spec.l2Bytes) {
      this.l2.set(key, bytes);
      this.l2Used += bytes;
      for (const [oldKey, oldBytes] of this.l2) {
        if (this.l2Used <= this.spec.l2Bytes) break;
        this.l2.delete(oldKey);
        this.l2Used -= oldBytes;
      }
    }
    return hit;
  }

  /** A call's tensor time and memory time at full clock, by the same formulas the tests use. */
  private static callParts(...[spec, op, m, k, n, groupsize, hitL2]: SimulatedCallArgs): {
    computeUs: number;
    memoryUs: number;
  } {
    const weightBytes =
      op === "gemmF16" ? 2 * k * n : (k * n) / 4 + (groupsize === -1 ? 1 : k / groupsize) * n * 2;
    const otherBytes = 2 * m * k + 2 * m * n;
    const bandwidth = hitL2 ? spec.l2BytesPerUs : spec.dramBytesPerUs;
    const throughput = op === "gemmF16" ? spec.fp16FlopsPerUs : spec.trirunFlopsPerUs;
    return {
      computeUs: (2 * m * k * n) / throughput,
      memoryUs: weightBytes / bandwidth + otherBytes / spec.l2BytesPerUs,
    };
  }

  /** Power demand of a call at full clock: its kind's compute power when compute-bound, else a copy's. */
  static callPower(...args: SimulatedCallArgs): number {
    const [spec, op] = args;
    const { computeUs, memoryUs } = SimulatedGpu.callParts(...args);
    if (computeUs < memoryUs) return COPY_POWER;
    return op === "gemmF16" ? spec.fp16ComputePower : spec.trirunComputePower;
  }

  /** Expected duration of a call, by the same formulas the tests use. */
  static durationUs(...args: SimulatedCallArgs): number {
    const { computeUs, memoryUs } = SimulatedGpu.callParts(...args);
    return args[0].launchLatencyUs + Math.max(computeUs, memoryUs);
  }

  api(): BenchKernelApi {
    const gpu = this;
    const info: BenchDeviceInfo = {
      index: 0,
      name: "Simulated GPU",
      computeCapability: "9.0",
      smCount: gpu.spec.smCount,
      l2Bytes: gpu.spec.l2Bytes,
      memoryBytes: gpu.spec.memoryBytes,
      pciBusId: "0000:00:00.0",
    };
    const expectTensor = (value: BenchTensor, name: string, dtype: BenchDType, shape: readonly number[]) => {
      const tensor = value as SimulatedTensor;
      if (tensor.disposed) throw new Error(`${name} is disposed`);
      if (tensor.dtype !== dtype) throw new TypeError(`${name} must be ${dtype}, got ${tensor.dtype}`);
      if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
        throw new RangeError(`${name} must have shape [${shape}], got [${tensor.shape}]`);
      }
      if (tensor.root.uploaded < tensor.root.numel) {
        throw new Error(`${name} was not fully filled with non-zero data before use`);
      }
      return tensor;
    };
    return {
      available: () => true,
      unavailableReason: () => undefined,
      devices: () => [info],
      memoryInfo: () => ({
        freeBytes: gpu.spec.memoryBytes - gpu.allocatedBytes,
        totalBytes: gpu.spec.memoryBytes,
      }),
      synchronize: () => {
        gpu.hostNow = Math.max(gpu.hostNow, gpu.gpuFree);
      },
      Stream: class {
        synchronize(): void {
          gpu.hostNow = Math.max(gpu.hostNow, gpu.gpuFree);
        }
        dispose(): void {}
      },
      Event: class extends SimulatedEvent {
        constructor() {
          super(gpu);
        }
      },
      DeviceTensor: {
        empty(dtype: BenchDType, shape: readonly number[]): BenchTensor {
          const numel = shape.reduce((a, b) => a * b, 1);
          const bytes = numel * BYTES[dtype];
          if (gpu.allocatedBytes + bytes > gpu.spec.memoryBytes) {
            throw new Error("cudaErrorMemoryAllocation: simulated device is full");
          }
          const root: Root = { id: nextRootId++, dtype, numel, uploaded: 0, zeroUploads: 0, disposed: false };
          gpu.roots.set(root.id, root);
          gpu.allRoots.push(root);
          gpu.allocatedBytes += bytes;
          const tensor = new SimulatedTensor(gpu, root, 0, [numel]);
          if (shape.length === 1) gpu.rootTensors.set(root.id, tensor);
          return shape.length === 1 ? tensor : tensor.view(shape);
        },
      },
      gemmF16(A, W, C, opts): void {
        const m = A.shape[0];
        const k = A.shape[1];
        const n = C.shape[1];
        expectTensor(A, "A", "f16", [m, k]);
        expectTensor(W, "W", "f16", opts?.transposeW ? [n, k] : [k, n]);
        expectTensor(C, "C", "f16", [m, n]);
        const w = W as SimulatedTensor;
        const hitL2 = gpu.touch(w.key, w.byteLength);
        gpu.calls.push({
          op: "gemmF16",
          m,
          k,
          n,
          groupsize: 0,
          weightKey: w.key,
          weightRoots: [w.root.id],
          hitL2,
        });
        gpu.enqueue(
          SimulatedGpu.durationUs(gpu.spec, "gemmF16", m, k, n, 0, hitL2),
          [w.key],
          0,
          SimulatedGpu.callPower(gpu.spec, "gemmF16", m, k, n, 0, hitL2),
        );
      },
      trirunMatmul(A, B, s, C, opts): BenchTrirunConfig {
        const m = A.shape[0];
        const k = A.shape[1];
        const n = C.shape[1];
        const groupsize = opts?.groupsize ?? (s.shape[0] === 1 ? -1 : k / s.shape[0]);
        if (groupsize !== 128 && groupsize !== -1 && groupsize !== k) {
          throw new RangeError(`groupsize must be 128 or -1, got ${groupsize}`);
        }
        expectTensor(A, "A", "f16", [m, k]);
        expectTensor(B, "B", "i32", [k / 16, n]);
        expectTensor(s, "s", "f16", [groupsize === 128 ? k / 128 : 1, n]);
        expectTensor(C, "C", "f16", [m, n]);
        const b = B as SimulatedTensor;
        const sc = s as SimulatedTensor;
        const key = `${b.key}+${sc.key}`;
        const hitL2 = gpu.touch(key, b.byteLength + sc.byteLength);
        gpu.calls.push({
          op: "trirunMatmul",
          m,
          k,
          n,
          groupsize,
          weightKey: key,
          weightRoots: [b.root.id, sc.root.id],
          hitL2,
        });
        gpu.enqueue(
          SimulatedGpu.durationUs(gpu.spec, "trirunMatmul", m, k, n, groupsize, hitL2),
          [key],
          0,
          SimulatedGpu.callPower(gpu.spec, "trirunMatmul", m, k, n, groupsize, hitL2),
        );
        return { threadK: 128, threadN: 128, mBlocks: Math.min(4, Math.ceil(m / 16)), sms: gpu.spec.smCount };
      },
    };
  }
}
