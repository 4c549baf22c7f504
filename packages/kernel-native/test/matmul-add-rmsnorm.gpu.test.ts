/**
 * trirunMatmul's fused add+RMSNorm epilogue against the two launches it replaces (trirunMatmul, then
 * ops.addRmsNorm) on fresh random inputs: C, the updated residual x and the normalised rows must be
 * bit-identical, on every small-batch tile, both group sizes, fp32 and fp16 norm weights, eagerly
 * and replayed from a CUDA graph (the epilogue's column counter must be back to zero after every
 * call). Skips (with a note) where no usable CUDA device exists; test/matmul-add-rmsnorm-host.test.ts
 * runs it against the host stand-in.
 */
import { describe, expect, it } from "vitest";
import { packScales, packWeights } from "../src/device/layout.js";
import { Rng, toF16Bits } from "../src/device/numeric.js";
import {
  available,
  captureGraph,
  DeviceTensor,
  ops,
  synchronize,
  trirunMatmul,
  unavailableReason,
} from "../src/index.js";

const gpu = available();
if (!gpu)
  console.log(
    `@trirun/kernel-native fused add+RMSNorm GPU tests skipped: ${unavailableReason() ?? "no CUDA device"}`,
  );

const seed = (Math.random() * 2 ** 32) >>> 0;
const rng = new Rng(seed);

function halfBits(n: number, scale: number): Uint16Array {
  return Uint16Array.from({ length: n }, () => toF16Bits((rng.next() * 2 - 1) * scale));
}

/** Packed random weights (k, n) with group size g (128 or -1). */
function randomLayer(k: number, n: number, g: 128 | -1): { B: DeviceTensor; s: DeviceTensor } {
  const codes = Uint8Array.from({ length: k * n }, () => Math.floor(rng.next() * 4));
  const groups = g === -1 ? 1 : k / g;
  const scales = Uint16Array.from({ length: groups * n }, () => toF16Bits(0.01 + 0.02 * rng.next()));
  return {
    B: DeviceTensor.fromArray(packWeights(codes, k, n), [k / 16, n], "i32"),
    s: DeviceTensor.fromArray(packScales(scales, groups, n), [groups, n], "f16"),
  };
}

interface Case {
  k: number;
  n: number;
  m: number;
  g: 128 | -1;
  weight: "f32" | "f16";
  tile?: [number, number];
}

function bits(t: DeviceTensor): number[] {
  return Array.from(t.download() as Uint16Array);
}

/** Runs the case both ways (optionally the fused one from a graph, replayed twice) and compares. */
function compare(c: Case, viaGraph: boolean): void {
  const { B, s } = randomLayer(c.k, c.n, c.g);
  const A = DeviceTensor.fromArray(halfBits(c.m * c.k, 1), [c.m, c.k], "f16");
  const x0 = halfBits(c.m * c.n, 2);
  const weight =
    c.weight === "f32"
      ? DeviceTensor.fromArray(
          Float32Array.from({ length: c.n }, () => 0.5 + rng.next()),
          [c.n],
          "f32",
        )
      : DeviceTensor.fromArray(
          Uint16Array.from({ length: c.n }, () => toF16Bits(0.5 + rng.next())),
          [c.n],
          "f16",
        );
  const eps = 1e-5 * (1 + rng.next());
  const tile = c.tile ? { threadK: c.tile[0], threadN: c.tile[1] } : {};
  const owned = [A, B, s, weight];
  try {
    // Two launches: the reference.
    const refC = DeviceTensor.empty("f16", [c.m, c.n]);
    const refX = DeviceTensor.fromArray(x0, [c.m, c.n], "f16");
    const refOut = DeviceTensor.empty("f16", [c.m, c.n]);
    owned.push(refC, refX, refOut);
    trirunMatmul(A, B, s, refC, { groupsize: c.g, ...tile });
    ops.addRmsNorm(refX, refC, weight, refOut, { eps });
    // One launch.
    const C = DeviceTensor.empty("f16", [c.m, c.n]);
    const x = DeviceTensor.fromArray(x0, [c.m, c.n], "f16");
    const out = DeviceTensor.empty("f16", [c.m, c.n]);
    owned.push(C, x, out);
    const run = () =>
      trirunMatmul(A, B, s, C, { groupsize: c.g, ...tile, addRmsNorm: { x, weight, out, eps } });
    if (viaGraph) {
      run(); // warm-up outside the capture (workspace)
      x.upload(x0);
      const graph = captureGraph(run);
      try {
        graph.launch();
        synchronize();
        const label = `${JSON.stringify(c)} graph replay 1`;
        expect(bits(C), label).toEqual(bits(refC));
        expect(bits(x), label).toEqual(bits(refX));
        expect(bits(out), label).toEqual(bits(refOut));
        // A second replay adds C again: compare with a second reference step.
        ops.addRmsNorm(refX, refC, weight, refOut, { eps });
        graph.launch();
        synchronize();
        expect(bits(x), `${JSON.stringify(c)} graph replay 2`).toEqual(bits(refX));
        expect(bits(out), `${JSON.stringify(c)} graph replay 2`).toEqual(bits(refOut));
      } finally {
        graph.dispose();
      }
    } else {
      const config = run();
      expect(config.kernel).toBe("small");
      const label = JSON.stringify(c);
      expect(bits(C), `${label}: C`).toEqual(bits(refC));
      expect(bits(x), `${label}: x`).toEqual(bits(refX));
      expect(bits(out), `${label}: out`).toEqual(bits(refOut));
      // The rows really were normalised (not left as they were).
      expect(bits(out), `${label}: out changed`).not.toEqual(Array.from(x0));
    }
  } finally {
    for (const t of owned) t.dispose();
  }
}

