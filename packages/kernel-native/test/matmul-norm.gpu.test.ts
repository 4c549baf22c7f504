/**
 * trirunMatmulNorm (RMSNorm fused into the TriRun matmul): on fresh random inputs each run (seed in the
 * test names), for 1..4 rows, widths up to 8192, grouped and per-column scales, fp32 and fp16 norm
 * weights, with and without the residual add: the product equals ops.addRmsNorm (or ops.rmsnorm)
 * followed by trirunMatmul (the same arithmetic; any differing output is reported) and an fp64 CPU
 * reference; residualOut holds exactly the bits of x + delta that addRmsNorm leaves in x; x and delta
 * are unchanged; nothing is written outside C and residualOut. Skips (with a note) where no usable
 * CUDA device exists, and the fused cases where the kernel does not run (not sm_90).
 */
import { describe, expect, it } from "vitest";
import { packScales, packWeights } from "../src/device/layout.js";
import {
  compare,
  dequantizeF16,
  f16ToF32,
  matmulF64,
  randomActivations,
  randomCodes,
  randomScales,
  Rng,
  toF16Bits,
} from "../src/device/numeric.js";
import {
  available,
  DeviceTensor,
  ops,
  synchronize,
  trirunMatmul,
  trirunMatmulNorm,
  trirunMatmulNormSupported,
  unavailableReason,
} from "../src/index.js";

const gpu = available();
if (!gpu)
  console.log(
    `@trirun/kernel-native fused-norm GPU tests skipped: ${unavailableReason() ?? "no CUDA device"}`,
  );

const seed = (Math.random() * 2 ** 32) >>> 0;
const rng = new Rng(seed);
const GUARD = 256;
const POISON = 0x7e7e;

interface NormCase {
  m: number;
  k: number;
  n: number;
  groupsize: 128 | -1;
  withDelta: boolean;
  weightF32: boolean;
}

/** A (rows, width) f16 tensor inside a guard zone of NaN bits. */
function guarded(rows: number, width: number): { whole: DeviceTensor; t: DeviceTensor } {
  const whole = DeviceTensor.empty("f16", [rows * width + 2 * GUARD]);
  whole.fillBytes(0x7e);
  return { whole, t: whole.view([rows, width], GUARD) };
}

function expectGuardsIntact(whole: DeviceTensor, name: string): Uint16Array {
  const all = whole.download() as Uint16Array;
  for (let i = 0; i < GUARD; i++) {
    if (all[i] !== POISON || all[all.length - 1 - i] !== POISON) {
      throw new Error(`${name}: written outside its ${all.length - 2 * GUARD} elements`);
    }
  }
  return all.subarray(GUARD, all.length - GUARD);
}

function runCase(c: NormCase): { mismatches: number; outputs: number } {
  const { m, k, n, groupsize, withDelta, weightF32 } = c;
  const g = groupsize === -1 ? k : 128;
  const codes = randomCodes(rng, k * n);
  const scales = randomScales(rng, (k / g) * n, 0.02, 0.05);
  const x = randomActivations(rng, m * k);
  const delta = randomActivations(rng, m * k);
  const w = new Float32Array(k);
  for (let i = 0; i < k; i++) w[i] = 0.5 + rng.next();
  const wHost = weightF32 ? w : Uint16Array.from(w, (v) => toF16Bits(v));
  const wValue = (j: number): number => (weightF32 ? w[j] : f16ToF32((wHost as Uint16Array)[j]));
  const eps = 1e-5;

  const made: DeviceTensor[] = [];
  const keep = <T extends DeviceTensor>(t: T): T => {
    made.push(t);
    return t;
  };
  try {
    const X = keep(DeviceTensor.fromArray(x, [m, k], "f16"));
    const D = keep(DeviceTensor.fromArray(delta, [m, k], "f16"));
    const W = keep(DeviceTensor.fromArray(wHost, [k], weightF32 ? "f32" : "f16"));
    const B = keep(DeviceTensor.fromArray(packWeights(codes, k, n), [k / 16, n], "i32"));
    const s = keep(DeviceTensor.fromArray(packScales(scales, k / g, n), [k / g, n], "f16"));
    const c1 = guarded(m, n);
    const r1 = guarded(m, k);
    for (const t of [c1.whole, c1.t, r1.whole, r1.t]) keep(t);
    const config = trirunMatmulNorm(X, B, s, c1.t, {
      weight: W,
      eps,
      delta: withDelta ? D : undefined,
      residualOut: withDelta ? r1.t : undefined,
    });
    expect(config.kernel).toBe("small");
    // The two steps: the norm kernel (x updated in place with delta), then the matmul.
    const X2 = keep(DeviceTensor.fromArray(x, [m, k], "f16"));
    const H = keep(DeviceTensor.empty("f16", [m, k]));
    const C2 = keep(DeviceTensor.empty("f16", [m, n]));
    if (withDelta) ops.addRmsNorm(X2, D, W, H, { eps });
    else ops.rmsnorm(X2, W, H, { eps });
    trirunMatmul(H, B, s, C2);
    synchronize();

    const fused = expectGuardsIntact(c1.whole, "C");
    const residual = expectGuardsIntact(r1.whole, "residualOut");
    expect(Array.from(X.download() as Uint16Array)).toEqual(Array.from(x));
    expect(Array.from(D.download() as Uint16Array)).toEqual(Array.from(delta));
    const sum = X2.download() as Uint16Array;
    if (withDelta) {
      let differ = 0;
      for (let i = 0; i < m * k; i++) if (residual[i] !== sum[i]) differ++;
      expect(differ, "residualOut: elements that differ from addRmsNorm's x + delta").toBe(0);
    } else {
      // Without delta nothing is written there.
      for (let i = 0; i < m * k; i++)
        if (residual[i] !== POISON) throw new Error("residualOut written without delta");
    }
    const split = C2.download() as Uint16Array;
    let mismatches = 0;
    let worstSplit = 0;
    let scale = 0;
    for (let i = 0; i < m * n; i++) {
      if (fused[i] !== split[i]) mismatches++;
      worstSplit = Math.max(worstSplit, Math.abs(f16ToF32(fused[i]) - f16ToF32(split[i])));
      scale = Math.max(scale, Math.abs(f16ToF32(split[i])));
    }
    // Same arithmetic as the two steps: at most a rounding apart anywhere (in practice the same bits).
    expect(scale).toBeGreaterThan(0);
    expect(worstSplit / scale, `fused vs two steps (${mismatches} of ${m * n} outputs differ)`).toBeLessThan(
      2e-3,
    );

    // fp64 reference: h = fp16(rmsnorm(fp16(x + delta)) * w), then h @ W.
    const h = new Uint16Array(m * k);
    for (let r = 0; r < m; r++) {
      let ss = 0;
      const row = new Float64Array(k);
      for (let j = 0; j < k; j++) {
        const xv = f16ToF32(x[r * k + j]);
        row[j] = withDelta ? f16ToF32(toF16Bits(xv + f16ToF32(delta[r * k + j]))) : xv;
        ss += row[j] * row[j];
      }
      const inv = 1 / Math.sqrt(ss / k + eps);
      for (let j = 0; j < k; j++) h[r * k + j] = toF16Bits(row[j] * inv * wValue(j));
    }
    const ref = matmulF64(h, dequantizeF16(codes, scales, k, n, g), m, k, n);
    const cmp = compare(fused, ref);
    expect(cmp.nonFinite).toBe(0);
    expect(cmp.relError).toBeLessThan(2e-3);
    return { mismatches, outputs: m * n };
  } finally {
    for (const t of made.reverse()) t.dispose();
  }
}

