import { describe, expect, it } from "vitest";
import {
  DisposedError,
  DTYPE_NAMES,
  type TensorDescriptor,
  validateGemmF16Args,
  validateGemmF32Args,
  validateTrirunArgs,
} from "../src/index.js";
import { validateQuantizeRowsArgs } from "../src/ops-validate.js";

// Descriptors of a valid problem: m x k activations, packed weights, scales.
function problem(m: number, k: number, n: number, groups = k / 128) {
  const A: TensorDescriptor = { dtype: "f16", shape: [m, k], byteOffset: 0, device: 0 };
  const B: TensorDescriptor = { dtype: "i32", shape: [k / 16, n], byteOffset: 0, device: 0 };
  const s: TensorDescriptor = { dtype: "f16", shape: [groups, n], byteOffset: 0, device: 0 };
  const C: TensorDescriptor = { dtype: "f16", shape: [m, n], byteOffset: 0, device: 0 };
  return { A, B, s, C };
}

describe("validateTrirunArgs", () => {
  it("accepts a valid problem and infers the group size from s", () => {
    const grouped = validateTrirunArgs(problem(7, 512, 768));
    expect(grouped).toMatchObject({ m: 7, n: 768, k: 512, groupsize: 128, threadK: 0, threadN: 0 });
    const single = validateTrirunArgs(problem(1, 512, 768, 1));
    expect(single.groupsize).toBe(512);
  });

  it("accepts groupsize -1 and k as one group", () => {
    expect(validateTrirunArgs(problem(3, 256, 256, 1), { groupsize: -1 }).groupsize).toBe(256);
    expect(validateTrirunArgs(problem(3, 256, 256, 1), { groupsize: 256 }).groupsize).toBe(256);
  });

  it("rejects wrong dtypes with a TypeError naming the argument", () => {
    for (const [name, dtype] of [
      ["A", "f32"],
      ["B", "u8"],
      ["s", "f32"],
      ["C", "f32"],
    ] as const) {
      const args = problem(4, 256, 256);
      const bad = { ...args, [name]: { ...args[name], dtype } };
      expect(() => validateTrirunArgs(bad)).toThrow(TypeError);
      expect(() => validateTrirunArgs(bad)).toThrow(new RegExp(`^${name}: expected dtype`));
    }
  });

  it("rejects k not a multiple of 128, naming k", () => {
    const args = problem(4, 256, 256);
    const bad = { ...args, A: { ...args.A, shape: [4, 200] }, B: { ...args.B, shape: [200 / 8, 256] } };
    expect(() => validateTrirunArgs(bad)).toThrow(RangeError);
    expect(() => validateTrirunArgs(bad)).toThrow(/^k: .*200 must be a multiple of 128/);
  });

  it("rejects n not a multiple of 256, naming n", () => {
    const args = problem(4, 256, 384);
    expect(() => validateTrirunArgs(args)).toThrow(RangeError);
    expect(() => validateTrirunArgs(args)).toThrow(/^n: .*384 must be a multiple of 256/);
  });

  it("rejects inconsistent shapes of B, C and s", () => {
    const args = problem(4, 256, 256);
    expect(() => validateTrirunArgs({ ...args, B: { ...args.B, shape: [8, 256] } })).toThrow(
      /^B: expected shape \(k\/16, n\) = \(16, 256\)/,
    );
    expect(() => validateTrirunArgs({ ...args, C: { ...args.C, shape: [5, 256] } })).toThrow(
      /^C: expected shape \(m, n\) = \(4, 256\)/,
    );
    expect(() => validateTrirunArgs({ ...args, s: { ...args.s, shape: [3, 256] } })).toThrow(
      /^s: expected shape/,
    );
    expect(() => validateTrirunArgs({ ...args, A: { ...args.A, shape: [4, 256, 1] } })).toThrow(
      /^A: expected a 2-D tensor/,
    );
    expect(() =>
      validateTrirunArgs({ ...args, A: { ...args.A, shape: [0, 256] }, C: { ...args.C, shape: [0, 256] } }),
    ).toThrow(/^m \(A.shape\[0\]\): must be at least 1/);
  });

  it("rejects a group size other than 128 or k, and s that does not match it", () => {
    const args = problem(4, 512, 256);
    expect(() => validateTrirunArgs(args, { groupsize: 64 })).toThrow(
      /^opts.groupsize: expected 128 or k \(512\)/,
    );
    expect(() => validateTrirunArgs(args, { groupsize: -1 })).toThrow(
      /^s: expected shape \(k\/groupsize, n\) for groupsize 512 = \(1, 256\)/,
    );
    expect(() => validateTrirunArgs(args, { groupsize: 1.5 })).toThrow(RangeError);
  });

  it("rejects data that is not 16-byte aligned (views), naming the argument", () => {
    for (const name of ["A", "B", "s", "C"] as const) {
      const args = problem(4, 256, 256);
      const bad = { ...args, [name]: { ...args[name], byteOffset: 8 } };
      expect(() => validateTrirunArgs(bad)).toThrow(
        new RegExp(`^${name}: data must be 16-byte aligned.*byte offset 8`),
      );
    }
    const args = problem(4, 256, 256);
    expect(() => validateTrirunArgs({ ...args, C: { ...args.C, byteOffset: 4096 } })).not.toThrow();
  });

  it("rejects tensors on different devices and disposed tensors", () => {
    const args = problem(4, 256, 256);
    expect(() => validateTrirunArgs({ ...args, s: { ...args.s, device: 1 } })).toThrow(
      /^s: on device 1, but A is on device 0/,
    );
    // Compared with the first tensor that says where it lives, even when A does not.
    const { device: _none, ...hostless } = args.A;
    expect(() => validateTrirunArgs({ ...args, A: hostless, C: { ...args.C, device: 1 } })).toThrow(
      /^C: on device 1, but B is on device 0/,
    );
    expect(() => validateTrirunArgs({ ...args, B: { ...args.B, disposed: true } })).toThrow(DisposedError);
    expect(() => validateTrirunArgs({ ...args, B: { ...args.B, disposed: true } })).toThrow(
      /^B has been disposed/,
    );
  });

  it("checks the tile and parallelism knobs", () => {
    const args = problem(4, 256, 512);
    expect(validateTrirunArgs(args, { threadK: 64, threadN: 256 })).toMatchObject({
      threadK: 64,
      threadN: 256,
    });
    expect(validateTrirunArgs(args, { threadK: 128, threadN: 128 })).toMatchObject({
      threadK: 128,
      threadN: 128,
    });
    expect(() => validateTrirunArgs(args, { threadK: 128, threadN: 256 })).toThrow(
      /expected one of 128x128, 64x256 \(any m\) or 128x512 \(m <= 16\), 256x256 \(m <= 32\), 512x128 \(m <= 32\), got 128x256/,
    );
    expect(() => validateTrirunArgs(args, { threadK: 64 })).toThrow(/give both/);
    expect(() => validateTrirunArgs(args, { sms: 0 })).toThrow(/^opts.sms/);
    expect(() => validateTrirunArgs(args, { sms: 133 }, 132)).toThrow(/^opts.sms: expected 1..132, got 133/);
    expect(validateTrirunArgs(args, { sms: 132 }, 132).sms).toBe(132);
    expect(() => validateTrirunArgs(args, { maxParallel: 17 })).toThrow(/^opts.maxParallel: expected 1..16/);
    expect(() => validateTrirunArgs(args, { maxParallel: "2" as unknown as number })).toThrow(TypeError);
  });

  it("allows the small-batch tiles only for small m (128x512 to 16, the others to 32), and with a k they do not divide", () => {
    expect(validateTrirunArgs(problem(16, 384, 512), { threadK: 256, threadN: 256 })).toMatchObject({
      threadK: 256,
    });
    expect(validateTrirunArgs(problem(1, 384, 512), { threadK: 128, threadN: 512 }).threadN).toBe(512);
    expect(validateTrirunArgs(problem(32, 384, 512), { threadK: 512, threadN: 128 }).threadK).toBe(512);
    expect(() => validateTrirunArgs(problem(33, 384, 512), { threadK: 256, threadN: 256 })).toThrow(
      /the 256x256 tile is for m <= 32, got m = 33/,
    );
    expect(() => validateTrirunArgs(problem(17, 384, 512), { threadK: 128, threadN: 512 })).toThrow(
      /the 128x512 tile is for m <= 16, got m = 17/,
    );
    expect(() => validateTrirunArgs(problem(4, 384, 768), { threadK: 128, threadN: 512 })).toThrow(
      /^opts.threadN: 512 does not divide n = 768/,
    );
    expect(() => validateTrirunArgs(problem(20, 384, 768), { threadK: 128, threadN: 128 })).not.toThrow();
    expect(() => validateTrirunArgs(problem(20, 384, 768), { threadK: 64, threadN: 256 })).not.toThrow();
    expect(() => validateTrirunArgs(problem(20, 640, 768), { threadK: 128, threadN: 128 })).not.toThrow();
  });

  it("rejects a tile that does not divide the problem", () => {
    // n = 256 * 3 is divisible by 128 and 256; k = 128 * 3 is not divisible by... 64 divides it; use n = 768
    const args = problem(4, 384, 768);
    expect(validateTrirunArgs(args, { threadK: 64, threadN: 256 }).k).toBe(384);
    expect(validateTrirunArgs(args, { threadK: 128, threadN: 128 }).n).toBe(768);
  });

  it("rejects shapes that are not non-negative integers (a descriptor built by hand)", () => {
    const args = problem(4, 256, 256);
    for (const bad of [1.5, Number.NaN, "4", -1]) {
      expect(() => validateTrirunArgs({ ...args, A: { ...args.A, shape: [bad as number, 256] } })).toThrow(
        /^A: shape must hold non-negative integers/,
      );
    }
  });

  it("takes null options as none, and refuses device and byteOffset values that are not indices", () => {
    const args = problem(4, 256, 256);
    expect(validateTrirunArgs(args, null).groupsize).toBe(128);
    expect(
      validateGemmF16Args(
        { A: args.A, W: { ...args.A, shape: [256, 8] }, C: { ...args.C, shape: [4, 8] } },
        null,
      ).n,
    ).toBe(8);
    for (const [key, bad] of [
      ["device", Number.NaN],
      ["device", -1],
      ["device", "0"],
      ["byteOffset", -16],
      ["byteOffset", "16"],
      ["byteOffset", 2 ** 60],
    ] as const) {
      expect(() => validateTrirunArgs({ ...args, s: { ...args.s, [key]: bad } as TensorDescriptor })).toThrow(
        new RegExp(`^s: ${key} must be a non-negative integer`),
      );
    }
    expect(Object.isFrozen(DTYPE_NAMES)).toBe(true);
    const rows: TensorDescriptor = { dtype: "f16", shape: [2, 64] };
    expect(validateQuantizeRowsArgs({ x: rows, out: rows }, null).bits).toBe(8);
  });

  it("rejects a missing tensor with a TypeError", () => {
    const args = problem(4, 256, 256);
    expect(() => validateTrirunArgs({ ...args, s: undefined as unknown as TensorDescriptor })).toThrow(
      /^s: expected a DeviceTensor/,
    );
  });
});

