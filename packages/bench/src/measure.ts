/**
 * Timing of `trirunMatmul` against `gemmF16` on the GPU.
 *
 * Method (see NOTES.md for why):
 * - one stream, CUDA events around a batch of back-to-back calls (a "sample");
 *   the per-call time of a sample is its elapsed time over its call count;
 * - before each sample a long device-to-device copy keeps the GPU busy while the
 *   host enqueues the sample's calls, so that host launch overhead does not show
 *   up as GPU idle time (samples where it may have are counted and retried);
 * - cold weights (default): each side rotates through enough weight copies that
 *   their bytes exceed `coldFactor` x L2, so every call streams its weights from DRAM;
 *   hot (`--hot`): one buffer, as the reference benchmark does;
 * - the same A and C tensors serve both sides; samples of the sides alternate, so
 *   clock and temperature drift hits both alike;
 * - or, with `sustainUs` (for calls that run at the GPU's power cap, where the
 *   clock follows the power drawn over roughly the last second): each side runs
 *   alone, back to back, for `sustainUs` before its samples, which follow with no
 *   gap, so that each side is timed at the clock it gets by itself, as in an
 *   application that runs only it; the sides take turns first from row to row;
 * - the device-to-device copy bandwidth (bytes read + written) is the roofline.
 */
import type {
  BenchDType,
  BenchEvent,
  BenchHostArray,
  BenchKernelApi,
  BenchStream,
  BenchTensor,
  BenchTrirunConfig,
} from "./kernel-api.js";
import { RandomSource, randomFloat16Buffer } from "./random.js";
import type { BenchResults, ResultRow, Roofline, Timing } from "./results.js";
import { RESULTS_FORMAT } from "./results.js";
import { fp16WeightBytes, type ModelSet, packedWeightBytes, scaleRows } from "./shapes.js";
import { summarize } from "./stats.js";

export type WeightMode = "cold" | "hot";
/** `nk`: W is (n, k) like a PyTorch `Linear.weight` (cuBLAS "TN"); `kn`: W is (k, n) row-major. */
export type Fp16Layout = "nk" | "kn";

export interface MeasureOptions {
  readonly modelSets: readonly ModelSet[];
  readonly batchSizes: readonly number[];
  readonly groupsizes: readonly number[];
  readonly mode?: WeightMode;
  /** Cold rotation: weight bytes per side must exceed this many times the L2 size. Default 4. */
  readonly coldFactor?: number;
  /** Samples per side and row. Default 25. */
  readonly samples?: number;
  /** Each sample runs enough calls to last at least this long (GPU time). Default 200 us. */
  readonly minSampleUs?: number;
  /** Warm-up GPU time per side and row before sampling. Default 2 ms. */
  readonly warmupUs?: number;
  /**
   * Sustained timing (0 or absent: interleaved samples): each side runs back to back for this much
   * GPU time, then takes its samples without a gap, before the other side does the same.
   */
  readonly sustainUs?: number;
  readonly fp16Layout?: Fp16Layout;
  readonly seed?: number;
  /** Recorded in the results: how the run was started. */
  readonly command?: string;
  /** Recorded in the results: the source revision measured. */
  readonly commit?: string | null;
  /** Device index to report (the kernel runs on the current device). Default 0. */
  readonly deviceIndex?: number;
  readonly onProgress?: (event: ProgressEvent) => void;
  /** Time source for the host side, in microseconds; injectable for tests. */
  readonly hostClockUs?: () => number;
  /** Wall clock for the rows' measuring windows, ms since the epoch. Default Date.now. */
  readonly wallClockMs?: () => number;
  /** Host staging chunk for random uploads, in elements. Default 4 Mi. */
  readonly uploadChunkElements?: number;
  /** Size of each of the two buffers of the roofline and queue-filling copies. Default 256 MiB. */
  readonly copyBufferBytes?: number;
  /**
   * Stop starting new measurements after this many seconds (host clock) and return what
   * was measured, with `meta.stoppedEarly` set: a run then never outlasts a job's limit.
   */
  readonly timeLimitS?: number;
}

