import { allocate, type Executor, type KernelTask, splitByCost, splitRange } from "../executor.js";
import { gramUpperRows, rankUpdateRows } from "../kernels.js";
import type { Backend, GramAccumulator, SweepState } from "./types.js";

/** Tokens per transposed chunk: keeps four rows of a chunk in L1 for the 4x4 Gram tile. */
const GRAM_CHUNK_TOKENS = 512;
/** Below this much work (multiply-adds) a call runs on the calling thread. */
const PARALLEL_MIN_WORK = 1 << 20;

/** The TypeScript backend: blocked float64 Gram accumulation and float32 block updates over the executor. */
export class CpuBackend implements Backend {
  readonly name = "cpu";
  constructor(private readonly exec: Executor) {}

  createGramAccumulator(n: number): GramAccumulator {
    return new CpuGramAccumulator(n, this.exec);
  }

  async createSweep(wt: Float32Array, n: number, out: number, u: Float64Array): Promise<SweepState> {
    return new CpuSweep(wt, n, out, u, this.exec);
  }
}

class CpuGramAccumulator implements GramAccumulator {
  private readonly sum: Float64Array;
  private readonly chunk: Float64Array;

  constructor(
    private readonly n: number,
    private readonly exec: Executor,
  ) {
    this.sum = allocate(Float64Array, n * n, exec);
    this.chunk = allocate(Float64Array, n * GRAM_CHUNK_TOKENS, exec);
  }

  async add(x: Float32Array, tokens: number): Promise<void> {
    const n = this.n;
    for (let t0 = 0; t0 < tokens; t0 += GRAM_CHUNK_TOKENS) {
      const count = Math.min(GRAM_CHUNK_TOKENS, tokens - t0);
      const xt = this.chunk.subarray(0, n * count);
      // Transpose to (n, count) in float64 so that every dot product reads two contiguous rows.
      for (let t = 0; t < count; t++) {
        const src = (t0 + t) * n;
        for (let i = 0; i < n; i++) xt[i * count + t] = x[src + i];
      }
      if (this.exec.threads === 1 || (n * n * count) / 2 < PARALLEL_MIN_WORK) {
        gramUpperRows(xt, n, count, this.sum, 0, n);
      } else {
        // Align row ranges to the 4-row tile so that workers never share a tile.
        const ranges = splitByCost(0, Math.ceil(n / 4), this.exec.threads, (i) => n - 4 * i);
        await this.exec.run(
          ranges.map(
            ([a, b]): KernelTask => ({
              kernel: "gramUpperRows",
              args: [xt, n, count, this.sum, 4 * a, Math.min(4 * b, n)],
            }),
          ),
        );
      }
    }
  }

  async flushInto(into: Float64Array): Promise<void> {
    const n = this.n;
    for (let i = 0; i < n; i++) {
      into[i * n + i] += this.sum[i * n + i];
      for (let j = i + 1; j < n; j++) {
        const v = this.sum[i * n + j];
        into[i * n + j] += v;
        into[j * n + i] += v;
      }
    }
    this.sum.fill(0);
  }

  dispose(): void {}
}

class CpuSweep implements SweepState {
  private readonly wt: Float32Array;

  constructor(
    wt: Float32Array,
    private readonly n: number,
    private readonly out: number,
    private readonly u: Float64Array,
    private readonly exec: Executor,
  ) {
    if (exec.sharedMemory && !(wt.buffer instanceof SharedArrayBuffer)) {
      this.wt = allocate(Float32Array, wt.length, exec);
      this.wt.set(wt);
    } else {
      this.wt = wt;
    }
  }

  async readRows(r0: number, r1: number): Promise<Float32Array> {
    return this.wt.subarray(r0 * this.out, r1 * this.out);
  }

  async rankUpdate(r0: number, r1: number, err: Float32Array): Promise<void> {
    const n = this.n;
    const out = this.out;
    const u = this.u;
    const wt = this.wt;
    const exec = this.exec;
    if (r1 >= n) return;
    if (exec.threads === 1 || (n - r1) * out * (r1 - r0) < PARALLEL_MIN_WORK) {
      rankUpdateRows(wt, out, u, n, r0, r1, err, 0, out);
      return;
    }
    await exec.run(
      splitRange(0, out, exec.threads, 16).map(
        ([o0, o1]): KernelTask => ({ kernel: "rankUpdateRows", args: [wt, out, u, n, r0, r1, err, o0, o1] }),
      ),
    );
  }

  dispose(): void {}
}
