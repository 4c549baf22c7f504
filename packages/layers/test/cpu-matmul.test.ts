import { describe, expect, it } from "vitest";
import { matmulWeightRows } from "../src/cpu-matmul.js";

/** The definition: every output a float64 sum over `in`, in order, plus the bias, stored as fp32. */
function plainMatmul(
  x: Float32Array,
  rows: number,
  k: number,
  w: Float32Array,
  n: number,
  bias?: Float32Array,
) {
  const y = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[r * k + i] * w[o * k + i];
      y[r * n + o] = s + (bias === undefined ? 0 : bias[o]);
    }
  }
  return y;
}

const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);

describe("matmulWeightRows (the CPU backend's blocked matmul)", () => {
  it("equals the plain float64 loop bit for bit on shapes that exercise every remainder", () => {
    for (const rows of [1, 3, 4, 5, 8, 11]) {
      for (const n of [1, 2, 3, 7, 64]) {
        for (const k of [1, 5, 96]) {
          for (const withBias of [false, true]) {
            const x = random(rows * k);
            const w = random(n * k);
            const bias = withBias ? random(n) : undefined;
            const y = new Float32Array(rows * n).fill(Number.NaN);
            matmulWeightRows(x, rows, k, w, n, bias, y);
            const want = plainMatmul(x, rows, k, w, n, bias);
            expect(
              Buffer.from(y.buffer).equals(Buffer.from(want.buffer)),
              `${rows} x ${k} -> ${n}, bias ${withBias}`,
            ).toBe(true);
          }
        }
      }
    }
  });
});
