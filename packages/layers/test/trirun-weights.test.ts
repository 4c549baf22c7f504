import { f16DecodeTable, unpackScales, unpackWeights } from "@trirun/packing";
import { describe, expect, it } from "vitest";
import { hostTensor, TriRunLinear } from "../src/index.js";
import { packPadded, padForKernel, unpackToNatural } from "../src/trirun-weights.js";
import {
  halfToNumber,
  makeRng,
  randomFloats,
  randomHalfBits,
  randomQuantized,
  referenceDequantize,
  referenceLinear,
  worstError,
} from "./helpers.js";
import { hasLayoutFixtures, loadLayoutCases } from "./shared.js";

const rng = makeRng();
const seedNote = `seed ${rng.seed}`;
const AWKWARD: [number, number][] = [
  [64, 172],
  [172, 64],
  [128, 256],
  [200, 300],
  [384, 512],
];

describe.skipIf(!hasLayoutFixtures)("reference layout vectors", () => {
  if (!hasLayoutFixtures)
    console.log("shared/fixtures/trirun-layout not found: skipping the reference vectors");
  for (const c of hasLayoutFixtures ? loadLayoutCases() : []) {
    it(`fromPacked(${c.name}) dequantizes to the reference codes and scales`, () => {
      const layer = TriRunLinear.fromPacked(
        { B: c.B, s: c.S, k: c.k, n: c.n, groupsize: c.groupsize, inFeatures: c.k, outFeatures: c.n },
        { backend: "cpu" },
      );
      expect(layer.groupsize).toBe(c.groupsize === -1 ? -1 : 128);
      const expected = referenceDequantize(c.codes, c.scales, c.k, c.n, c.groupsize);
      expect(Array.from(layer.dequantize())).toEqual(Array.from(expected));
    });

    it(`padding ${c.name} (already aligned) packs to the reference bytes`, () => {
      const g = c.groupsize === -1 ? -1 : 128;
      const packed = packPadded(
        padForKernel({ codes: c.codes, scales: c.scales, groupsize: g }, c.k, c.n, undefined),
      );
      expect(packed.k).toBe(c.k);
      expect(packed.n).toBe(c.n);
      expect(Buffer.from(packed.B.buffer).equals(Buffer.from(c.B.buffer))).toBe(true);
      expect(Buffer.from(packed.s.buffer).equals(Buffer.from(c.S.buffer))).toBe(true);
    });
  }
});

/**
 * What the kernel computes on padded packed weights, simulated in fp64 on the host: the activation
 * padded with zeros to k (and 1.0 in the bias column), times the full dequantized (k, n) matrix,
 * then the first `out` columns.
 */
function simulateKernel(
  packed: ReturnType<typeof packPadded>,
  onesColumn: number,
  x: Float32Array,
  rows: number,
  inF: number,
  outF: number,
): Float64Array {
  const { k, n, groupsize } = packed;
  const codes = unpackWeights(packed.B, k, n);
  const scales = unpackScales(packed.s, k, n, groupsize);
  const table = f16DecodeTable();
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    const a = new Float64Array(k);
    for (let i = 0; i < inF; i++) a[i] = x[r * inF + i];
    if (onesColumn >= 0) a[onesColumn] = 1;
    for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < k; i++) {
        const g = groupsize === -1 ? 0 : Math.floor(i / 128);
        s += a[i] * (codes[i * n + o] - 1) * table[scales[g * n + o]];
      }
      if (o < outF) y[r * outF + o] = s;
    }
  }
  return y;
}

describe("padding to the kernel's shapes", () => {
  for (const [inF, outF] of AWKWARD) {
    for (const groupsize of [128, -1] as const) {
      for (const withBias of [false, true]) {
        it(`in=${inF} out=${outF} g=${groupsize} bias=${withBias}: hidden, reversible, same math`, () => {
          const q = randomQuantized(rng, inF, outF, groupsize);
          const biasBits = withBias
            ? Uint16Array.from({ length: outF }, () => randomHalfBits(rng))
            : undefined;
          const padded = padForKernel(q, inF, outF, biasBits);
          expect(padded.k % 128).toBe(0);
          expect(padded.n % 256).toBe(0);
          expect(padded.k).toBe(Math.ceil(inF / 128) * 128 + (withBias ? 128 : 0));
          expect(padded.n).toBe(Math.ceil(outF / 256) * 256);
          const packed = packPadded(padded);
          const back = unpackToNatural(packed, inF, outF);
          const expectedW = referenceDequantize(q.codes, q.scales, inF, outF, groupsize);
          expect(Array.from(referenceDequantize(back.codes, back.scales, inF, outF, back.groupsize))).toEqual(
            Array.from(expectedW),
          );
          if (!withBias) {
            expect(back.groupsize).toBe(groupsize);
            expect(Array.from(back.codes)).toEqual(Array.from(q.codes));
            expect(Array.from(back.scales)).toEqual(Array.from(q.scales));
          }
          const rows = 3;
          const x = randomFloats(rng, rows * inF);
          const bias = biasBits === undefined ? undefined : Array.from(biasBits, halfToNumber);
          const expected = referenceLinear(x, rows, inF, expectedW, outF, bias);
          const simulated = simulateKernel(packed, padded.onesColumn, x, rows, inF, outF);
          const { ratio, index } = worstError(simulated, expected.y, expected.magnitude, 1e-12, 1e-300);
          expect(ratio, `worst at ${index} (${seedNote})`).toBeLessThanOrEqual(1);
        });
      }
    }
  }

  it("fromPacked of a padded layer equals fromQuantized, with groupsize k meaning -1", () => {
    for (const [inF, outF] of AWKWARD) {
      for (const groupsize of [128, -1] as const) {
        const q = randomQuantized(rng, inF, outF, groupsize);
        const bias = randomFloats(rng, outF);
        const a = TriRunLinear.fromQuantized(
          { ...q, inFeatures: inF, outFeatures: outF, bias },
          { backend: "cpu" },
        );
        const p = packPadded(padForKernel(q, inF, outF, undefined));
        // groupsize k (the reference spelling of -1); with k = 128 it is the same as 128.
        const g = groupsize === -1 && p.k > 128 && rng.next() < 0.5 ? p.k : groupsize;
        const b = TriRunLinear.fromPacked(
          { ...p, groupsize: g, inFeatures: inF, outFeatures: outF, bias },
          { backend: "cpu" },
        );
        expect(b.groupsize).toBe(groupsize);
        expect(Array.from(b.dequantize())).toEqual(Array.from(a.dequantize()));
        const x = hostTensor([2, inF], randomFloats(rng, 2 * inF));
        expect(Array.from(b.forward(x).data)).toEqual(Array.from(a.forward(x).data));
      }
    }
  });
});
