import { describe, expect, it } from "vitest";
import {
  type Backend,
  CpuBackend,
  GPTQ,
  GPTQError,
  InlineExecutor,
  actOrderPermutation,
  sweepBlocks,
} from "../src/index.js";
import { correlatedActivations } from "./helpers/data.js";
import { matmulAtA, randomSpd } from "./helpers/linalg.js";
import { INT2, TERNARY, dequantize, outputError, referenceGptq } from "./helpers/quant.js";
import { testRng } from "./helpers/rng.js";

function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);
}

describe("GPTQ against an unblocked float64 reference", () => {
  const cases = [
    { name: "int2, per column, no search", levels: "int2", g: -1, grid: 1, actOrder: false, blockSize: 32 },
    { name: "int2, groups of 32, search", levels: "int2", g: 32, grid: 40, actOrder: false, blockSize: 128 },
    {
      name: "ternary, groups of 64, search",
      levels: "ternary",
      g: 64,
      grid: 40,
      actOrder: false,
      blockSize: 48,
    },
    { name: "int2, groups of 32, act order", levels: "int2", g: 32, grid: 20, actOrder: true, blockSize: 64 },
    {
      name: "ternary, per column, act order",
      levels: "ternary",
      g: -1,
      grid: 20,
      actOrder: true,
      blockSize: 50,
    },
  ] as const;

  it.each(cases)("$name", async ({ levels, g, grid, actOrder, blockSize }) => {
    const rng = testRng();
    const n = 128;
    const out = 48;
    const tokens = 600;
    const { x } = correlatedActivations(rng, tokens, n);
    const w = rng.normals(out * n, 0.05);
    const gptq = new GPTQ(n, { backend: "cpu", threads: 2 });
    await gptq.addBatch(x, tokens);
    const minShrink = 0.3;
    const result = await gptq.quantize(w, {
      groupsize: g,
      levels,
      blockSize,
      actOrder,
      scaleSearch: grid > 1 ? { grid, minShrink } : false,
    });
    const gEff = g === -1 ? n : g;
    expect(result.groupsize).toBe(gEff);
    expect(result.codes.length).toBe(n * out);
    expect(result.scales.length).toBe((n / gEff) * out);
    const maxCode = levels === "int2" ? 3 : 2;
    expect(Math.max(...result.codes)).toBeLessThanOrEqual(maxCode);

    const h = matmulAtA(x, tokens, n).map((v) => (v * 2) / tokens);
    const diag = Float64Array.from({ length: n }, (_, i) => h[i * n + i]);
    const perm = actOrder ? actOrderPermutation(diag, gEff) : undefined;
    const ref = referenceGptq(w, h, n, out, {
      g: gEff,
      levels: levels === "int2" ? INT2 : TERNARY,
      damp: 0.01,
      grid,
      minShrink,
      perm,
    });
    const q = dequantize(result.codes, result.scales, n, out, gEff);
    // fp32 storage of the weight (as in the reference implementation) against float64 here: a code
    // at a rounding boundary may flip, so compare statistics tightly rather than bits.
    let same = 0;
    for (let i = 0; i < q.length; i++) if (Math.abs(q[i] - ref.q[i]) <= 1e-6 * Math.abs(ref.q[i])) same++;
    expect(same / q.length).toBeGreaterThan(0.98);
    expect(relDiff(result.loss, ref.loss)).toBeLessThan(0.01);
    const errGptq = outputError(x, tokens, w, q, n, out);
    const errRef = outputError(x, tokens, w, ref.q, n, out);
    expect(relDiff(errGptq, errRef)).toBeLessThan(0.01);
  });
});

