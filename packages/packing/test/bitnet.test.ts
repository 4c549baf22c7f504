import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  bf16BitsToNumber,
  bitNetLayerScale,
  bitNetQuantization,
  CheckpointError,
  decodeF16,
  dequantizeLayer,
  encodeBf16,
  encodeF16,
  type FloatDType,
  numberToBf16Bits,
  packBitNetLinear,
  packScales,
  packWeights,
  quantize,
  quantizePacked,
  roundToF16,
  unpackBitNetCodes,
  type WeightMatrix,
} from "../src/index.js";
import { openTriRunCheckpoint, packCheckpoint, writeSafetensorsFile } from "../src/node/index.js";
import { hfPackWeights, randomLevels, writeBitNetModel, writeModelFiles } from "./bitnet-fixture.js";
import { tempDir } from "./helpers.js";

const root = tempDir();
const randomInt = (n: number) => Math.floor(Math.random() * n);

describe("BitNet packed weights", () => {
  it("unpack transformers' packing into TriRun codes, level + 1, for random shapes", () => {
    for (let trial = 0; trial < 6; trial++) {
      const rows = 1 + randomInt(40);
      const inF = 1 + randomInt(70);
      const out = 4 * rows;
      const levels = randomLevels(out, inF, trial % 2 === 1);
      const codes = unpackBitNetCodes(hfPackWeights(levels, out, inF), rows, inF);
      for (let o = 0; o < out; o++)
        for (let c = 0; c < inF; c++) expect(codes[c * out + o]).toBe(levels[o * inF + c] + 1);
    }
  });

  it("import a layer exactly: dequantized weight = level * layer scale, both linear classes and group sizes", () => {
    for (const [linearClass, groupsize, rows, inF] of [
      ["bitlinear", 128, 64, 256],
      ["autobitlinear", -1, 64, 256],
      ["bitlinear", -1, 37, 200], // out 148, in 200: padded to 256 x 256
      ["autobitlinear", 128, 80, 130],
    ] as const) {
      const out = 4 * rows;
      const levels = randomLevels(out, inF, true);
      // A bf16 weight_scale as the checkpoints store it.
      const weightScale = bf16BitsToNumber(
        numberToBf16Bits(linearClass === "bitlinear" ? 20 + Math.random() * 60 : 0.01 + Math.random() * 0.05),
      );
      const layer = packBitNetLinear(
        "m",
        { packed: hfPackWeights(levels, out, inF), rows, inFeatures: inF, weightScale, linearClass },
        groupsize,
      );
      expect([layer.inFeatures, layer.outFeatures, layer.groupsize]).toEqual([inF, out, groupsize]);
      const scale = roundToF16(linearClass === "bitlinear" ? 1 / weightScale : weightScale);
      if (linearClass === "autobitlinear") expect(scale).toBe(weightScale); // bf16 is exact in fp16
      const w = decodeF16(dequantizeLayer(layer));
      for (let i = 0; i < out * inF; i++) expect(w[i]).toBe(roundToF16(levels[i] * scale));
    }
  });

  it("name bad scales and bad packed shapes", () => {
    for (const bad of [0, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => bitNetLayerScale(bad, "bitlinear", "x.weight_scale")).toThrow(
        /x\.weight_scale.*finite non-zero/,
      );
    }
    expect(() => bitNetLayerScale(1e-9, "bitlinear")).toThrow(/fp16 range/);
    expect(() => bitNetLayerScale(1e-9, "autobitlinear")).toThrow(/fp16 range/);
    expect(() => unpackBitNetCodes(new Uint8Array(10), 3, 4)).toThrow(/12 bytes, got 10/);
    expect(() => unpackBitNetCodes(new Uint8Array(0), 0, 4)).toThrow(/rows must be a positive integer/);
  });

  it("read the BitNet settings of config.json as transformers does", () => {
    expect(bitNetQuantization(undefined)).toBeUndefined();
    expect(bitNetQuantization({ quantization_config: { quant_method: "gptq" } })).toBeUndefined();
    expect(bitNetQuantization({ quantization_config: { quant_method: "bitnet" } })).toEqual({
      mode: "offline",
      linearClass: "bitlinear",
    });
    expect(
      bitNetQuantization({
        quantization_config: {
          quant_method: "bitnet",
          linear_class: "autobitlinear",
          quantization_mode: "online",
        },
      }),
    ).toEqual({ mode: "online", linearClass: "autobitlinear" });
    expect(() =>
      bitNetQuantization({ quantization_config: { quant_method: "bitnet", linear_class: "x" } }),
    ).toThrow(/linear_class/);
    expect(() =>
      bitNetQuantization({ quantization_config: { quant_method: "bitnet", quantization_mode: "later" } }),
    ).toThrow(/quantization_mode/);
  });
});