export type ProgressEvent =
  | { readonly kind: "roofline"; readonly roofline: Roofline }
  | {
      readonly kind: "layer";
      readonly model: string;
      readonly layer: string;
      readonly k: number;
      readonly n: number;
    }
  | {
      readonly kind: "rows";
      readonly done: number;
      readonly total: number;
      readonly rows: readonly ResultRow[];
      /** Wall-clock window in which these rows were measured (ms since the epoch), for telemetry. */
      readonly startedAtMs: number;
      readonly endedAtMs: number;
    };

const DEFAULTS = {
  mode: "cold" as WeightMode,
  coldFactor: 4,
  samples: 25,
  minSampleUs: 200,
  warmupUs: 2000,
  sustainUs: 0,
  fp16Layout: "nk" as Fp16Layout,
};

/** Upper bound of calls in one sample (keeps the queue-filling copy short). */
const MAX_CALLS_PER_SAMPLE = 512;
/** Most queue-filling copies before one sample (about 12 ms with 256 MiB buffers on an H100). */
const MAX_FILL_COPIES = 64;
/** Retries of a sample in which the host may have let the GPU run dry. */
const LAUNCH_BOUND_RETRIES = 3;
/** Largest buffer for the roofline copy and the queue-filling copies. */
const COPY_BUFFER_BYTES = 256 * 1024 * 1024;
/** Host staging chunk for random uploads, in elements. */
const UPLOAD_CHUNK_ELEMENTS = 4 * 1024 * 1024;

/**
 * Number of weight copies to rotate through so that their total bytes exceed
 * `factor` x `l2Bytes` (at least 1; exactly 1 when a single copy already does).
 */
export function rotationCopies(bytesPerCopy: number, l2Bytes: number, factor = 4): number {
  if (!(bytesPerCopy > 0) || !Number.isFinite(bytesPerCopy)) {
    throw new RangeError(
      `rotationCopies: bytesPerCopy must be a positive number, got ${String(bytesPerCopy)}`,
    );
  }
  if (!(l2Bytes >= 0) || !Number.isFinite(l2Bytes)) {
    throw new RangeError(`rotationCopies: l2Bytes must be a non-negative number, got ${String(l2Bytes)}`);
  }
  if (!(factor >= 0) || !Number.isFinite(factor)) {
    throw new RangeError(`rotationCopies: factor must be a non-negative number, got ${String(factor)}`);
  }
  return Math.floor((factor * l2Bytes) / bytesPerCopy) + 1;
}

/** Calls per sample so that a sample lasts at least `minSampleUs` given `usPerCall`. */
export function callsPerSample(usPerCall: number, minSampleUs: number): number {
  if (!(usPerCall > 0)) return MAX_CALLS_PER_SAMPLE;
  return Math.min(MAX_CALLS_PER_SAMPLE, Math.max(1, Math.ceil(minSampleUs / usPerCall)));
}

/** Host staging buffers of random data, made once per run and uploaded repeatedly. */
class HostData {
  readonly activations: Uint16Array;
  readonly weights: Uint16Array;
  readonly scales: Uint16Array;
  readonly codes: Int32Array;

  constructor(
    readonly random: RandomSource,
    readonly chunkElements: number,
  ) {
    // Twice the chunk, so that each upload can start at a random offset.
    const length = 2 * chunkElements;
    this.activations = randomFloat16Buffer(random, length, -1, 1);
    this.weights = randomFloat16Buffer(random, length, -0.04, 0.04);
    this.scales = randomFloat16Buffer(random, length, 0.01, 0.02);
    this.codes = new Int32Array(length);
    random.fillUint32(this.codes);
  }
}

type FillKind = "activations" | "weights" | "scales" | "codes";

/** Fills a flat device tensor with random host data, chunk by chunk. */
function fillRandom(tensor: BenchTensor, host: HostData, kind: FillKind, stream: BenchStream): void {
  const source: BenchHostArray = host[kind];
  for (let offset = 0; offset < tensor.numel; offset += host.chunkElements) {
    const length = Math.min(host.chunkElements, tensor.numel - offset);
    const start = host.random.nextBelow(source.length - length + 1);
    const view = tensor.view([length], offset);
    try {
      view.upload(source.subarray(start, start + length), stream);
    } finally {
      view.dispose();
    }
  }
}

