import { describe, expect, it } from "vitest";
import {
  customModelSet,
  FIXED_MODEL_SETS,
  idealModelSet,
  MODEL_SET_IDS,
  packedWeightBytes,
  parseBatchSizes,
  parseGroupsizes,
  parseShape,
  resolveModelSets,
  validateShape,
} from "../src/shapes.js";

describe("model sets", () => {
  it("every built-in shape satisfies the kernel's k % 128 and n % 256", () => {
    const sets = [
      ...FIXED_MODEL_SETS,
      idealModelSet(132),
      idealModelSet(108),
      idealModelSet(1 + Math.floor(Math.random() * 200)),
    ];
    for (const set of sets) {
      expect(set.layers.length).toBeGreaterThan(0);
      for (const { k, n } of set.layers) {
        expect(k % 128, `${set.id} k=${k}`).toBe(0);
        expect(n % 256, `${set.id} n=${n}`).toBe(0);
        expect(() => validateShape(k, n)).not.toThrow();
      }
    }
  });

  it("holds the transformer layer shapes implied by each model's dimensions", () => {
    // hidden, intermediate, qkv width (q + k + v outputs), from each model's published configuration.
    const dims: Record<string, [number, number, number]> = {
      "trilm-3.9b": [3072, 9216, 3 * 3072],
      "bitnet-2b": [2560, 6912, 2560 + 2 * 5 * 128],
      "llama2-7b": [4096, 11008, 3 * 4096],
      "llama2-13b": [5120, 13824, 3 * 5120],
      "llama-33b": [6656, 17920, 3 * 6656],
      "llama2-70b": [8192, 21760, 3 * 8192],
      "llama2-70b-gqa": [8192, 28672, 8192 + 2 * 8 * 128],
    };
    for (const [id, [hidden, intermediate, qkv]] of Object.entries(dims)) {
      const set = FIXED_MODEL_SETS.find((s) => s.id === id);
      expect(set, id).toBeDefined();
      expect(set?.layers.map((l) => [l.k, l.n])).toEqual([
        [hidden, qkv],
        [hidden, hidden],
        [hidden, 2 * intermediate],
        [intermediate, hidden],
      ]);
    }
    const falcon = FIXED_MODEL_SETS.find((s) => s.id === "falcon-180b");
    expect(falcon?.layers.map((l) => [l.k, l.n])).toEqual([
      [14848, 3 * 14848],
      [14848, 14848],
      [14848, 4 * 14848],
      [4 * 14848, 14848],
    ]);
  });

  it("gives each SM one 256-wide column slice in the ideal shape", () => {
    const sms = 1 + Math.floor(Math.random() * 200);
    const [shape] = idealModelSet(sms).layers;
    expect(shape.n / 256).toBe(sms);
    expect(shape.k).toBe(4 * shape.n);
    expect(() => idealModelSet(0)).toThrow(RangeError);
    expect(() => idealModelSet(1.5)).toThrow(RangeError);
  });

  it("resolves identifiers, 'all', and rejects unknown names", () => {
    expect(resolveModelSets(["all"], 132).map((s) => s.id)).toEqual(MODEL_SET_IDS);
    expect(resolveModelSets(["llama2-7b", "ideal", "llama2-7b"], 132).map((s) => s.id)).toEqual([
      "llama2-7b",
      "ideal",
    ]);
    expect(() => resolveModelSets(["llama-7"], 132)).toThrow(/unknown model set "llama-7"/);
  });
});

describe("parsing", () => {
  it("parses --shape k,n and rejects shapes the kernel cannot run", () => {
    expect(parseShape("4096,11008")).toEqual({ layer: "4096x11008", k: 4096, n: 11008 });
    expect(parseShape(" 256 x 512 ")).toEqual({ layer: "256x512", k: 256, n: 512 });
    expect(() => parseShape("4096")).toThrow(/expected "k,n"/);
    expect(() => parseShape("100,256")).toThrow(/multiple of 128/);
    expect(() => parseShape("128,200")).toThrow(/multiple of 256/);
    expect(() => parseShape("0,256")).toThrow(RangeError);
    expect(customModelSet([parseShape("128,256")]).id).toBe("custom");
    expect(() => customModelSet([])).toThrow(RangeError);
    // The same shape twice ("4096,4096" and "4096x4096") is one layer, once.
    const set = customModelSet([parseShape("4096,4096"), parseShape("4096x4096"), parseShape("128,256")]);
    expect(set.layers.map((l) => l.layer)).toEqual(["4096x4096", "128x256"]);
  });

  it("parses batch sizes and group sizes", () => {
    expect(parseBatchSizes("16,1, 4,16")).toEqual([1, 4, 16]);
    expect(() => parseBatchSizes("0")).toThrow(/\[1, 65536\]/);
    expect(() => parseBatchSizes("1,a")).toThrow(/integers/);
    expect(parseGroupsizes("-1,128")).toEqual([-1, 128]);
    expect(() => parseGroupsizes("64")).toThrow(/128 or -1/);
  });

  it("counts packed weight bytes as k*n/4 plus fp16 scales", () => {
    const k = 128 * (1 + Math.floor(Math.random() * 64));
    const n = 256 * (1 + Math.floor(Math.random() * 64));
    expect(packedWeightBytes(k, n, 128)).toBe((k * n * 2) / 8 + (k / 128) * n * 2);
    expect(packedWeightBytes(k, n, -1)).toBe((k * n * 2) / 8 + n * 2);
  });
});
