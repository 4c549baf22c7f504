/**
 * The CPU backend's matmul on several cores, behind the same synchronous `forward`.
 *
 * A call's input rows are cut into ranges of whole 4-row blocks, one per thread: the calling thread
 * takes the first and `worker_threads` workers the others, each running `matmulWeightRows` on its
 * rows (or `matmulLevelRows` for weights kept as levels). Every output is still one sum over `in` in order, so the result is bit-identical to one
 * thread for any count. The weights live in SharedArrayBuffers from the layer's creation (see
 * `shareable`), the inputs and outputs pass through shared scratch buffers, and the calling thread
 * blocks on `Atomics.wait` until the workers have counted themselves done (Node allows that on the
 * main thread). Small calls (decoding one token) stay on the calling thread: a round trip to the
 * workers costs tens of microseconds.
 *
 * Threads: `setCpuThreads(n)`, else the `TRIRUN_CPU_THREADS` environment variable, else the cores
 * Node may use, at most 8.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { CpuWeights } from "./cpu-core.js";
import { matmulLevelRows, matmulWeightRows } from "./cpu-matmul.js";

/**
 * Calls with fewer multiply-adds run on the calling thread (about 0.15 ms of one core). Measured on
 * 2 cores: 0.7 M multiply-adds 353 -> 270 us on two threads, 2.8 M 1399 -> 824 us.
 */
export const PARALLEL_MIN_MACS = 1 << 19;
/** A call waits at most this long for its workers before it reports them stuck. */
const WAIT_LIMIT_MS = 10 * 60 * 1000;

let configuredThreads: number | undefined;
let defaultThreads: number | undefined; // from TRIRUN_CPU_THREADS or the cores, resolved at first use
let pool: MatmulPool | undefined;
let poolError: string | undefined;

function checkThreads(n: unknown, what: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 256) {
    throw new RangeError(`${what} must be an integer from 1 to 256, got ${String(n)}`);
  }
  return n;
}

/**
 * Sets how many threads the CPU backend's matmul uses (1: the calling thread only). Layers created
 * while it is 1 keep plain arrays and stay single-threaded.
 */
export function setCpuThreads(threads: number): void {
  configuredThreads = checkThreads(threads, "threads");
  if (pool !== undefined && pool.threads !== configuredThreads) {
    pool.close();
    pool = undefined;
  }
}

/** The CPU backend's thread count (see {@link setCpuThreads}); the environment is read once, at first use. */
export function cpuThreads(): number {
  if (configuredThreads !== undefined) return configuredThreads;
  if (defaultThreads === undefined) {
    const env = process.env.TRIRUN_CPU_THREADS;
    defaultThreads =
      env !== undefined && env !== ""
        ? checkThreads(Number(env), "TRIRUN_CPU_THREADS")
        : Math.min(8, availableParallelism());
  }
  return defaultThreads;
}

/**
 * `a` itself when the CPU backend runs on one thread, else a copy in a SharedArrayBuffer that the
 * workers can read (the layer keeps the copy; the original can be collected).
 */
export function shareable<T extends Float32Array | Int8Array>(a: T): T {
  if (cpuThreads() <= 1 || a.buffer instanceof SharedArrayBuffer) return a;
  const shared = new (a.constructor as new (buffer: SharedArrayBuffer) => T)(
    new SharedArrayBuffer(a.byteLength),
  );
  shared.set(a);
  return shared;
}

const isShared = (a: Float32Array | Int8Array | undefined) =>
  a === undefined || a.buffer instanceof SharedArrayBuffer;

/** One thread's share of a call: rows of x through either kind of weights. */
function matmulRows(
  x: Float32Array,
  rows: number,
  k: number,
  weights: CpuWeights,
  n: number,
  bias: Float32Array | undefined,
  y: Float32Array,
): void {
  if (weights.kind === "dense") matmulWeightRows(x, rows, k, weights.weight, n, bias, y);
  else matmulLevelRows(x, rows, k, weights.levels, weights.scales, weights.groupLength, n, bias, y);
}