/** Owns device allocations made for one layer and frees them together. */
class Allocations {
  private readonly tensors: BenchTensor[] = [];

  constructor(private readonly api: BenchKernelApi) {}

  empty(dtype: BenchDType, numel: number): BenchTensor {
    const tensor = this.api.DeviceTensor.empty(dtype, [numel]);
    this.tensors.push(tensor);
    return tensor;
  }

  track(tensor: BenchTensor): BenchTensor {
    this.tensors.push(tensor);
    return tensor;
  }

  dispose(): void {
    // Views first (they were tracked after their parents).
    for (let i = this.tensors.length - 1; i >= 0; i--) this.tensors[i].dispose();
    this.tensors.length = 0;
  }
}

/** Events and the queue-filling copy shared by all timers. */
class TimingContext {
  readonly fillStart: BenchEvent;
  readonly start: BenchEvent;
  readonly end: BenchEvent;
  /** Two (start, end) pairs: sustained batches keep one batch queued behind the one running. */
  readonly batchEvents: readonly (readonly [BenchEvent, BenchEvent])[];

  constructor(
    readonly api: BenchKernelApi,
    readonly stream: BenchStream,
    readonly copySource: BenchTensor,
    readonly copyTarget: BenchTensor,
    /** GPU time of one filling copy, in microseconds. */
    readonly copyUs: number,
    readonly hostClockUs: () => number,
  ) {
    this.fillStart = new api.Event();
    this.start = new api.Event();
    this.end = new api.Event();
    this.batchEvents = [
      [new api.Event(), new api.Event()],
      [new api.Event(), new api.Event()],
    ];
  }

  dispose(): void {
    this.fillStart.dispose();
    this.start.dispose();
    this.end.dispose();
    for (const [start, end] of this.batchEvents) {
      start.dispose();
      end.dispose();
    }
  }
}

/** Times one side (one operation) of a row. */
class SideTimer {
  private calls = 1;
  private hostUsPerCall = 0;
  private fillCopies = 1;
  private counter = 0;
  private readonly perCallUs: number[] = [];
  private launchBound = 0;

  constructor(
    private readonly context: TimingContext,
    /** Runs the operation with weight copy `index % weightCopies`. */
    private readonly run: (index: number) => void,
    private readonly weightCopies: number,
    private readonly hot: boolean,
  ) {}

  /** Warm-up: runs the operation for about `warmupUs` of GPU time, estimating per-call GPU and host cost. */
  warmUp(warmupUs: number, minSampleUs: number): void {
    const { stream, start, end, hostClockUs } = this.context;
    this.run(this.counter++);
    stream.synchronize();
    let spentUs = 0;
    let batch = 2;
    let gpuUsPerCall = 0;
    for (let round = 0; round < 8 && (round < 2 || spentUs < warmupUs); round++) {
      start.record(stream);
      const hostStart = hostClockUs();
      for (let i = 0; i < batch; i++) this.run(this.counter++);
      const hostUs = hostClockUs() - hostStart;
      end.record(stream);
      end.synchronize();
      const elapsedUs = end.elapsedMs(start) * 1000;
      spentUs += elapsedUs;
      gpuUsPerCall = elapsedUs / batch;
      this.hostUsPerCall = hostUs / batch;
      batch = Math.min(
        MAX_CALLS_PER_SAMPLE,
        Math.max(2, Math.ceil(Math.max(warmupUs - spentUs, 0) / 2 / gpuUsPerCall)),
      );
    }
    // The warm-up had no queue-filling copy, so where the host enqueues a call more slowly than the
    // GPU runs it, its per-call time is the host's, and samples sized from it would come out shorter
    // than minSampleUs (on an H100 at m = 1: 8 TriRun calls of ~8 us where 200 us were asked, so the
    // sample's first call, which no call before it overlaps, weighed an eighth of it). So one sample
    // behind the copy, not kept, measures the GPU's time per call, and the samples are sized from that.
    this.calls = callsPerSample(gpuUsPerCall, minSampleUs);
    this.fillCopies = this.fillCopiesFor(this.hostUsPerCall);
    const launchBound = this.launchBound;
    this.sample();
    const calibratedUs = this.perCallUs.pop() ?? gpuUsPerCall;
    this.launchBound = launchBound;
    this.calls = callsPerSample(Math.min(calibratedUs, gpuUsPerCall), minSampleUs);
    this.fillCopies = this.fillCopiesFor(this.hostUsPerCall);
  }

