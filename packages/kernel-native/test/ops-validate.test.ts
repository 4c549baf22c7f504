// Every validation rule of the model ops, without a GPU: pure checks over
// descriptors, and the public ops.* entry points against the host-memory
// stand-in of the addon (which has no ops, so a valid call reaches the
// "rebuild" error only after validation has passed).
import { afterEach, describe, expect, it } from "vitest";
import {
  DeviceTensor,
  DisposedError,
  type DType,
  OPS_MAX_HEAD_DIM,
  ops,
  type TensorDescriptor,
  validateAttentionDecodeArgs,
  validateAttentionDecodeBatchArgs,
  validateAttentionPrefillArgs,
  validateElementwiseArgs,
  validateEmbeddingArgs,
  validateLogSoftmaxArgs,
  validateNllArgs,
  validateAddRmsNormArgs,
  validateRelu2MulRmsNormArgs,
  validateRmsNormArgs,
  validateRopeArgs,
} from "../src/index.js";
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative } from "./support/fake-native.js";
import { withFakeOps } from "./support/fake-ops.js";

function d(dtype: DType, shape: number[], extra: Partial<TensorDescriptor> = {}): TensorDescriptor {
  return { dtype, shape, byteOffset: 0, device: 0, ...extra };
}

type ErrorClass = new (...args: never[]) => Error;

/** Expects `fn` to throw an instance of `kind` whose message matches `message` (the argument's name). */
function expectError(fn: () => unknown, kind: ErrorClass, message: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(kind);
  expect((thrown as Error).message).toMatch(message);
}

describe("validateEmbeddingArgs", () => {
  const ok = () => ({ table: d("f16", [100, 64]), ids: d("i32", [7]), out: d("f16", [7, 64]) });

  it("accepts a valid call", () => {
    expect(validateEmbeddingArgs(ok())).toEqual({ n: 7, vocab: 100, dim: 64 });
  });

  it("names the argument with a wrong dtype", () => {
    expectError(
      () => validateEmbeddingArgs({ ...ok(), table: d("f32", [100, 64]) }),
      TypeError,
      /^table: .*f16/,
    );
    expectError(() => validateEmbeddingArgs({ ...ok(), ids: d("u32", [7]) }), TypeError, /^ids: .*i32/);
    expectError(() => validateEmbeddingArgs({ ...ok(), out: d("f32", [7, 64]) }), TypeError, /^out: /);
  });

  it("names the argument with a wrong shape", () => {
    expectError(
      () => validateEmbeddingArgs({ ...ok(), table: d("f16", [6400]) }),
      RangeError,
      /^table: .*2-D/,
    );
    expectError(() => validateEmbeddingArgs({ ...ok(), ids: d("i32", [7, 1]) }), RangeError, /^ids: /);
    expectError(
      () => validateEmbeddingArgs({ ...ok(), out: d("f16", [7, 63]) }),
      RangeError,
      /^out: .*\(7, 64\)/,
    );
    expectError(() => validateEmbeddingArgs({ ...ok(), out: d("f16", [8, 64]) }), RangeError, /^out: /);
    expectError(
      () => validateEmbeddingArgs({ ...ok(), ids: d("i32", [0]), out: d("f16", [0, 64]) }),
      RangeError,
      /^n \(ids.shape\[0\]\)/,
    );
  });

  it("rejects non-tensors, disposed tensors, misaligned views and other devices", () => {
    expectError(
      () => validateEmbeddingArgs({ ...ok(), ids: null as unknown as TensorDescriptor }),
      TypeError,
      /^ids: expected a DeviceTensor/,
    );
    expectError(
      () => validateEmbeddingArgs({ ...ok(), table: d("f16", [100, 64], { disposed: true }) }),
      DisposedError,
      /^table/,
    );
    expectError(
      () => validateEmbeddingArgs({ ...ok(), ids: d("i32", [7], { byteOffset: 2 }) }),
      RangeError,
      /^ids: .*4-byte/,
    );
    expectError(
      () => validateEmbeddingArgs({ ...ok(), out: d("f16", [7, 64], { device: 1 }) }),
      RangeError,
      /^out: on device 1/,
    );
  });
});