describe("validateGemmF16Args", () => {
  const A: TensorDescriptor = { dtype: "f16", shape: [3, 64] };
  it("accepts W (k, n), W (n, k) with transposeW, and f32 output", () => {
    expect(
      validateGemmF16Args({ A, W: { dtype: "f16", shape: [64, 32] }, C: { dtype: "f16", shape: [3, 32] } }),
    ).toEqual({
      m: 3,
      n: 32,
      k: 64,
      transposeW: false,
      outputF32: false,
    });
    const t = validateGemmF16Args(
      { A, W: { dtype: "f16", shape: [32, 64] }, C: { dtype: "f32", shape: [3, 32] } },
      { transposeW: true },
    );
    expect(t).toMatchObject({ n: 32, k: 64, transposeW: true, outputF32: true });
  });
  it("rejects mismatched k, C shape and dtypes", () => {
    expect(() =>
      validateGemmF16Args({ A, W: { dtype: "f16", shape: [63, 32] }, C: { dtype: "f16", shape: [3, 32] } }),
    ).toThrow(/^W: expected shape \(k, n\) with k = 64/);
    expect(() =>
      validateGemmF16Args(
        { A, W: { dtype: "f16", shape: [64, 32] }, C: { dtype: "f16", shape: [3, 32] } },
        { transposeW: true },
      ),
    ).toThrow(/^W: expected shape \(n, k\)/);
    expect(() =>
      validateGemmF16Args({ A, W: { dtype: "f16", shape: [64, 32] }, C: { dtype: "f16", shape: [3, 31] } }),
    ).toThrow(/^C: expected shape \(m, n\) = \(3, 32\)/);
    expect(() =>
      validateGemmF16Args({ A, W: { dtype: "f32", shape: [64, 32] }, C: { dtype: "f16", shape: [3, 32] } }),
    ).toThrow(TypeError);
    expect(() =>
      validateGemmF16Args({ A, W: { dtype: "f16", shape: [64, 32] }, C: { dtype: "i32", shape: [3, 32] } }),
    ).toThrow(/^C: expected dtype f16 or f32, got i32/);
  });
});