describe.skipIf(!gpu)(`trirunMatmulNorm (seed ${seed})`, () => {
  it("1..4 rows, widths to 8192, both scale layouts and weight dtypes, with and without delta", () => {
    // Short and long runs per block (last-arriver slots and the lock chain), one and several blocks
    // per column; sizes kept small enough for the host stand-in's TypeScript product.
    const cases: NormCase[] = [
      { m: 1, k: 4096, n: 2048, groupsize: 128, withDelta: true, weightF32: true },
      { m: 1, k: 1024, n: 8192, groupsize: 128, withDelta: true, weightF32: true },
      { m: 1, k: 4096, n: 512, groupsize: 128, withDelta: false, weightF32: true },
      { m: 2, k: 8192, n: 512, groupsize: 128, withDelta: true, weightF32: false },
      { m: 3, k: 1024, n: 768, groupsize: -1, withDelta: true, weightF32: true },
      { m: 4, k: 3072, n: 1536, groupsize: 128, withDelta: true, weightF32: true },
      { m: 4, k: 256, n: 256, groupsize: -1, withDelta: false, weightF32: false },
      { m: 1, k: 128, n: 2048, groupsize: 128, withDelta: true, weightF32: true },
    ];
    let mismatches = 0;
    let outputs = 0;
    let ran = 0;
    for (const c of cases) {
      if (!trirunMatmulNormSupported(c.m, c.k)) continue;
      const r = runCase(c);
      mismatches += r.mismatches;
      outputs += r.outputs;
      ran++;
    }
    console.log(
      `trirunMatmulNorm: ${ran} of ${cases.length} cases ran here; ${mismatches} of ${outputs} outputs differ in their bits from addRmsNorm + trirunMatmul`,
    );
  });

  it("says where it runs, and refuses elsewhere and bad arguments before launching", () => {
    expect(trirunMatmulNormSupported(5, 4096)).toBe(false);
    expect(trirunMatmulNormSupported(1, 16384)).toBe(false);
    expect(() => trirunMatmulNormSupported(0, 4096)).toThrow(RangeError);
    const X = DeviceTensor.empty("f16", [5, 256]);
    const B = DeviceTensor.empty("i32", [16, 256]);
    const s = DeviceTensor.empty("f16", [2, 256]);
    const C = DeviceTensor.empty("f16", [5, 256]);
    const W = DeviceTensor.empty("f32", [256]);
    const W2 = DeviceTensor.empty("f32", [128]);
    try {
      expect(() => trirunMatmulNorm(X, B, s, C, { weight: W })).toThrow(/does not run for m=5/);
      const X1 = X.view([1, 256]);
      const C1 = C.view([1, 256]);
      expect(() => trirunMatmulNorm(X1, B, s, C1, { weight: W2 })).toThrow(/opts\.weight: expected shape/);
      expect(() => trirunMatmulNorm(X1, B, s, C1, { weight: W, residualOut: C1 })).toThrow(
        /needs opts\.delta/,
      );
      expect(() => trirunMatmulNorm(X1, B, s, C1, { weight: W, eps: Number.NaN })).toThrow(/opts\.eps/);
      expect(() => trirunMatmulNorm(X1, B, s, X1, { weight: W })).toThrow(/must not share memory with x/);
      expect(() => trirunMatmulNorm(X1, B, s, C1, { weight: W, delta: C1, residualOut: X1 })).toThrow(
        /residualOut: must not share memory/,
      );
      X1.dispose();
      C1.dispose();
    } finally {
      for (const t of [X, B, s, C, W, W2]) t.dispose();
    }
  });
});