describe("validateRmsNormArgs", () => {
  const ok = (w: DType = "f16") => ({ x: d("f16", [5, 48]), weight: d(w, [48]), out: d("f16", [5, 48]) });

  it("accepts f16 and f32 weights, default and given eps, and a quantization of 2..8 bits", () => {
    expect(validateRmsNormArgs(ok())).toEqual({
      rows: 5,
      dim: 48,
      weightF32: false,
      eps: 1e-5,
      quantizeBits: 0,
    });
    expect(validateRmsNormArgs(ok("f32"), { eps: 1e-6 })).toEqual({
      rows: 5,
      dim: 48,
      weightF32: true,
      eps: 1e-6,
      quantizeBits: 0,
    });
    for (const bits of [2, 5, 8])
      expect(validateRmsNormArgs(ok(), { quantizeBits: bits }).quantizeBits).toBe(bits);
  });

  it("checks quantizeBits and the options object", () => {
    for (const bits of [0, 1, 9, 2.5, Number.NaN]) {
      expectError(() => validateRmsNormArgs(ok(), { quantizeBits: bits }), RangeError, /^opts.quantizeBits/);
    }
    expectError(
      () => validateRmsNormArgs(ok(), { quantizeBits: "8" as unknown as number }),
      TypeError,
      /^opts.quantizeBits/,
    );
    expectError(() => validateRmsNormArgs(ok(), null as unknown as object), TypeError, /^opts: /);
  });

  it("names the wrong argument", () => {
    expectError(() => validateRmsNormArgs({ ...ok(), x: d("f32", [5, 48]) }), TypeError, /^x: /);
    expectError(
      () => validateRmsNormArgs({ ...ok(), weight: d("i32", [48]) }),
      TypeError,
      /^weight: .*f16 or f32/,
    );
    expectError(() => validateRmsNormArgs({ ...ok(), out: d("f32", [5, 48]) }), TypeError, /^out: /);
    expectError(() => validateRmsNormArgs({ ...ok(), x: d("f16", [5, 2, 24]) }), RangeError, /^x: .*2-D/);
    expectError(
      () => validateRmsNormArgs({ ...ok(), weight: d("f16", [47]) }),
      RangeError,
      /^weight: .*\(48\)/,
    );
    expectError(() => validateRmsNormArgs({ ...ok(), weight: d("f16", [1, 48]) }), RangeError, /^weight: /);
    expectError(
      () => validateRmsNormArgs({ ...ok(), out: d("f16", [48, 5]) }),
      RangeError,
      /^out: .*\(5, 48\)/,
    );
    expectError(
      () => validateRmsNormArgs({ ...ok(), x: d("f16", [5, 48], { disposed: true }) }),
      DisposedError,
      /^x/,
    );
    expectError(
      () => validateRmsNormArgs({ ...ok("f32"), weight: d("f32", [48], { byteOffset: 2 }) }),
      RangeError,
      /^weight: .*4-byte/,
    );
  });

  it("checks eps", () => {
    expectError(() => validateRmsNormArgs(ok(), { eps: Number.NaN }), RangeError, /^opts.eps/);
    expectError(() => validateRmsNormArgs(ok(), { eps: -1e-5 }), RangeError, /^opts.eps/);
    expectError(
      () => validateRmsNormArgs(ok(), { eps: "1e-5" as unknown as number }),
      TypeError,
      /^opts.eps/,
    );
  });
});

