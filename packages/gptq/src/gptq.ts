import { setFloat16 } from "@petamoriken/float16";
import { CpuBackend } from "./backends/cpu.js";
import { CudaBackend, probeKernelNative } from "./backends/cuda.js";
import type { Backend, GramAccumulator } from "./backends/types.js";
import { upperCholeskyOfInverse } from "./cholesky.js";
import { GPTQError } from "./errors.js";
import { allocate, type Executor, getExecutor, type KernelTask, runKernel, splitRange } from "./executor.js";
import {
  type QuantizeOptions,
  type ResolvedQuantizeOptions,
  resolveQuantizeOptions,
  shown,
} from "./options.js";

/** "auto" picks CUDA when `@trirun/kernel-native` loads and reports a device, else the CPU. */
export type BackendChoice = "auto" | "cpu" | "cuda" | Backend;

export interface GPTQOptions {
  /** Default "auto". */
  backend?: BackendChoice;
  /** Threads for the host work (Cholesky, sweep, CPU matmuls): default the core count, at most 16;
   *  1 runs everything on the calling thread. */
  threads?: number;
}

export interface QuantizeResult {
  /** (inFeatures, outFeatures) row-major, values 0..3 (0..2 for ternary): level = code - 1. */
  codes: Uint8Array;
  /** fp16 bit patterns, (inFeatures / groupsize, outFeatures) row-major; w = (code - 1) * scale. */
  scales: Uint16Array;
  /** GPTQ loss: sum over weights of (w - q)^2 / d^2 / 2 (d: diagonal of the inverse factor). */
  loss: number;
  /** Dampening actually used, as a fraction of the mean Hessian diagonal (may exceed the request). */
  damp: number;
  /** Effective group size (inFeatures for -1). */
  groupsize: number;
  /** Input features whose Hessian diagonal was zero; their weights were set to 0. */
  deadColumns: number;
  /** Backend that ran the Hessian and block updates. */
  backend: string;
  /** Wall time of the float64 factorisation (Cholesky, inverse factor, retries; near 0 when a
   *  previous quantize with the same Hessian, damp and order is reused) and of the sweep. */
  timings: { factorMs: number; sweepMs: number };
}

/** Damp retries: each multiplies the dampening by 10. */
const DAMP_RETRIES = 4;
/** Below this much work (multiply-adds) a sweep step runs on the calling thread. */
const PARALLEL_MIN_WORK = 1 << 18;

/**
 * GPTQ for one linear layer: accumulate H = 2/N sum x x^T from calibration activations with
 * {@link GPTQ.addBatch}, then {@link GPTQ.quantize} a weight of shape (out, inFeatures) into TriRun
 * codes and fp16 scales. Calls are queued, so they may be issued without awaiting each one.
 */
export class GPTQ {
  readonly inFeatures: number;
  private samples = 0;
  private sum: Float64Array | undefined;
  private accumulator: GramAccumulator | undefined;
  private setup: Promise<{ exec: Executor; backend: Backend }> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly options: GPTQOptions;
  /** The last factorisation, reused by quantize calls with the same Hessian and ordering (q/k/v). */
  private factorCache: { key: string; factor: Factorization } | undefined;

  constructor(inFeatures: number, options: GPTQOptions | null = {}) {
    const opts = options ?? {};
    if (!Number.isInteger(inFeatures) || inFeatures <= 0) {
      throw new RangeError(`inFeatures must be a positive integer, got ${shown(inFeatures)}`);
    }
    const backend = opts.backend ?? "auto";
    if (typeof backend === "string" && backend !== "auto" && backend !== "cpu" && backend !== "cuda") {
      throw new RangeError(
        `backend must be "auto", "cpu", "cuda" or a Backend, got ${JSON.stringify(backend)}`,
      );
    }
    if (
      opts.threads !== undefined &&
      (!Number.isInteger(opts.threads) || opts.threads < 1 || opts.threads > 1024)
    ) {
      throw new RangeError(`threads must be an integer from 1 to 1024, got ${shown(opts.threads)}`);
    }
    this.inFeatures = inFeatures;
    this.options = { ...opts, backend };
  }

