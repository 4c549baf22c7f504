import { f16round, Float16Array } from "@petamoriken/float16";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  dequantizeToF16,
  f16BitsToNumber,
  type FloatDType,
  MSE_GRID,
  packScales,
  packWeights,
  type QuantMethod,
  quantize,
  quantizePacked,
} from "../src/index.js";

// ---- An independent, plain fp64 reference of the quantizers as documented in src/quantize.ts.

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function levelOf(w: number, s: number, maxLevel: number): number {
  if (s === 0) return 0;
  return Math.min(maxLevel, Math.max(-1, roundHalfEven(w / s)));
}

function referenceScale(method: QuantMethod, v: number[]): number {
  const maxAbs = Math.max(0, ...v.map(Math.abs));
  if (method === "absmean") return f16round(v.reduce((a, x) => a + Math.abs(x), 0) / v.length);
  if (method === "absmax") return f16round(maxAbs);
  if (method === "mse") {
    let best = Number.POSITIVE_INFINITY;
    let scale = 0;
    for (let i = 0; i < 80; i++) {
      const s = f16round((1 - i / 100) * maxAbs);
      if (s === 0) break;
      let err = 0;
      for (const w of v) err += (w - levelOf(w, s, 2) * s) ** 2;
      if (err < best) {
        best = err;
        scale = s;
      }
    }
    return scale;
  }
  throw new Error(`no reference for ${method}`);
}

/** Weights as plain numbers, out x in. */
function referenceQuantize(w: number[], out: number, inF: number, method: QuantMethod, groupsize: number) {
  const g = groupsize === -1 ? inF : Math.min(groupsize, inF);
  const groups = Math.ceil(inF / g);
  const maxLevel = method === "absmean" || method === "absmax" ? 1 : 2;
  const codes = new Uint8Array(inF * out);
  const scales: number[] = new Array(groups * out).fill(0);
  for (let c = 0; c < out; c++) {
    for (let gi = 0; gi < groups; gi++) {
      const v: number[] = [];
      for (let r = gi * g; r < Math.min(inF, (gi + 1) * g); r++) v.push(w[c * inF + r]);
      const s = referenceScale(method, v);
      scales[gi * out + c] = s;
      v.forEach((x, i) => {
        codes[(gi * g + i) * out + c] = levelOf(x, s, maxLevel) + 1;
      });
    }
  }
  return { codes, scales };
}

// ---- Random weights in each input dtype, with the exact values the quantizer sees.

function gaussian(): number {
  return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
}

function randomWeights(dtype: FloatDType, count: number, spread = 0.05) {
  const values = Array.from({ length: count }, () => gaussian() * spread * (Math.random() < 0.02 ? 8 : 1));
  if (dtype === "F32") {
    const data = Float32Array.from(values);
    return { data, exact: Array.from(data) };
  }
  if (dtype === "F64") return { data: Float64Array.from(values), exact: values };
  if (dtype === "F16") {
    const data = new Uint16Array(new Float16Array(values).buffer);
    return { data, exact: Array.from(new Float16Array(data.buffer)) };
  }
  // bf16 by truncating fp32 bits (any bf16 pattern is a valid input).
  const f32 = Float32Array.from(values);
  const data = Uint16Array.from(new Uint32Array(f32.buffer), (b) => b >>> 16);
  const exact = Array.from(new Float32Array(Uint32Array.from(data, (b) => b << 16).buffer));
  return { data, exact };
}

const fp16Bits = (xs: number[]) => Array.from(new Uint16Array(new Float16Array(xs).buffer));

const dtypes: FloatDType[] = ["F32", "F16", "BF16", "F64"];
const methods: QuantMethod[] = ["absmean", "absmax", "mse"];