describe("validateAddRmsNormArgs and validateRelu2MulRmsNormArgs", () => {
  const norm = { weight: d("f16", [48]), out: d("f16", [5, 48]) };
  const add = () => ({ x: d("f16", [5, 48]), delta: d("f16", [5, 48]), ...norm });
  const relu2 = () => ({ gate: d("f16", [5, 48]), up: d("f16", [5, 48]), ...norm });

  it("accept what the norm accepts, with the second input of the first one's shape", () => {
    const want = { rows: 5, dim: 48, weightF32: false, eps: 1e-5, quantizeBits: 8 };
    expect(validateAddRmsNormArgs(add(), { quantizeBits: 8 })).toEqual(want);
    expect(validateRelu2MulRmsNormArgs(relu2(), { quantizeBits: 8 })).toEqual(want);
  });

  it("name the wrong argument as the caller named it", () => {
    expectError(() => validateAddRmsNormArgs({ ...add(), delta: d("f16", [5, 47]) }), RangeError, /^delta: /);
    expectError(() => validateAddRmsNormArgs({ ...add(), x: d("f32", [5, 48]) }), TypeError, /^x: /);
    expectError(
      () => validateRelu2MulRmsNormArgs({ ...relu2(), gate: d("f32", [5, 48]) }),
      TypeError,
      /^gate: /,
    );
    expectError(
      () => validateRelu2MulRmsNormArgs({ ...relu2(), gate: d("f16", [5, 2, 24]) }),
      RangeError,
      /^gate: .*2-D/,
    );
    expectError(
      () => validateRelu2MulRmsNormArgs({ ...relu2(), up: d("f16", [4, 48]) }),
      RangeError,
      /^up: /,
    );
    expectError(
      () => validateRelu2MulRmsNormArgs({ ...relu2(), up: d("f16", [5, 48], { byteOffset: 1 }) }),
      RangeError,
      /^up: .*2-byte/,
    );
    expectError(
      () => validateRelu2MulRmsNormArgs({ ...relu2(), up: d("f16", [5, 48], { device: 1 }) }),
      RangeError,
      /^up: on device 1/,
    );
    expectError(
      () => validateRelu2MulRmsNormArgs({ ...relu2(), out: d("f16", [5, 96]) }),
      RangeError,
      /^out: .*\(5, 48\)/,
    );
    expectError(
      () => validateRelu2MulRmsNormArgs(relu2(), { quantizeBits: 16 }),
      RangeError,
      /^opts.quantizeBits/,
    );
  });
});

describe("validateRopeArgs", () => {
  const args = (shape: number[] = [9, 4, 16]) => ({ x: d("f16", shape), positions: d("i32", [9]) });

  it("accepts 3-D and flattened 2-D layouts and both styles", () => {
    expect(validateRopeArgs(args(), { headDim: 16, style: "interleaved" })).toEqual({
      tokens: 9,
      heads: 4,
      headDim: 16,
      theta: 10000,
      style: 0,
    });
    expect(validateRopeArgs(args([9, 64]), { headDim: 16, style: "half", theta: 500000 })).toEqual({
      tokens: 9,
      heads: 4,
      headDim: 16,
      theta: 500000,
      style: 1,
    });
  });

  it("names the wrong argument or option", () => {
    expectError(
      () => validateRopeArgs({ ...args(), x: d("f32", [9, 4, 16]) }, { headDim: 16, style: "half" }),
      TypeError,
      /^x: /,
    );
    expectError(
      () => validateRopeArgs({ ...args(), positions: d("f32", [9]) }, { headDim: 16, style: "half" }),
      TypeError,
      /^positions: /,
    );
    expectError(
      () => validateRopeArgs({ ...args(), positions: d("i32", [8]) }, { headDim: 16, style: "half" }),
      RangeError,
      /^positions: .*\(9\)/,
    );
    expectError(
      () => validateRopeArgs(args([9, 4, 16]), { headDim: 8, style: "half" }),
      RangeError,
      /^x: .*opts.headDim/,
    );
    expectError(
      () => validateRopeArgs(args([9, 60]), { headDim: 16, style: "half" }),
      RangeError,
      /^x: .*multiple/,
    );
    expectError(() => validateRopeArgs(args([576]), { headDim: 16, style: "half" }), RangeError, /^x: /);
    expectError(
      () => validateRopeArgs(args([9, 4, 15]), { headDim: 15, style: "half" }),
      RangeError,
      /^opts.headDim: .*even/,
    );
    expectError(
      () => validateRopeArgs(args(), { headDim: 16 } as unknown as { headDim: number; style: "half" }),
      TypeError,
      /^opts.style/,
    );
    expectError(
      () => validateRopeArgs(args(), { headDim: 16, style: "neox" as unknown as "half" }),
      TypeError,
      /^opts.style/,
    );
    expectError(
      () => validateRopeArgs(args(), { headDim: 16, style: "half", theta: 1 }),
      RangeError,
      /^opts.theta/,
    );
    expectError(
      () => validateRopeArgs(args(), { headDim: 16, style: "half", theta: Number.POSITIVE_INFINITY }),
      RangeError,
      /^opts.theta/,
    );
    expectError(
      () => validateRopeArgs(args(), { headDim: 16.5, style: "half" }),
      RangeError,
      /^opts.headDim/,
    );
    expectError(
      () =>
        validateRopeArgs(
          { ...args(), positions: d("i32", [9], { disposed: true }) },
          { headDim: 16, style: "half" },
        ),
      DisposedError,
      /^positions/,
    );
  });
});

