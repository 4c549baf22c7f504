import { Float16Array } from "@petamoriken/float16";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bufferSource,
  CheckpointError,
  decodeTriRunMetadata,
  dequantizeLayer,
  dequantizeToF16,
  encodeTriRunMetadata,
  METADATA_KEYS,
  packCodes,
  packLinear,
  packScales,
  packWeights,
  quantize,
  SafetensorsCheckpoint,
  SafetensorsReader,
  serializeSafetensors,
  serializeTriRunCheckpoint,
  TriRunCheckpoint,
  unpackLayer,
} from "../src/index.js";

const randomF16 = (count: number) =>
  new Uint16Array(new Float16Array(Array.from({ length: count }, () => (Math.random() - 0.5) * 0.2)).buffer);

describe("packLinear / unpackLayer", () => {
  it("pads odd shapes with zero weights and strips the padding back", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom<128 | -1>(128, -1),
        (outF, inF, groupsize) => {
          const data = randomF16(outF * inF);
          const weight = { data, dtype: "F16" as const, outFeatures: outF, inFeatures: inF };
          const layer = packLinear("m", weight, { method: "absmean", groupsize });
          expect(layer.k % 128).toBe(0);
          expect(layer.n % 256).toBe(0);
          expect(layer.k - inF).toBeLessThan(128);
          expect(layer.n - outF).toBeLessThan(256);
          const q = quantize(weight, { method: "absmean", groupsize });
          const back = unpackLayer(layer);
          expect(Buffer.from(back.codes).equals(Buffer.from(q.codes))).toBe(true);
          expect(Array.from(back.scales)).toEqual(Array.from(q.scales));
          // Padded rows and columns hold code 1 (weight 0) and padded columns scale 0.
          const rows = groupsize === -1 ? 1 : layer.k / 128;
          const paddedCodes = new Uint8Array(layer.k * layer.n).fill(1);
          for (let r = 0; r < inF; r++)
            paddedCodes.set(q.codes.subarray(r * outF, (r + 1) * outF), r * layer.n);
          const paddedScales = new Uint16Array(rows * layer.n);
          for (let r = 0; r < rows; r++)
            paddedScales.set(q.scales.subarray(r * outF, (r + 1) * outF), r * layer.n);
          expect(Array.from(layer.B)).toEqual(Array.from(packWeights(paddedCodes, layer.k, layer.n)));
          expect(Array.from(layer.s)).toEqual(
            Array.from(packScales(paddedScales, layer.k, layer.n, groupsize)),
          );
          expect(Array.from(dequantizeLayer(layer))).toEqual(
            Array.from(dequantizeToF16(q.codes, q.scales, inF, outF, q.groupLength)),
          );
        },
      ),
      { numRuns: 25 },
    );
  });

  it("packCodes checks its arguments", () => {
    expect(() => packCodes("m", new Uint8Array(5), new Uint16Array(1), 2, 3, -1)).toThrow(/codes must have/);
    expect(() => packCodes("m", new Uint8Array(6), new Uint16Array(1), 2, 3, 128)).toThrow(
      /scales must have 1 x 3/,
    );
    expect(() => packCodes("m", new Uint8Array(6), new Uint16Array(3), 2, 3, 64 as 128)).toThrow(/groupsize/);
    expect(() => packCodes("m", new Uint8Array(0), new Uint16Array(0), -32, 3, -1)).toThrow(
      /inFeatures must be a positive integer, got -32/,
    );
    expect(() => packCodes("m", new Uint8Array(3), new Uint16Array(3), 1.5, 2, -1)).toThrow(/inFeatures/);
    expect(() => packCodes("", new Uint8Array(6), new Uint16Array(3), 2, 3, -1)).toThrow(/module name/);
  });
});