describe("quantizers against an fp64 reference", () => {
  for (const method of methods) {
    it(`${method} matches on random shapes, dtypes and group sizes`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 70 }),
          fc.integer({ min: 1, max: 300 }),
          fc.constantFrom(...dtypes),
          fc.constantFrom(128, -1, 32),
          (out, inF, dtype, groupsize) => {
            const { data, exact } = randomWeights(dtype, out * inF);
            const q = quantize(
              { data, dtype, outFeatures: out, inFeatures: inF } as Parameters<typeof quantize>[0],
              { method, groupsize },
            );
            const ref = referenceQuantize(exact, out, inF, method, groupsize);
            expect(Array.from(q.scales)).toEqual(fp16Bits(ref.scales));
            expect(Buffer.from(q.codes).equals(Buffer.from(ref.codes))).toBe(true);
          },
        ),
        { numRuns: method === "mse" ? 15 : 30 },
      );
    });
  }

  it("mse picks the plain search's scale where candidates tie and weights sit on level boundaries", () => {
    // Weights on a coarse lattice (small multiples of one step, exact in every dtype): many candidate
    // scales then have equal or nearly equal errors, and many weights fall exactly on s / 2 or 1.5 s,
    // the cases where a search that sums differently could pick another scale than the plain one.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 260 }),
        fc.constantFrom<FloatDType>("F32", "F16", "F64"),
        fc.constantFrom(128, -1, 16),
        fc.constantFrom(1, 3, 8, 40),
        fc.constantFrom(2 ** -6, 2 ** -10, 0.01),
        (out, inF, dtype, groupsize, levels, step) => {
          const exactValues = Array.from({ length: out * inF }, () =>
            f16round(Math.round((Math.random() * 2 - 1) * levels) * step),
          );
          const data =
            dtype === "F32"
              ? Float32Array.from(exactValues)
              : dtype === "F64"
                ? Float64Array.from(exactValues)
                : new Uint16Array(new Float16Array(exactValues).buffer);
          const exact = dtype === "F32" ? Array.from(data as Float32Array) : exactValues;
          const q = quantize(
            { data, dtype, outFeatures: out, inFeatures: inF } as Parameters<typeof quantize>[0],
            {
              method: "mse",
              groupsize,
            },
          );
          const ref = referenceQuantize(exact, out, inF, "mse", groupsize);
          expect(Array.from(q.scales)).toEqual(fp16Bits(ref.scales));
          expect(Buffer.from(q.codes).equals(Buffer.from(ref.codes))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("mse keeps the plain search's first scale when two scales tie exactly", () => {
    // Two weights [M, sa + sb - M] have the same squared error at the candidate scales sa and sb
    // (the same two terms, summed in another order); where those two are the best candidates the
    // plain search keeps sa, the first. Sums formed another way (sum w^2 - 2 s sum q w + s^2 sum q^2)
    // can round the tie either way, so the quantizer must still choose as the plain search does.
    const groups: number[][] = [
      [1.0339298653782463, 0.9616756033717537],
      [1.4212104736773394, 1.4069145263226606],
    ];
    for (let t = 0; t < 20000 && groups.length < 40; t++) {
      const m = 1 + Math.random();
      for (let a = 0; a < 79; a++) {
        const sa = f16round((1 - a / 100) * m);
        const sb = f16round((1 - (a + 1) / 100) * m);
        const w2 = sa + sb - m;
        if (sa === sb || w2 <= 0 || w2 + m !== sa + sb) continue;
        if (referenceScale("mse", [m, w2]) === sa) groups.push([m, w2]);
      }
    }
    expect(groups.length).toBeGreaterThan(10);
    for (const v of groups) {
      const q = quantize(
        { data: Float64Array.from(v), dtype: "F64", outFeatures: 1, inFeatures: 2 },
        {
          method: "mse",
          groupsize: -1,
        },
      );
      expect(q.scales[0]).toBe(fp16Bits([referenceScale("mse", v)])[0]);
    }
  });

  it("rounds ties half to even and clamps to the method's levels", () => {
    // absmax: s = 2, w / s = 0.5 -> 0, -0.5 -> 0, 0.75 -> 1, -1 -> -1.
    const w = Float32Array.from([2, 1, -1, 1.5, -2, 0, 0.5, -1.5]);
    const q = quantize(
      { data: w, dtype: "F32", outFeatures: 1, inFeatures: 8 },
      { method: "absmax", groupsize: -1 },
    );
    expect(Array.from(q.codes)).toEqual([2, 1, 1, 2, 0, 1, 1, 0]);
  });

  it("gives code 1 and scale 0 to an all-zero group", () => {
    const w = new Float32Array(256);
    w.fill(0.25, 128);
    for (const method of [...methods, "exact"] as QuantMethod[]) {
      const q = quantize(
        { data: w, dtype: "F32", outFeatures: 1, inFeatures: 256 },
        { method, groupsize: 128 },
      );
      expect(q.scales[0]).toBe(0);
      expect(Array.from(q.codes.subarray(0, 128)).every((c) => c === 1)).toBe(true);
      expect(q.scales[1]).not.toBe(0);
    }
  });

  it("names the tensor and index of a non-finite weight", () => {
    const w = new Float32Array(4 * 256).fill(0.1);
    w[2 * 256 + 130] = Number.NaN;
    for (const method of [...methods, "exact"] as QuantMethod[]) {
      expect(() =>
        quantize(
          { data: w, dtype: "F32", outFeatures: 4, inFeatures: 256 },
          { method, groupsize: 128, name: "x.w" },
        ),
      ).toThrow(/tensor "x.w" at \[2, 130\]: non-finite value NaN/);
    }
  });

  it("rejects bad arguments", () => {
    const data = new Float32Array(8);
    const ok = { data, dtype: "F32" as const, outFeatures: 2, inFeatures: 4 };
    expect(() => quantize({ ...ok, outFeatures: 3 }, { method: "absmean", groupsize: 128 })).toThrow(
      RangeError,
    );
    expect(() => quantize({ ...ok, dtype: "F16" }, { method: "absmean", groupsize: 128 })).toThrow(TypeError);
    expect(() =>
      quantize({ ...ok, dtype: "I8" as FloatDType }, { method: "absmean", groupsize: 128 }),
    ).toThrow(/weight.dtype/);
    expect(() => quantize(ok, { method: "rtn" as QuantMethod, groupsize: 128 })).toThrow(/options.method/);
    expect(() => quantize(ok, { method: "absmax", groupsize: 0 })).toThrow(/options.groupsize/);
    expect(() =>
      quantize({ ...ok, data: new Float32Array(2 * 64) }, { method: "absmax", groupsize: 0 }),
    ).toThrow(RangeError);
    const big = Float32Array.from([1e6, 1]);
    expect(() =>
      quantize(
        { data: big, dtype: "F32", outFeatures: 1, inFeatures: 2 },
        { method: "absmax", groupsize: -1 },
      ),
    ).toThrow(/overflows fp16/);
  });

  it("refuses a group whose every scale overflows fp16, whatever the method (mse included)", () => {
    // 4e5 * 0.21 (the smallest mse candidate) is past 65504: no candidate can be stored.
    const huge = Float32Array.from(
      { length: 128 },
      (_, i) => (i % 2 === 0 ? 4e5 : -3e5) * (0.5 + Math.random() / 2),
    );
    huge[0] = 4e5;
    for (const method of ["absmean", "absmax", "mse"] as const) {
      expect(() =>
        quantize({ data: huge, dtype: "F32", outFeatures: 1, inFeatures: 128 }, { method, groupsize: 128 }),
      ).toThrow(/overflows fp16/);
    }
    // The absmean message gives the scale it would have taken (the mean), not the group's sum.
    expect(() =>
      quantize(
        { data: huge, dtype: "F32", outFeatures: 1, inFeatures: 128 },
        { method: "absmean", groupsize: 128 },
      ),
    ).toThrow(/mean \|w\| = \d/);
  });

  it("mse searches only the storable scales when the largest candidates overflow fp16", () => {
    // max |w| 1e5: candidates 1.0 .. 0.66 x 1e5 overflow, 0.65 .. 0.21 x 1e5 do not.
    const w = Float32Array.from({ length: 128 }, () => (Math.random() * 2 - 1) * 6e4);
    w[5] = 1e5;
    const q = quantize(
      { data: w, dtype: "F32", outFeatures: 1, inFeatures: 128 },
      { method: "mse", groupsize: 128 },
    );
    const s = f16BitsToNumber(q.scales[0]);
    expect(Number.isFinite(s)).toBe(true);
    expect(s).toBeGreaterThan(0);
    // The plain search over the storable candidates (fp64 error, first of the least).
    let best = Number.POSITIVE_INFINITY;
    let expected = 0;
    for (const p of MSE_GRID) {
      const c = f16round(p * 1e5);
      if (!Number.isFinite(c)) continue;
      let e = 0;
      for (const x of w) {
        const level = Math.min(2, Math.max(-1, roundHalfEven(x / c)));
        e += (x - level * c) ** 2;
      }
      if (e < best) {
        best = e;
        expected = c;
      }
    }
    expect(s).toBe(expected);
  });
});

describe("exact quantizer", () => {
  function fakeQuantized(out: number, inF: number, g: number, levels: number[]) {
    const groups = Math.ceil(inF / g);
    const scales = Array.from({ length: groups * out }, () => f16round(0.001 + Math.random() * 0.05));
    const codes = new Uint8Array(inF * out);
    const w: number[] = [];
    for (let c = 0; c < out; c++) {
      for (let r = 0; r < inF; r++) {
        // Every group holds a -1 so that its scale is unambiguous.
        const level = r % g === 0 ? -1 : levels[Math.floor(Math.random() * levels.length)];
        codes[r * out + c] = level + 1;
        w.push(level * scales[Math.floor(r / g) * out + c]);
      }
    }
    return { codes, scales, w };
  }

  it("recovers codes and scales of fake-quantized fp16 and fp32 weights", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom(128, -1),
        fc.constantFrom<FloatDType>("F16", "F32"),
        (out, inF, groupsize, dtype) => {
          const g = groupsize === -1 ? inF : Math.min(128, inF);
          const { codes, scales, w } = fakeQuantized(out, inF, g, [-1, 0, 1, 2]);
          const data = dtype === "F16" ? new Uint16Array(new Float16Array(w).buffer) : Float32Array.from(w);
          const q = quantize(
            { data, dtype, outFeatures: out, inFeatures: inF } as Parameters<typeof quantize>[0],
            { method: "exact", groupsize },
          );
          expect(Array.from(q.scales)).toEqual(fp16Bits(scales));
          expect(Buffer.from(q.codes).equals(Buffer.from(codes))).toBe(true);
          if (dtype === "F16") {
            const back = dequantizeToF16(q.codes, q.scales, inF, out, q.groupLength);
            expect(Array.from(back)).toEqual(Array.from(data));
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it("reads a group without negatives as ternary when it can", () => {
    const w = Float32Array.from([0, 0.5, 0.5, 0]);
    const q = quantize(
      { data: w, dtype: "F32", outFeatures: 1, inFeatures: 4 },
      { method: "exact", groupsize: -1 },
    );
    expect(Array.from(q.codes)).toEqual([1, 2, 2, 1]);
    const w2 = Float32Array.from([0, 0.5, 0.25, 0]);
    const q2 = quantize(
      { data: w2, dtype: "F32", outFeatures: 1, inFeatures: 4 },
      { method: "exact", groupsize: -1 },
    );
    expect(Array.from(q2.codes)).toEqual([1, 3, 2, 1]);
  });

  it("fails on the first off-grid weight, naming the tensor and index", () => {
    const { w, scales } = fakeQuantized(3, 256, 128, [-1, 0, 1]);
    // Between levels 0 and 1 of its group (group 1 of output 1), so that the scale stays the same.
    w[1 * 256 + 200] = 0.4 * scales[1 * 3 + 1];
    expect(() =>
      quantize(
        { data: Float32Array.from(w), dtype: "F32", outFeatures: 3, inFeatures: 256 },
        { method: "exact", groupsize: 128, name: "model.layers.0.mlp.up_proj.weight" },
      ),
    ).toThrow(/tensor "model.layers.0.mlp.up_proj.weight" at \[1, 200\]: value .* is not on the grid/);
  });
});

describe("quantizePacked", () => {
  it("gives the bytes of packWeights/packScales of quantize", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom(128, -1),
        fc.constantFrom(...methods),
        fc.constantFrom(...dtypes),
        (nChunks, kGroups, groupsize, method, dtype) => {
          const n = 64 * nChunks;
          const k = 128 * kGroups;
          const { data } = randomWeights(dtype, n * k);
          const weight = { data, dtype, outFeatures: n, inFeatures: k } as Parameters<typeof quantize>[0];
          const q = quantize(weight, { method, groupsize });
          const p = quantizePacked(weight, { method, groupsize });
          expect(Array.from(p.B)).toEqual(Array.from(packWeights(q.codes, k, n)));
          expect(Array.from(p.s)).toEqual(Array.from(packScales(q.scales, k, n, groupsize)));
          expect(p.groupsize).toBe(groupsize === -1 || k === 128 ? -1 : 128);
        },
      ),
      { numRuns: 20 },
    );
  });

  it("rejects shapes the layout cannot hold", () => {
    const weight = {
      data: new Float32Array(100 * 128),
      dtype: "F32" as const,
      outFeatures: 100,
      inFeatures: 128,
    };
    expect(() => quantizePacked(weight, { method: "absmax", groupsize: 128 })).toThrow(
      /n must be a multiple of 64/,
    );
  });
});
