import { f16round } from "@petamoriken/float16";
import { describe, expect, it } from "vitest";
import { InlineExecutor, WorkerExecutor, roundToFp16 } from "../src/index.js";
import { splitByCost, splitRange, workerSource } from "../src/executor.js";
import { gramUpperRows } from "../src/kernels.js";
import { maxAbsDiff, matmulAtA } from "./helpers/linalg.js";
import { testRng } from "./helpers/rng.js";

describe("roundToFp16", () => {
  it("matches the float16 library on random float32 values of every magnitude", () => {
    const rng = testRng();
    for (let i = 0; i < 20000; i++) {
      const v = Math.fround((rng.next() - 0.5) * 2 ** (rng.int(60) - 30));
      expect(roundToFp16(v), `value ${v}`).toBe(f16round(v));
    }
  });

  it("handles ties, subnormals, overflow, zero and non-finite values", () => {
    for (const v of [
      0,
      -0,
      1,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      65504,
      65519.99,
      65520,
      -65520,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -25,
      2 ** -14,
      6.1e-5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      -1e-30,
    ]) {
      expect(Object.is(roundToFp16(v), f16round(v)), `value ${v}: ${roundToFp16(v)} vs ${f16round(v)}`).toBe(
        true,
      );
    }
  });
});

describe("executor", () => {
  it("splits ranges into covering, ordered, aligned pieces", () => {
    const rng = testRng();
    for (let k = 0; k < 200; k++) {
      const start = rng.int(50);
      const end = start + rng.int(3000);
      const parts = 1 + rng.int(9);
      const align = [1, 4, 16][rng.int(3)];
      for (const ranges of [
        splitRange(start, end, parts, align),
        splitByCost(start, end, parts, (i) => i + 1),
      ]) {
        let at = start;
        for (const [a, b] of ranges) {
          expect(a).toBe(at);
          expect(b).toBeGreaterThan(a);
          at = b;
        }
        expect(at).toBe(end > start ? end : start);
        expect(ranges.length).toBeLessThanOrEqual(parts);
      }
    }
  });

  it("runs kernels in workers over shared memory with the same result as inline", async () => {
    const rng = testRng();
    const n = 37;
    const tokens = 53;
    const x = rng.normals(tokens * n);
    const xt = new Float64Array(new SharedArrayBuffer(8 * n * tokens));
    for (let t = 0; t < tokens; t++) for (let i = 0; i < n; i++) xt[i * tokens + t] = x[t * n + i];
    const ref = matmulAtA(x, tokens, n);
    const pool = await WorkerExecutor.create(2);
    try {
      const shared = new Float64Array(new SharedArrayBuffer(8 * n * n));
      await pool.run([
        { kernel: "gramUpperRows", args: [xt, n, tokens, shared, 0, 20] },
        { kernel: "gramUpperRows", args: [xt, n, tokens, shared, 20, n] },
      ]);
      const inline = new Float64Array(n * n);
      await new InlineExecutor().run([{ kernel: "gramUpperRows", args: [xt, n, tokens, inline, 0, n] }]);
      for (let i = 0; i < n; i++) {
        for (let j = i; j < n; j++) {
          expect(shared[i * n + j]).toBe(inline[i * n + j]);
          expect(Math.abs(shared[i * n + j] - ref[i * n + j])).toBeLessThan(
            1e-9 * (1 + Math.abs(ref[i * n + j])),
          );
        }
      }
      const direct = new Float64Array(n * n);
      gramUpperRows(xt, n, tokens, direct, 0, n);
      expect(maxAbsDiff(direct, inline)).toBe(0);
    } finally {
      await pool.dispose();
    }
  });

  it("reports a kernel failure in a worker as a rejected promise", async () => {
    const pool = await WorkerExecutor.create(1);
    try {
      // A kernel name the worker does not know makes it throw.
      const bad = { kernel: "noSuchKernel", args: [] } as unknown as Parameters<typeof pool.run>[0][number];
      await expect(pool.run([bad])).rejects.toThrow(/kernel failed in a worker/);
    } finally {
      await pool.dispose();
    }
  });

  it("builds a worker program that names every kernel", () => {
    const src = workerSource();
    for (const name of [
      "gramUpperRows",
      "sweepBlock",
      "rankUpdateRows",
      "searchGroupScales",
      "roundToFp16",
    ]) {
      expect(src).toContain(name);
    }
  });
});

describe("shared pools", () => {
  it("replaces a shared pool that was disposed", async () => {
    const { getExecutor } = await import("../src/index.js");
    const a = await getExecutor(3);
    expect(a.threads).toBe(3);
    await a.dispose();
    const b = await getExecutor(3);
    expect(b).not.toBe(a);
    const out = new Float64Array(new SharedArrayBuffer(8 * 4));
    const xt = new Float64Array(new SharedArrayBuffer(8 * 2)).fill(1);
    await b.run([{ kernel: "gramUpperRows", args: [xt, 2, 1, out, 0, 2] }]);
    expect(Array.from(out)).toEqual([1, 1, 0, 1]);
    await b.dispose();
  });
});