/** Rounds half to even without Math.round (an independent path from the implementation's). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** transformers' WeightQuant in fp32, then the dtype cast: the dequantized weights it produces. */
function weightQuantReference(values: number[], dtype: FloatDType): number[] {
  let sum = 0;
  for (const v of values) sum += Math.abs(v);
  const s = Math.fround(1 / Math.max(Math.fround(sum / values.length), Math.fround(1e-5)));
  const cast = (v: number) =>
    dtype === "BF16" ? bf16BitsToNumber(numberToBf16Bits(v)) : dtype === "F16" ? roundToF16(v) : v;
  return values.map((v) => {
    const q = Math.min(1, Math.max(-1, roundHalfEven(Math.fround(v * s))));
    return cast(Math.fround(q / s)) + 0; // + 0: -0 -> 0
  });
}

function weightOf(values: number[], dtype: FloatDType, out: number, inF: number): WeightMatrix {
  const data =
    dtype === "F16"
      ? encodeF16(values)
      : dtype === "BF16"
        ? encodeBf16(values)
        : dtype === "F32"
          ? Float32Array.from(values)
          : Float64Array.from(values);
  return { data, dtype, outFeatures: out, inFeatures: inF } as WeightMatrix;
}

/** The values a weight holds (after its dtype's rounding). */
function valuesOf(w: WeightMatrix): number[] {
  if (w.dtype === "F16") return Array.from(decodeF16(w.data as Uint16Array));
  if (w.dtype === "BF16") return Array.from(w.data as Uint16Array, bf16BitsToNumber);
  return Array.from(w.data);
}

function dequantized(w: WeightMatrix, groupsize: 128 | -1): number[] {
  const q = quantize(w, { method: "bitnet", groupsize });
  const scales = decodeF16(q.scales);
  const out: number[] = [];
  for (let c = 0; c < w.outFeatures; c++)
    for (let r = 0; r < w.inFeatures; r++) {
      const scale = scales[Math.floor(r / q.groupLength) * w.outFeatures + c];
      out.push((q.codes[r * w.outFeatures + c] - 1) * scale + 0);
    }
  return out;
}

describe('quantizer "bitnet" (BitNet b1.58 per-tensor absmean)', () => {
  it("matches transformers' WeightQuant on random weights of every dtype", () => {
    for (const dtype of ["F16", "BF16", "F32", "F64"] as FloatDType[]) {
      const out = 8 + randomInt(40);
      const inF = 16 + randomInt(300);
      const scale = 0.01 + Math.random() * 0.1;
      const w = weightOf(
        Array.from({ length: out * inF }, () => (Math.random() - 0.5) * 4 * scale),
        dtype,
        out,
        inF,
      );
      const expected = weightQuantReference(valuesOf(w), dtype);
      for (const groupsize of [128, -1] as const) {
        const got = dequantized(w, groupsize);
        // fp32 masters: the layer scale is rounded to fp16, so compare levels through that rounding.
        if (dtype === "F32" || dtype === "F64") expect(got).toEqual(expected.map((v) => roundToF16(v) + 0));
        else expect(got).toEqual(expected);
      }
    }
  });

  it("rounds ties to even like torch.round (w * s exactly +-0.5 and +-1.5)", () => {
    // |w| averages exactly 1, so s = 1 and w * s is w itself.
    const values = [0.5, -0.5, 1.5, -1.5, 1, -1, 0.25, 1.25, 2, 0.75, 0.25, 1.5];
    expect(values.reduce((a, v) => a + Math.abs(v), 0) / values.length).toBe(1);
    const w = weightOf(values, "F32", 1, values.length);
    const q = quantize(w, { method: "bitnet", groupsize: -1 });
    expect(Array.from(q.codes, (c) => c - 1)).toEqual([0, 0, 1, -1, 1, -1, 0, 1, 1, 1, 0, 1]);
    expect(weightQuantReference(values, "F32").map((v) => Math.sign(v) + 0)).toEqual([
      0, 0, 1, -1, 1, -1, 0, 1, 1, 1, 0, 1,
    ]);
  });

  it("packs the same bytes through quantizePacked, and rejects non-finite weights", () => {
    const w = weightOf(
      Array.from({ length: 256 * 256 }, () => Math.random() - 0.5),
      "BF16",
      256,
      256,
    );
    const q = quantize(w, { method: "bitnet", groupsize: 128 });
    const p = quantizePacked(w, { method: "bitnet", groupsize: 128 });
    expect(p.B).toEqual(packWeights(q.codes, 256, 256));
    expect(p.s).toEqual(packScales(q.scales, 256, 256, 128));
    const bad = weightOf([0.1, Number.NaN, 0.2, 0.3], "F32", 2, 2);
    expect(() => quantize(bad, { method: "bitnet", groupsize: -1, name: "w" })).toThrow(
      /tensor "w" at \[0, 1\]/,
    );
  });
});