describe("validateElementwiseArgs", () => {
  it("accepts one shape and counts elements", () => {
    expect(
      validateElementwiseArgs(
        [
          [d("f16", [3, 5]), "gate"],
          [d("f16", [3, 5]), "up"],
        ],
        d("f16", [3, 5]),
      ),
    ).toEqual({ n: 15 });
  });

  it("names the wrong argument", () => {
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [3, 5]), "a"],
            [d("f32", [3, 5]), "b"],
          ],
          d("f16", [3, 5]),
        ),
      TypeError,
      /^b: /,
    );
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [3, 5]), "a"],
            [d("f16", [5, 3]), "b"],
          ],
          d("f16", [3, 5]),
        ),
      RangeError,
      /^b: .*\(3, 5\)/,
    );
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [3, 5]), "gate"],
            [d("f16", [3, 5]), "up"],
          ],
          d("f16", [15]),
        ),
      RangeError,
      /^out: /,
    );
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [3, 5]), "a"],
            [d("f16", [3, 5]), "b"],
          ],
          d("f32", [3, 5]),
        ),
      TypeError,
      /^out: /,
    );
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [0]), "a"],
            [d("f16", [0]), "b"],
          ],
          d("f16", [0]),
        ),
      RangeError,
      /^a: .*at least one/,
    );
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [3, 5], { disposed: true }), "gate"],
            [d("f16", [3, 5]), "up"],
          ],
          d("f16", [3, 5]),
        ),
      DisposedError,
      /^gate/,
    );
    expectError(
      () =>
        validateElementwiseArgs(
          [
            [d("f16", [3, 5]), "a"],
            [d("f16", [3, 5], { byteOffset: 3 }), "b"],
          ],
          d("f16", [3, 5]),
        ),
      RangeError,
      /^b: .*2-byte/,
    );
  });
});

describe("validateAttentionPrefillArgs", () => {
  const heads = { heads: 8, kvHeads: 2, headDim: 32 };
  const ok = (t = 6) => ({
    q: d("f16", [t, 8, 32]),
    k: d("f16", [t, 64]),
    v: d("f16", [t, 2, 32]),
    out: d("f16", [t, 8, 32]),
  });

  it("accepts 3-D and 2-D layouts with GQA", () => {
    expect(validateAttentionPrefillArgs(ok(), heads)).toEqual({ ...heads, tokens: 6 });
  });

  it("names the wrong argument or option", () => {
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), v: d("f32", [6, 64]) }, heads),
      TypeError,
      /^v: /,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), q: d("f16", [6, 8, 16]) }, heads),
      RangeError,
      /^q: .*\(rows, 8, 32\)/,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), k: d("f16", [6, 128]) }, heads),
      RangeError,
      /^k: .*kvHeads/,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), k: d("f16", [5, 64]) }, heads),
      RangeError,
      /^k: expected 6 rows/,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), v: d("f16", [384]) }, heads),
      RangeError,
      /^v: /,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), out: d("f16", [6, 128]) }, heads),
      RangeError,
      /^out: /,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), out: d("f16", [5, 256]) }, heads),
      RangeError,
      /^out: expected 6 rows/,
    );
    // the 2-D and 3-D layouts of the same data are interchangeable
    expect(validateAttentionPrefillArgs({ ...ok(), out: d("f16", [6, 256]) }, heads).tokens).toBe(6);
    expectError(
      () => validateAttentionPrefillArgs(ok(), { ...heads, kvHeads: 3 }),
      RangeError,
      /^opts.kvHeads: 3 does not divide/,
    );
    expectError(
      () => validateAttentionPrefillArgs(ok(), { ...heads, headDim: OPS_MAX_HEAD_DIM + 2 }),
      RangeError,
      /^opts.headDim/,
    );
    expectError(() => validateAttentionPrefillArgs(ok(), { ...heads, heads: 0 }), RangeError, /^opts.heads/);
    expectError(
      () => validateAttentionPrefillArgs(ok(), { heads: 8, headDim: 32 } as unknown as typeof heads),
      TypeError,
      /^opts.kvHeads/,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), k: d("f16", [6, 64], { disposed: true }) }, heads),
      DisposedError,
      /^k/,
    );
    expectError(
      () => validateAttentionPrefillArgs({ ...ok(), out: d("f16", [6, 8, 32], { device: 2 }) }, heads),
      RangeError,
      /^out: on device 2/,
    );
  });
});

