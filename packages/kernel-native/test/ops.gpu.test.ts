/**
 * The model ops on the GPU against straightforward fp64 CPU references, on
 * fresh random inputs each run (the seed is in the test names). fp16 inputs
 * are generated as fp16 values, so the references see exactly what the GPU
 * sees; the tolerances cover the one fp16 rounding of each output (2^-11
 * relative) and fp32 sums. Outputs sit between NaN-poisoned guard zones that
 * must stay intact. Skips (with a note) where no usable CUDA device exists.
 */
import { afterEach, describe, expect, it } from "vitest";
import { f16ToF32, Rng, toF16Bits } from "../src/device/numeric.js";
import {
  available,
  currentDevice,
  DeviceTensor,
  deviceInfo,
  type DType,
  ops,
  type RopeStyle,
  Stream,
  synchronize,
  unavailableReason,
} from "../src/index.js";

const gpu = available();
if (!gpu)
  console.log(`@trirun/kernel-native ops GPU tests skipped: ${unavailableReason() ?? "no CUDA device"}`);

const seed = (Math.random() * 2 ** 32) >>> 0;
const rng = new Rng(seed);
const RTOL = 2e-3;

// The tests are synchronous: on the host stand-in (ops-host.test.ts) the file computes for about a minute,
// and a worker that never turns its event loop cannot answer vitest's calls (60 s timeout: "Timeout calling
// onTaskUpdate" on a 2-core CI machine, session 32). A macrotask turn after every test lets it answer.
afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

/** Random fp16 values uniform in [-scale, scale): the bits to upload and the exact values. */
function randomHalf(n: number, scale = 1): { bits: Uint16Array; values: Float64Array } {
  const bits = new Uint16Array(n);
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    bits[i] = toF16Bits((rng.next() * 2 - 1) * scale);
    values[i] = f16ToF32(bits[i]);
  }
  return { bits, values };
}

function randomInt(lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}

function fromHalfBits(bits: Uint16Array): Float64Array {
  return Float64Array.from(bits, (b) => f16ToF32(b));
}

/**
 * A tensor inside a larger allocation with 512 poisoned bytes (0x7e: NaN in
 * fp16, a huge value in fp32) on each side, to catch writes out of bounds.
 */
class Guarded {
  readonly tensor: DeviceTensor;
  private readonly whole: DeviceTensor;
  private readonly pad: number;
  constructor(dtype: DType, shape: number[]) {
    const size = dtype === "f16" ? 2 : 4;
    this.pad = 512 / size;
    const numel = shape.reduce((a, b) => a * b, 1);
    this.whole = DeviceTensor.empty(dtype, [numel + 2 * this.pad]);
    this.whole.fillBytes(0x7e);
    this.tensor = this.whole.view(shape, this.pad);
  }
  /** The tensor's values as numbers, after checking both guard zones. */
  read(what: string): Float64Array {
    const all = this.whole.download();
    const bytes = new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
    const padBytes = 512;
    for (const [from, to] of [
      [0, padBytes],
      [bytes.length - padBytes, bytes.length],
    ]) {
      for (let i = from; i < to; i++) {
        if (bytes[i] !== 0x7e) throw new Error(`${what}: guard byte ${i} overwritten`);
      }
    }
    const inner = all.subarray(this.pad, all.length - this.pad);
    return inner instanceof Uint16Array ? fromHalfBits(inner) : Float64Array.from(inner as Float32Array);
  }
  dispose(): void {
    this.whole.dispose();
  }
}

/** |got - ref| <= rtol * |ref| + rtol * rms(ref) for every element (NaN fails). */
function expectClose(got: Float64Array, ref: Float64Array, what: string, rtol = RTOL, atol?: number): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  let ss = 0;
  for (const r of ref) ss += r * r;
  const abs = atol ?? rtol * Math.sqrt(ss / Math.max(1, ref.length));
  let worst = 0;
  let at = -1;
  for (let i = 0; i < ref.length; i++) {
    const ratio = Math.abs(got[i] - ref[i]) / (rtol * Math.abs(ref[i]) + abs + 1e-30);
    if (!(ratio <= worst)) {
      worst = ratio;
      at = i;
      if (Number.isNaN(ratio)) break;
    }
  }
  if (!(worst <= 1)) {
    throw new Error(
      `${what} (seed ${seed}): element ${at} is ${got[at]}, reference ${ref[at]} (error ${worst.toFixed(2)}x the tolerance)`,
    );
  }
}

function uploadHalf(bits: Uint16Array, shape: number[]): DeviceTensor {
  return DeviceTensor.fromArray(bits, shape, "f16");
}

/** fp64 RoPE of rows (tokens, heads, headDim), token t at positions[t]; a new array. */
function ropeRef(
  x: Float64Array,
  positions: Int32Array,
  heads: number,
  headDim: number,
  theta: number,
  style: RopeStyle,
): Float64Array {
  const ref = new Float64Array(x);
  const half = headDim / 2;
  for (let t = 0; t < positions.length; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = positions[t] * theta ** ((-2 * i) / headDim);
        const a = base + (style === "interleaved" ? 2 * i : i);
        const b = base + (style === "interleaved" ? 2 * i + 1 : i + half);
        const x0 = x[a];
        const x1 = x[b];
        ref[a] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
        ref[b] = x0 * Math.sin(angle) + x1 * Math.cos(angle);
      }
    }
  }
  return ref;
}

