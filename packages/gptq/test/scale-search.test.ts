import { describe, expect, it } from "vitest";
import { roundHalfEven, roundToFp16, searchGroupScales } from "../src/kernels.js";
import { testRng } from "./helpers/rng.js";

/**
 * The scale search as defined (GPTQ's grid of candidates, each summed over the group in row order,
 * the first strict minimum over orientations and candidates): the reference for the fast search.
 */
function plainSearch(
  col: Float64Array,
  wts: Float64Array,
  qmin: number,
  qmax: number,
  grid: number,
  minShrink: number,
  allowNegative: boolean,
): number {
  let mx = 0;
  let mn = 0;
  for (const w of col) {
    if (w > mx) mx = w;
    if (w < mn) mn = w;
  }
  if (mx === 0 && mn === 0) return 0;
  let bestErr = Number.POSITIVE_INFINITY;
  let bestScale = 0;
  const orientations = allowNegative && qmin !== -qmax ? 2 : 1;
  for (let orient = 0; orient < orientations; orient++) {
    const sign = orient === 0 ? 1 : -1;
    const base = Math.max((sign > 0 ? mx : -mn) / qmax, (sign > 0 ? mn : -mx) / qmin);
    for (let k = 0; k < grid; k++) {
      const f = grid > 1 ? 1 - ((1 - minShrink) * k) / (grid - 1) : 1;
      const s = Math.min(65504, Math.max(2 ** -24, roundToFp16(base * f)));
      const signed = sign * s;
      const inv = 1 / signed;
      let err = 0;
      for (let r = 0; r < col.length; r++) {
        const level = Math.min(qmax, Math.max(qmin, roundHalfEven(col[r] * inv)));
        const d = col[r] - level * signed;
        err += wts[r] * d * d;
      }
      if (err < bestErr) {
        bestErr = err;
        bestScale = signed;
      }
    }
  }
  return bestScale;
}

/** Runs the kernel on a (rows x out) matrix built from columns and compares every output's scale. */
function expectSameScales(
  columns: Float64Array[],
  wts: Float64Array,
  qmin: number,
  qmax: number,
  grid: number,
  minShrink: number,
  allowNegative: boolean,
): void {
  const rows = columns[0].length;
  const out = columns.length;
  const matrix = new Float32Array(rows * out);
  for (let o = 0; o < out; o++) for (let r = 0; r < rows; r++) matrix[r * out + o] = columns[o][r];
  const scales = new Float32Array(out);
  searchGroupScales(
    matrix,
    out,
    0,
    rows,
    wts,
    0,
    0,
    out,
    qmin,
    qmax,
    grid,
    minShrink,
    allowNegative,
    scales,
    0,
  );
  for (let o = 0; o < out; o++) {
    const col = Float64Array.from({ length: rows }, (_, r) => matrix[r * out + o]);
    const want = plainSearch(col, wts, qmin, qmax, grid, minShrink, allowNegative);
    expect(scales[o], `output ${o} (levels ${qmin}..${qmax}, grid ${grid}, negative ${allowNegative})`).toBe(
      Math.fround(want),
    );
  }
}

const formats: [number, number][] = [
  [-1, 2], // int2 (TriRun)
  [-1, 1], // ternary
  [-4, 3], // int3
  [-8, 7], // int4
];

describe("searchGroupScales (one pass over all candidates, then the best summed the plain way)", () => {
  it("picks the plain search's scale on random groups, weights and grids", () => {
    const rng = testRng();
    for (let trial = 0; trial < 60; trial++) {
      const [qmin, qmax] = formats[trial % formats.length];
      const rows = 1 + rng.int(160);
      const out = 1 + rng.int(12);
      const grid = [1, 2, 20, 100][rng.int(4)];
      const minShrink = [0.1, 0.3, 1][rng.int(3)];
      const allowNegative = rng.next() < 0.5;
      const wts = Float64Array.from({ length: rows }, () => 0.01 + rng.next() * 5);
      const columns = Array.from({ length: out }, () => {
        const spread = 10 ** (rng.int(8) - 5);
        return Float64Array.from({ length: rows }, () =>
          Math.fround(rng.normal() * spread * (rng.next() < 0.03 ? 6 : 1) * (rng.next() < 0.1 ? 0 : 1)),
        );
      });
      expectSameScales(columns, wts, qmin, qmax, grid, minShrink, allowNegative);
    }
  });

  it("picks the plain search's scale where weights sit on a lattice (ties, weights on level boundaries)", () => {
    const rng = testRng();
    for (let trial = 0; trial < 60; trial++) {
      const [qmin, qmax] = formats[trial % formats.length];
      const rows = 1 + rng.int(130);
      const levels = [1, 2, 3, 8, 40][rng.int(5)];
      const step = [2 ** -6, 2 ** -10, 0.01][rng.int(3)];
      const wts = Float64Array.from({ length: rows }, () => (rng.next() < 0.5 ? 1 : 1 + rng.int(4)));
      const columns = Array.from({ length: 6 }, () =>
        Float64Array.from({ length: rows }, () =>
          Math.fround(Math.round((rng.next() * 2 - 1) * levels) * step),
        ),
      );
      expectSameScales(columns, wts, qmin, qmax, 100, 0.1, rng.next() < 0.5);
    }
  });

  it("keeps the plain search's first scale when two scales tie exactly", () => {
    // Ternary, two weights [m, sa + sb - m] with equal Hessian weights c, both at level 1 for the
    // candidates sa and sb: the same error at both (the same two rounded terms, summed in another
    // order), so the plain search keeps the first wherever the two are the best. Sums formed
    // another way (c w^2, c q w and c q^2 summed apart) round such ties either way.
    const rng = testRng();
    const grid = 100;
    const minShrink = 0.1;
    const f = (i: number) => 1 - ((1 - minShrink) * i) / (grid - 1);
    for (let trial = 0; trial < 20; trial++) {
      const m = Math.fround(1 + rng.next());
      const c = 0.5 + rng.next();
      const columns: Float64Array[] = [];
      for (let k = 0; k + 1 < grid; k++) {
        const sa = roundToFp16(m * f(k));
        const sb = roundToFp16(m * f(k + 1));
        const w2 = sa + sb - m;
        // fp32 inputs: the second weight must be exact in fp32, and below m so that m sets the grid
        if (sa !== sb && w2 > 0 && w2 < m && Math.fround(w2) === w2) columns.push(new Float64Array([m, w2]));
      }
      if (columns.length > 0)
        expectSameScales(columns, new Float64Array([c, c]), -1, 1, grid, minShrink, false);
    }
  });
});