  private fillCopiesFor(hostUsPerCall: number): number {
    // The filling copy must outlast the host's enqueueing of the sample, with margin.
    const neededUs = (this.calls + (this.hot ? 2 : 0)) * hostUsPerCall * 1.5 + 20;
    return Math.min(MAX_FILL_COPIES, Math.max(1, Math.ceil(neededUs / this.context.copyUs)));
  }

  /** Takes one sample: a queue-filling copy, then `calls` back-to-back calls between two events. */
  sample(): void {
    const { stream, fillStart, start, end, copySource, copyTarget, hostClockUs } = this.context;
    for (let attempt = 0; ; attempt++) {
      const hostStart = hostClockUs();
      fillStart.record(stream);
      for (let i = 0; i < this.fillCopies; i++) copyTarget.copyFrom(copySource, stream);
      // Hot weights: the copy evicted them from L2, so bring them back before timing.
      if (this.hot) for (let i = 0; i < 2; i++) this.run(this.counter++);
      start.record(stream);
      for (let i = 0; i < this.calls; i++) this.run(this.counter++);
      end.record(stream);
      const hostUs = hostClockUs() - hostStart;
      end.synchronize();
      const fillUs = start.elapsedMs(fillStart) * 1000;
      const elapsedUs = end.elapsedMs(start) * 1000;
      // If the host took longer to enqueue everything than the GPU spent before the
      // first timed call, the GPU may have waited for launches inside the sample.
      const mayHaveStarved = hostUs > fillUs;
      if (!mayHaveStarved || attempt >= LAUNCH_BOUND_RETRIES) {
        if (mayHaveStarved) this.launchBound++;
        this.perCallUs.push(elapsedUs / this.calls);
        return;
      }
      this.fillCopies = Math.min(
        MAX_FILL_COPIES,
        Math.max(this.fillCopies * 2, this.fillCopiesFor(hostUs / this.calls)),
      );
    }
  }

  /**
   * Sustained timing: back-to-back batches of `calls` calls, each between its own pair of events,
   * with the next batch enqueued before the host waits for the one running (so the GPU never idles
   * between them and no queue-filling copy is needed). Batches until `sustainUs` of GPU time are
   * the settling run; the next `samples` batches are the samples. A sample counts as possibly
   * launch-bound when the batch before it had already finished once the host had enqueued it: the
   * GPU may then have waited for its calls.
   */
  sustained(sustainUs: number, samples: number): void {
    const { stream, batchEvents } = this.context;
    interface Batch {
      readonly events: readonly [BenchEvent, BenchEvent];
      readonly settling: boolean;
      readonly mayHaveStarved: boolean;
    }
    let settledUs = 0;
    let taken = 0;
    let running: Batch | null = null;
    for (let index = 0; taken < samples; index++) {
      const events = batchEvents[index % 2];
      events[0].record(stream);
      for (let i = 0; i < this.calls; i++) this.run(this.counter++);
      events[1].record(stream);
      const queued: Batch = {
        events,
        settling: settledUs < sustainUs,
        mayHaveStarved: running === null || running.events[1].query(),
      };
      if (running !== null) {
        running.events[1].synchronize();
        const gpuUs = running.events[1].elapsedMs(running.events[0]) * 1000;
        if (running.settling) {
          settledUs += gpuUs;
        } else {
          this.perCallUs.push(gpuUs / this.calls);
          if (running.mayHaveStarved) this.launchBound++;
          taken++;
        }
      }
      running = queued;
    }
    // The last batch queued is not a sample; let it finish before its events are reused.
    stream.synchronize();
  }