describe("GPTQ behaviour", () => {
  it("gives identical codes and scales with workers and inline", async () => {
    const rng = testRng();
    const n = 256;
    const out = 192;
    const tokens = 512;
    const { x } = correlatedActivations(rng, tokens, n);
    const w = rng.normals(out * n, 0.02);
    const results = [];
    for (const threads of [1, 2]) {
      const gptq = new GPTQ(n, { backend: "cpu", threads });
      await gptq.addBatch(x, tokens);
      results.push(await gptq.quantize(w, { groupsize: 128, actOrder: true }));
    }
    expect(results[1].codes).toEqual(results[0].codes);
    expect(results[1].scales).toEqual(results[0].scales);
    expect(relDiff(results[1].loss, results[0].loss)).toBeLessThan(1e-9);
  });

  it("reuses the factorisation for weights with the same input until a batch is added", async () => {
    const rng = testRng();
    const n = 64;
    const { x } = correlatedActivations(rng, 400, n);
    const w1 = rng.normals(32 * n, 0.1);
    const w2 = rng.normals(16 * n, 0.1);
    const shared = new GPTQ(n, { backend: "cpu", threads: 1 });
    await shared.addBatch(x, 400);
    const a = await shared.quantize(w1, { groupsize: 32 });
    const b = await shared.quantize(w2, { groupsize: 32 });
    const fresh = new GPTQ(n, { backend: "cpu", threads: 1 });
    await fresh.addBatch(x, 400);
    const b2 = await fresh.quantize(w2, { groupsize: 32 });
    expect(b.codes).toEqual(b2.codes);
    expect(b.scales).toEqual(b2.scales);
    expect(b.loss).toBe(b2.loss);
    expect(a.codes.length).toBe(32 * n);
    // A new batch changes H: the next result must follow it.
    await shared.addBatch(rng.normals(400 * n, 5), 400);
    const c = await shared.quantize(w2, { groupsize: 32 });
    expect(c.loss).not.toBe(b.loss);
  });

  it("reports progress: the factorisation, then every sweep block up to inFeatures", async () => {
    const rng = testRng();
    const n = 256;
    const { x } = correlatedActivations(rng, 300, n);
    const gptq = new GPTQ(n, { backend: "cpu", threads: 1 });
    await gptq.addBatch(x, 300);
    const w = rng.normals(8 * n, 0.02);
    const events: string[] = [];
    const result = await gptq.quantize(w, {
      groupsize: 128,
      blockSize: 64,
      onProgress: (p) => events.push(`${p.phase} ${p.done}/${p.total}`),
    });
    expect(events).toEqual([
      "factor 0/1",
      "factor 1/1",
      "sweep 64/256",
      "sweep 128/256",
      "sweep 192/256",
      "sweep 256/256",
    ]);
    // The callback changes nothing: the same call without it gives the same codes and scales.
    const quiet = await gptq.quantize(w, { groupsize: 128, blockSize: 64 });
    expect(quiet.codes).toEqual(result.codes);
    expect(quiet.scales).toEqual(result.scales);
  });

  it("zeroes dead inputs and quantizes them to level 0", async () => {
    const rng = testRng();
    const n = 64;
    const out = 16;
    const tokens = 300;
    const { x } = correlatedActivations(rng, tokens, n);
    const deadCols = [3, 40, 41];
    for (let t = 0; t < tokens; t++) for (const c of deadCols) x[t * n + c] = 0;
    const w = rng.normals(out * n, 1);
    const gptq = new GPTQ(n, { backend: "cpu", threads: 1 });
    await gptq.addBatch(x, tokens);
    const r = await gptq.quantize(w, { groupsize: 32 });
    expect(r.deadColumns).toBe(3);
    for (const c of deadCols) for (let o = 0; o < out; o++) expect(r.codes[c * out + o]).toBe(1);
  });

  it("retries with more dampening when H is indefinite, and reports the damp used", async () => {
    const rng = testRng();
    const n = 24;
    const h = randomSpd(rng, n, 0.2);
    let mean = 0;
    for (let i = 0; i < n; i++) mean += h[i * n + i] / n;
    // One negative eigen-direction of size ~0.5 * mean: needs damp >= 1 to become definite.
    h[5 * n + 5] = -0.4 * mean;
    const gptq = GPTQ.fromHessian(h, n, { backend: "cpu", threads: 1 });
    const w = rng.normals(4 * n);
    const r = await gptq.quantize(w, { groupsize: -1, damp: 0.01 });
    expect(r.damp).toBeGreaterThan(0.1);
    expect(Number.isFinite(r.loss)).toBe(true);

    const hopeless = new Float64Array(n * n);
    for (let i = 0; i < n; i++) hopeless[i * n + i] = i === 0 ? -1e9 : 1;
    const g2 = GPTQ.fromHessian(hopeless, n, { backend: "cpu", threads: 1 });
    const err = await g2.quantize(w, { groupsize: -1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GPTQError);
    expect((err as GPTQError).code).toBe("ERR_GPTQ_NOT_POSITIVE_DEFINITE");
    expect((err as Error).message).toMatch(/damp 0.01: pivot at input feature \d+; damp 0.1:/);
  });

  it("uses negative scales only when allowed, and they help on skewed weights", async () => {
    const rng = testRng();
    const n = 64;
    const out = 32;
    const tokens = 400;
    const { x } = correlatedActivations(rng, tokens, n);
    // Weights with a long negative tail: the extra int2 level belongs on the negative side.
    const w = new Float32Array(out * n);
    for (let i = 0; i < w.length; i++) w[i] = -Math.abs(rng.normal()) * 2 + rng.normal() * 0.3;
    const gptq = new GPTQ(n, { backend: "cpu", threads: 1 });
    await gptq.addBatch(x, tokens);
    const pos = await gptq.quantize(w, { groupsize: 32 });
    const neg = await gptq.quantize(w, { groupsize: 32, negativeScales: true });
    expect(Array.from(pos.scales).every((b) => (b & 0x8000) === 0)).toBe(true);
    expect(Array.from(neg.scales).some((b) => (b & 0x8000) !== 0)).toBe(true);
    const ePos = outputError(x, tokens, w, dequantize(pos.codes, pos.scales, n, out, 32), n, out);
    const eNeg = outputError(x, tokens, w, dequantize(neg.codes, neg.scales, n, out, 32), n, out);
    expect(eNeg).toBeLessThan(ePos);
  });

  it("accepts a custom Backend", async () => {
    const rng = testRng();
    const n = 32;
    const cpu = new CpuBackend(new InlineExecutor());
    let updates = 0;
    const custom: Backend = {
      name: "custom",
      createGramAccumulator: (k) => cpu.createGramAccumulator(k),
      createSweep: async (wt, k, out, u) => {
        const inner = await cpu.createSweep(wt, k, out, u);
        return {
          readRows: (a, b) => inner.readRows(a, b),
          rankUpdate: (a, b, e) => {
            updates++;
            return inner.rankUpdate(a, b, e);
          },
          dispose: () => inner.dispose(),
        };
      },
    };
    const gptq = new GPTQ(n, { backend: custom, threads: 1 });
    await gptq.addBatch(rng.normals(100 * n), 100);
    const r = await gptq.quantize(rng.normals(8 * n), { groupsize: 8, blockSize: 8 });
    expect(r.backend).toBe("custom");
    expect(updates).toBe(4);
  });

  it("rejects bad weights and options with clear errors", async () => {
    const rng = testRng();
    const n = 16;
    const gptq = new GPTQ(n, { backend: "cpu", threads: 1 });
    const w = rng.normals(4 * n);
    await expect(gptq.quantize(w, { groupsize: 8 })).rejects.toThrow(/no calibration data/);
    await gptq.addBatch(rng.normals(50 * n), 50);
    await expect(gptq.quantize(new Float32Array(17))).rejects.toThrow(
      /not a positive multiple of inFeatures 16/,
    );
    await expect(gptq.quantize(Array.from(w) as unknown as Float32Array)).rejects.toThrow(TypeError);
    await expect(gptq.quantize(w, { groupsize: 5 })).rejects.toThrow(/does not divide inFeatures 16/);
    await expect(gptq.quantize(w, { groupsize: 0 })).rejects.toThrow(RangeError);
    await expect(gptq.quantize(w, { groupsize: 8, levels: "int4" as "int2" })).rejects.toThrow(/levels/);
    await expect(gptq.quantize(w, { groupsize: 8, blockSize: 0 })).rejects.toThrow(/blockSize/);
    await expect(gptq.quantize(w, { groupsize: 8, damp: -1 })).rejects.toThrow(/damp/);
    await expect(gptq.quantize(w, { groupsize: 8, scaleSearch: { grid: 0 } })).rejects.toThrow(/grid/);
    await expect(gptq.quantize(w, { groupsize: 8, scaleSearch: { minShrink: 0 } })).rejects.toThrow(
      /minShrink/,
    );
    const nan = w.slice();
    nan[20] = Number.POSITIVE_INFINITY;
    await expect(gptq.quantize(nan, { groupsize: -1 })).rejects.toThrow(/weight\[20\] \(row 1, column 4\)/);
    await expect(
      gptq.quantize(w, { groupsize: 8, onProgress: "yes" as unknown as () => void }),
    ).rejects.toThrow(/onProgress must be a function/);
    // The default group size is 128: does not divide 16.
    await expect(gptq.quantize(w)).rejects.toThrow(/groupsize 128 does not divide/);
    await expect(gptq.quantize(w, { groupsize: 8 })).resolves.toBeDefined();
    // A string is named as one, not shown as the number it spells.
    await expect(gptq.quantize(w, { groupsize: "8" as unknown as number })).rejects.toThrow(/got "8"/);
    await expect(gptq.quantize(w, { groupsize: 8, damp: "0.1" as unknown as number })).rejects.toThrow(
      /damp must be a finite number >= 0, got "0.1"/,
    );
    expect(() => new GPTQ(n, null).inFeatures).not.toThrow();
    expect(() => new GPTQ(n, { threads: 5000 })).toThrow(/threads must be an integer from 1 to 1024/);
  });

  it("refuses weights no code times an fp16 scale reaches, instead of clipping them", async () => {
    const rng = testRng();
    const n = 16;
    const gptq = new GPTQ(n, { backend: "cpu", threads: 1 });
    await gptq.addBatch(rng.normals(50 * n), 50);
    const w = rng.normals(2 * n);
    const big = (at: number, value: number) => {
      const x = w.slice();
      x[at] = value;
      return x;
    };
    // int2 reaches +2 x 65504 (level +2) but only -65504 without negative scales; ternary 65504.
    await expect(gptq.quantize(big(3, 1e6), { groupsize: -1 })).rejects.toThrow(
      /weight\[3\] \(row 0, column 3\) = 1000000 is beyond what int2 codes with fp16 scales reach \(-65504 to 131008\)/,
    );
    await expect(gptq.quantize(big(3, 1.2e5), { groupsize: -1 })).resolves.toBeDefined();
    await expect(gptq.quantize(big(3, 1.2e5), { groupsize: -1, levels: "ternary" })).rejects.toThrow(
      /ternary codes .* \(-65504 to 65504\)/,
    );
    await expect(gptq.quantize(big(20, -1e5), { groupsize: -1 })).rejects.toThrow(/row 1, column 4/);
    await expect(
      gptq.quantize(big(20, -1e5), { groupsize: -1, negativeScales: true }),
    ).resolves.toBeDefined();
  });
});

describe("permutation and block helpers", () => {
  it("keeps groups contiguous in act order and sorts by the diagonal", () => {
    const rng = testRng();
    const n = 96;
    const diag = Float64Array.from({ length: n }, () => rng.next());
    for (const g of [n, 32, 8]) {
      const perm = actOrderPermutation(diag, g);
      expect([...perm].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      for (let p = 0; p < n; p += g) {
        const group = Math.floor(perm[p] / g);
        for (let k = 1; k < g; k++) {
          expect(Math.floor(perm[p + k] / g)).toBe(group);
          expect(diag[perm[p + k]]).toBeLessThanOrEqual(diag[perm[p + k - 1]]);
        }
      }
    }
  });

  it("check their arguments (a zero block size would loop forever)", () => {
    expect(() => sweepBlocks(10, 0, 5)).toThrow(/blockSize must be a positive integer, got 0/);
    expect(() => sweepBlocks(10, 4, 0)).toThrow(/groupsize/);
    expect(() => actOrderPermutation(new Float64Array(10), 3)).toThrow(
      /positive divisor of diag.length 10, got 3/,
    );
    expect(() => actOrderPermutation(new Float64Array(10), 0)).toThrow(/got 0/);
  });

  it("cuts blocks so that groups never straddle a block boundary except at their start", () => {
    const rng = testRng();
    for (let k = 0; k < 300; k++) {
      const g = [1, 3, 8, 32, 128][rng.int(5)];
      const n = g * (1 + rng.int(20));
      const b = 1 + rng.int(200);
      const blocks = sweepBlocks(n, b, g);
      let at = 0;
      for (const [r0, r1] of blocks) {
        expect(r0).toBe(at);
        expect(r1 - r0).toBeGreaterThan(0);
        expect(r1 - r0).toBeLessThanOrEqual(b);
        for (let p = r0 + 1; p < r1; p++) if (p % g === 0) expect(p + g).toBeLessThanOrEqual(r1);
        at = r1;
      }
      expect(at).toBe(n);
    }
  });
});