/**
 * `y (rows, n) = x (rows, k) @ weight^T + bias` on the CPU backend's threads when the call is large
 * and the weights are shared; otherwise on the calling thread.
 */
export function parallelMatmul(
  x: Float32Array,
  rows: number,
  k: number,
  weights: CpuWeights | Float32Array,
  n: number,
  bias: Float32Array | undefined,
  y: Float32Array,
): void {
  const w: CpuWeights = weights instanceof Float32Array ? { kind: "dense", weight: weights } : weights;
  const threads = cpuThreads();
  const shared =
    isShared(bias) && (w.kind === "dense" ? isShared(w.weight) : isShared(w.levels) && isShared(w.scales));
  const large = rows >= 8 && rows * k * n >= PARALLEL_MIN_MACS;
  const workers = threads > 1 && shared && large ? getPool(threads) : undefined;
  if (workers !== undefined) workers.run(x, rows, k, w, n, bias, y);
  else matmulRows(x, rows, k, w, n, bias, y);
}

/** Why the CPU matmul runs on one thread although more were asked for, if it does. */
export function cpuThreadsUnavailableReason(): string | undefined {
  return poolError;
}

function getPool(threads: number): MatmulPool | undefined {
  if (pool !== undefined) return pool;
  if (poolError !== undefined) return undefined;
  try {
    pool = new MatmulPool(threads);
  } catch (err) {
    poolError = `could not start CPU matmul workers: ${err instanceof Error ? err.message : String(err)}`;
  }
  return pool;
}

interface Job {
  control: SharedArrayBuffer;
  x: SharedArrayBuffer;
  y: SharedArrayBuffer;
  /** fp32 weights, or (with `scales`) int8 levels. */
  weight: SharedArrayBuffer;
  weightOffset: number;
  scales: SharedArrayBuffer | undefined;
  scalesOffset: number;
  groupLength: number;
  bias: SharedArrayBuffer | undefined;
  biasOffset: number;
  k: number;
  n: number;
  r0: number;
  r1: number;
}

/** The worker: the matmul's own source (it uses nothing outside itself) and a job handler. */
function workerSource(): string {
  return `"use strict";
const { parentPort, workerData } = require("node:worker_threads");
const matmulWeightRows = ${matmulWeightRows.toString()};
const matmulLevelRows = ${matmulLevelRows.toString()};
parentPort.on("message", (job) => {
  const control = new Int32Array(job.control);
  try {
    const rows = job.r1 - job.r0;
    const x = new Float32Array(job.x, job.r0 * job.k * 4, rows * job.k);
    const y = new Float32Array(job.y, job.r0 * job.n * 4, rows * job.n);
    const b = job.bias === undefined ? undefined : new Float32Array(job.bias, job.biasOffset, job.n);
    if (job.scales === undefined) {
      const w = new Float32Array(job.weight, job.weightOffset, job.n * job.k);
      matmulWeightRows(x, rows, job.k, w, job.n, b, y);
    } else {
      const levels = new Int8Array(job.weight, job.weightOffset, job.n * job.k);
      const groups = Math.ceil(job.k / job.groupLength);
      const scales = new Float32Array(job.scales, job.scalesOffset, job.n * groups);
      matmulLevelRows(x, rows, job.k, levels, scales, job.groupLength, job.n, b, y);
    }
  } catch (err) {
    Atomics.store(control, 1, 1);
  }
  Atomics.add(control, 0, 1);
  Atomics.notify(control, 0);
});
// Started: the pool waits for every worker to get here before it sends work.
const ready = new Int32Array(workerData.ready);
Atomics.add(ready, 0, 1);
Atomics.notify(ready, 0);
`;
}

/** How long a new pool waits for its workers to start before it runs on the calling thread instead. */
const START_LIMIT_MS = 20_000;

