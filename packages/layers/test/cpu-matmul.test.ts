import { describe, expect, it } from "vitest";
import { matmulLevelRows, matmulWeightRows } from "../src/cpu-matmul.js";

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

describe("matmulLevelRows (quantized CPU weights kept as levels and scales)", () => {
  it("equals the plain loop over the rebuilt fp32 weights bit for bit, for every remainder and group split", () => {
    for (const rows of [1, 3, 4, 5, 9]) {
      for (const n of [1, 2, 3, 5, 64]) {
        for (const [k, groupLength] of [
          [5, 5],
          [96, 96],
          [200, 128], // a short last group
          [256, 128],
        ]) {
          const groups = Math.ceil(k / groupLength);
          const levels = Int8Array.from({ length: n * k }, () => Math.floor(Math.random() * 4) - 1);
          // fp16-like scale values (a few bits of mantissa), some negative
          const scales = Float32Array.from(
            { length: n * groups },
            () => (Math.round(Math.random() * 2048) - 512) / 4096,
          );
          const dense = new Float32Array(n * k);
          for (let o = 0; o < n; o++)
            for (let i = 0; i < k; i++)
              dense[o * k + i] = levels[o * k + i] * scales[o * groups + Math.floor(i / groupLength)];
          const x = random(rows * k);
          const bias = rows % 2 === 0 ? random(n) : undefined;
          const y = new Float32Array(rows * n).fill(Number.NaN);
          matmulLevelRows(x, rows, k, levels, scales, groupLength, n, bias, y);
          const want = plainMatmul(x, rows, k, dense, n, bias);
          expect(
            Buffer.from(y.buffer).equals(Buffer.from(want.buffer)),
            `${rows} x ${k} -> ${n}, groups of ${groupLength}`,
          ).toBe(true);
        }
      }
    }
  });
});
