/**
 * Quantize-and-pack on worker threads. A layer's output columns are cut into ranges of whole
 * 64-column permutation chunks; the packed layout never mixes columns across chunks (weights:
 * 64-column chunks per 16-row tile; scales: 64 or 32 entries of one row), so each range packs on
 * its own and its words and scales are copied into their columns of the whole. The result is the
 * same bytes as {@link quantizePacked} on the whole layer.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { CHUNK_COLUMNS } from "../layout.js";
import { type PackedWeights, type QuantizeOptions, quantizePacked, type WeightMatrix } from "../quantize.js";
import type { PackedPart, PackJob, PackJobResult } from "./pack-worker.js";

/** Layers with fewer weights are packed on the calling thread: the copies would cost more. */
export const PARALLEL_MIN_WEIGHTS = 1 << 20;

/** The built worker file: beside this module in dist/, or dist/ itself when running from src/. */
function workerFile(): string {
  for (const candidate of ["./pack-worker.js", "../pack-worker.js", "../../dist/pack-worker.js"]) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error("the pack worker (dist/pack-worker.js) was not found: build @trirun/packing first");
}

interface Pending {
  resolve: (result: PackJobResult) => void;
  reject: (err: Error) => void;
}

export class PackPool {
  readonly threads: number;
  readonly #workers: Worker[];
  readonly #idle: Worker[];
  readonly #queue: { job: PackJob; pending: Pending }[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #busy = new Map<Worker, number>();
  #nextId = 0;
  #failure: Error | undefined;

  private constructor(workers: Worker[]) {
    this.threads = workers.length;
    this.#workers = workers;
    this.#idle = [...workers];
    for (const worker of workers) {
      worker.on("message", (result: PackJobResult) => this.#finish(worker, result));
      worker.on("error", (err) => this.#fail(new Error(`a pack worker failed: ${err.message}`)));
      worker.on("exit", (code) => {
        if (this.#busy.has(worker)) this.#fail(new Error(`a pack worker exited (code ${code}) during a job`));
      });
    }
  }

  /** Starts `threads` workers (a positive integer). */
  static create(threads: number): PackPool {
    if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
      throw new RangeError(`threads must be an integer from 1 to 1024, got ${String(threads)}`);
    }
    const file = workerFile();
    return new PackPool(Array.from({ length: threads }, () => new Worker(file)));
  }

  /** Same result as `quantizePacked(weight, options)`, computed on the workers. */
  async pack(weight: WeightMatrix, options: QuantizeOptions): Promise<PackedWeights> {
    const { outFeatures: n, inFeatures: k } = weight;
    const chunks = n / CHUNK_COLUMNS;
    if (!Number.isInteger(chunks) || n * k < PARALLEL_MIN_WEIGHTS || this.threads === 1) {
      return quantizePacked(weight, options);
    }
    // About two ranges per worker, so that a slow one does not hold the layer up.
    const perRange = Math.ceil(chunks / Math.min(chunks, 2 * this.threads)) * CHUNK_COLUMNS;
    const ranges: [number, number][] = [];
    for (let c0 = 0; c0 < n; c0 += perRange) ranges.push([c0, Math.min(n, c0 + perRange)]);
    const { data } = weight;
    const results = await Promise.all(
      ranges.map(([c0, c1]) => {
        const slice = data.slice(c0 * k, c1 * k); // a copy: its buffer moves to the worker
        return this.#run({
          id: this.#nextId++,
          data: slice.buffer as ArrayBuffer,
          dtype: weight.dtype,
          outFeatures: c1 - c0,
          inFeatures: k,
          method: options.method,
          groupsize: options.groupsize,
        });
      }),
    );
    const failed = results.find((r) => "error" in r);
    if (failed !== undefined) {
      // Quantizing the whole layer here throws the error with the layer's own indices and name.
      quantizePacked(weight, options);
      throw new Error((failed as { error: string }).error);
    }
    const parts = results as PackedPart[];
    const first = parts[0];
    const tileRows = k / 16;
    const scaleRows = first.s.length / (ranges[0][1] - ranges[0][0]);
    const B = new Int32Array(tileRows * n);
    const s = new Uint16Array(scaleRows * n);
    ranges.forEach(([c0, c1], i) => {
      const part = parts[i];
      const width = c1 - c0;
      for (let r = 0; r < tileRows; r++) B.set(part.B.subarray(r * width, (r + 1) * width), r * n + c0);
      for (let r = 0; r < scaleRows; r++) s.set(part.s.subarray(r * width, (r + 1) * width), r * n + c0);
    });
    return { B, s, k, n, groupsize: first.groupsize };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  #run(job: PackJob): Promise<PackJobResult> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const pending = { resolve, reject };
      const worker = this.#idle.pop();
      if (worker === undefined) this.#queue.push({ job, pending });
      else this.#start(worker, job, pending);
    });
  }

  #start(worker: Worker, job: PackJob, pending: Pending): void {
    this.#pending.set(job.id, pending);
    this.#busy.set(worker, job.id);
    worker.postMessage(job, [job.data]);
  }

  #finish(worker: Worker, result: PackJobResult): void {
    this.#busy.delete(worker);
    const pending = this.#pending.get(result.id);
    this.#pending.delete(result.id);
    pending?.resolve(result);
    const next = this.#queue.shift();
    if (next) this.#start(worker, next.job, next.pending);
    else this.#idle.push(worker);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const pending of this.#pending.values()) pending.reject(err);
    for (const { pending } of this.#queue) pending.reject(err);
    this.#pending.clear();
    this.#queue.length = 0;
  }
}