  /**
   * Starts from a given Hessian (n x n, symmetric, row-major) that stands for `samples` tokens, so
   * that later {@link addBatch} calls keep the running mean right.
   */
  static fromHessian(
    h: Float64Array,
    inFeatures: number,
    opts: GPTQOptions & { samples?: number } = {},
  ): GPTQ {
    const gptq = new GPTQ(inFeatures, opts);
    if (!(h instanceof Float64Array)) throw new TypeError("h must be a Float64Array");
    if (h.length !== inFeatures * inFeatures) {
      throw new RangeError(`h must have inFeatures^2 = ${inFeatures * inFeatures} elements, got ${h.length}`);
    }
    const samples = opts.samples ?? 1;
    if (!Number.isInteger(samples) || samples < 1) {
      throw new RangeError(`samples must be a positive integer, got ${String(samples)}`);
    }
    const firstBad = h.findIndex((v) => !Number.isFinite(v));
    if (firstBad >= 0) throw new RangeError(`h[${firstBad}] is not finite (${h[firstBad]})`);
    gptq.sum = h.map((v) => (v * samples) / 2);
    gptq.samples = samples;
    return gptq;
  }

  /** Calibration tokens seen so far. */
  get nsamples(): number {
    return this.samples;
  }

  /** Name of the backend in use ("cpu", "cuda", ...), resolving "auto" if needed. */
  async backendName(): Promise<string> {
    return (await this.ready()).backend.name;
  }

  /** Adds a batch of activations x = (tokens, inFeatures) row-major to the Hessian. */
  addBatch(x: Float32Array, tokens: number): Promise<void> {
    return this.enqueue(async () => {
      const n = this.inFeatures;
      if (!(x instanceof Float32Array)) throw new TypeError("x must be a Float32Array (tokens, inFeatures)");
      if (!Number.isInteger(tokens) || tokens <= 0) {
        throw new RangeError(`tokens must be a positive integer, got ${String(tokens)}`);
      }
      if (x.length !== tokens * n) {
        throw new RangeError(
          `x must have tokens * inFeatures = ${tokens} * ${n} = ${tokens * n} elements, got ${x.length}`,
        );
      }
      const bad = firstNonFinite(x);
      if (bad >= 0) {
        throw new RangeError(
          `x[${bad}] (token ${Math.floor(bad / n)}, feature ${bad % n}) is not finite: ${x[bad]}`,
        );
      }
      const { backend } = await this.ready();
      this.accumulator ??= backend.createGramAccumulator(n);
      await this.accumulator.add(x, tokens);
      this.samples += tokens;
      this.factorCache = undefined;
    });
  }

  /** The Hessian H = 2/N sum x x^T accumulated so far (a fresh n x n float64 copy). */
  hessian(): Promise<Float64Array> {
    return this.enqueue(async () => {
      const sum = await this.flushedSum();
      const scale = this.samples > 0 ? 2 / this.samples : 0;
      return sum.map((v) => v * scale);
    });
  }

  /**
   * Quantizes weight (outFeatures, inFeatures) row-major with GPTQ. The accumulated Hessian stays,
   * so several weights with the same input (q, k, v) can be quantized from one GPTQ.
   */
  quantize(weight: Float32Array, opts: QuantizeOptions = {}): Promise<QuantizeResult> {
    return this.enqueue(() => this.quantizeNow(weight, opts));
  }

