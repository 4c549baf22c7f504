import { describe, expect, it } from "vitest";
import { Float16Linear, hostTensor, TriRunLinear } from "../src/index.js";
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

/** (in, out) pairs: aligned, awkward (below and across the kernel tiles), tiny. */
const SHAPES: [number, number][] = [
  [64, 172],
  [172, 64],
  [128, 256],
  [256, 384],
  [1, 1],
  [300, 5],
  [7, 129],
];
/** Leading dimensions of the input. */
const BATCHES: number[][] = [[], [1], [5], [2, 3], [3, 1, 2]];

const rng = makeRng();
const seedNote = `seed ${rng.seed}`;

function expectClose(
  actual: Float32Array,
  expected: { y: Float64Array; magnitude: Float64Array },
  what: string,
): void {
  // fp32 output rounding (2^-24 relative) plus slack; sums are accumulated in float64.
  const { ratio, index } = worstError(actual, expected.y, expected.magnitude, 2 ** -22, 1e-30);
  expect(
    ratio,
    `${what}: worst at ${index}: ${actual[index]} vs ${expected.y[index]} (${seedNote})`,
  ).toBeLessThanOrEqual(1);
}

describe("TriRunLinear on the CPU backend matches fp64 math", () => {
  for (const [inF, outF] of SHAPES) {
    for (const groupsize of [128, -1] as const) {
      it(`in=${inF} out=${outF} groupsize=${groupsize}`, () => {
        const q = randomQuantized(rng, inF, outF, groupsize);
        const bias = rng.next() < 0.5 ? undefined : randomFloats(rng, outF);
        const layer = TriRunLinear.fromQuantized(
          { ...q, inFeatures: inF, outFeatures: outF, bias },
          { backend: "cpu" },
        );
        expect(layer.backend).toBe("cpu");
        expect(layer.kind).toBe("trirun");
        const w = referenceDequantize(q.codes, q.scales, inF, outF, groupsize === -1 ? -1 : 128);
        expect(Array.from(layer.dequantize())).toEqual(Array.from(w));
        // The layer rounds the bias to fp16, as the GPU backend adds it in fp16:
        // within half a unit in the last place, 2^-11 relative for normal fp16
        // values and 2^-25 absolute below 2^-14 (subnormals are 2^-24 apart).
        const bias16 = bias === undefined ? undefined : Array.from(layer.bias!);
        if (bias !== undefined) {
          for (let o = 0; o < outF; o++)
            expect(Math.abs(bias16![o] - bias[o])).toBeLessThanOrEqual(
              Math.max(Math.abs(bias[o]) * 2 ** -11, 2 ** -25),
            );
        }
        for (const lead of BATCHES) {
          const rows = lead.reduce((a, b) => a * b, 1);
          const x = hostTensor([...lead, inF], randomFloats(rng, rows * inF));
          const y = layer.forward(x);
          expect(y.shape).toEqual([...lead, outF]);
          expectClose(y.data, referenceLinear(x.data, rows, inF, w, outF, bias16), `batch [${lead}]`);
        }
        layer.dispose();
      });
    }
  }
});

