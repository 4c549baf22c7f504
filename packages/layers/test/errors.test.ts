import { DeviceTensor } from "@trirun/kernel-native";
import { describe, expect, it } from "vitest";
import { Float16Linear, hostTensor, LayerDisposedError, resolveBackend, TriRunLinear } from "../src/index.js";
import { makeRng, randomFloats, randomQuantized } from "./helpers.js";

const rng = makeRng();

function trirun(inF = 172, outF = 64): TriRunLinear {
  return TriRunLinear.fromQuantized(
    { ...randomQuantized(rng, inF, outF, 128), inFeatures: inF, outFeatures: outF },
    {
      backend: "cpu",
    },
  );
}

describe("forward argument errors", () => {
  const layers = () => [
    trirun(),
    Float16Linear.fromWeights(randomFloats(rng, 172 * 64), 64, 172, undefined, { backend: "cpu" }),
  ];

  it("rejects a wrong last dimension, naming the expected shape", () => {
    for (const layer of layers()) {
      expect(() => layer.forward(hostTensor([2, 171]))).toThrow(RangeError);
      expect(() => layer.forward(hostTensor([2, 171]))).toThrow(
        /x must have shape \(\.\.\., 172\), got \[2, 171\]/,
      );
    }
  });

  it("rejects data that does not match the shape", () => {
    for (const layer of layers()) {
      expect(() => layer.forward({ data: new Float32Array(100), shape: [1, 172] })).toThrow(RangeError);
    }
    expect(() => hostTensor([2, 3], new Float32Array(5))).toThrow(/6 elements/);
    expect(() => hostTensor([2, -1])).toThrow(RangeError);
  });

  it("rejects non-tensors and the wrong element type", () => {
    const layer = trirun();
    expect(() => layer.forward({ data: new Float64Array(172), shape: [172] } as never)).toThrow(TypeError);
    expect(() => layer.forward([1, 2, 3] as never)).toThrow(TypeError);
    expect(() => layer.forward(null as never)).toThrow(TypeError);
  });

  it("rejects a wrongly shaped or typed out buffer", () => {
    const layer = trirun();
    const x = hostTensor([3, 172]);
    expect(() => layer.forward(x, { out: hostTensor([3, 63]) })).toThrow(
      /opts.out must have shape \[3, 64\]/,
    );
    expect(() => layer.forward(x, { out: hostTensor([64, 3]) })).toThrow(RangeError);
    expect(() => layer.forward(x, { out: {} as never })).toThrow(TypeError);
  });

  it("a CPU layer refuses device tensors with a TypeError", () => {
    // Construct a DeviceTensor-shaped object without a GPU: the prototype check is what matters.
    const fake = Object.create(DeviceTensor.prototype) as DeviceTensor;
    expect(() => trirun().forward(fake)).toThrow(/HostTensor on the CPU backend/);
  });

  it("refuses an out buffer that shares memory with x (the CPU matmul would read what it wrote)", () => {
    for (const layer of [
      trirun(64, 64),
      Float16Linear.fromWeights(randomFloats(rng, 64 * 64), 64, 64, undefined, { backend: "cpu" }),
    ]) {
      const x = hostTensor([2, 64], randomFloats(rng, 128));
      expect(() => layer.forward(x, { out: x })).toThrow(/must not share memory with x/);
      // Overlapping views of one buffer too; disjoint views of it are fine.
      const buffer = new Float32Array(256);
      const a = hostTensor([2, 64], buffer.subarray(0, 128));
      expect(() => layer.forward(a, { out: hostTensor([2, 64], buffer.subarray(64, 192)) })).toThrow(
        /share memory/,
      );
      a.data.set(randomFloats(rng, 128));
      const y = layer.forward(a, { out: hostTensor([2, 64], buffer.subarray(128, 256)) });
      expect(Array.from(y.data)).toEqual(Array.from(layer.forward(hostTensor([2, 64], a.data.slice())).data));
    }
  });

  it("handles empty batches", () => {
    const y = trirun().forward(hostTensor([0, 172]));
    expect(y.shape).toEqual([0, 64]);
    expect(y.data.length).toBe(0);
  });
});