describe("packCheckpoint with method bitnet on a packed BitNet checkpoint", () => {
  for (const [linearClass, sharded] of [
    [undefined, false],
    ["autobitlinear", true],
  ] as const) {
    it(`imports every projection exactly (${linearClass ?? "default linear class"}, ${sharded ? "sharded" : "one file"})`, async () => {
      const model = writeBitNetModel(join(root, `in-${linearClass}-${sharded}`), { linearClass, sharded });
      await writeModelFiles(model);
      const out = join(root, `out-${linearClass}-${sharded}`);
      const summary = await packCheckpoint(model.dir, out, { method: "bitnet", groupsize: -1 });
      expect(summary.tensorsPacked).toBe(14);
      expect(summary.tensors.filter((t) => t.from === "bitnet").length).toBe(14);
      expect(summary.tensors.some((t) => t.name.endsWith("weight_scale"))).toBe(false);
      const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
      expect(config.quantization_config.quant_method).toBe("trirun");
      expect(config.quantization_config.method).toBe("bitnet");
      expect(config.hidden_act).toBe("relu2");

      const { checkpoint } = await openTriRunCheckpoint(out);
      try {
        expect(checkpoint.files.names().some((n) => n.endsWith("weight_scale"))).toBe(false);
        expect(checkpoint.metadata.method).toBe("bitnet");
        for (const [module, ref] of model.layers) {
          const layer = await checkpoint.readLayer(module);
          expect([layer.outFeatures, layer.inFeatures]).toEqual([ref.out, ref.inF]);
          const scale = roundToF16(linearClass === "autobitlinear" ? ref.weightScale : 1 / ref.weightScale);
          const w = decodeF16(dequantizeLayer(layer));
          for (let i = 0; i < ref.out * ref.inF; i++) expect(w[i]).toBe(roundToF16(ref.levels[i] * scale));
        }
        const norm = await checkpoint.files.readTensor("model.layers.1.mlp.ffn_sub_norm.weight", "BF16");
        expect(norm.shape).toEqual([344]);
      } finally {
        await checkpoint.close();
      }
    });
  }

  it("explains what is missing instead of copying or guessing", async () => {
    const model = writeBitNetModel(join(root, "in-errors"));
    await writeModelFiles(model);
    const out = join(root, "out-errors");
    const attempt = (options: Parameters<typeof packCheckpoint>[2], dir = model.dir) =>
      packCheckpoint(dir, out, options).then(
        () => undefined,
        (err: unknown) => err,
      );
    const notBitnet = await attempt({ method: "absmean", groupsize: 128 });
    expect(notBitnet).toBeInstanceOf(CheckpointError);
    expect(String(notBitnet)).toMatch(/q_proj\.weight.*packed BitNet.*--method bitnet/);

    const noConfig = writeBitNetModel(join(root, "in-noconfig"), { config: false });
    await writeModelFiles(noConfig);
    expect(String(await attempt({ method: "bitnet", groupsize: 128 }, noConfig.dir))).toMatch(
      /no offline BitNet quantization_config/,
    );
    expect(String(await attempt({ method: "absmean", groupsize: 128 }, noConfig.dir))).toMatch(
      /is U8, not a float weight/,
    );

    const online = writeBitNetModel(join(root, "in-online"), { mode: "online" });
    await writeModelFiles(online);
    expect(String(await attempt({ method: "bitnet", groupsize: 128 }, online.dir))).toMatch(
      /quantization_mode "offline"/,
    );

    const missing = writeBitNetModel(join(root, "in-missing"));
    missing.tensors = missing.tensors.filter((t) => t.name !== "model.layers.1.mlp.up_proj.weight_scale");
    await writeModelFiles(missing);
    expect(String(await attempt({ method: "bitnet", groupsize: 128 }, missing.dir))).toMatch(
      /up_proj\.weight.*without its tensor "model\.layers\.1\.mlp\.up_proj\.weight_scale"/,
    );

    const wide = writeBitNetModel(join(root, "in-wide"));
    const i = wide.tensors.findIndex((t) => t.name === "model.layers.0.self_attn.k_proj.weight_scale");
    wide.tensors[i] = { ...wide.tensors[i], shape: [2], data: encodeBf16([1, 2]) };
    await writeModelFiles(wide);
    expect(String(await attempt({ method: "bitnet", groupsize: 128 }, wide.dir))).toMatch(
      /k_proj\.weight_scale.*must be one float value/,
    );

    const zero = writeBitNetModel(join(root, "in-zero"));
    const j = zero.tensors.findIndex((t) => t.name === "model.layers.0.mlp.down_proj.weight_scale");
    zero.tensors[j] = { ...zero.tensors[j], data: encodeBf16([0]) };
    await writeModelFiles(zero);
    expect(String(await attempt({ method: "bitnet", groupsize: 128, overwrite: true }, zero.dir))).toMatch(
      /down_proj\.weight_scale.*finite non-zero/,
    );

    writeFileSync(
      join(model.dir, "config.json"),
      JSON.stringify({ quantization_config: { quant_method: "bitnet", linear_class: "fancy" } }),
    );
    const badConfig = await attempt({ method: "bitnet", groupsize: 128 });
    expect(badConfig).toBeInstanceOf(CheckpointError);
    expect(String(badConfig)).toMatch(/config\.json.*linear_class/);
  });

  it("quantizes float master weights with the per-tensor bitnet quantizer", async () => {
    const dir = join(root, "in-masters");
    mkdirSync(dir, { recursive: true });
    const values = Array.from({ length: 256 * 128 }, () => (Math.random() - 0.5) * 0.1);
    const w = weightOf(values, "BF16", 256, 128);
    await writeSafetensorsFile(join(dir, "model.safetensors"), [
      {
        name: "model.layers.0.self_attn.q_proj.weight",
        dtype: "BF16",
        shape: [256, 128],
        data: w.data as Uint16Array,
      },
    ]);
    const out = join(root, "out-masters");
    // As an "online" BitNet checkpoint: another method works, with a note pointing at "bitnet".
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ quantization_config: { quant_method: "bitnet", quantization_mode: "online" } }),
    );
    const other = await packCheckpoint(dir, join(root, "out-masters-absmean"), {
      method: "absmean",
      groupsize: 128,
    });
    expect(other.notes.join(" ")).toMatch(
      /BitNet b1\.58 checkpoint \(quantization_mode "online"\); method "bitnet"/,
    );
    const summary = await packCheckpoint(dir, out, { method: "bitnet", groupsize: 128, threads: 2 });
    expect(summary.notes).toEqual([]);
    const { checkpoint } = await openTriRunCheckpoint(out);
    try {
      const got = Array.from(
        decodeF16(dequantizeLayer(await checkpoint.readLayer("model.layers.0.self_attn.q_proj"))),
      );
      expect(got.map((v) => v + 0)).toEqual(weightQuantReference(valuesOf(w), "BF16"));
    } finally {
      await checkpoint.close();
    }
  });
});