describe("validateAttentionDecodeArgs", () => {
  const opts = { heads: 4, kvHeads: 4, headDim: 16, position: 10 };
  const ok = () => ({
    q: d("f16", [1, 64]),
    kNew: d("f16", [1, 4, 16]),
    vNew: d("f16", [1, 64]),
    kCache: d("f16", [32, 4, 16]),
    vCache: d("f16", [32, 4, 16]),
    out: d("f16", [1, 64]),
  });

  it("accepts a decode step and a multi-token continuation", () => {
    expect(validateAttentionDecodeArgs(ok(), opts)).toEqual({
      heads: 4,
      kvHeads: 4,
      headDim: 16,
      tokens: 1,
      position: 10,
      cacheRows: 32,
    });
    const three = {
      ...ok(),
      q: d("f16", [3, 64]),
      kNew: d("f16", [3, 64]),
      vNew: d("f16", [3, 64]),
      out: d("f16", [3, 64]),
    };
    expect(validateAttentionDecodeArgs(three, { ...opts, position: 29 }).tokens).toBe(3);
  });

  it("names the wrong argument or option", () => {
    expectError(
      () => validateAttentionDecodeArgs(ok(), { ...opts, position: 32 }),
      RangeError,
      /^opts.position: .*32 rows/,
    );
    expectError(
      () => validateAttentionDecodeArgs(ok(), { ...opts, position: -1 }),
      RangeError,
      /^opts.position/,
    );
    expectError(
      () => validateAttentionDecodeArgs(ok(), { ...opts, position: 1.5 }),
      RangeError,
      /^opts.position/,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), kCache: d("f32", [32, 4, 16]) }, opts),
      TypeError,
      /^kCache: /,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), vCache: d("f16", [16, 4, 16]) }, opts),
      RangeError,
      /^vCache: .*kCache/,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), kNew: d("f16", [2, 64]) }, opts),
      RangeError,
      /^kNew: expected 1 rows/,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), vNew: d("f16", [1, 32]) }, opts),
      RangeError,
      /^vNew: /,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), out: d("f16", [2, 4, 16]) }, opts),
      RangeError,
      /^out: expected 1 rows/,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), out: d("f16", [1, 4, 8]) }, opts),
      RangeError,
      /^out: /,
    );
    expectError(
      () => validateAttentionDecodeArgs({ ...ok(), vCache: d("f16", [32, 64], { disposed: true }) }, opts),
      DisposedError,
      /^vCache/,
    );
  });
});