describe("construction errors", () => {
  it("checks codes, scales and groupsize of quantized weights", () => {
    const q = randomQuantized(rng, 172, 64, 128);
    const base = { ...q, inFeatures: 172, outFeatures: 64 };
    expect(() => TriRunLinear.fromQuantized({ ...base, codes: q.codes.subarray(1) })).toThrow(
      /q.codes must have/,
    );
    expect(() => TriRunLinear.fromQuantized({ ...base, scales: q.scales.subarray(64) })).toThrow(
      /q.scales must have 2 x 64 = 128/,
    );
    expect(() => TriRunLinear.fromQuantized({ ...base, groupsize: 64 })).toThrow(/128 or -1/);
    expect(() => TriRunLinear.fromQuantized({ ...base, scales: new Float32Array(128) as never })).toThrow(
      TypeError,
    );
    const bad = q.codes.slice();
    bad[5] = 4;
    expect(() => TriRunLinear.fromQuantized({ ...base, codes: bad })).toThrow(/codes\[5\] = 4/);
    expect(() => TriRunLinear.fromQuantized({ ...base, inFeatures: 0 })).toThrow(RangeError);
    expect(() => TriRunLinear.fromQuantized({ ...base, inFeatures: 1.5 })).toThrow(TypeError);
    expect(() => TriRunLinear.fromQuantized({ ...base, bias: new Float32Array(63) })).toThrow(
      /q.bias must have/,
    );
  });

  it("takes a per-column result reported as a group of inFeatures rows (as GPTQ does) as groupsize -1", () => {
    const inF = 256;
    const outF = 64;
    const q = randomQuantized(rng, inF, outF, -1);
    const asGptq = { ...q, groupsize: inF };
    const a = TriRunLinear.fromQuantized(
      { ...asGptq, inFeatures: inF, outFeatures: outF },
      { backend: "cpu" },
    );
    const b = TriRunLinear.fromQuantized({ ...q, inFeatures: inF, outFeatures: outF }, { backend: "cpu" });
    expect(a.groupsize).toBe(-1);
    expect(Array.from(a.dequantize())).toEqual(Array.from(b.dequantize()));
    const linear = Float16Linear.fromWeights(randomFloats(rng, outF * inF), outF, inF, undefined, {
      backend: "cpu",
    });
    expect(TriRunLinear.quantize(linear, () => asGptq, -1, { backend: "cpu" }).groupsize).toBe(-1);
    // An async quantizer (GPTQ's quantize is one) gets a message saying what to do.
    expect(() =>
      TriRunLinear.quantize(linear, (async () => asGptq) as never, -1, { backend: "cpu" }),
    ).toThrow(/returned a Promise: quantize first/);
    // A result of another group size than the one asked for is refused, not used silently.
    expect(() => TriRunLinear.quantize(linear, () => q, 128, { backend: "cpu" })).toThrow(
      /quantizer result.groupsize is -1, but groupsize 128 was asked for/,
    );
    // Other group sizes stay errors.
    expect(() =>
      TriRunLinear.fromQuantized(
        { ...q, groupsize: 64, inFeatures: inF, outFeatures: outF },
        { backend: "cpu" },
      ),
    ).toThrow(/q.groupsize must be 128 or -1/);
  });

  it("names the layer argument when it is not a Float16Linear", () => {
    expect(() => TriRunLinear.quantize(null as never, "absmean", 128)).toThrow(
      /linear must be a Float16Linear, got null/,
    );
    expect(() => TriRunLinear.pack(undefined as never, new Uint16Array(1), 128)).toThrow(
      /linear must be a Float16Linear, got undefined/,
    );
  });

  it("checks packed weights", () => {
    const good = {
      B: new Int32Array(8 * 256),
      s: new Uint16Array(256),
      k: 128,
      n: 256,
      groupsize: -1,
      inFeatures: 100,
      outFeatures: 200,
    };
    expect(() => TriRunLinear.fromPacked(good, { backend: "cpu" })).not.toThrow();
    expect(() => TriRunLinear.fromPacked({ ...good, k: 100 })).toThrow(/p.k must be a multiple of 128/);
    expect(() => TriRunLinear.fromPacked({ ...good, n: 200 })).toThrow(/p.n must be a multiple of 256/);
    expect(() => TriRunLinear.fromPacked({ ...good, inFeatures: 129 })).toThrow(
      /inFeatures \(129\) must be <= p.k/,
    );
    expect(() => TriRunLinear.fromPacked({ ...good, B: new Int32Array(10) })).toThrow(/p.B must have/);
    expect(() => TriRunLinear.fromPacked({ ...good, B: new Uint32Array(8 * 256) as never })).toThrow(
      TypeError,
    );
    expect(() =>
      TriRunLinear.fromPacked({ ...good, k: 256, B: new Int32Array(16 * 256), groupsize: 128 }),
    ).toThrow(/p.s must have 2 x 256/);
    expect(() => TriRunLinear.fromPacked({ ...good, groupsize: 32 })).toThrow(/128 or -1/);
  });

  it("checks Float16Linear weights", () => {
    expect(() => Float16Linear.fromWeights(new Float32Array(10), 3, 3)).toThrow(/3 x 3/);
    expect(() => Float16Linear.fromWeights(new Float64Array(9) as never, 3, 3)).toThrow(TypeError);
    expect(() => Float16Linear.fromWeights(new Float32Array(9), 3, 3, new Float32Array(2))).toThrow(/bias/);
    // A bias past fp16's range would be Inf on the CPU and NaN on CUDA: refused on both.
    for (const bad of [1e6, -70000, Number.NaN]) {
      expect(() =>
        Float16Linear.fromWeights(new Float32Array(9), 3, 3, Float32Array.from([0, bad, 0]), {
          backend: "cpu",
        }),
      ).toThrow(/bias\[1\] = .* is not a finite value fp16 can hold/);
    }
    expect(() =>
      Float16Linear.fromWeights(new Float32Array(9), 3, 3, Float32Array.from([0, 65504, 0]), {
        backend: "cpu",
      }),
    ).not.toThrow();
  });

  it("checks the backend option", () => {
    expect(() => resolveBackend("tpu" as never)).toThrow(TypeError);
    expect(() => trirun().forward(hostTensor([1, 172]))).not.toThrow();
  });
});