  timing(): Timing {
    const stats = summarize(this.perCallUs);
    return {
      medianUs: stats.median,
      p10Us: stats.p10,
      p90Us: stats.p90,
      q1Us: stats.q1,
      q3Us: stats.q3,
      minUs: stats.min,
      maxUs: stats.max,
      samples: stats.count,
      callsPerSample: this.calls,
      weightCopies: this.weightCopies,
      launchBoundSamples: this.launchBound,
    };
  }
}

/** Measures device-to-device copy bandwidth (bytes read + written) with two buffers. */
function measureRoofline(
  api: BenchKernelApi,
  stream: BenchStream,
  source: BenchTensor,
  target: BenchTensor,
  samples: number,
): Roofline {
  const start = new api.Event();
  const end = new api.Event();
  try {
    const copiesPerSample = 4;
    for (let i = 0; i < 2; i++) target.copyFrom(source, stream);
    stream.synchronize();
    const perCopyUs: number[] = [];
    for (let sample = 0; sample < samples; sample++) {
      // An untimed copy first keeps the GPU busy while the timed ones are enqueued.
      target.copyFrom(source, stream);
      start.record(stream);
      for (let i = 0; i < copiesPerSample; i++) target.copyFrom(source, stream);
      end.record(stream);
      end.synchronize();
      perCopyUs.push((end.elapsedMs(start) * 1000) / copiesPerSample);
    }
    const stats = summarize(perCopyUs);
    return {
      bufferBytes: source.byteLength,
      gbps: (2 * source.byteLength) / (stats.median * 1e3),
      medianUs: stats.median,
      p10Us: stats.p10,
      p90Us: stats.p90,
    };
  } finally {
    start.dispose();
    end.dispose();
  }
}