describe.skipIf(!gpu)(`trirunMatmul with the fused add+RMSNorm epilogue (seed ${seed})`, () => {
  const cases: Case[] = [
    { k: 4096, n: 4096, m: 1, g: 128, weight: "f32" },
    { k: 11008, n: 4096, m: 1, g: 128, weight: "f32" },
    { k: 4096, n: 4096, m: 3, g: -1, weight: "f16" },
    { k: 512, n: 8192, m: 8, g: 128, weight: "f32" },
    { k: 8192, n: 8192, m: 1, g: 128, weight: "f16" },
    { k: 256, n: 256, m: 1, g: 128, weight: "f32" },
    { k: 1024, n: 2048, m: 16, g: 128, weight: "f32", tile: [256, 256] },
    { k: 1024, n: 2048, m: 9, g: -1, weight: "f32", tile: [128, 512] },
    { k: 640, n: 1536, m: 32, g: 128, weight: "f16", tile: [512, 128] },
    { k: 2048, n: 1024, m: 17, g: 128, weight: "f32" },
  ];
  for (const c of cases) {
    it(`k=${c.k} n=${c.n} m=${c.m} g=${c.g} ${c.weight} weight${c.tile ? ` tile ${c.tile.join("x")}` : ""}: equals matmul + addRmsNorm bit for bit`, () => {
      compare(c, false);
    });
  }
  it("replayed from a CUDA graph, twice (the column counter resets itself)", () => {
    compare({ k: 4096, n: 4096, m: 1, g: 128, weight: "f32" }, true);
    compare({ k: 2048, n: 8192, m: 4, g: 128, weight: "f16" }, true);
  });

  it("refuses what the epilogue cannot do, before launching", () => {
    const { B, s } = randomLayer(256, 512, 128);
    const make = (m: number) => DeviceTensor.zeros("f16", [m, 512]);
    const A = DeviceTensor.zeros("f16", [40, 256]);
    const C = make(40);
    const x = make(40);
    const out = make(40);
    const w = DeviceTensor.zeros("f32", [512]);
    const a4 = A.view([4, 256]);
    const c4 = C.view([4, 512]);
    const x4 = x.view([4, 512]);
    const o4 = out.view([4, 512]);
    try {
      expect(() => trirunMatmul(A, B, s, C, { addRmsNorm: { x, weight: w, out, eps: 1e-5 } })).toThrow(
        /opts.addRmsNorm: the fused epilogue runs in the small-batch kernel \(m <= 32\), got m = 40/,
      );
      expect(() =>
        trirunMatmul(a4, B, s, c4, {
          threadK: 128,
          threadN: 128,
          addRmsNorm: { x: x4, weight: w, out: o4, eps: 1e-5 },
        }),
      ).toThrow(/needs a small-batch tile/);
      expect(() =>
        trirunMatmul(a4, B, s, c4, { addRmsNorm: { x: x4, weight: w, out: o4, eps: -1 } }),
      ).toThrow(/opts.addRmsNorm.eps: expected a finite number >= 0/);
      expect(() =>
        trirunMatmul(a4, B, s, c4, { addRmsNorm: { x: x4, weight: w, out: x.view([3, 512]), eps: 1e-5 } }),
      ).toThrow(/opts.addRmsNorm.out: expected shape/);
      expect(() =>
        trirunMatmul(a4, B, s, c4, { addRmsNorm: { x: x4, weight: w.view([256]), out: o4, eps: 1e-5 } }),
      ).toThrow(/opts.addRmsNorm.weight: expected shape/);
      expect(() =>
        trirunMatmul(a4, B, s, c4, { addRmsNorm: { x: x4, weight: w, out: c4, eps: 1e-5 } }),
      ).toThrow(/opts.addRmsNorm.out: must not share memory with C/);
      expect(() =>
        trirunMatmul(a4, B, s, c4, { addRmsNorm: { x: c4, weight: w, out: o4, eps: 1e-5 } }),
      ).toThrow(/opts.addRmsNorm.x: must not share memory with C/);
      synchronize(); // nothing was launched, so nothing failed
    } finally {
      for (const t of [a4, c4, x4, o4, A, B, s, C, x, out, w]) t.dispose();
    }
  });
});
