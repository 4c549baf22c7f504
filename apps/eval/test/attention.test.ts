import { describe, expect, it } from "vitest";
import { causalAttention } from "../src/model/cpu-ops.js";

/** The definition, one query row at a time, every sum in key order (scores and outputs stored as float32). */
function plainAttention(
  q: Float32Array,
  rows: number,
  pos0: number,
  keys: Float32Array,
  values: Float32Array,
  nHeads: number,
  nKvHeads: number,
  hs: number,
): Float32Array {
  const out = new Float32Array(rows * nHeads * hs);
  const scores = new Float32Array(pos0 + rows);
  for (let r = 0; r < rows; r++) {
    const span = pos0 + r + 1;
    for (let h = 0; h < nHeads; h++) {
      const qo = (r * nHeads + h) * hs;
      const kvo = Math.floor(h / (nHeads / nKvHeads)) * hs;
      let max = Number.NEGATIVE_INFINITY;
      for (let s = 0; s < span; s++) {
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += q[qo + i] * keys[s * nKvHeads * hs + kvo + i];
        const v = dot * (1 / Math.sqrt(hs));
        scores[s] = v;
        if (v > max) max = v;
      }
      let sum = 0;
      for (let s = 0; s < span; s++) {
        const e = Math.exp(scores[s] - max);
        scores[s] = e;
        sum += e; // the double, not the stored float32
      }
      for (let s = 0; s < span; s++) {
        const p = scores[s] * (1 / sum);
        for (let i = 0; i < hs; i++) out[qo + i] += p * values[s * nKvHeads * hs + kvo + i];
      }
    }
  }
  return out;
}

const random = (n: number, scale: number) =>
  Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * scale);

describe("causalAttention (CPU, query rows in pairs)", () => {
  it("equals one row at a time bit for bit: odd and even rows, a cache in front, grouped heads", () => {
    for (const [rows, pos0, nHeads, nKvHeads, hs] of [
      [1, 0, 2, 2, 4],
      [2, 0, 4, 2, 8],
      [7, 0, 8, 4, 8],
      [6, 5, 4, 1, 16],
      [1, 9, 4, 4, 64],
      [33, 3, 2, 1, 64],
    ]) {
      const q = random(rows * nHeads * hs, 2);
      const keys = random((pos0 + rows) * nKvHeads * hs, 2);
      const values = random((pos0 + rows) * nKvHeads * hs, 1);
      const got = causalAttention(q, rows, pos0, keys, values, { nHeads, nKvHeads, headSize: hs });
      const want = plainAttention(q, rows, pos0, keys, values, nHeads, nKvHeads, hs);
      expect(
        Buffer.from(got.buffer).equals(Buffer.from(want.buffer)),
        `${rows} rows after ${pos0}, ${nHeads}/${nKvHeads} heads of ${hs}`,
      ).toBe(true);
    }
  });
});
