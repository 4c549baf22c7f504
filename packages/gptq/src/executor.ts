import { KERNEL_SOURCE_FUNCTIONS, KERNELS, type KernelName } from "./kernels.js";

/** One call of a kernel from `kernels.ts`, with its typed arguments. */
export type KernelTask = {
  [K in KernelName]: { kernel: K; args: Parameters<(typeof KERNELS)[K]> };
}[KernelName];

/**
 * Runs kernel tasks, either on a pool of `worker_threads` workers over shared memory or inline on
 * the calling thread (browsers, single core, or on request). Results keep the order of the tasks.
 */
export interface Executor {
  /** How many tasks run at the same time (1 for inline). */
  readonly threads: number;
  /** True when arrays must live in SharedArrayBuffers so that workers see the caller's writes. */
  readonly sharedMemory: boolean;
  run(tasks: readonly KernelTask[]): Promise<unknown[]>;
  /** Stops the workers (idempotent); the executor must not be used afterwards. */
  dispose(): Promise<void>;
}

type TypedArrayConstructor<T> = {
  new (length: number): T;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

/** A zeroed typed array, in shared memory when the executor needs it. */
export function allocate<T>(ctor: TypedArrayConstructor<T>, length: number, exec: Executor): T {
  if (!exec.sharedMemory) return new ctor(length);
  return new ctor(new SharedArrayBuffer(length * ctor.BYTES_PER_ELEMENT), 0, length);
}

/** Runs one task on the calling thread. */
export function runKernel(task: KernelTask): unknown {
  const fn = KERNELS[task.kernel] as (...args: readonly unknown[]) => unknown;
  return fn(...task.args);
}

/** Runs everything on the calling thread. */
export class InlineExecutor implements Executor {
  readonly threads = 1;
  readonly sharedMemory = false;
  async run(tasks: readonly KernelTask[]): Promise<unknown[]> {
    return tasks.map(runKernel);
  }
  async dispose(): Promise<void> {}
}

/** The worker's program: the kernel functions' own source plus a small message loop. */
export function workerSource(): string {
  const functions = KERNEL_SOURCE_FUNCTIONS.map((fn) => fn.toString()).join("\n\n");
  const table = Object.entries(KERNELS)
    .map(([key, fn]) => `${JSON.stringify(key)}: ${fn.name}`)
    .join(",\n  ");
  return `"use strict";
const { parentPort } = require("node:worker_threads");
${functions}
const KERNELS = {
  ${table}
};
parentPort.on("message", (m) => {
  try {
    const value = KERNELS[m.kernel](...m.args);
    parentPort.postMessage({ id: m.id, ok: true, value });
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, message: e instanceof Error ? e.stack || e.message : String(e) });
  }
});
`;
}

interface WorkerLike {
  postMessage(value: unknown): void;
  on(event: "message", listener: (value: WorkerReply) => void): void;
  on(event: "error", listener: (error: Error) => void): void;
  on(event: "exit", listener: (code: number) => void): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<number>;
}

interface WorkerReply {
  id: number;
  ok: boolean;
  value?: unknown;
  message?: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** Error from a pool worker (a kernel threw, or the worker died). */
export class WorkerPoolError extends Error {
  readonly code = "ERR_GPTQ_WORKER";
  constructor(message: string) {
    super(message);
    this.name = "WorkerPoolError";
  }
}

/** A fixed pool of workers; idle workers are unref'd so that they never keep a process alive. */
export class WorkerExecutor implements Executor {
  readonly sharedMemory = true;
  private readonly pending = new Map<number, Pending>();
  private readonly idle: WorkerLike[] = [];
  private readonly queue: { task: KernelTask; pending: Pending }[] = [];
  private readonly busy = new Map<WorkerLike, number>();
  private nextId = 0;
  private failure: Error | undefined;

  private constructor(private readonly workers: WorkerLike[]) {
    for (const worker of workers) {
      worker.on("message", (reply) => this.onReply(worker, reply));
      worker.on("error", (error) => this.fail(new WorkerPoolError(`gptq worker failed: ${error.message}`)));
      worker.on("exit", (code) => {
        if (code !== 0) this.fail(new WorkerPoolError(`gptq worker exited with code ${code}`));
      });
      worker.unref();
      this.idle.push(worker);
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  /** True once a worker died or the pool was disposed; such a pool rejects every task. */
  get broken(): boolean {
    return this.failure !== undefined;
  }

  /** Starts `threads` workers; throws when worker_threads or SharedArrayBuffer are missing. */
  static async create(threads: number): Promise<WorkerExecutor> {
    if (typeof SharedArrayBuffer === "undefined") throw new Error("SharedArrayBuffer is not available");
    const { Worker } = await import("node:worker_threads");
    const source = workerSource();
    const workers: WorkerLike[] = [];
    for (let i = 0; i < threads; i++)
      workers.push(new Worker(source, { eval: true }) as unknown as WorkerLike);
    return new WorkerExecutor(workers);
  }

  run(tasks: readonly KernelTask[]): Promise<unknown[]> {
    return Promise.all(
      tasks.map(
        (task) =>
          new Promise<unknown>((resolve, reject) => {
            if (this.failure) {
              reject(this.failure);
              return;
            }
            this.queue.push({ task, pending: { resolve, reject } });
            this.pump();
          }),
      ),
    );
  }

  async dispose(): Promise<void> {
    this.fail(new WorkerPoolError("gptq worker pool was disposed"));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const { task, pending } = this.queue.shift()!;
      const id = this.nextId++;
      this.pending.set(id, pending);
      this.busy.set(worker, id);
      worker.ref();
      worker.postMessage({ id, kernel: task.kernel, args: task.args });
    }
  }

  private onReply(worker: WorkerLike, reply: WorkerReply): void {
    const pending = this.pending.get(reply.id);
    this.pending.delete(reply.id);
    this.busy.delete(worker);
    worker.unref();
    this.idle.push(worker);
    if (pending) {
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(new WorkerPoolError(`gptq kernel failed in a worker: ${reply.message}`));
    }
    this.pump();
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    for (const { pending } of this.queue.splice(0)) pending.reject(error);
    for (const worker of this.workers) worker.unref();
  }
}

const pools = new Map<number, Promise<Executor>>();

/** How many threads to use by default: the machine's cores, at most 16. */
export async function defaultThreads(): Promise<number> {
  try {
    const os = await import("node:os");
    const cores =
      typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
    return Math.max(1, Math.min(16, cores));
  } catch {
    return 1;
  }
}

/**
 * A shared executor with `threads` workers (created once per thread count, replaced if it breaks),
 * or the inline executor for one thread or where workers cannot be started.
 */
export async function getExecutor(threads?: number): Promise<Executor> {
  const count = threads ?? (await defaultThreads());
  if (!Number.isInteger(count) || count < 1 || count > 1024) {
    throw new RangeError(
      `threads must be an integer from 1 to 1024, got ${typeof threads === "string" ? JSON.stringify(threads) : String(threads)}`,
    );
  }
  if (count === 1) return new InlineExecutor();
  const cached = pools.get(count);
  if (cached) {
    const pool = await cached;
    // A pool whose worker died (or that someone disposed) is replaced by a fresh one.
    if (!(pool instanceof WorkerExecutor && pool.broken)) return pool;
  }
  const fresh = WorkerExecutor.create(count).catch((): Executor => new InlineExecutor());
  pools.set(count, fresh);
  return fresh;
}

/** Splits [start, end) into at most `parts` contiguous ranges of nearly equal length, aligned to `align`. */
export function splitRange(start: number, end: number, parts: number, align = 1): [number, number][] {
  const total = end - start;
  if (total <= 0) return [];
  const count = Math.max(1, Math.min(parts, Math.ceil(total / align)));
  const ranges: [number, number][] = [];
  let from = start;
  for (let k = 1; k <= count; k++) {
    let to = k === count ? end : start + Math.round((total * k) / count / align) * align;
    to = Math.min(Math.max(to, from), end);
    if (to > from) ranges.push([from, to]);
    from = to;
  }
  return ranges;
}

/**
 * Splits rows [start, end) into at most `parts` ranges of nearly equal cost, where row i costs
 * `cost(i)` (used for triangular work).
 */
export function splitByCost(
  start: number,
  end: number,
  parts: number,
  cost: (i: number) => number,
): [number, number][] {
  let total = 0;
  for (let i = start; i < end; i++) total += cost(i);
  if (parts <= 1 || total === 0) return end > start ? [[start, end]] : [];
  const ranges: [number, number][] = [];
  let from = start;
  let acc = 0;
  let k = 1;
  for (let i = start; i < end; i++) {
    acc += cost(i);
    if (acc >= (total * k) / parts && k < parts) {
      ranges.push([from, i + 1]);
      from = i + 1;
      k++;
    }
  }
  if (from < end) ranges.push([from, end]);
  return ranges;
}