function jsonConfig(config: BenchTrirunConfig): Record<string, number | string | boolean | null> {
  const out: Record<string, number | string | boolean | null> = {};
  for (const [key, value] of Object.entries(config)) {
    if (
      typeof value === "number" ||
      typeof value === "string" ||
      typeof value === "boolean" ||
      value === null
    ) {
      out[key] = value;
    }
  }
  return out;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

interface LayerPlan {
  readonly fp16Copies: number;
  readonly packedCopies: number;
  readonly bytes: number;
}

/** Weight copies per side for a layer, reduced if the device cannot hold them. */
export function planLayer(
  k: number,
  n: number,
  maxM: number,
  groupsizes: readonly number[],
  mode: WeightMode,
  l2Bytes: number,
  coldFactor: number,
  freeBytes: number,
): LayerPlan {
  const fp16Bytes = fp16WeightBytes(k, n);
  // The smallest per-copy size decides the count, so every group size exceeds the bound.
  const packedBytes = Math.min(...groupsizes.map((g) => packedWeightBytes(k, n, g)));
  const scaleBytes = groupsizes.reduce((sum, g) => sum + scaleRows(k, g) * n * 2, 0);
  const packedCopyBytes = (k * n) / 4 + scaleBytes;
  const fixedBytes = maxM * (k + n) * 2;
  let fp16Copies = mode === "hot" ? 1 : rotationCopies(fp16Bytes, l2Bytes, coldFactor);
  let packedCopies = mode === "hot" ? 1 : rotationCopies(packedBytes, l2Bytes, coldFactor);
  const total = () => fixedBytes + fp16Copies * fp16Bytes + packedCopies * packedCopyBytes;
  // Leave a tenth of free memory for the kernel's workspace and cuBLAS.
  while (total() > 0.9 * freeBytes && (fp16Copies > 1 || packedCopies > 1)) {
    fp16Copies = Math.max(1, Math.floor(fp16Copies / 2));
    packedCopies = Math.max(1, Math.floor(packedCopies / 2));
  }
  if (total() > 0.9 * freeBytes) {
    throw new RangeError(
      `layer k=${k} n=${n} at m=${maxM} needs ${(total() / 1e9).toFixed(2)} GB of device memory; ` +
        `${(freeBytes / 1e9).toFixed(2)} GB is free (use smaller --batch sizes)`,
    );
  }
  return { fp16Copies, packedCopies, bytes: total() };
}

/** Runs the whole benchmark and returns the results document. */
export function runBenchmark(api: BenchKernelApi, options: MeasureOptions): BenchResults {
  const mode = options.mode ?? DEFAULTS.mode;
  const coldFactor = options.coldFactor ?? DEFAULTS.coldFactor;
  const samples = options.samples ?? DEFAULTS.samples;
  const minSampleUs = options.minSampleUs ?? DEFAULTS.minSampleUs;
  const warmupUs = options.warmupUs ?? DEFAULTS.warmupUs;
  const sustainUs = options.sustainUs ?? DEFAULTS.sustainUs;
  const fp16Layout = options.fp16Layout ?? DEFAULTS.fp16Layout;
  const seed = options.seed ?? 0x7e1e5eed;
  const hostClockUs = options.hostClockUs ?? (() => performance.now() * 1000);
  const wallClockMs = options.wallClockMs ?? Date.now;
  const { modelSets, batchSizes, groupsizes } = options;
  if (modelSets.length === 0) throw new RangeError("runBenchmark: modelSets must not be empty");
  if (batchSizes.length === 0) throw new RangeError("runBenchmark: batchSizes must not be empty");
  if (groupsizes.length === 0) throw new RangeError("runBenchmark: groupsizes must not be empty");
  if (!Number.isInteger(samples) || samples < 1) {
    throw new RangeError(`runBenchmark: samples must be a positive integer, got ${String(samples)}`);
  }
  if (!(minSampleUs > 0)) {
    throw new RangeError(`runBenchmark: minSampleUs must be positive, got ${String(minSampleUs)}`);
  }
  if (!(sustainUs >= 0) || !Number.isFinite(sustainUs)) {
    throw new RangeError(`runBenchmark: sustainUs must be 0 or a positive number, got ${String(sustainUs)}`);
  }

  const deviceIndex = options.deviceIndex ?? 0;
  const device = api.devices()[deviceIndex];
  if (!device) throw new RangeError(`runBenchmark: no CUDA device with index ${deviceIndex}`);
  const random = new RandomSource(seed);
  const chunkElements = options.uploadChunkElements ?? UPLOAD_CHUNK_ELEMENTS;
  if (!Number.isInteger(chunkElements) || chunkElements < 1024 || chunkElements % 1024 !== 0) {
    throw new RangeError(
      `runBenchmark: uploadChunkElements must be a multiple of 1024, got ${String(chunkElements)}`,
    );
  }
  const host = new HostData(random, chunkElements);
  const stream = new api.Stream();
  const shared = new Allocations(api);
  const rows: ResultRow[] = [];
  const maxM = Math.max(...batchSizes);
  const total = modelSets.reduce((sum, set) => sum + set.layers.length * batchSizes.length, 0);
  let done = 0;
  let layersStarted = 0;
  let stoppedEarly = false;

  try {
    const copyBytes = options.copyBufferBytes ?? COPY_BUFFER_BYTES;
    // At most a sixteenth of free memory, in whole 4 KiB pages.
    const copyElements = (Math.floor(Math.min(copyBytes, api.memoryInfo().freeBytes / 16) / 4096) * 4096) / 2;
    if (!(copyElements >= 2048) || !Number.isInteger(copyElements)) {
      throw new RangeError(
        `runBenchmark: copy buffers of ${String(copyBytes)} bytes are too small or do not fit`,
      );
    }
    const copySource = shared.empty("f16", copyElements);
    const copyTarget = shared.empty("f16", copyElements);
    fillRandom(copySource, host, "activations", stream);
    fillRandom(copyTarget, host, "activations", stream);
    stream.synchronize();
    const roofline = measureRoofline(api, stream, copySource, copyTarget, 15);
    options.onProgress?.({ kind: "roofline", roofline });
    const context = new TimingContext(api, stream, copySource, copyTarget, roofline.medianUs, hostClockUs);

    const startUs = hostClockUs();
    const outOfTime = () =>
      options.timeLimitS !== undefined && hostClockUs() - startUs > options.timeLimitS * 1e6;
    try {
      measuring: for (const set of modelSets) {
        for (const shape of set.layers) {
          if (outOfTime()) {
            stoppedEarly = true;
            break measuring;
          }
          const { k, n } = shape;
          const layerIndex = layersStarted++;
          options.onProgress?.({ kind: "layer", model: set.id, layer: shape.layer, k, n });
          const plan = planLayer(
            k,
            n,
            maxM,
            groupsizes,
            mode,
            device.l2Bytes,
            coldFactor,
            api.memoryInfo().freeBytes,
          );
          const layerAllocations = new Allocations(api);
          try {
            const A = layerAllocations.empty("f16", maxM * k);
            const C = layerAllocations.empty("f16", maxM * n);
            const W = layerAllocations.empty("f16", plan.fp16Copies * k * n);
            const B = layerAllocations.empty("i32", (plan.packedCopies * k * n) / 16);
            fillRandom(A, host, "activations", stream);
            fillRandom(C, host, "activations", stream);
            fillRandom(W, host, "weights", stream);
            fillRandom(B, host, "codes", stream);
            const wShape = fp16Layout === "nk" ? [n, k] : [k, n];
            const wViews = Array.from({ length: plan.fp16Copies }, (_, i) =>
              layerAllocations.track(W.view(wShape, i * k * n)),
            );
            const bViews = Array.from({ length: plan.packedCopies }, (_, i) =>
              layerAllocations.track(B.view([k / 16, n], (i * k * n) / 16)),
            );
            const sViewsByGroup = groupsizes.map((g) => {
              const rowsOfS = scaleRows(k, g);
              const s = layerAllocations.empty("f16", plan.packedCopies * rowsOfS * n);
              fillRandom(s, host, "scales", stream);
              return Array.from({ length: plan.packedCopies }, (_, i) =>
                layerAllocations.track(s.view([rowsOfS, n], i * rowsOfS * n)),
              );
            });
            stream.synchronize();

            for (const [mIndex, m] of batchSizes.entries()) {
              if (outOfTime()) {
                stoppedEarly = true;
                break;
              }
              const Am = layerAllocations.track(A.view([m, k], 0));
              const Cm = layerAllocations.track(C.view([m, n], 0));
              const startedAtMs = wallClockMs();
              const rowsForM = measureRowGroup({
                api,
                context,
                model: set.id,
                layer: shape.layer,
                k,
                n,
                m,
                groupsizes,
                A: Am,
                C: Cm,
                wViews,
                bViews,
                sViewsByGroup,
                transposeW: fp16Layout === "nk",
                hot: mode === "hot",
                samples,
                minSampleUs,
                warmupUs,
                sustainUs,
                // Alternates along each layer's batch sizes and, at one m, from layer to layer, so that
                // neither side goes first in every row of a model set's sum.
                firstSide: (layerIndex + mIndex) % 2 === 0 ? "fp16" : "trirun",
              });
              rows.push(...rowsForM);
              done++;
              options.onProgress?.({
                kind: "rows",
                done,
                total,
                rows: rowsForM,
                startedAtMs,
                endedAtMs: wallClockMs(),
              });
            }
          } finally {
            stream.synchronize();
            layerAllocations.dispose();
          }
        }
      }
    } finally {
      context.dispose();
    }

    return {
      format: RESULTS_FORMAT,
      meta: {
        date: new Date().toISOString(),
        device: {
          name: device.name,
          computeCapability: device.computeCapability,
          smCount: device.smCount,
          l2Bytes: device.l2Bytes,
          memoryBytes: device.memoryBytes,
          peakMemoryBandwidth: device.peakMemoryBandwidth ?? null,
        },
        mode,
        coldFactor,
        fp16Layout,
        samples,
        minSampleUs,
        ...(sustainUs > 0 ? { sustainUs } : {}),
        seed,
        batchSizes: [...batchSizes],
        groupsizes: [...groupsizes],
        roofline,
        command: options.command ?? "",
        commit: options.commit ?? null,
        runtime: `node ${process.version}`,
        stoppedEarly,
      },
      modelSets: modelSets.map((set) => ({
        id: set.id,
        title: set.title,
        source: set.source,
        layers: set.layers.map((l) => ({ layer: l.layer, k: l.k, n: l.n })),
      })),
      rows,
    };
  } finally {
    shared.dispose();
    stream.dispose();
  }
}

interface RowGroupInput {
  readonly api: BenchKernelApi;
  readonly context: TimingContext;
  readonly model: string;
  readonly layer: string;
  readonly k: number;
  readonly n: number;
  readonly m: number;
  readonly groupsizes: readonly number[];
  readonly A: BenchTensor;
  readonly C: BenchTensor;
  readonly wViews: readonly BenchTensor[];
  readonly bViews: readonly BenchTensor[];
  readonly sViewsByGroup: readonly (readonly BenchTensor[])[];
  readonly transposeW: boolean;
  readonly hot: boolean;
  readonly samples: number;
  readonly minSampleUs: number;
  readonly warmupUs: number;
  readonly sustainUs: number;
  /** Which side goes first in sustained timing. */
  readonly firstSide: "fp16" | "trirun";
}

/** Measures FP16 once and TriRun at each group size for one (layer, m), samples interleaved. */
function measureRowGroup(input: RowGroupInput): ResultRow[] {
  const { api, context, A, C, wViews, bViews, transposeW, hot } = input;
  const stream = context.stream;
  const fp16 = new SideTimer(
    context,
    (i) => api.gemmF16(A, wViews[i % wViews.length], C, { transposeW, stream }),
    wViews.length,
    hot,
  );
  const configs: (BenchTrirunConfig | null)[] = input.groupsizes.map(() => null);
  const trirun = input.groupsizes.map(
    (groupsize, g) =>
      new SideTimer(
        context,
        (i) => {
          const copy = i % bViews.length;
          configs[g] = api.trirunMatmul(A, bViews[copy], input.sViewsByGroup[g][copy], C, {
            groupsize,
            stream,
          });
        },
        bViews.length,
        hot,
      ),
  );

  let fp16Error: string | null = null;
  const trirunErrors: (string | null)[] = input.groupsizes.map(() => null);
  const guard = (action: () => void): string | null => {
    try {
      action();
      return null;
    } catch (error) {
      // Leave the stream usable for the next side.
      try {
        stream.synchronize();
      } catch {
        // A sticky CUDA error will surface again on the next call.
      }
      return errorMessage(error);
    }
  };

  fp16Error = guard(() => fp16.warmUp(input.warmupUs, input.minSampleUs));
  input.groupsizes.forEach((_, g) => {
    trirunErrors[g] = guard(() => trirun[g].warmUp(input.warmupUs, input.minSampleUs));
  });
  if (input.sustainUs > 0) {
    const sustainFp16 = () => {
      if (fp16Error === null) fp16Error = guard(() => fp16.sustained(input.sustainUs, input.samples));
    };
    const sustainTrirun = () =>
      input.groupsizes.forEach((_, g) => {
        if (trirunErrors[g] === null) {
          trirunErrors[g] = guard(() => trirun[g].sustained(input.sustainUs, input.samples));
        }
      });
    if (input.firstSide === "fp16") {
      sustainFp16();
      sustainTrirun();
    } else {
      sustainTrirun();
      sustainFp16();
    }
  } else {
    for (let sample = 0; sample < input.samples; sample++) {
      if (fp16Error === null) fp16Error = guard(() => fp16.sample());
      input.groupsizes.forEach((_, g) => {
        if (trirunErrors[g] === null) trirunErrors[g] = guard(() => trirun[g].sample());
      });
    }
  }

  const fp16Timing = fp16Error === null ? fp16.timing() : null;
  return input.groupsizes.map((groupsize, g) => {
    const error = trirunErrors[g] ?? (fp16Error === null ? null : `fp16: ${fp16Error}`);
    const config = configs[g];
    return {
      model: input.model,
      layer: input.layer,
      k: input.k,
      n: input.n,
      m: input.m,
      groupsize,
      fp16: fp16Timing,
      trirun: trirunErrors[g] === null ? trirun[g].timing() : null,
      config: config ? jsonConfig(config) : null,
      error,
    };
  });
}