describe("validateAttentionDecodeBatchArgs", () => {
  const heads = { heads: 4, kvHeads: 2, headDim: 16 };
  const ok = () => ({
    q: d("f16", [3, 64]),
    kNew: d("f16", [3, 2, 16]),
    vNew: d("f16", [3, 32]),
    kCache: d("f16", [3, 50, 2, 16]),
    vCache: d("f16", [3, 50, 32]),
    positions: d("i32", [3]),
    out: d("f16", [3, 4, 16]),
  });

  it("accepts 4-D and 3-D caches", () => {
    expect(validateAttentionDecodeBatchArgs(ok(), heads)).toEqual({ ...heads, batch: 3, maxT: 50 });
  });

  it("names the wrong argument", () => {
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), positions: d("f32", [3]) }, heads),
      TypeError,
      /^positions: .*i32/,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), positions: d("i32", [2]) }, heads),
      RangeError,
      /^positions: .*\(3\)/,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), kCache: d("f16", [2, 50, 32]) }, heads),
      RangeError,
      /^kCache: expected 3 sequences/,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), kCache: d("f16", [3, 50, 2, 8]) }, heads),
      RangeError,
      /^kCache: expected shape/,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), vCache: d("f16", [3, 49, 32]) }, heads),
      RangeError,
      /^vCache: /,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), kNew: d("f16", [2, 32]) }, heads),
      RangeError,
      /^kNew: expected 3 rows/,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), out: d("f16", [3, 32]) }, heads),
      RangeError,
      /^out: /,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs({ ...ok(), q: d("f32", [3, 64]) }, heads),
      TypeError,
      /^q: /,
    );
    expectError(
      () => validateAttentionDecodeBatchArgs(ok(), { ...heads, kvHeads: 3 }),
      RangeError,
      /^opts.kvHeads/,
    );
    expectError(
      () =>
        validateAttentionDecodeBatchArgs({ ...ok(), positions: d("i32", [3], { disposed: true }) }, heads),
      DisposedError,
      /^positions/,
    );
  });

  it("accepts rope options (theta defaults to 10000) and passes the style as the kernels take it", () => {
    expect(validateAttentionDecodeBatchArgs(ok(), { ...heads, rope: { style: "half" } })).toEqual({
      ...heads,
      batch: 3,
      maxT: 50,
      rope: { theta: 10000, style: 1 },
    });
    expect(
      validateAttentionDecodeBatchArgs(ok(), { ...heads, rope: { style: "interleaved", theta: 500000 } }),
    ).toEqual({ ...heads, batch: 3, maxT: 50, rope: { theta: 500000, style: 0 } });
    expect(validateAttentionDecodeBatchArgs(ok(), { ...heads, rope: undefined })).not.toHaveProperty("rope");
  });

  it("names the bad rope option", () => {
    type Rope = { style: "half"; theta?: number };
    const withRope = (rope: unknown, h = heads) =>
      validateAttentionDecodeBatchArgs(ok(), { ...h, rope: rope as Rope });
    expectError(() => withRope({}), TypeError, /^opts.rope.style: .*"interleaved" or "half"/);
    expectError(() => withRope({ style: "neox" }), TypeError, /^opts.rope.style/);
    expectError(() => withRope({ style: "half", theta: 1 }), RangeError, /^opts.rope.theta/);
    expectError(() => withRope({ style: "half", theta: -10000 }), RangeError, /^opts.rope.theta/);
    expectError(() => withRope({ style: "half", theta: Number.NaN }), RangeError, /^opts.rope.theta/);
    expectError(
      () => withRope({ style: "half", theta: Number.POSITIVE_INFINITY }),
      RangeError,
      /^opts.rope.theta/,
    );
    expectError(() => withRope({ style: "half", theta: "1e4" }), TypeError, /^opts.rope.theta/);
    expectError(() => withRope(null), TypeError, /^opts.rope: /);
    expectError(() => withRope("half"), TypeError, /^opts.rope: /);
    // RoPE pairs need an even head dimension; without rope an odd one is fine.
    const odd = { heads: 4, kvHeads: 2, headDim: 15 };
    const oddArgs = {
      ...ok(),
      q: d("f16", [3, 60]),
      kNew: d("f16", [3, 30]),
      vNew: d("f16", [3, 30]),
      kCache: d("f16", [3, 50, 30]),
      vCache: d("f16", [3, 50, 2, 15]),
      out: d("f16", [3, 60]),
    };
    expect(validateAttentionDecodeBatchArgs(oddArgs, odd)).toEqual({ ...odd, batch: 3, maxT: 50 });
    expectError(
      () => validateAttentionDecodeBatchArgs(oddArgs, { ...odd, rope: { style: "half" } }),
      RangeError,
      /^opts.headDim: expected an even number with opts.rope, got 15/,
    );
  });
});