  /** Frees the accumulator's device memory (the worker pool is shared and needs no disposal). */
  dispose(): Promise<void> {
    return this.enqueue(async () => {
      this.accumulator?.dispose();
      this.accumulator = undefined;
    });
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private ready(): Promise<{ exec: Executor; backend: Backend }> {
    this.setup ??= (async () => {
      const exec = await getExecutor(this.options.threads);
      const backend = await resolveBackend(this.options.backend ?? "auto", exec);
      return { exec, backend };
    })();
    return this.setup;
  }

  private async flushedSum(): Promise<Float64Array> {
    const n = this.inFeatures;
    this.sum ??= new Float64Array(n * n);
    if (this.accumulator) await this.accumulator.flushInto(this.sum);
    return this.sum;
  }

  /**
   * Dead inputs, processing order and the upper factor of the damped H^-1; cached while no batch
   * was added and damp / order are the same.
   */
  private async factor(
    sum: Float64Array,
    opts: ResolvedQuantizeOptions,
    exec: Executor,
  ): Promise<Factorization> {
    const n = this.inFeatures;
    const key = `${this.samples}|${opts.damp}|${opts.actOrder ? `act${opts.groupsize}` : "natural"}`;
    if (this.factorCache?.key === key) return this.factorCache.factor;
    // H = 2/N S; dead inputs (zero diagonal) get H_jj = 1 and a zero weight column.
    const h = new Float64Array(n * n);
    const scale = 2 / this.samples;
    for (let i = 0; i < h.length; i++) h[i] = sum[i] * scale;
    const dead = new Uint8Array(n);
    let deadColumns = 0;
    for (let j = 0; j < n; j++) {
      if (h[j * n + j] === 0) {
        h[j * n + j] = 1;
        dead[j] = 1;
        deadColumns++;
      }
    }
    const diag = new Float64Array(n);
    for (let j = 0; j < n; j++) diag[j] = h[j * n + j];
    const perm = allocate(Int32Array, n, exec);
    perm.set(opts.actOrder ? actOrderPermutation(diag, opts.groupsize) : identityPermutation(n));
    // hp[a][b] = h[perm[a]][perm[b]]: the Hessian in processing order.
    const hp = new Float64Array(n * n);
    for (let a = 0; a < n; a++) {
      const src = perm[a] * n;
      for (let b = 0; b < n; b++) hp[a * n + b] = h[src + perm[b]];
    }
    const { u, damp } = await dampedInverseFactor(hp, n, opts.damp, perm, exec);
    const factor = { perm, dead, deadColumns, u, damp };
    this.factorCache = { key, factor };
    return factor;
  }

  private async quantizeNow(weight: Float32Array, options: QuantizeOptions): Promise<QuantizeResult> {
    const n = this.inFeatures;
    if (!(weight instanceof Float32Array))
      throw new TypeError("weight must be a Float32Array (outFeatures, inFeatures)");
    if (weight.length === 0 || weight.length % n !== 0) {
      throw new RangeError(`weight length ${weight.length} is not a positive multiple of inFeatures ${n}`);
    }
    const out = weight.length / n;
    const opts = resolveQuantizeOptions(options, n);
    const bad = firstNonFinite(weight);
    if (bad >= 0) {
      throw new RangeError(
        `weight[${bad}] (row ${Math.floor(bad / n)}, column ${bad % n}) is not finite: ${weight[bad]}`,
      );
    }
    checkRepresentable(weight, n, opts);
    const { exec, backend } = await this.ready();
    const sum = await this.flushedSum();
    if (this.samples === 0) {
      throw new GPTQError(
        "ERR_GPTQ_NO_CALIBRATION",
        "no calibration data: call addBatch() before quantize()",
      );
    }

    const factorStart = performance.now();
    opts.onProgress?.({ phase: "factor", done: 0, total: 1 });
    const { perm, dead, deadColumns, u, damp } = await this.factor(sum, opts, exec);
    opts.onProgress?.({ phase: "factor", done: 1, total: 1 });
    const sweepStart = performance.now();

    const wt = allocate(Float32Array, n * out, exec);
    transposePermuted(weight, out, n, perm, dead, wt);
    const searchWeights = allocate(Float64Array, n, exec);
    for (let p = 0; p < n; p++) searchWeights[p] = 1 / (u[p * n + p] * u[p * n + p]);

    const codes = allocate(Uint8Array, n * out, exec);
    const scales = allocate(Float32Array, (n / opts.groupsize) * out, exec);
    const sweep = await backend.createSweep(wt, n, out, u);
    let loss = 0;
    try {
      const blocks = sweepBlocks(n, opts.blockSize, opts.groupsize);
      const maxCount = blocks.reduce((m, [a, b]) => Math.max(m, b - a), 0);
      const err = allocate(Float32Array, maxCount * out, exec);
      for (const [r0, r1] of blocks) {
        const g = opts.groupsize;
        if (r0 % g === 0 && r0 + g > r1) {
          // The group reaches past this block; at a block start every row is up to date.
          const rows = await sweep.readRows(r0, r0 + g);
          const scaleRow = Math.floor(perm[r0] / g) * out;
          await runOverOutputs(exec, out, g * out * opts.grid, (o0, o1) => ({
            kernel: "searchGroupScales",
            args: [rows, out, 0, g, searchWeights, r0, o0, o1, ...searchArgs(opts), scales, scaleRow],
          }));
        }
        const block = await sweep.readRows(r0, r1);
        const count = r1 - r0;
        const losses = await runOverOutputs(exec, out, count * count * out, (o0, o1) => ({
          kernel: "sweepBlock",
          args: [
            block,
            out,
            u,
            n,
            r0,
            r1,
            o0,
            o1,
            err,
            codes,
            scales,
            perm,
            g,
            searchWeights,
            ...searchArgs(opts),
          ],
        }));
        for (const l of losses) loss += l as number;
        await sweep.rankUpdate(r0, r1, err);
        opts.onProgress?.({ phase: "sweep", done: r1, total: n });
      }
    } finally {
      sweep.dispose();
    }
    const sweepEnd = performance.now();
    return {
      codes: new Uint8Array(codes),
      scales: toFp16Bits(scales),
      loss,
      damp,
      groupsize: opts.groupsize,
      deadColumns,
      backend: backend.name,
      timings: { factorMs: sweepStart - factorStart, sweepMs: sweepEnd - sweepStart },
    };
  }
}

interface Factorization {
  perm: Int32Array;
  dead: Uint8Array;
  deadColumns: number;
  u: Float64Array;
  damp: number;
}

function searchArgs(opts: ResolvedQuantizeOptions): [number, number, number, number, boolean] {
  return [opts.qmin, opts.qmax, opts.grid, opts.minShrink, opts.negativeScales];
}

async function resolveBackend(choice: BackendChoice, exec: Executor): Promise<Backend> {
  if (typeof choice === "object") return choice;
  if (choice === "cpu") return new CpuBackend(exec);
  const { native, reason } = await probeKernelNative();
  if (native) return new CudaBackend(native, exec);
  if (choice === "cuda") {
    throw new GPTQError("ERR_GPTQ_BACKEND", `backend "cuda" was requested but is not available: ${reason}`);
  }
  return new CpuBackend(exec);
}

/** Runs one kernel over output slices, in parallel when the work is large enough; returns the results. */
async function runOverOutputs(
  exec: Executor,
  out: number,
  work: number,
  task: (o0: number, o1: number) => KernelTask,
): Promise<unknown[]> {
  if (exec.threads === 1 || work < PARALLEL_MIN_WORK) return [runKernel(task(0, out))];
  return exec.run(splitRange(0, out, exec.threads, 16).map(([o0, o1]) => task(o0, o1)));
}

/**
 * Tries Cholesky of H + damp * mean(diag) * I, multiplying damp by 10 (from at least 1e-3) after
 * each failure; throws GPTQError when H stays indefinite.
 */
async function dampedInverseFactor(
  hp: Float64Array,
  n: number,
  requested: number,
  perm: Int32Array,
  exec: Executor,
): Promise<{ u: Float64Array; damp: number }> {
  let mean = 0;
  for (let j = 0; j < n; j++) mean += hp[j * n + j];
  mean /= n;
  const tried: string[] = [];
  let damp = requested;
  for (let attempt = 0; attempt <= DAMP_RETRIES; attempt++) {
    const damped = allocate(Float64Array, n * n, exec);
    damped.set(hp);
    for (let j = 0; j < n; j++) damped[j * n + j] += damp * mean;
    const result = await upperCholeskyOfInverse(damped, n, exec);
    if (result.ok) return { u: result.u, damp };
    tried.push(`damp ${damp}: pivot at input feature ${perm[result.pivot]}`);
    damp = Math.max(damp * 10, 1e-3);
  }
  throw new GPTQError(
    "ERR_GPTQ_NOT_POSITIVE_DEFINITE",
    `the Hessian is not positive definite even with extra dampening (${tried.join("; ")}); ` +
      "check the calibration activations",
  );
}

function identityPermutation(n: number): Int32Array {
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  return perm;
}

/**
 * Activation order: inputs by decreasing Hessian diagonal. With groups smaller than n, whole groups
 * are ordered by their diagonal sum and each stays contiguous (sorted inside), so that a group's
 * scale is still chosen once, on up-to-date weights, and scales keep the natural layout.
 */
export function actOrderPermutation(diag: Float64Array, groupsize: number): Int32Array {
  const n = diag.length;
  if (!Number.isInteger(groupsize) || groupsize < 1 || n % groupsize !== 0) {
    throw new RangeError(`groupsize must be a positive divisor of diag.length ${n}, got ${shown(groupsize)}`);
  }
  const groups = n / groupsize;
  const groupOrder = Array.from({ length: groups }, (_, g) => g);
  const groupWeight = groupOrder.map((g) => {
    let s = 0;
    for (let j = g * groupsize; j < (g + 1) * groupsize; j++) s += diag[j];
    return s;
  });
  groupOrder.sort((a, b) => groupWeight[b] - groupWeight[a] || a - b);
  const perm = new Int32Array(n);
  let p = 0;
  for (const g of groupOrder) {
    const members = Array.from({ length: groupsize }, (_, k) => g * groupsize + k);
    members.sort((a, b) => diag[b] - diag[a] || a - b);
    for (const j of members) perm[p++] = j;
  }
  return perm;
}

/**
 * Blocks of processing positions for the sweep: at most blockSize long, cut so that a group either
 * lies inside one block or starts at a block start (where every row is up to date).
 */
export function sweepBlocks(n: number, blockSize: number, groupsize: number): [number, number][] {
  for (const [v, name] of [
    [n, "n"],
    [blockSize, "blockSize"],
    [groupsize, "groupsize"],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new RangeError(`${name} must be a positive integer, got ${shown(v)}`);
  }
  const blocks: [number, number][] = [];
  let p = 0;
  while (p < n) {
    let end = Math.min(p + blockSize, n);
    const lastStart = Math.floor((end - 1) / groupsize) * groupsize;
    if (lastStart > p && lastStart + groupsize > end) end = lastStart;
    blocks.push([p, end]);
    p = end;
  }
  return blocks;
}

/** wt[p][o] = weight[o][perm[p]] (0 for dead inputs), in 32 x 32 tiles. */
function transposePermuted(
  weight: Float32Array,
  out: number,
  n: number,
  perm: Int32Array,
  dead: Uint8Array,
  wt: Float32Array,
): void {
  const tile = 32;
  for (let p0 = 0; p0 < n; p0 += tile) {
    const p1 = Math.min(p0 + tile, n);
    for (let o0 = 0; o0 < out; o0 += tile) {
      const o1 = Math.min(o0 + tile, out);
      for (let p = p0; p < p1; p++) {
        const col = perm[p];
        const row = p * out;
        if (dead[col]) {
          wt.fill(0, row + o0, row + o1);
          continue;
        }
        for (let o = o0; o < o1; o++) wt[row + o] = weight[o * n + col];
      }
    }
  }
}

/** The largest finite fp16 value: the largest scale a TriRun layer can store. */
const FP16_MAX = 65504;

/**
 * Refuses weights that no code times an fp16 scale can reach (the scale search would clip them to
 * the largest scale without a word): up to 2 x 65504 on the side of level +2 (int2; with negative
 * scales either side), 65504 elsewhere.
 */
function checkRepresentable(weight: Float32Array, n: number, opts: ResolvedQuantizeOptions): void {
  const up = opts.levels === "int2" ? 2 * FP16_MAX : FP16_MAX;
  const down = opts.levels === "int2" && opts.negativeScales ? 2 * FP16_MAX : FP16_MAX;
  for (let i = 0; i < weight.length; i++) {
    const w = weight[i];
    if (w > up || -w > down) {
      throw new RangeError(
        `weight[${i}] (row ${Math.floor(i / n)}, column ${i % n}) = ${w} is beyond what ${opts.levels} codes with fp16 scales reach (${-down} to ${up}); rescale the layer first`,
      );
    }
  }
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v - v !== 0) return i;
  }
  return -1;
}

/** fp16 bit patterns of fp16-exact values (via @petamoriken/float16). */
function toFp16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint16Array(values.length);
  const view = new DataView(new ArrayBuffer(2));
  for (let i = 0; i < values.length; i++) {
    setFloat16(view, 0, values[i], true);
    bits[i] = view.getUint16(0, true);
  }
  return bits;
}