describe("TriRun metadata", () => {
  const modules = [
    { module: "a.q_proj", inFeatures: 100, outFeatures: 300, k: 128, n: 512, groupsize: 128 as const },
  ];

  it("refuses a module listed twice (the table would keep only the last)", () => {
    expect(() =>
      encodeTriRunMetadata({ groupsize: 128, method: "absmean", modules: [...modules, ...modules] }),
    ).toThrow(/"a.q_proj" is listed twice/);
  });

  it("round-trips and keeps format pt", () => {
    const md = encodeTriRunMetadata({ groupsize: 128, method: "absmean", modules });
    expect(md.format).toBe("pt");
    expect(decodeTriRunMetadata(md, "f")).toEqual({ version: 1, groupsize: 128, method: "absmean", modules });
    expect(decodeTriRunMetadata({ format: "pt" }, "f")).toBeUndefined();
  });

  it("rejects bad metadata naming the file", () => {
    const md = encodeTriRunMetadata({ groupsize: 128, method: undefined, modules });
    const bad = (patch: Record<string, string>, re: RegExp) => {
      expect(() => decodeTriRunMetadata({ ...md, ...patch }, "ckpt.safetensors")).toThrow(re);
      expect(() => decodeTriRunMetadata({ ...md, ...patch }, "ckpt.safetensors")).toThrow(CheckpointError);
    };
    bad({ [METADATA_KEYS.version]: "2" }, /ckpt.safetensors: unsupported trirun.version "2"/);
    bad({ [METADATA_KEYS.groupsize]: "64" }, /groupsize must be 128 or -1/);
    bad({ [METADATA_KEYS.modules]: "{" }, /not valid JSON/);
    bad(
      {
        [METADATA_KEYS.modules]:
          '{"m":{"in_features":100,"out_features":300,"k":100,"n":512,"groupsize":128}}',
      },
      /module "m": k, n/,
    );
    bad({ [METADATA_KEYS.modules]: '{"m":{"in_features":-1}}' }, /module "m": inFeatures/);
  });
});

describe("TriRunCheckpoint", () => {
  async function open(bytes: Uint8Array) {
    const reader = await SafetensorsReader.open(bufferSource(bytes), "t.safetensors");
    return TriRunCheckpoint.fromSafetensors(new SafetensorsCheckpoint([reader]));
  }

  it("reads back layers and pass-through tensors", async () => {
    const a = packLinear(
      "model.layers.0.self_attn.q_proj",
      { data: randomF16(256 * 128), dtype: "F16", outFeatures: 256, inFeatures: 128 },
      {
        method: "absmax",
        groupsize: 128,
      },
    );
    const b = packLinear(
      "model.layers.0.mlp.down_proj",
      { data: randomF16(100 * 200), dtype: "F16", outFeatures: 100, inFeatures: 200 },
      {
        method: "absmax",
        groupsize: 128,
      },
    );
    const norm = { name: "model.norm.weight", dtype: "F16" as const, shape: [8], data: randomF16(8) };
    const ckpt = await open(
      serializeTriRunCheckpoint({ layers: [a, b], tensors: [norm], groupsize: 128, method: "absmax" }),
    );
    expect(ckpt.metadata.method).toBe("absmax");
    expect(ckpt.modules().map((m) => m.module)).toEqual([a.module, b.module]);
    expect(ckpt.passthroughNames()).toEqual(["model.norm.weight"]);
    for (const layer of [a, b]) {
      const got = await ckpt.readLayer(layer.module);
      expect(Array.from(got.B)).toEqual(Array.from(layer.B));
      expect(Array.from(got.s)).toEqual(Array.from(layer.s));
      expect([got.inFeatures, got.outFeatures, got.k, got.n]).toEqual([
        layer.inFeatures,
        layer.outFeatures,
        layer.k,
        layer.n,
      ]);
    }
    await expect(ckpt.readLayer("nope")).rejects.toThrow(/no quantized module "nope"/);
  });

  it("rejects a checkpoint whose tensors disagree with its module table", async () => {
    const a = packLinear(
      "m",
      { data: randomF16(256 * 128), dtype: "F16", outFeatures: 256, inFeatures: 128 },
      { method: "absmax", groupsize: 128 },
    );
    const md = encodeTriRunMetadata({
      groupsize: 128,
      method: undefined,
      modules: [{ ...a, B: undefined, s: undefined } as never],
    });
    const wrongShape = serializeSafetensors(
      [
        { name: "m.B", dtype: "I32", shape: [4, 256], data: new Int32Array(1024) },
        { name: "m.s", dtype: "F16", shape: [1, 256], data: a.s },
      ],
      md,
    );
    await expect(open(wrongShape)).rejects.toThrow(
      /t.safetensors: tensor "m.B": module "m" needs I32 \[8, 256\], found I32 \[4, 256\]/,
    );
    const missing = serializeSafetensors([{ name: "m.B", dtype: "I32", shape: [8, 256], data: a.B }], md);
    await expect(open(missing)).rejects.toThrow(/tensor "m.s": module "m" is listed but has no tensor/);
    const notTriRun = serializeSafetensors(
      [{ name: "x", dtype: "U8", shape: [1], data: new Uint8Array(1) }],
      { format: "pt" },
    );
    await expect(open(notTriRun)).rejects.toThrow(/not a TriRun checkpoint/);
  });
});
