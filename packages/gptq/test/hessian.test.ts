import { describe, expect, it } from "vitest";
import { GPTQ } from "../src/index.js";
import { matmulAtA } from "./helpers/linalg.js";
import { testRng } from "./helpers/rng.js";

describe("Hessian accumulation", () => {
  it.each([1, 2])("streams batches into H = 2/N sum x x^T (threads %i)", async (threads) => {
    const rng = testRng();
    const n = 131;
    const gptq = new GPTQ(n, { backend: "cpu", threads });
    const all: Float32Array[] = [];
    let total = 0;
    for (const tokens of [1, 700, 37, 600]) {
      const x = rng.normals(tokens * n, 3);
      for (let k = 0; k < x.length; k += 7) x[k] += 10; // a non-zero mean
      all.push(x);
      total += tokens;
      void gptq.addBatch(x, tokens); // queued: no need to await each
    }
    const h = await gptq.hessian();
    expect(gptq.nsamples).toBe(total);
    const joined = new Float32Array(total * n);
    let at = 0;
    for (const x of all) {
      joined.set(x, at);
      at += x.length;
    }
    const ref = matmulAtA(joined, total, n);
    for (let i = 0; i < n * n; i++) {
      const expected = (2 / total) * ref[i];
      expect(Math.abs(h[i] - expected)).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(expected)) * 100);
    }
  });

  it("rejects bad batches with clear errors and keeps working afterwards", async () => {
    const gptq = new GPTQ(4, { backend: "cpu", threads: 1 });
    await expect(gptq.addBatch(new Float64Array(8) as unknown as Float32Array, 2)).rejects.toThrow(TypeError);
    await expect(gptq.addBatch(new Float32Array(7), 2)).rejects.toThrow(/tokens \* inFeatures/);
    await expect(gptq.addBatch(new Float32Array(8), 0)).rejects.toThrow(RangeError);
    await expect(gptq.addBatch(new Float32Array(8), 2.5)).rejects.toThrow(RangeError);
    const nan = new Float32Array(8);
    nan[5] = Number.NaN;
    await expect(gptq.addBatch(nan, 2)).rejects.toThrow(/x\[5\] \(token 1, feature 1\) is not finite/);
    await gptq.addBatch(Float32Array.from([1, 0, 0, 0]), 1);
    const h = await gptq.hessian();
    expect(h[0]).toBe(2);
    expect(gptq.nsamples).toBe(1);
  });

  it("validates constructor arguments", () => {
    expect(() => new GPTQ(0)).toThrow(RangeError);
    expect(() => new GPTQ(1.5)).toThrow(RangeError);
    expect(() => new GPTQ(8, { threads: 0 })).toThrow(RangeError);
    expect(() => new GPTQ(8, { backend: "tpu" as "cpu" })).toThrow(/backend must be/);
  });

  it("starts from a given Hessian and keeps the running mean with later batches", async () => {
    const rng = testRng();
    const n = 9;
    const x1 = rng.normals(20 * n);
    const x2 = rng.normals(30 * n);
    const a = new GPTQ(n, { backend: "cpu", threads: 1 });
    await a.addBatch(x1, 20);
    const b = GPTQ.fromHessian(await a.hessian(), n, { samples: 20, backend: "cpu", threads: 1 });
    await a.addBatch(x2, 30);
    await b.addBatch(x2, 30);
    const ha = await a.hessian();
    const hb = await b.hessian();
    for (let i = 0; i < n * n; i++)
      expect(Math.abs(ha[i] - hb[i])).toBeLessThan(1e-12 * (1 + Math.abs(ha[i])));
    expect(() => GPTQ.fromHessian(new Float64Array(5), 2)).toThrow(RangeError);
  });
});