describe("validateLogSoftmaxArgs and validateNllArgs", () => {
  it("accept f16 and f32 logits", () => {
    expect(validateLogSoftmaxArgs({ logits: d("f16", [3, 1000]), out: d("f32", [3, 1000]) })).toEqual({
      rows: 3,
      vocab: 1000,
      logitsF32: false,
    });
    expect(
      validateNllArgs({ logits: d("f32", [3, 1000]), targets: d("i32", [3]), out: d("f32", [3]) }),
    ).toEqual({ rows: 3, vocab: 1000, logitsF32: true });
  });

  it("name the wrong argument", () => {
    expectError(
      () => validateLogSoftmaxArgs({ logits: d("i32", [3, 10]), out: d("f32", [3, 10]) }),
      TypeError,
      /^logits: /,
    );
    expectError(
      () => validateLogSoftmaxArgs({ logits: d("f16", [3, 10]), out: d("f16", [3, 10]) }),
      TypeError,
      /^out: .*f32/,
    );
    expectError(
      () => validateLogSoftmaxArgs({ logits: d("f16", [30]), out: d("f32", [30]) }),
      RangeError,
      /^logits: .*2-D/,
    );
    expectError(
      () => validateLogSoftmaxArgs({ logits: d("f16", [3, 10]), out: d("f32", [3, 11]) }),
      RangeError,
      /^out: /,
    );
    expectError(
      () => validateNllArgs({ logits: d("f16", [3, 10]), targets: d("f32", [3]), out: d("f32", [3]) }),
      TypeError,
      /^targets: /,
    );
    expectError(
      () => validateNllArgs({ logits: d("f16", [3, 10]), targets: d("i32", [4]), out: d("f32", [3]) }),
      RangeError,
      /^targets: .*\(3\)/,
    );
    expectError(
      () => validateNllArgs({ logits: d("f16", [3, 10]), targets: d("i32", [3]), out: d("f32", [3, 1]) }),
      RangeError,
      /^out: /,
    );
    expectError(
      () => validateNllArgs({ logits: d("f16", [3, 10]), targets: d("i32", [3]), out: d("f16", [3]) }),
      TypeError,
      /^out: /,
    );
    expectError(
      () =>
        validateNllArgs({
          logits: d("f16", [3, 10]),
          targets: d("i32", [3], { disposed: true }),
          out: d("f32", [3]),
        }),
      DisposedError,
      /^targets/,
    );
    expectError(
      () =>
        validateNllArgs({
          logits: d("f32", [3, 10], { byteOffset: 2 }),
          targets: d("i32", [3]),
          out: d("f32", [3]),
        }),
      RangeError,
      /^logits: .*4-byte/,
    );
  });
});

