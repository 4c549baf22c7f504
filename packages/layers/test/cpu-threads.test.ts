import { afterAll, describe, expect, it } from "vitest";
import { matmulLevelRows, matmulWeightRows } from "../src/cpu-matmul.js";
import {
  cpuThreads,
  cpuThreadsUnavailableReason,
  MatmulPool,
  PARALLEL_MIN_MACS,
  parallelMatmul,
  setCpuThreads,
  shareable,
} from "../src/cpu-threads.js";
import { Float16Linear, hostTensor, TriRunLinear } from "../src/index.js";

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const sameBits = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe("the CPU matmul on several threads", () => {
  afterAll(() => setCpuThreads(1));

  it("equals one thread bit for bit, for row counts that split unevenly", () => {
    setCpuThreads(3);
    expect(cpuThreads()).toBe(3);
    for (const [rows, k, n, withBias] of [
      [8, 512, 1024, false],
      [37, 256, 770, true],
      [301, 128, 257, true],
    ] as const) {
      expect(rows * k * n).toBeGreaterThanOrEqual(PARALLEL_MIN_MACS);
      const x = random(rows * k);
      const weight = shareable(random(n * k));
      expect(weight.buffer).toBeInstanceOf(SharedArrayBuffer);
      const bias = withBias ? shareable(random(n)) : undefined;
      const got = new Float32Array(rows * n).fill(Number.NaN);
      parallelMatmul(x, rows, k, weight, n, bias, got);
      expect(cpuThreadsUnavailableReason()).toBeUndefined();
      const want = new Float32Array(rows * n);
      matmulWeightRows(x, rows, k, weight, n, bias, want);
      expect(sameBits(got, want), `${rows} x ${k} -> ${n}`).toBe(true);
    }
  });

  it("runs quantized layers' level weights on the workers too, bit for bit with one thread", () => {
    setCpuThreads(3);
    for (const [rows, k, n, groupLength] of [
      [16, 512, 768, 128],
      [37, 300, 512, 300],
    ] as const) {
      const groups = Math.ceil(k / groupLength);
      const levels = shareable(Int8Array.from({ length: n * k }, () => Math.floor(Math.random() * 3) - 1));
      const scales = shareable(Float32Array.from({ length: n * groups }, () => Math.random() / 64));
      expect(levels.buffer).toBeInstanceOf(SharedArrayBuffer);
      const x = random(rows * k);
      const got = new Float32Array(rows * n).fill(Number.NaN);
      parallelMatmul(x, rows, k, { kind: "levels", levels, scales, groupLength }, n, undefined, got);
      expect(cpuThreadsUnavailableReason()).toBeUndefined();
      const want = new Float32Array(rows * n);
      matmulLevelRows(x, rows, k, levels, scales, groupLength, n, undefined, want);
      expect(sameBits(got, want), `${rows} x ${k} -> ${n}`).toBe(true);
    }
  });

  it("gives a layer's forward the same result on 1 and 3 threads", () => {
    const outFeatures = 768;
    const inFeatures = 512;
    const w = random(outFeatures * inFeatures);
    const x = hostTensor([2, 40, inFeatures], random(2 * 40 * inFeatures));
    const outputs: Float32Array[] = [];
    for (const threads of [1, 3]) {
      setCpuThreads(threads);
      const layer = Float16Linear.fromWeights(w, outFeatures, inFeatures, undefined, { backend: "cpu" });
      outputs.push(layer.forward(x).data as Float32Array);
      layer.dispose();
    }
    expect(sameBits(outputs[0], outputs[1])).toBe(true);
    // A quantized layer (levels and scales on the CPU) likewise, and equal to its own fp32 weights.
    const quantized: Float32Array[] = [];
    for (const threads of [1, 3]) {
      setCpuThreads(threads);
      const fp = Float16Linear.fromWeights(w, outFeatures, inFeatures, undefined, { backend: "cpu" });
      const q = TriRunLinear.quantize(fp, "absmean", 128);
      expect(q.byteLength).toBe(outFeatures * inFeatures + outFeatures * (inFeatures / 128) * 4);
      quantized.push(q.forward(x).data as Float32Array);
      if (threads === 1) {
        const dense = Float16Linear.fromWeights(q.dequantize(), outFeatures, inFeatures, undefined, {
          backend: "cpu",
        });
        expect(sameBits(dense.forward(x).data as Float32Array, quantized[0])).toBe(true);
        dense.dispose();
      }
      for (const layer of [fp, q]) layer.dispose();
    }
    expect(sameBits(quantized[0], quantized[1])).toBe(true);
  });

  it("gives up on workers that do not start instead of waiting for them forever", () => {
    const t0 = Date.now();
    expect(() => new MatmulPool(3, "throw new Error('cannot start');", 500)).toThrow(
      /2 of 2 workers did not start within 0.5 s/,
    );
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("rejects a thread count that is not an integer from 1 to 256", () => {
    for (const bad of [0, -2, 1.5, Number.NaN, 1000]) expect(() => setCpuThreads(bad)).toThrow(RangeError);
  });
});
