import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { packScales, packWeights, unpackScales, unpackWeights } from "../src/index.js";

/** The permutation P written again, straight from the format text (docs/trirun-format.md). */
function specPermutation(): number[] {
  const lanes: number[] = [];
  for (let i = 0; i < 32; i++) {
    const eight: number[] = [];
    for (const block of [0, 1]) {
      for (const row of [2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4) + 8, 2 * (i % 4) + 9]) {
        eight.push(16 * row + Math.floor(i / 4) + 8 * block);
      }
    }
    for (let j = 0; j < 4; j++) lanes.push(...eight.map((p) => p + 256 * j));
  }
  const take = (xs: number[], size: number, order: number[]) =>
    xs.flatMap((_, idx) => (idx % size === 0 ? order.map((o) => xs[idx + o]) : []));
  return take(
    take(lanes, 8, [0, 2, 4, 6, 1, 3, 5, 7]),
    16,
    [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15],
  );
}

/** A direct, slow implementation of the layout from the spec: tile streams, chunks, words. */
function specPack(codes: Uint8Array, k: number, n: number): Int32Array {
  const perm = specPermutation();
  const out = new Int32Array((k / 16) * n);
  for (let tr = 0; tr < k / 16; tr++) {
    const stream: number[] = [];
    for (let tile = 0; tile < n / 16; tile++) {
      for (let i = 0; i < 16; i++)
        for (let j = 0; j < 16; j++) stream.push(codes[(16 * tr + i) * n + 16 * tile + j]);
    }
    const permuted: number[] = [];
    for (let c = 0; c < stream.length; c += 1024) for (const p of perm) permuted.push(stream[c + p]);
    for (let w = 0; w < n; w++) {
      let word = 0;
      for (let b = 0; b < 16; b++) word += permuted[16 * w + b] * 2 ** (2 * b);
      out[tr * n + w] = word | 0;
    }
  }
  return out;
}

function specPackScales(scales: Uint16Array, single: boolean): Uint16Array {
  const perm: number[] = [];
  if (single) {
    for (let i = 0; i < 4; i++) for (const j of [0, 1, 8, 9, 16, 17, 24, 25]) perm.push(2 * i + j);
  } else {
    for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) perm.push(i + 8 * j);
  }
  const out = new Uint16Array(scales.length);
  for (let c = 0; c < scales.length; c += perm.length) {
    perm.forEach((p, t) => {
      out[c + t] = scales[c + p];
    });
  }
  return out;
}

const shape = fc.record({ kTiles: fc.integer({ min: 1, max: 12 }), nChunks: fc.integer({ min: 1, max: 6 }) });

describe("packWeights / unpackWeights", () => {
  it("matches a direct implementation of the spec on random shapes and codes", () => {
    fc.assert(
      fc.property(shape, fc.integer(), ({ kTiles, nChunks }, seed) => {
        const k = 16 * kTiles;
        const n = 64 * nChunks;
        const codes = Uint8Array.from(
          { length: k * n },
          (_, i) => (Math.imul(seed ^ i, 2654435761) >>> 13) & 3,
        );
        expect(Array.from(packWeights(codes, k, n))).toEqual(Array.from(specPack(codes, k, n)));
      }),
      { numRuns: 25 },
    );
  });

  it("round-trips random codes", () => {
    fc.assert(
      fc.property(shape, ({ kTiles, nChunks }) => {
        const k = 16 * kTiles;
        const n = 64 * nChunks;
        const codes = Uint8Array.from({ length: k * n }, () => Math.floor(Math.random() * 4));
        expect(Buffer.from(unpackWeights(packWeights(codes, k, n), k, n)).equals(Buffer.from(codes))).toBe(
          true,
        );
      }),
      { numRuns: 40 },
    );
  });

  it("rejects bad arguments with errors naming them", () => {
    expect(() => packWeights(new Uint8Array(16 * 64), 16, 48)).toThrow(/n must be a multiple of 64/);
    expect(() => packWeights(new Uint8Array(8 * 64), 8, 64)).toThrow(RangeError);
    expect(() => packWeights(new Uint8Array(8 * 64), 8, 64)).toThrow(/k must be a multiple of 16/);
    expect(() => packWeights(new Uint8Array(10), 16, 64)).toThrow(/codes must have k \* n = 1024/);
    expect(() => packWeights([0, 1] as unknown as Uint8Array, 16, 64)).toThrow(TypeError);
    expect(() => packWeights(new Uint8Array(1024), 16.5, 64)).toThrow(TypeError);
    expect(() => packWeights(new Uint8Array(1024), -16, 64)).toThrow(RangeError);
    const codes = new Uint8Array(16 * 64);
    codes[70] = 4;
    expect(() => packWeights(codes, 16, 64)).toThrow(/codes\[70\] \(row 1, column 6\) = 4/);
    expect(() => unpackWeights(new Int32Array(3), 16, 64)).toThrow(/packed must have/);
    expect(() => unpackWeights(new Uint32Array(64) as unknown as Int32Array, 16, 64)).toThrow(TypeError);
  });
});

describe("packScales / unpackScales", () => {
  it("matches the spec permutations and round-trips", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        (groups, nChunks, single) => {
          const k = 128 * groups;
          const n = 64 * nChunks;
          const groupsize = single ? -1 : 128;
          // As in the reference, g == k (one group) uses the single-group permutation.
          const rows = single ? 1 : groups;
          const scales = Uint16Array.from({ length: rows * n }, () => Math.floor(Math.random() * 65536));
          const packed = packScales(scales, k, n, groupsize);
          expect(Array.from(packed)).toEqual(Array.from(specPackScales(scales, rows === 1)));
          expect(Array.from(unpackScales(packed, k, n, groupsize))).toEqual(Array.from(scales));
          if (single) expect(Array.from(packScales(scales, k, n, k))).toEqual(Array.from(packed));
        },
      ),
      { numRuns: 40 },
    );
  });

  it("rejects bad arguments", () => {
    expect(() => packScales(new Uint16Array(64), 128, 64, 64)).toThrow(/groupsize must be 128, -1 or k/);
    expect(() => packScales(new Uint16Array(64), 192, 64, 128)).toThrow(/multiple of groupsize/);
    expect(() => packScales(new Uint16Array(63), 128, 64, 128)).toThrow(/scales must have/);
    expect(() => packScales(new Uint16Array(64), 256, 32, 128)).toThrow(/n must be a multiple of 64/);
    expect(() => packScales(new Uint16Array(16), 128, 16, -1)).toThrow(/n must be a multiple of 32/);
    expect(() => packScales(new Float32Array(64) as unknown as Uint16Array, 128, 64, 128)).toThrow(TypeError);
    expect(() => unpackScales(new Uint16Array(5), 128, 64, -1)).toThrow(/packed must have/);
  });
});
