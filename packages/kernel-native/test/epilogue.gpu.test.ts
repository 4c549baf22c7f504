/**
 * The TriRun matmul's SiLU-multiply epilogue (`epilogue: "silu-mul"`) and ops.siluMulPairs: on fresh
 * random gate/up pair weights each run (seed in the test names), the epilogue gives exactly the bits of
 * the plain product followed by siluMulPairs, for every small-batch tile, both reductions (short and
 * long runs), grouped and per-column scales; both agree with an fp64 CPU reference of
 * silu(x Wg) * (x Wu) from separately drawn gate and up weights; nothing is written past C (n / 2
 * columns). Skips (with a note) where no usable CUDA device exists.
 */
import { describe, expect, it } from "vitest";
import { packScales, packWeights } from "../src/device/layout.js";
import {
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
  TRIRUN_SMALL_MAX_M,
  trirunMatmul,
  unavailableReason,
} from "../src/index.js";

const gpu = available();
if (!gpu)
  console.log(`@trirun/kernel-native epilogue GPU tests skipped: ${unavailableReason() ?? "no CUDA device"}`);

const seed = (Math.random() * 2 ** 32) >>> 0;
const rng = new Rng(seed);

/** Interleaves two (rows, h) matrices in 64-column chunks into (rows, 2 h): gate chunk c, then up chunk c. */
function interleave<T extends Uint8Array | Uint16Array>(gate: T, up: T, rows: number, h: number, make: (n: number) => T): T {
  const out = make(rows * 2 * h);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < h; c += 64)
      for (let x = 0; x < 64; x++) {
        out[r * 2 * h + 2 * c + x] = gate[r * h + c + x];
        out[r * 2 * h + 2 * c + 64 + x] = up[r * h + c + x];
      }
  return out;
}

interface PairCase {
  m: number;
  k: number;
  hidden: number;
  groupsize: 128 | -1;
  tile?: [number, number];
}

function runCase({ m, k, hidden, groupsize, tile }: PairCase): void {
  const n = 2 * hidden;
  const g = groupsize === -1 ? k : 128;
  const gateCodes = randomCodes(rng, k * hidden);
  const upCodes = randomCodes(rng, k * hidden);
  const gateScales = randomScales(rng, (k / g) * hidden, 0.02, 0.05);
  const upScales = randomScales(rng, (k / g) * hidden, 0.02, 0.05);
  const codes = interleave(gateCodes, upCodes, k, hidden, (len) => new Uint8Array(len));
  const scales = interleave(gateScales, upScales, k / g, hidden, (len) => new Uint16Array(len));
  const a = randomActivations(rng, m * k);
  const A = DeviceTensor.fromArray(a, [m, k], "f16");
  const B = DeviceTensor.fromArray(packWeights(codes, k, n), [k / 16, n], "i32");
  const s = DeviceTensor.fromArray(packScales(scales, k / g, n), [k / g, n], "f16");
  // C inside a guard zone of NaN bits on both sides: the epilogue writes m x n / 2 halves only.
  const guard = 256;
  const whole = DeviceTensor.empty("f16", [m * hidden + 2 * guard]);
  whole.fillBytes(0x7e);
  const C = whole.view([m, hidden], guard);
  const P = DeviceTensor.empty("f16", [m, n]);
  const Cpairs = DeviceTensor.empty("f16", [m, hidden]);
  try {
    const knobs = tile === undefined ? {} : { threadK: tile[0], threadN: tile[1] };
    const config = trirunMatmul(A, B, s, C, { ...knobs, epilogue: "silu-mul" });
    expect(config.kernel).toBe("small");
    trirunMatmul(A, B, s, P, knobs);
    ops.siluMulPairs(P, Cpairs);
    synchronize();
    const all = whole.download() as Uint16Array;
    for (let i = 0; i < guard; i++) {
      expect(all[i]).toBe(0x7e7e);
      expect(all[all.length - 1 - i]).toBe(0x7e7e);
    }
    const fused = all.subarray(guard, guard + m * hidden);
    const split = Cpairs.download() as Uint16Array;
    // Same bits as the plain product followed by siluMulPairs.
    let mismatches = 0;
    for (let i = 0; i < fused.length; i++) if (fused[i] !== split[i]) mismatches++;
    expect(mismatches, `${mismatches} of ${fused.length} outputs differ from product + siluMulPairs`).toBe(0);
    // fp64 reference from the separate gate and up weights.
    const gate = matmulF64(a, dequantizeF16(gateCodes, gateScales, k, hidden, g), m, k, hidden);
    const up = matmulF64(a, dequantizeF16(upCodes, upScales, k, hidden, g), m, k, hidden);
    let worst = 0;
    let norm = 0;
    for (let i = 0; i < m * hidden; i++) {
      // The kernel rounds gate and up to fp16 before the SiLU-multiply; so does the reference.
      const gv = f16ToF32(toF16Bits(gate[i]));
      const want = (gv / (1 + Math.exp(-gv))) * f16ToF32(toF16Bits(up[i]));
      worst = Math.max(worst, Math.abs(f16ToF32(fused[i]) - want));
      norm = Math.max(norm, Math.abs(want));
    }
    expect(norm).toBeGreaterThan(0);
    // One fp16 rounding of the output, fp32 sums, and __expf: well under 1% of the largest output.
    expect(worst / norm).toBeLessThan(5e-3);
  } finally {
    for (const t of [A, B, s, C, whole, P, Cpairs]) t.dispose();
  }
}

describe.skipIf(!gpu)(`SiLU-multiply epilogue (seed ${seed})`, () => {
  it("every small-batch tile, m = 1..32, grouped and per-column scales: the bits of product + siluMulPairs", () => {
    const cases: PairCase[] = [
      { m: 1, k: 1024, hidden: 1024, groupsize: 128 },
      { m: 3, k: 512, hidden: 768, groupsize: -1 },
      { m: 16, k: 768, hidden: 512, groupsize: 128, tile: [128, 512] },
      { m: 9, k: 1024, hidden: 256, groupsize: 128, tile: [256, 256] },
      { m: 32, k: 640, hidden: 512, groupsize: 128, tile: [512, 128] },
      { m: TRIRUN_SMALL_MAX_M, k: 384, hidden: 256, groupsize: -1 },
      // Long k and few columns: several blocks per column (last-arriver slots or the lock chain).
      { m: 2, k: 8192, hidden: 256, groupsize: 128 },
      { m: 5, k: 4096, hidden: 1280, groupsize: 128, tile: [512, 128] },
    ];
    for (const c of cases) runCase(c);
  });

  it("refuses what the epilogue cannot do before launching", () => {
    const A = DeviceTensor.empty("f16", [33, 256]);
    const B = DeviceTensor.empty("i32", [16, 512]);
    const s = DeviceTensor.empty("f16", [2, 512]);
    const C = DeviceTensor.empty("f16", [33, 256]);
    try {
      expect(() => trirunMatmul(A, B, s, C, { epilogue: "silu-mul" })).toThrow(/m <= 32/);
      const A1 = A.view([1, 256]);
      const C1 = C.view([1, 256]);
      expect(() => trirunMatmul(A1, B, s, C1, { epilogue: "silu-mul", threadK: 128, threadN: 128 })).toThrow(
        /small-batch tile/,
      );
      const wide = DeviceTensor.empty("f16", [1, 512]);
      expect(() => trirunMatmul(A1, B, s, wide, { epilogue: "silu-mul" })).toThrow(/\(m, n \/ 2\)/);
      wide.dispose();
      A1.dispose();
      C1.dispose();
    } finally {
      for (const t of [A, B, s, C]) t.dispose();
    }
  });
});
