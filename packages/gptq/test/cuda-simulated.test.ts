import { describe, expect, it } from "vitest";
import {
  CudaBackend,
  type DeviceTensorLike,
  GPTQ,
  InlineExecutor,
  type KernelNativeLike,
} from "../src/index.js";
import { correlatedActivations } from "./helpers/data.js";
import { dequantize, outputError } from "./helpers/quant.js";
import { testRng } from "./helpers/rng.js";

/**
 * A host-memory stand-in for @trirun/kernel-native with the contract's semantics (row-major SGEMM
 * with transposes, alpha, beta = 0 ignoring C, views sharing memory, size checks), so that the CUDA
 * backend's bookkeeping (views, offsets, flushes) is tested on machines without a GPU.
 */
class FakeTensor implements DeviceTensorLike {
  disposed = false;
  constructor(
    readonly memory: Float32Array,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly live: { freed: boolean },
  ) {
    if (offset + this.numel > memory.length) throw new RangeError("view exceeds its tensor");
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  private check(): void {
    if (this.disposed || this.live.freed) throw new Error("use after dispose");
  }
  upload(data: Float32Array): void {
    this.check();
    if (!(data instanceof Float32Array) || data.length !== this.numel) throw new RangeError("upload size");
    if (data.buffer instanceof SharedArrayBuffer) throw new TypeError("host copies take plain buffers");
    this.memory.set(data, this.offset);
  }
  download(): Float32Array {
    this.check();
    return this.memory.slice(this.offset, this.offset + this.numel);
  }
  view(shape: readonly number[], elementOffset = 0): FakeTensor {
    this.check();
    return new FakeTensor(this.memory, this.offset + elementOffset, shape, this.live);
  }
  dispose(): void {
    this.disposed = true;
  }
}

const calls = { gemm: 0 };

const fakeNative: KernelNativeLike = {
  available: () => true,
  unavailableReason: () => undefined,
  DeviceTensor: {
    empty: (_dtype, shape) => {
      const numel = shape.reduce((a, b) => a * b, 1);
      return new FakeTensor(new Float32Array(numel).fill(Number.NaN), 0, shape, { freed: false });
    },
    fromArray: (data, shape) => {
      const t = fakeNative.DeviceTensor.empty("f32", shape);
      t.upload(data);
      return t;
    },
  },
  gemmF32: (a, b, c, opts = {}) => {
    calls.gemm++;
    const A = a as FakeTensor;
    const B = b as FakeTensor;
    const C = c as FakeTensor;
    const ta = opts.transposeA ?? false;
    const tb = opts.transposeB ?? false;
    const alpha = opts.alpha ?? 1;
    const beta = opts.beta ?? 0;
    const [m, k] = ta ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
    const n = tb ? B.shape[0] : B.shape[1];
    if ((tb ? B.shape[1] : B.shape[0]) !== k || C.shape[0] !== m || C.shape[1] !== n) {
      throw new RangeError("gemmF32 shapes");
    }
    const av = (i: number, p: number) => A.memory[A.offset + (ta ? p * m + i : i * k + p)];
    const bv = (p: number, j: number) => B.memory[B.offset + (tb ? j * k + p : p * n + j)];
    const out = new Float32Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += av(i, p) * bv(p, j);
        const prev = beta === 0 ? 0 : beta * C.memory[C.offset + i * n + j];
        out[i * n + j] = alpha * s + prev;
      }
    }
    C.memory.set(out, C.offset);
  },
};

describe("CUDA backend bookkeeping on a simulated device", () => {
  it("gives the CPU backend's Hessian and quantization within fp32 rounding", async () => {
    const rng = testRng();
    const n = 96;
    const out = 40;
    const tokens = 700;
    const { x } = correlatedActivations(rng, tokens, n);
    const w = rng.normals(out * n, 0.05);
    const results = [];
    const hessians = [];
    for (const simulated of [false, true]) {
      const backend = simulated ? new CudaBackend(fakeNative, new InlineExecutor()) : "cpu";
      const gptq = new GPTQ(n, { backend, threads: 2 });
      await gptq.addBatch(x.subarray(0, 300 * n), 300);
      await gptq.addBatch(x.subarray(300 * n), tokens - 300);
      hessians.push(await gptq.hessian());
      results.push(await gptq.quantize(w, { groupsize: 32, blockSize: 24 }));
      await gptq.dispose();
    }
    expect(calls.gemm).toBeGreaterThan(2);
    const [hc, hg] = hessians;
    let scale = 0;
    for (const v of hc) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < hc.length; i++) expect(Math.abs(hc[i] - hg[i])).toBeLessThan(1e-5 * scale);
    const [c, g] = results;
    expect(g.backend).toBe("cuda");
    let same = 0;
    for (let i = 0; i < c.codes.length; i++) if (c.codes[i] === g.codes[i]) same++;
    expect(same / c.codes.length).toBeGreaterThan(0.98);
    expect(Math.abs(c.loss - g.loss) / c.loss).toBeLessThan(0.01);
    const ec = outputError(x, tokens, w, dequantize(c.codes, c.scales, n, out, 32), n, out);
    const eg = outputError(x, tokens, w, dequantize(g.codes, g.scales, n, out, 32), n, out);
    expect(Math.abs(ec - eg) / ec).toBeLessThan(0.01);
  });
});