describe("ops.* through the public API (host-memory addon without ops)", () => {
  afterEach(() => setNativeAddonForTesting(undefined));

  it("validates before it needs the ops, and rejects disposed tensors, overlaps and bad streams", () => {
    setNativeAddonForTesting(createFakeNative());
    const a = DeviceTensor.zeros("f16", [4, 8]);
    const b = DeviceTensor.zeros("f16", [4, 8]);
    const out = DeviceTensor.zeros("f16", [4, 8]);
    expectError(() => ops.add(a, DeviceTensor.zeros("f32", [4, 8]), out), TypeError, /^b: /);
    expectError(() => ops.siluMul(a, b, DeviceTensor.zeros("f16", [8, 4])), RangeError, /^out: /);
    expectError(() => ops.relu2Mul(a, DeviceTensor.zeros("f16", [4, 7]), out), RangeError, /^up: /);
    expectError(() => ops.quantizeRows(a, DeviceTensor.zeros("f16", [8, 4])), RangeError, /^out: /);
    expectError(
      () => ops.quantizeRows(a, out, { bits: 9 }),
      RangeError,
      /^opts\.bits: expected an integer in 2\.\.8/,
    );
    expectError(() => ops.quantizeRows(DeviceTensor.zeros("f32", [4, 8]), out), TypeError, /^x: /);
    const w = DeviceTensor.zeros("f16", [8]);
    expectError(() => ops.relu2MulRmsNorm(a, DeviceTensor.zeros("f16", [4, 7]), w, out), RangeError, /^up: /);
    expectError(
      () => ops.relu2MulRmsNorm(a, b, w, out, { quantizeBits: 1 }),
      RangeError,
      /^opts.quantizeBits/,
    );
    expectError(() => ops.rmsnorm(a, w, out, { quantizeBits: 9 }), RangeError, /^opts.quantizeBits/);
    expectError(() => ops.addRmsNorm(a, b, w, out, { quantizeBits: 0 }), RangeError, /^opts.quantizeBits/);
    // the fused gate may write gate or up in place, never part of either or the weight
    const rows = DeviceTensor.zeros("f16", [64]);
    expectError(
      () => ops.relu2MulRmsNorm(rows.view([4, 8], 0), b, w, rows.view([4, 8], 8)),
      RangeError,
      /^out: must not share memory with gate/,
    );
    expectError(() => ops.relu2MulRmsNorm(a, b, w, b, { quantizeBits: 8 }), Error, /no model ops: rebuild/);
    // in place is allowed, a partial overlap is not
    const wide = DeviceTensor.zeros("f16", [64]);
    expectError(
      () => ops.add(wide.view([4, 8], 0), b, wide.view([4, 8], 8)),
      RangeError,
      /^out: must not share memory with a/,
    );
    expectError(() => ops.add(a, b, a), Error, /no model ops: rebuild/);
    expectError(() => ops.add(a, b, out, { stream: {} as unknown as undefined }), TypeError, /opts.stream/);
    const logits = DeviceTensor.zeros("f32", [2, 16]);
    expectError(() => ops.logSoftmax(logits, logits), RangeError, /^out: must not share memory with logits/);
    const cache = DeviceTensor.zeros("f16", [8, 16]);
    const q = DeviceTensor.zeros("f16", [1, 16]);
    expectError(
      () =>
        ops.attentionDecode(q, q, q, cache, cache, DeviceTensor.zeros("f16", [1, 16]), {
          heads: 1,
          kvHeads: 1,
          headDim: 16,
          position: 0,
        }),
      RangeError,
      /^kCache: must not share memory with/,
    );
    // The fused decode validates its rope options before it needs the ops.
    const kc = DeviceTensor.zeros("f16", [1, 8, 16]);
    const vc = DeviceTensor.zeros("f16", [1, 8, 16]);
    const pos = DeviceTensor.zeros("i32", [1]);
    const decode = (rope: unknown) =>
      ops.attentionDecodeBatch(q, q, q, kc, vc, pos, DeviceTensor.zeros("f16", [1, 16]), {
        heads: 1,
        kvHeads: 1,
        headDim: 16,
        rope: rope as { style: "half" },
      });
    expectError(() => decode({ style: "rotate" }), TypeError, /^opts.rope.style/);
    expectError(() => decode({ style: "half", theta: 0 }), RangeError, /^opts.rope.theta/);
    expectError(() => decode({ style: "half" }), Error, /no model ops: rebuild/);
    b.dispose();
    expectError(() => ops.add(a, b, out), DisposedError, /^b/);
    expectError(() => ops.rope(a, b, { headDim: 8, style: "half" }), DisposedError, /^positions/);
  });

  it("refuses the fused row ops on an addon built before them (it would ignore quantizeBits)", () => {
    const { opsRelu2MulRmsNorm: _dropped, ...stale } = withFakeOps(createFakeNative()) as unknown as Record<
      string,
      unknown
    >;
    setNativeAddonForTesting(stale as unknown as Parameters<typeof setNativeAddonForTesting>[0]);
    const x = DeviceTensor.zeros("f16", [2, 8]);
    const w = DeviceTensor.zeros("f16", [8]);
    const out = DeviceTensor.zeros("f16", [2, 8]);
    ops.rmsnorm(x, w, out); // no quantization: the old entry point does it
    expectError(() => ops.rmsnorm(x, w, out, { quantizeBits: 8 }), Error, /predates the fused row ops/);
    expectError(
      () => ops.addRmsNorm(x, out, w, DeviceTensor.zeros("f16", [2, 8]), { quantizeBits: 8 }),
      Error,
      /predates/,
    );
    expectError(() => ops.relu2MulRmsNorm(x, out, w, x), Error, /predates the fused row ops/);
  });
});