describe.skipIf(!gpu)(`model ops on the GPU (seed ${seed})`, () => {
  it("embedding gathers rows exactly and gives NaN rows for ids out of range", () => {
    const vocab = 1000;
    const dim = 288;
    const table = randomHalf(vocab * dim);
    const ids = Int32Array.from({ length: 19 }, () => randomInt(0, vocab - 1));
    ids[5] = vocab; // out of range
    ids[11] = -1;
    const t = uploadHalf(table.bits, [vocab, dim]);
    const i = DeviceTensor.fromArray(ids, [ids.length]);
    const out = new Guarded("f16", [ids.length, dim]);
    ops.embedding(t, i, out.tensor);
    const got = out.read("embedding");
    for (let r = 0; r < ids.length; r++) {
      for (let j = 0; j < dim; j++) {
        const g = got[r * dim + j];
        if (ids[r] < 0 || ids[r] >= vocab)
          expect(Number.isNaN(g), `row ${r} (id ${ids[r]}) is NaN`).toBe(true);
        else if (g !== table.values[ids[r] * dim + j])
          throw new Error(`embedding row ${r} element ${j} differs`);
      }
    }
    for (const x of [t, i]) x.dispose();
    out.dispose();
  });

  // 4100: the scalar kernel (not a multiple of 8); 4096: the vectorised one.
  for (const [weightType, dim] of [
    ["f16", 4100],
    ["f32", 4100],
    ["f16", 4096],
    ["f32", 4096],
  ] as const) {
    it(`rmsnorm with ${weightType} weights, dim ${dim}, out of place and in place`, () => {
      const rows = 7;
      const eps = 1e-5;
      const x = randomHalf(rows * dim, 3);
      const w = randomHalf(dim, 2);
      const ref = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let j = 0; j < dim; j++) ss += x.values[r * dim + j] ** 2;
        const inv = 1 / Math.sqrt(ss / dim + eps);
        for (let j = 0; j < dim; j++) ref[r * dim + j] = x.values[r * dim + j] * inv * w.values[j];
      }
      const xt = uploadHalf(x.bits, [rows, dim]);
      const wt =
        weightType === "f16"
          ? uploadHalf(w.bits, [dim])
          : DeviceTensor.fromArray(Float32Array.from(w.values), [dim]);
      const out = new Guarded("f16", [rows, dim]);
      ops.rmsnorm(xt, wt, out.tensor, { eps });
      expectClose(out.read("rmsnorm"), ref, `rmsnorm (${weightType} weight)`);
      ops.rmsnorm(xt, wt, xt, { eps });
      expectClose(fromHalfBits(xt.download() as Uint16Array), ref, "rmsnorm in place");
      for (const t of [xt, wt]) t.dispose();
      out.dispose();
    });
  }

  for (const [bits, dim] of [
    [8, 2560],
    [8, 6913],
    [4, 512],
  ] as const) {
    it(`quantizeRows to ${bits} bits, dim ${dim}: BitNet's fp32 ActQuant bit for bit, out of place and in place`, () => {
      const rows = 5;
      const x = randomHalf(rows * dim, 4);
      x.bits.fill(0, 0, dim); // an all-zero row: scale from the 1e-5 floor, zeros out
      x.values.fill(0, 0, dim);
      const q = 2 ** (bits - 1) - 1;
      const expected = new Uint16Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        let max = 0;
        for (let j = 0; j < dim; j++) max = Math.max(max, Math.abs(x.values[r * dim + j]));
        const s = Math.fround(q / Math.max(max, Math.fround(1e-5)));
        for (let j = 0; j < dim; j++) {
          const t = Math.fround(x.values[r * dim + j] * s);
          const f = Math.floor(t);
          const level = t - f < 0.5 ? f : t - f > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
          expected[r * dim + j] = toF16Bits(Math.fround(Math.min(Math.max(level, -q - 1), q) / s));
        }
      }
      const xt = uploadHalf(x.bits, [rows, dim]);
      const out = new Guarded("f16", [rows, dim]);
      ops.quantizeRows(xt, out.tensor, { bits });
      // Equal values (a zero may come out as -0 from rintf of a small negative product).
      const want = fromHalfBits(expected);
      const mismatches = (got: Float64Array) => got.filter((v, i) => v !== want[i]).length;
      expect(mismatches(out.read("quantizeRows")), "elements differing from the fp32 reference").toBe(0);
      ops.quantizeRows(xt, xt, { bits });
      expect(mismatches(fromHalfBits(xt.download() as Uint16Array)), "in place").toBe(0);
      xt.dispose();
      out.dispose();
    });
  }

  it("quantizeRows and the fused norm + quantization: a row with a NaN or an infinity comes out all NaN, as torch's ActQuant gives; the other rows as alone", () => {
    // (Before session 22 the kernels' fmaxf/fminf turned a NaN into a finite level and +inf into -inf.)
    for (const dim of [2560, 6913]) {
      const rows = 4;
      const x = randomHalf(rows * dim, 4);
      const poison = [0x7e00, 0x7c00, 0xfc00]; // row 1 a NaN, row 2 +inf, row 3 -inf, at a random place
      for (const [i, bits] of poison.entries()) {
        const at = (i + 1) * dim + Math.floor(Math.random() * dim);
        x.bits[at] = bits;
      }
      const xt = uploadHalf(x.bits, [rows, dim]);
      const alone = uploadHalf(x.bits.slice(0, dim), [1, dim]);
      const out = new Guarded("f16", [rows, dim]);
      const ref = new Guarded("f16", [1, dim]);
      ops.quantizeRows(xt, out.tensor, { bits: 8 });
      ops.quantizeRows(alone, ref.tensor, { bits: 8 });
      const got = out.read("quantizeRows");
      const want = ref.read("quantizeRows, first row alone");
      expect(got.subarray(0, dim).filter((v, i) => v !== want[i]).length, `dim ${dim}: the finite row`).toBe(
        0,
      );
      for (let r = 1; r < rows; r++) {
        const row = got.subarray(r * dim, (r + 1) * dim);
        expect(row.filter((v) => !Number.isNaN(v)).length, `dim ${dim}, row ${r}: values not NaN`).toBe(0);
      }
      const wt = uploadHalf(new Uint16Array(dim).fill(0x3c00), [dim]); // weight 1
      const fused = new Guarded("f16", [rows, dim]);
      ops.rmsnorm(xt, wt, fused.tensor, { quantizeBits: 8 });
      const normed = fused.read("rmsnorm + quantization");
      for (let r = 1; r < rows; r++) {
        const row = normed.subarray(r * dim, (r + 1) * dim);
        expect(
          row.filter((v) => !Number.isNaN(v)).length,
          `fused, dim ${dim}, row ${r}: values not NaN`,
        ).toBe(0);
      }
      expect(normed.subarray(0, dim).every(Number.isFinite), `fused, dim ${dim}: the finite row`).toBe(true);
      for (const t of [xt, alone, wt]) t.dispose();
      for (const g of [out, ref, fused]) g.dispose();
    }
  });

  for (const [weightType, dim] of [
    ["f32", 4096],
    ["f16", 8192],
    ["f32", 4100],
  ] as const) {
    it(`addRmsNorm with ${weightType} weights, dim ${dim}: x += delta, out = rmsnorm(x), as add then rmsnorm`, () => {
      const rows = 3;
      const eps = 1e-5;
      const x = randomHalf(rows * dim, 3);
      const delta = randomHalf(rows * dim, 3);
      const w = randomHalf(dim, 2);
      // Reference: the sum rounded to fp16 (what add stores), then the norm in fp64.
      const sumBits = Uint16Array.from(x.values, (v, i) => toF16Bits(v + delta.values[i]));
      const sum = fromHalfBits(sumBits);
      const ref = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let j = 0; j < dim; j++) ss += sum[r * dim + j] ** 2;
        const inv = 1 / Math.sqrt(ss / dim + eps);
        for (let j = 0; j < dim; j++) ref[r * dim + j] = sum[r * dim + j] * inv * w.values[j];
      }
      const xt = uploadHalf(x.bits, [rows, dim]);
      const dt = uploadHalf(delta.bits, [rows, dim]);
      const wt =
        weightType === "f16"
          ? uploadHalf(w.bits, [dim])
          : DeviceTensor.fromArray(Float32Array.from(w.values), [dim]);
      const out = new Guarded("f16", [rows, dim]);
      ops.addRmsNorm(xt, dt, wt, out.tensor, { eps });
      expect(Array.from(xt.download() as Uint16Array)).toEqual(Array.from(sumBits));
      expectClose(out.read("addRmsNorm"), ref, `addRmsNorm (${weightType} weight)`);
      // The same as the two separate ops, bit for bit.
      const x2 = uploadHalf(x.bits, [rows, dim]);
      const out2 = DeviceTensor.empty("f16", [rows, dim]);
      ops.add(x2, dt, x2);
      ops.rmsnorm(x2, wt, out2, { eps });
      const fused = out.read("addRmsNorm");
      const separate = fromHalfBits(out2.download() as Uint16Array);
      let worst = 0;
      for (let i = 0; i < fused.length; i++) worst = Math.max(worst, Math.abs(fused[i] - separate[i]));
      expect(worst).toBeLessThanOrEqual(2 ** -9 * 8); // one fp16 rounding step at |y| < 8
      expect(() => ops.addRmsNorm(xt, dt, wt, xt)).toThrow(/out: must not share memory with x/);
      expect(() => ops.addRmsNorm(xt, dt.view([rows - 1, dim]), wt, out2)).toThrow(/delta/);
      for (const t of [xt, dt, wt, x2, out2]) t.dispose();
      out.dispose();
    });
  }

  // BitNet b1.58's row ops fused (one launch each where the row fits the vectorised kernel, dim a multiple
  // of 8 up to 8192; the unfused ops one after the other otherwise: dims 100 and 9000).
  for (const [dim, weightType, bits] of [
    [2560, "f16", 8],
    [6912, "f32", 8],
    [2560, "f32", 0],
    [100, "f16", 8],
    [9000, "f16", 4],
  ] as const) {
    const what = bits > 0 ? `${bits}-bit quantization` : "no quantization";
    it(`fused row ops, dim ${dim}, ${weightType} weights, ${what}: rmsnorm, addRmsNorm and relu2MulRmsNorm equal the unfused ops bit for bit`, () => {
      const rows = 3;
      const eps = 1e-5;
      const opts = bits > 0 ? { eps, quantizeBits: bits } : { eps };
      const x = randomHalf(rows * dim, 3);
      const delta = randomHalf(rows * dim, 3);
      const up = randomHalf(rows * dim, 2);
      const w = randomHalf(dim, 2);
      const wt =
        weightType === "f16"
          ? uploadHalf(w.bits, [dim])
          : DeviceTensor.fromArray(Float32Array.from(w.values), [dim]);
      const shape = [rows, dim];
      const halves = (t: DeviceTensor) => fromHalfBits(t.download() as Uint16Array);
      const mismatches = (got: Float64Array, want: Float64Array) =>
        got.filter((v, i) => v !== want[i]).length;
      const quantize = (t: DeviceTensor) => {
        if (bits > 0) ops.quantizeRows(t, t, { bits });
      };
      // fp64 norm of rows of fp16 values; with quantization each output lies within half a level (the
      // row's largest magnitude / q) of it, plus the fp16 roundings.
      const expectNormOf = (input: Float64Array, got: Float64Array, label: string) => {
        const ref = new Float64Array(rows * dim);
        for (let r = 0; r < rows; r++) {
          let ss = 0;
          for (let j = 0; j < dim; j++) ss += input[r * dim + j] ** 2;
          const inv = 1 / Math.sqrt(ss / dim + eps);
          for (let j = 0; j < dim; j++) ref[r * dim + j] = input[r * dim + j] * inv * w.values[j];
        }
        if (bits === 0) {
          expectClose(got, ref, label);
          return;
        }
        const q = 2 ** (bits - 1) - 1;
        for (let r = 0; r < rows; r++) {
          const row = ref.subarray(r * dim, (r + 1) * dim);
          const level = row.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / q;
          expectClose(
            got.subarray(r * dim, (r + 1) * dim),
            row,
            `${label} row ${r}`,
            RTOL,
            0.5 * level * 1.01,
          );
        }
      };

      // rmsnorm: out of place and in place
      const xt = uploadHalf(x.bits, shape);
      const fused = new Guarded("f16", shape);
      ops.rmsnorm(xt, wt, fused.tensor, opts);
      const separate = DeviceTensor.empty("f16", shape);
      ops.rmsnorm(xt, wt, separate, { eps });
      quantize(separate);
      const want = halves(separate);
      const got = fused.read("rmsnorm fused");
      expect(mismatches(got, want), "rmsnorm: elements differing from rmsnorm + quantizeRows").toBe(0);
      expectNormOf(x.values, got, "rmsnorm fused");
      ops.rmsnorm(xt, wt, xt, opts);
      expect(mismatches(halves(xt), want), "rmsnorm in place").toBe(0);

      // addRmsNorm: x += delta, out = the (quantized) norm
      const x1 = uploadHalf(x.bits, shape);
      const x2 = uploadHalf(x.bits, shape);
      const dt = uploadHalf(delta.bits, shape);
      const fusedAdd = new Guarded("f16", shape);
      ops.addRmsNorm(x1, dt, wt, fusedAdd.tensor, opts);
      ops.add(x2, dt, x2);
      ops.rmsnorm(x2, wt, separate, { eps });
      quantize(separate);
      expect(mismatches(halves(x1), halves(x2)), "addRmsNorm: x").toBe(0);
      const gotAdd = fusedAdd.read("addRmsNorm fused");
      expect(mismatches(gotAdd, halves(separate)), "addRmsNorm: out").toBe(0);
      expectNormOf(halves(x2), gotAdd, "addRmsNorm fused");

      // relu2MulRmsNorm: out of place, then in place on gate and on up
      const gate = uploadHalf(x.bits, shape);
      const ut = uploadHalf(up.bits, shape);
      const fusedGate = new Guarded("f16", shape);
      ops.relu2MulRmsNorm(gate, ut, wt, fusedGate.tensor, opts);
      ops.relu2Mul(gate, ut, separate);
      const product = halves(separate);
      ops.rmsnorm(separate, wt, separate, { eps });
      quantize(separate);
      const wantGate = halves(separate);
      const gotGate = fusedGate.read("relu2MulRmsNorm fused");
      expect(mismatches(gotGate, wantGate), "relu2MulRmsNorm: elements differing from the three ops").toBe(0);
      // The kernel's arithmetic: relu(g)^2 is exact in fp32 (11-bit significands), the product with up is
      // rounded to fp32 and then to fp16; rounding the exact product once differs in rare elements
      // (double rounding: 1 in ~10^5 on the H100 in session 21).
      const productRef = Float64Array.from(x.values, (g, i) =>
        f16ToF32(toF16Bits(Math.fround(Math.max(g, 0) ** 2 * up.values[i]))),
      );
      expect(mismatches(product, productRef), "relu2Mul's products").toBe(0);
      expectNormOf(productRef, gotGate, "relu2MulRmsNorm fused");
      ops.relu2MulRmsNorm(gate, ut, wt, gate, opts);
      expect(mismatches(halves(gate), wantGate), "relu2MulRmsNorm in place on gate").toBe(0);
      const gate2 = uploadHalf(x.bits, shape);
      ops.relu2MulRmsNorm(gate2, ut, wt, ut, opts);
      expect(mismatches(halves(ut), wantGate), "relu2MulRmsNorm in place on up").toBe(0);
      for (const t of [xt, x1, x2, dt, gate, gate2, ut, wt, separate]) t.dispose();
      for (const g of [fused, fusedAdd, fusedGate]) g.dispose();
    });
  }

  for (const style of ["interleaved", "half"] as const satisfies readonly RopeStyle[]) {
    for (const [theta, headDim, layout] of [
      [10000, 64, "3-D"],
      [500000, 128, "2-D"],
    ] as const) {
      it(`rope ${style}, theta ${theta}, head_dim ${headDim}, ${layout} layout`, () => {
        const tokens = 23;
        const heads = 6;
        const x = randomHalf(tokens * heads * headDim, 2);
        const positions = Int32Array.from({ length: tokens }, () => randomInt(0, 4095));
        positions[0] = 0;
        const ref = ropeRef(x.values, positions, heads, headDim, theta, style);
        const shape = layout === "3-D" ? [tokens, heads, headDim] : [tokens, heads * headDim];
        const xt = uploadHalf(x.bits, shape);
        const pt = DeviceTensor.fromArray(positions, [tokens]);
        ops.rope(xt, pt, { headDim, theta, style });
        expectClose(fromHalfBits(xt.download() as Uint16Array), ref, `rope ${style}`);
        for (const t of [xt, pt]) t.dispose();
      });
    }
  }

  it("siluMul, relu2Mul and add on an odd element count, out of place and in place, on a stream", () => {
    const n = 100_003;
    const g = randomHalf(n, 6);
    const u = randomHalf(n, 2);
    const silu = Float64Array.from(g.values, (v, i) => (v / (1 + Math.exp(-v))) * u.values[i]);
    const sum = Float64Array.from(g.values, (v, i) => v + u.values[i]);
    const gt = uploadHalf(g.bits, [n]);
    const ut = uploadHalf(u.bits, [n]);
    const stream = new Stream();
    const out = new Guarded("f16", [n]);
    ops.siluMul(gt, ut, out.tensor, { stream });
    stream.synchronize();
    expectClose(out.read("siluMul"), silu, "siluMul");
    ops.add(gt, ut, out.tensor, { stream });
    stream.synchronize();
    expectClose(out.read("add"), sum, "add");
    const relu2 = Float64Array.from(g.values, (v, i) => Math.max(v, 0) ** 2 * u.values[i]);
    ops.relu2Mul(gt, ut, out.tensor, { stream });
    stream.synchronize();
    expectClose(out.read("relu2Mul"), relu2, "relu2Mul");
    ops.add(gt, ut, gt, { stream }); // the residual add in place
    stream.synchronize();
    expectClose(fromHalfBits(gt.download() as Uint16Array), sum, "add in place");
    stream.dispose();
    for (const t of [gt, ut]) t.dispose();
    out.dispose();
  });

  /** fp64 causal GQA: q (n, hq, d) at positions start.., k/v (>= start + n, hkv, d). */
  function attentionRef(
    q: Float64Array,
    k: Float64Array,
    v: Float64Array,
    n: number,
    start: number,
    hq: number,
    hkv: number,
    d: number,
  ): Float64Array {
    const out = new Float64Array(n * hq * d);
    const group = hq / hkv;
    const scale = 1 / Math.sqrt(d);
    for (let i = 0; i < n; i++) {
      const last = start + i;
      for (let h = 0; h < hq; h++) {
        const kh = Math.floor(h / group);
        const scores = new Float64Array(last + 1);
        let max = Number.NEGATIVE_INFINITY;
        for (let s = 0; s <= last; s++) {
          let dot = 0;
          for (let j = 0; j < d; j++) dot += q[(i * hq + h) * d + j] * k[(s * hkv + kh) * d + j];
          scores[s] = dot * scale;
          max = Math.max(max, scores[s]);
        }
        let sum = 0;
        for (let s = 0; s <= last; s++) {
          scores[s] = Math.exp(scores[s] - max);
          sum += scores[s];
        }
        for (let j = 0; j < d; j++) {
          let acc = 0;
          for (let s = 0; s <= last; s++) acc += scores[s] * v[(s * hkv + kh) * d + j];
          out[(i * hq + h) * d + j] = acc / sum;
        }
      }
    }
    return out;
  }

  for (const [tokens, heads, kvHeads, headDim] of [
    [37, 8, 8, 64],
    [37, 8, 4, 64],
    [41, 8, 2, 80],
    [130, 4, 1, 128],
    [9, 2, 1, 256],
  ] as const) {
    it(`attentionPrefill T=${tokens}, heads ${heads}, kvHeads ${kvHeads} (GQA ${heads / kvHeads}), head_dim ${headDim}`, () => {
      // Scaled so that the softmax is neither flat nor one-hot.
      const q = randomHalf(tokens * heads * headDim, 3 / Math.sqrt(Math.sqrt(headDim)));
      const k = randomHalf(tokens * kvHeads * headDim, 3 / Math.sqrt(Math.sqrt(headDim)));
      const v = randomHalf(tokens * kvHeads * headDim);
      const qt = uploadHalf(q.bits, [tokens, heads, headDim]);
      const kt = uploadHalf(k.bits, [tokens, kvHeads * headDim]);
      const vt = uploadHalf(v.bits, [tokens, kvHeads, headDim]);
      const out = new Guarded("f16", [tokens, heads * headDim]);
      ops.attentionPrefill(qt, kt, vt, out.tensor, { heads, kvHeads, headDim });
      const ref = attentionRef(q.values, k.values, v.values, tokens, 0, heads, kvHeads, headDim);
      expectClose(out.read("attentionPrefill"), ref, "attentionPrefill");
      for (const t of [qt, kt, vt]) t.dispose();
      out.dispose();
    });
  }

  for (const [heads, kvHeads] of [
    [4, 4],
    [4, 2],
    [8, 2],
  ] as const) {
    it(`attentionDecode token by token equals prefill's rows (heads ${heads}, kvHeads ${kvHeads})`, () => {
      const tokens = 21;
      const maxT = 32;
      const d = 64;
      const q = randomHalf(tokens * heads * d, 1);
      const k = randomHalf(tokens * kvHeads * d, 1);
      const v = randomHalf(tokens * kvHeads * d);
      const qt = uploadHalf(q.bits, [tokens, heads, d]);
      const kt = uploadHalf(k.bits, [tokens, kvHeads, d]);
      const vt = uploadHalf(v.bits, [tokens, kvHeads, d]);
      const prefill = DeviceTensor.empty("f16", [tokens, heads, d]);
      ops.attentionPrefill(qt, kt, vt, prefill, { heads, kvHeads, headDim: d });
      const kCache = new Guarded("f16", [maxT, kvHeads, d]);
      const vCache = new Guarded("f16", [maxT, kvHeads, d]);
      const decoded = DeviceTensor.empty("f16", [tokens, heads, d]);
      for (let p = 0; p < tokens; p++) {
        ops.attentionDecode(
          qt.view([1, heads, d], p * heads * d),
          kt.view([1, kvHeads * d], p * kvHeads * d),
          vt.view([1, kvHeads, d], p * kvHeads * d),
          kCache.tensor,
          vCache.tensor,
          decoded.view([1, heads * d], p * heads * d),
          { heads, kvHeads, headDim: d, position: p },
        );
      }
      synchronize();
      // Same kernel, same keys in the same order: bit-identical rows when both launches get the same
      // warps per block (16 while a launch's blocks fit one per SM, else 8; each warp folds its own keys).
      const warps = (blocks: number) => (blocks <= deviceInfo(currentDevice()).smCount ? 16 : 8);
      if (warps(tokens * heads) === warps(heads))
        expect(Array.from(decoded.download())).toEqual(Array.from(prefill.download()));
      else
        expectClose(
          fromHalfBits(decoded.download() as Uint16Array),
          fromHalfBits(prefill.download() as Uint16Array),
          "decode vs prefill",
        );
      const ref = attentionRef(q.values, k.values, v.values, tokens, 0, heads, kvHeads, d);
      expectClose(fromHalfBits(decoded.download() as Uint16Array), ref, "attentionDecode");
      // The cache holds the appended keys and values; rows beyond are untouched (still NaN).
      const kc = kCache.read("kCache");
      const vc = vCache.read("vCache");
      expect(Array.from(kc.subarray(0, tokens * kvHeads * d))).toEqual(Array.from(k.values));
      expect(Array.from(vc.subarray(0, tokens * kvHeads * d))).toEqual(Array.from(v.values));
      expect(kc.subarray(tokens * kvHeads * d).every(Number.isNaN)).toBe(true);
      for (const t of [qt, kt, vt, prefill, decoded]) t.dispose();
      kCache.dispose();
      vCache.dispose();
    });
  }

  it("attentionDecode continues a prompt on top of the cache (several new tokens at once)", () => {
    const [heads, kvHeads, d, first, second, maxT] = [4, 2, 32, 12, 7, 24];
    const tokens = first + second;
    const q = randomHalf(tokens * heads * d, 1);
    const k = randomHalf(tokens * kvHeads * d, 1);
    const v = randomHalf(tokens * kvHeads * d);
    const qt = uploadHalf(q.bits, [tokens, heads * d]);
    const kt = uploadHalf(k.bits, [tokens, kvHeads * d]);
    const vt = uploadHalf(v.bits, [tokens, kvHeads * d]);
    const kCache = DeviceTensor.zeros("f16", [maxT, kvHeads * d]);
    const vCache = DeviceTensor.zeros("f16", [maxT, kvHeads * d]);
    const out = DeviceTensor.empty("f16", [tokens, heads * d]);
    const opts = { heads, kvHeads, headDim: d };
    ops.attentionDecode(
      qt.view([first, heads * d]),
      kt.view([first, kvHeads * d]),
      vt.view([first, kvHeads * d]),
      kCache,
      vCache,
      out.view([first, heads * d]),
      { ...opts, position: 0 },
    );
    ops.attentionDecode(
      qt.view([second, heads * d], first * heads * d),
      kt.view([second, kvHeads * d], first * kvHeads * d),
      vt.view([second, kvHeads * d], first * kvHeads * d),
      kCache,
      vCache,
      out.view([second, heads * d], first * heads * d),
      { ...opts, position: first },
    );
    const ref = attentionRef(q.values, k.values, v.values, tokens, 0, heads, kvHeads, d);
    expectClose(fromHalfBits(out.download() as Uint16Array), ref, "chunked attentionDecode");
    for (const t of [qt, kt, vt, kCache, vCache, out]) t.dispose();
  });

  it("attentionDecodeBatch: sequences at different positions, each equal to its own single-sequence decode", () => {
    const [batch, heads, kvHeads, d, maxT] = [5, 8, 2, 64, 40];
    const positions = Int32Array.from({ length: batch }, () => randomInt(0, maxT - 1));
    positions[0] = 0;
    positions[1] = maxT - 1;
    positions[3] = maxT; // out of range: NaN outputs, caches untouched
    const kHist = randomHalf(batch * maxT * kvHeads * d, 1);
    const vHist = randomHalf(batch * maxT * kvHeads * d);
    const q = randomHalf(batch * heads * d, 1);
    const kNew = randomHalf(batch * kvHeads * d, 1);
    const vNew = randomHalf(batch * kvHeads * d);
    const kCache = uploadHalf(kHist.bits, [batch, maxT, kvHeads, d]);
    const vCache = uploadHalf(vHist.bits, [batch, maxT, kvHeads * d]);
    const pt = DeviceTensor.fromArray(positions, [batch]);
    const qt = uploadHalf(q.bits, [batch, heads * d]);
    const knt = uploadHalf(kNew.bits, [batch, kvHeads, d]);
    const vnt = uploadHalf(vNew.bits, [batch, kvHeads * d]);
    const out = new Guarded("f16", [batch, heads, d]);
    ops.attentionDecodeBatch(qt, knt, vnt, kCache, vCache, pt, out.tensor, { heads, kvHeads, headDim: d });
    const got = out.read("attentionDecodeBatch");
    const kc = fromHalfBits(kCache.download() as Uint16Array);
    const vc = fromHalfBits(vCache.download() as Uint16Array);
    const row = kvHeads * d;
    for (let b = 0; b < batch; b++) {
      const p = positions[b];
      const outB = got.subarray(b * heads * d, (b + 1) * heads * d);
      const kExp = kHist.values.slice(b * maxT * row, (b + 1) * maxT * row);
      const vExp = vHist.values.slice(b * maxT * row, (b + 1) * maxT * row);
      if (p >= maxT) {
        expect(outB.every(Number.isNaN), `sequence ${b} (position ${p}) gives NaN`).toBe(true);
      } else {
        kExp.set(kNew.values.subarray(b * row, (b + 1) * row), p * row);
        vExp.set(vNew.values.subarray(b * row, (b + 1) * row), p * row);
        const ref = attentionRef(
          q.values.subarray(b * heads * d, (b + 1) * heads * d),
          kExp,
          vExp,
          1,
          p,
          heads,
          kvHeads,
          d,
        );
        expectClose(outB, ref, `attentionDecodeBatch sequence ${b} at position ${p}`);
      }
      expect(
        Array.from(kc.subarray(b * maxT * row, (b + 1) * maxT * row)),
        `kCache of sequence ${b}`,
      ).toEqual(Array.from(kExp));
      expect(
        Array.from(vc.subarray(b * maxT * row, (b + 1) * maxT * row)),
        `vCache of sequence ${b}`,
      ).toEqual(Array.from(vExp));
    }
    // The batched kernel is the single-sequence one per sequence: bit-identical rows.
    const single = DeviceTensor.empty("f16", [1, heads * d]);
    const b = 2;
    const kOne = DeviceTensor.empty("f16", [maxT, row]);
    const vOne = DeviceTensor.empty("f16", [maxT, row]);
    kOne.copyFrom(kCache.view([maxT, row], b * maxT * row));
    vOne.copyFrom(vCache.view([maxT, row], b * maxT * row));
    ops.attentionDecode(
      qt.view([1, heads * d], b * heads * d),
      knt.view([1, row], b * row),
      vnt.view([1, row], b * row),
      kOne,
      vOne,
      single,
      { heads, kvHeads, headDim: d, position: positions[b] },
    );
    const singleBits = Array.from(single.download());
    const batchBits = Array.from(got.subarray(b * heads * d, (b + 1) * heads * d), (x) => toF16Bits(x));
    expect(batchBits).toEqual(singleBits);
    for (const t of [kCache, vCache, pt, qt, knt, vnt, single, kOne, vOne]) t.dispose();
    out.dispose();
  });

  for (const style of ["interleaved", "half"] as const satisfies readonly RopeStyle[]) {
    // Batch 48: more blocks than SMs, so the 8-warp kernels (see AttentionWarpsFor) at 4+ heads.
    for (const batch of [1, 3, 48]) {
      for (const [heads, kvHeads, d] of [
        [4, 4, 64],
        [8, 2, 128],
        [2, 1, 256],
      ] as const) {
        it(`attentionDecodeBatch with rope (${style}, batch ${batch}, heads ${heads}, kvHeads ${kvHeads}, head_dim ${d}) equals rope, rope, attentionDecodeBatch bit for bit`, () => {
          const maxT = 40;
          const theta = style === "interleaved" ? 10000 : 500000;
          // Batch 3: a position in the cache, the last row, and one outside (NaN rows, cache untouched).
          const positions =
            batch === 1
              ? Int32Array.of(kvHeads === heads ? randomInt(1, maxT - 1) : 0)
              : batch === 3
                ? Int32Array.of(randomInt(0, maxT - 2), maxT - 1, style === "interleaved" ? maxT : -1)
                : Int32Array.from({ length: batch }, () => randomInt(0, maxT - 1));
          const row = kvHeads * d;
          const kHist = randomHalf(batch * maxT * row, 1);
          const vHist = randomHalf(batch * maxT * row);
          const q = randomHalf(batch * heads * d, 1);
          const kNew = randomHalf(batch * row, 1);
          const vNew = randomHalf(batch * row);
          const pt = DeviceTensor.fromArray(positions, [batch]);
          const headOpts = { heads, kvHeads, headDim: d };

          // Separate: rope on q and on kNew in place, then the two-launch decode.
          const qs = uploadHalf(q.bits, [batch, heads * d]);
          const ks = uploadHalf(kNew.bits, [batch, kvHeads, d]);
          const vs = uploadHalf(vNew.bits, [batch, row]);
          const kCacheS = uploadHalf(kHist.bits, [batch, maxT, kvHeads, d]);
          const vCacheS = uploadHalf(vHist.bits, [batch, maxT, row]);
          const outS = DeviceTensor.empty("f16", [batch, heads, d]);
          ops.rope(qs, pt, { headDim: d, theta, style });
          ops.rope(ks, pt, { headDim: d, theta, style });
          ops.attentionDecodeBatch(qs, ks, vs, kCacheS, vCacheS, pt, outS, headOpts);

          // Fused: unrotated q and kNew, guarded caches and output.
          const qf = uploadHalf(q.bits, [batch, heads, d]);
          const kf = uploadHalf(kNew.bits, [batch, row]);
          const vf = uploadHalf(vNew.bits, [batch, kvHeads, d]);
          const kCacheF = new Guarded("f16", [batch, maxT, row]);
          const vCacheF = new Guarded("f16", [batch, maxT, kvHeads, d]);
          kCacheF.tensor.upload(kHist.bits);
          vCacheF.tensor.upload(vHist.bits);
          const outF = new Guarded("f16", [batch, heads * d]);
          ops.attentionDecodeBatch(qf, kf, vf, kCacheF.tensor, vCacheF.tensor, pt, outF.tensor, {
            ...headOpts,
            rope: { theta, style },
          });

          const bits = (x: Float64Array) => Array.from(x, (v) => toF16Bits(v));
          const got = outF.read("fused out");
          const kcF = kCacheF.read("fused kCache");
          const vcF = vCacheF.read("fused vCache");
          expect(bits(got), "outputs").toEqual(Array.from(outS.download() as Uint16Array));
          expect(bits(kcF), "kCache").toEqual(Array.from(kCacheS.download() as Uint16Array));
          expect(bits(vcF), "vCache").toEqual(Array.from(vCacheS.download() as Uint16Array));
          // q and kNew are only read.
          expect(Array.from(qf.download() as Uint16Array), "q").toEqual(Array.from(q.bits));
          expect(Array.from(kf.download() as Uint16Array), "kNew").toEqual(Array.from(kNew.bits));

          // Independently of ops.rope: fp64 rotation and attention per sequence.
          const qRot = ropeRef(q.values, positions, heads, d, theta, style);
          const kRot = ropeRef(kNew.values, positions, kvHeads, d, theta, style);
          for (let b = 0; b < batch; b++) {
            const p = positions[b];
            const outB = got.subarray(b * heads * d, (b + 1) * heads * d);
            const seq = [b * maxT * row, (b + 1) * maxT * row] as const;
            if (p < 0 || p >= maxT) {
              expect(outB.every(Number.isNaN), `sequence ${b} (position ${p}) gives NaN`).toBe(true);
              expect(Array.from(kcF.subarray(...seq)), `kCache ${b} untouched`).toEqual(
                Array.from(kHist.values.subarray(...seq)),
              );
              expect(Array.from(vcF.subarray(...seq)), `vCache ${b} untouched`).toEqual(
                Array.from(vHist.values.subarray(...seq)),
              );
              continue;
            }
            const kRow = kRot.subarray(b * row, (b + 1) * row);
            expectClose(kcF.subarray(seq[0] + p * row, seq[0] + (p + 1) * row), kRow, `rotated key ${b}`);
            const kExp = kHist.values.slice(...seq);
            const vExp = vHist.values.slice(...seq);
            kExp.set(kcF.subarray(seq[0] + p * row, seq[0] + (p + 1) * row), p * row);
            vExp.set(vNew.values.subarray(b * row, (b + 1) * row), p * row);
            expect(Array.from(vcF.subarray(...seq)), `vCache ${b}`).toEqual(Array.from(vExp));
            // Other rows of the cache are untouched.
            expect(Array.from(kcF.subarray(...seq)), `kCache ${b}`).toEqual(Array.from(kExp));
            const ref = attentionRef(
              qRot.subarray(b * heads * d, (b + 1) * heads * d),
              kExp,
              vExp,
              1,
              p,
              heads,
              kvHeads,
              d,
            );
            expectClose(outB, ref, `fused decode sequence ${b} at position ${p}`);
          }
          for (const t of [pt, qs, ks, vs, kCacheS, vCacheS, outS, qf, kf, vf]) t.dispose();
          for (const g of [kCacheF, vCacheF, outF]) g.dispose();
        });
      }
    }
  }

  /** fp64 log-sum-exp of each row. */
  function logSumExp(logits: Float64Array, rows: number, vocab: number): Float64Array {
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < vocab; j++) max = Math.max(max, logits[r * vocab + j]);
      let sum = 0;
      for (let j = 0; j < vocab; j++) sum += Math.exp(logits[r * vocab + j] - max);
      out[r] = max + Math.log(sum);
    }
    return out;
  }

  for (const dtype of ["f16", "f32"] as const) {
    it(`logSoftmax and nll over a 32000-word vocabulary, ${dtype} logits`, () => {
      const rows = 5;
      const vocab = 32000;
      const half = randomHalf(rows * vocab, 12);
      const values =
        dtype === "f16" ? half.values : Float64Array.from(half.values, (x, i) => x + (i % 7) * 1e-3);
      const logits =
        dtype === "f16"
          ? uploadHalf(half.bits, [rows, vocab])
          : DeviceTensor.fromArray(Float32Array.from(values), [rows, vocab]);
      // The fp32 upload rounds the values: use the rounded ones as the reference input.
      const exact = dtype === "f16" ? values : Float64Array.from(Float32Array.from(values));
      const lse = logSumExp(exact, rows, vocab);
      const out = new Guarded("f32", [rows, vocab]);
      ops.logSoftmax(logits, out.tensor);
      const ref = Float64Array.from(exact, (x, i) => x - lse[Math.floor(i / vocab)]);
      expectClose(out.read("logSoftmax"), ref, "logSoftmax", 1e-5, 1e-4);

      const targets = Int32Array.from({ length: rows }, () => randomInt(0, vocab - 1));
      targets[rows - 1] = vocab; // out of range
      const tt = DeviceTensor.fromArray(targets, [rows]);
      const nll = new Guarded("f32", [rows]);
      ops.nll(logits, tt, nll.tensor);
      const got = nll.read("nll");
      const nllRef = Float64Array.from(
        { length: rows - 1 },
        (_, r) => lse[r] - exact[r * vocab + targets[r]],
      );
      expectClose(got.subarray(0, rows - 1), nllRef, "nll", 1e-5, 1e-4);
      expect(Number.isNaN(got[rows - 1])).toBe(true);
      for (const t of [logits, tt]) t.dispose();
      out.dispose();
      nll.dispose();
    });
  }

  it("rejects bad arguments before launching (no CUDA error afterwards)", () => {
    const a = DeviceTensor.zeros("f16", [4, 8]);
    const positions = DeviceTensor.zeros("i32", [3]);
    expect(() => ops.rope(a, positions, { headDim: 8, style: "half" })).toThrow(RangeError);
    expect(() => ops.add(a, a.view([2, 8]), a)).toThrow(RangeError);
    // The fused decode: an odd headDim with rope, an unknown style.
    const pos = DeviceTensor.zeros("i32", [1]);
    const decode = (d: number, rope: unknown) => {
      const [q, kv, out] = [2 * d, d, 2 * d].map((w) => DeviceTensor.zeros("f16", [1, w]));
      const [kc, vc] = [0, 1].map(() => DeviceTensor.zeros("f16", [1, 4, d]));
      try {
        ops.attentionDecodeBatch(q, kv, kv, kc, vc, pos, out, {
          heads: 2,
          kvHeads: 1,
          headDim: d,
          rope: rope as { style: RopeStyle },
        });
      } finally {
        for (const t of [q, kv, out, kc, vc]) t.dispose();
      }
    };
    expect(() => decode(3, { style: "half" })).toThrow(
      /^opts.headDim: expected an even number with opts.rope/,
    );
    expect(() => decode(4, { style: "neox" })).toThrow(TypeError);
    expect(() => decode(4, { style: "half", theta: 0.5 })).toThrow(/^opts.rope.theta/);
    synchronize();
    pos.dispose();
    a.dispose();
    positions.dispose();
  });
});