describe("disposal", () => {
  it("makes forward and dequantize throw, frees the weights and is idempotent", () => {
    const layer = trirun();
    // CPU weights kept as levels: one byte per weight, plus two fp32 scales per output (groups of 128).
    expect(layer.byteLength).toBe(172 * 64 + 64 * 2 * 4);
    expect(layer.disposed).toBe(false);
    layer.dispose();
    layer.dispose();
    expect(layer.disposed).toBe(true);
    expect(layer.byteLength).toBe(0);
    expect(() => layer.forward(hostTensor([1, 172]))).toThrow(LayerDisposedError);
    expect(() => layer.dequantize()).toThrow(/TriRunLinear\(172 -> 64, cpu\) has been disposed/);
    try {
      layer.forward(hostTensor([1, 172]));
    } catch (error) {
      expect((error as LayerDisposedError).code).toBe("ERR_LAYER_DISPOSED");
    }
  });

  it("keeps the host weights of a disposed Float16Linear readable", () => {
    const w = randomFloats(rng, 6);
    const layer = Float16Linear.fromWeights(w, 2, 3, undefined, { backend: "cpu" });
    layer.dispose();
    expect(layer.weight.length).toBe(6);
    expect(() => layer.forward(hostTensor([3]))).toThrow(LayerDisposedError);
  });
});