describe("validateGemmF32Args", () => {
  it("derives m, n, k under each transposition", () => {
    const C = { dtype: "f32", shape: [2, 5] } as const;
    expect(
      validateGemmF32Args({ A: { dtype: "f32", shape: [2, 3] }, B: { dtype: "f32", shape: [3, 5] }, C }),
    ).toMatchObject({
      m: 2,
      n: 5,
      k: 3,
      alpha: 1,
      beta: 0,
    });
    expect(
      validateGemmF32Args(
        { A: { dtype: "f32", shape: [3, 2] }, B: { dtype: "f32", shape: [5, 3] }, C },
        { transposeA: true, transposeB: true, alpha: 2, beta: 0.5 },
      ),
    ).toMatchObject({ m: 2, n: 5, k: 3, alpha: 2, beta: 0.5 });
  });
  it("rejects non-finite alpha and mismatched inner dimensions", () => {
    const A = { dtype: "f32", shape: [2, 3] } as const;
    const C = { dtype: "f32", shape: [2, 5] } as const;
    expect(() =>
      validateGemmF32Args({ A, B: { dtype: "f32", shape: [3, 5] }, C }, { alpha: Number.NaN }),
    ).toThrow(/^opts.alpha: expected a finite number/);
    expect(() => validateGemmF32Args({ A, B: { dtype: "f32", shape: [4, 5] }, C })).toThrow(
      /^B: expected shape \(k, n\) with k = 3/,
    );
    expect(() => validateGemmF32Args({ A, B: { dtype: "f16", shape: [3, 5] }, C })).toThrow(TypeError);
  });
});