describe("Float16Linear on the CPU backend matches fp64 math", () => {
  for (const [inF, outF] of SHAPES) {
    it(`in=${inF} out=${outF}`, () => {
      const bits = new Uint16Array(inF * outF);
      for (let i = 0; i < bits.length; i++) bits[i] = randomHalfBits(rng, 0.1);
      const w = Float64Array.from(bits, halfToNumber);
      const bias =
        rng.next() < 0.5
          ? undefined
          : Float32Array.from({ length: outF }, () => halfToNumber(randomHalfBits(rng)));
      const layer = Float16Linear.fromWeights(bits, outF, inF, bias, { backend: "cpu" });
      expect(Array.from(layer.weight)).toEqual(Array.from(w));
      // fp32 values that are exact in fp16 are kept as they are.
      const same = Float16Linear.fromWeights(Float32Array.from(w), outF, inF, undefined, { backend: "cpu" });
      expect(Array.from(same.weight)).toEqual(Array.from(w));
      for (const lead of BATCHES) {
        const rows = lead.reduce((a, b) => a * b, 1);
        const x = hostTensor([...lead, inF], randomFloats(rng, rows * inF));
        const out = hostTensor([...lead, outF]);
        const y = layer.forward(x, { out });
        expect(y).toBe(out);
        expectClose(y.data, referenceLinear(x.data, rows, inF, w, outF, bias), `batch [${lead}]`);
      }
      expect(layer.byteLength).toBe(inF * outF * 4 + (bias === undefined ? 0 : outF * 4));
    });
  }

  it("rounds fp32 weights to the nearest fp16", () => {
    const w = Float32Array.from([1 + 2 ** -11, 1 + 3 * 2 ** -11, 0.1, -65520]);
    const layer = Float16Linear.fromWeights(w, 2, 2, undefined, { backend: "cpu" });
    expect(Array.from(layer.weight)).toEqual([
      1,
      1 + 2 ** -9,
      halfToNumber(0x2e66),
      Number.NEGATIVE_INFINITY,
    ]);
  });
});

describe("quantize and pack", () => {
  it("pack(linear, scales) recovers the codes of fake-quantized weights", () => {
    for (const [inF, outF] of [
      [172, 64],
      [64, 172],
      [256, 256],
    ] as const) {
      for (const groupsize of [128, -1] as const) {
        const q = randomQuantized(rng, inF, outF, groupsize);
        const w = referenceDequantize(q.codes, q.scales, inF, outF, groupsize);
        const fp16 = Float16Linear.fromWeights(Float32Array.from(w), outF, inF, undefined, {
          backend: "cpu",
        });
        const packed = TriRunLinear.pack(fp16, q.scales, groupsize, { backend: "cpu" });
        expect(Array.from(packed.dequantize())).toEqual(Array.from(w));
      }
    }
  });

  it("quantize with the packing methods gives weights on the grid and a close forward", () => {
    const inF = 172;
    const outF = 64;
    const fp16 = Float16Linear.fromWeights(randomFloats(rng, inF * outF, 0.05), outF, inF, undefined, {
      backend: "cpu",
    });
    for (const method of ["absmean", "absmax", "mse"] as const) {
      const layer = TriRunLinear.quantize(fp16, method, 128);
      expect(layer.groupsize).toBe(128);
      const w = layer.dequantize();
      // Every weight is a level -1..2 times its group's scale: requantizing with "exact" is lossless.
      const again = TriRunLinear.quantize(
        Float16Linear.fromWeights(w, outF, inF, undefined, { backend: "cpu" }),
        "exact",
        128,
      );
      expect(Array.from(again.dequantize())).toEqual(Array.from(w));
      // Relative error of the weights: RTN ternary is coarse (about 0.6-0.75 on Gaussian weights) but far
      // from the 1.0 of a quantizer that zeroes everything.
      let num = 0;
      let den = 0;
      for (let i = 0; i < w.length; i++) {
        num += (w[i] - fp16.weight[i]) ** 2;
        den += fp16.weight[i] ** 2;
      }
      expect(Math.sqrt(num / den), method).toBeLessThan(0.9);
    }
  });

  it("quantize with a custom function uses its result", () => {
    const inF = 64;
    const outF = 172;
    const fp16 = Float16Linear.fromWeights(randomFloats(rng, inF * outF), outF, inF, undefined, {
      backend: "cpu",
    });
    const q = randomQuantized(rng, inF, outF, -1);
    const seen: number[] = [];
    const layer = TriRunLinear.quantize(
      fp16,
      (weight, o, i, g) => {
        expect(weight).toBe(fp16.weight);
        seen.push(o, i, g);
        return q;
      },
      -1,
    );
    expect(seen).toEqual([outF, inF, -1]);
    expect(Array.from(layer.dequantize())).toEqual(
      Array.from(referenceDequantize(q.codes, q.scales, inF, outF, -1)),
    );
  });
});