/** @internal Exported for tests: the pool behind {@link parallelMatmul}. */
export class MatmulPool {
  readonly #workers: Worker[];
  #x = new SharedArrayBuffer(0);
  #y = new SharedArrayBuffer(0);

  constructor(
    readonly threads: number,
    source = workerSource(),
    startLimitMs = START_LIMIT_MS,
  ) {
    const ready = new SharedArrayBuffer(4);
    this.#workers = Array.from({ length: threads - 1 }, () => {
      const worker = new Worker(source, { eval: true, workerData: { ready } });
      worker.unref(); // idle workers never keep the process alive
      // Errors arrive as events once this thread is free again; failures are detected through the
      // counters (start, done, failed), so the event needs no more than a listener.
      worker.on("error", () => {});
      return worker;
    });
    // A worker that fails to start reports it only through an event, which this thread would not see
    // while it waits for a call's results: wait for all of them to count in first.
    const started = new Int32Array(ready);
    const deadline = Date.now() + startLimitMs;
    for (let n = Atomics.load(started, 0); n < this.#workers.length; n = Atomics.load(started, 0)) {
      if (Date.now() > deadline) {
        this.close();
        throw new Error(
          `${this.#workers.length - n} of ${this.#workers.length} workers did not start within ${startLimitMs / 1000} s`,
        );
      }
      Atomics.wait(started, 0, n, 100);
    }
  }

  run(
    x: Float32Array,
    rows: number,
    k: number,
    w: CpuWeights,
    n: number,
    bias: Float32Array | undefined,
    y: Float32Array,
  ): void {
    if (this.#x.byteLength < rows * k * 4) this.#x = new SharedArrayBuffer(rows * k * 4);
    if (this.#y.byteLength < rows * n * 4) this.#y = new SharedArrayBuffer(rows * n * 4);
    const xs = new Float32Array(this.#x, 0, rows * k);
    const ys = new Float32Array(this.#y, 0, rows * n);
    xs.set(x.subarray(0, rows * k));
    const stored = w.kind === "dense" ? w.weight : w.levels;
    // Ranges of whole 4-row blocks, the first for this thread.
    const perThread = Math.ceil(rows / this.threads / 4) * 4;
    const control = new SharedArrayBuffer(8);
    const counts = new Int32Array(control);
    let posted = 0;
    for (let i = 1; i < this.threads; i++) {
      const r0 = i * perThread;
      const r1 = Math.min(rows, r0 + perThread);
      if (r0 >= r1) break;
      const job: Job = {
        control,
        x: this.#x,
        y: this.#y,
        weight: stored.buffer as SharedArrayBuffer,
        weightOffset: stored.byteOffset,
        scales: w.kind === "levels" ? (w.scales.buffer as SharedArrayBuffer) : undefined,
        scalesOffset: w.kind === "levels" ? w.scales.byteOffset : 0,
        groupLength: w.kind === "levels" ? w.groupLength : 0,
        bias: bias?.buffer as SharedArrayBuffer | undefined,
        biasOffset: bias?.byteOffset ?? 0,
        k,
        n,
        r0,
        r1,
      };
      this.#workers[i - 1].postMessage(job);
      posted++;
    }
    const mine = Math.min(rows, perThread);
    matmulRows(xs.subarray(0, mine * k), mine, k, w, n, bias, ys.subarray(0, mine * n));
    const deadline = Date.now() + WAIT_LIMIT_MS;
    for (let done = Atomics.load(counts, 0); done < posted; done = Atomics.load(counts, 0)) {
      if (Date.now() > deadline) {
        throw new Error(
          `CPU matmul workers did not finish within ${WAIT_LIMIT_MS / 1000} s (${done} of ${posted})`,
        );
      }
      Atomics.wait(counts, 0, done, 1000);
    }
    if (Atomics.load(counts, 1) !== 0) throw new Error("a CPU matmul worker failed");
    y.set(ys);
  }

  close(): void {
    for (const worker of this.#workers) void worker.terminate();
  }
}
