import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  decodeBf16,
  dequantizeToF16,
  type FloatDType,
  quantize,
  type TensorToWrite,
  tensorNamesOf,
  type WeightMatrix,
} from "../src/index.js";
import { openCheckpoint, openTriRunCheckpoint, packCheckpoint, unpackCheckpoint } from "../src/node/index.js";
import { tempDir } from "./helpers.js";
import { writeTinyModel } from "./model-fixture.js";

const root = tempDir();

function asWeight(t: TensorToWrite): WeightMatrix {
  const [out, inF] = t.shape as [number, number];
  return { data: t.data as Uint16Array, dtype: t.dtype as FloatDType, outFeatures: out, inFeatures: inF };
}

/** The expected dequantized weight: quantize the original, dequantize, no packing involved. */
function expectedDequantized(
  t: TensorToWrite,
  method: "absmean" | "absmax" | "mse" | "exact",
  groupsize: 128 | -1,
) {
  const q = quantize(asWeight(t), { method, groupsize });
  return dequantizeToF16(q.codes, q.scales, t.shape[1], t.shape[0], q.groupLength);
}

describe("packCheckpoint / unpackCheckpoint", () => {
  for (const sharded of [false, true]) {
    it(`packs the default projections of a ${sharded ? "sharded" : "single-file"} checkpoint and unpacks them`, async () => {
      const model = await writeTinyModel(join(root, `in-${sharded}`), { sharded });
      const out = join(root, `out-${sharded}`);
      const progress: string[] = [];
      const summary = await packCheckpoint(model.dir, out, {
        method: "absmean",
        groupsize: 128,
        onProgress: (p) => progress.push(`${p.done}/${p.total} ${p.action}`),
      });
      expect(summary.tensorsPacked).toBe(model.projections.length);
      expect(summary.tensorsKept).toBe(model.tensors.length - model.projections.length);
      expect(progress.length).toBe(model.tensors.length);
      expect(summary.bytesAfter).toBeLessThan(summary.bytesBefore);
      expect(existsSync(join(out, "tokenizer.json"))).toBe(true);
      expect(existsSync(join(out, "model.safetensors.index.json"))).toBe(sharded);
      expect(readdirSync(out).some((f) => f.endsWith(".partial"))).toBe(false);
      const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
      expect(config.quantization_config.quant_method).toBe("trirun");
      expect(config.quantization_config.group_size).toBe(128);
      // out = 128 is below the kernel's n multiple of 256: every projection is padded.
      expect(Object.keys(config.quantization_config.padded_modules).sort()).toEqual(
        [...model.projections].sort(),
      );

      const { checkpoint } = await openTriRunCheckpoint(out);
      expect(
        checkpoint
          .modules()
          .map((m) => m.module)
          .sort(),
      ).toEqual([...model.projections].sort());
      const byName = new Map(model.tensors.map((t) => [t.name, t]));
      for (const name of checkpoint.passthroughNames()) {
        const original = byName.get(name)!;
        expect(
          Buffer.from(await checkpoint.files.readBytes(name)).equals(Buffer.from(original.data.buffer)),
        ).toBe(true);
      }
      const up = checkpoint.module("model.layers.1.mlp.up_proj")!;
      expect([up.inFeatures, up.outFeatures, up.k, up.n]).toEqual([128, 320, 128, 512]);
      await checkpoint.close();

      const back = join(root, `back-${sharded}`);
      const unpacked = await unpackCheckpoint(out, back);
      expect(unpacked.tensorsPacked).toBe(model.projections.length);
      const restored = await openCheckpoint(back);
      expect(new Set(restored.names())).toEqual(new Set(model.tensors.map((t) => t.name)));
      for (const module of model.projections) {
        const original = byName.get(tensorNamesOf(module).weight)!;
        const got = await restored.readTensor(tensorNamesOf(module).weight, "F16");
        expect(got.shape).toEqual(original.shape);
        expect(Array.from(got.data)).toEqual(Array.from(expectedDequantized(original, "absmean", 128)));
      }
      await restored.close();
      expect(JSON.parse(readFileSync(join(back, "config.json"), "utf8")).quantization_config).toBeUndefined();
    });
  }

  it("restores fake-quantized fp16 weights bit for bit with method exact", async () => {
    const model = await writeTinyModel(join(root, "fq"), { fakeQuantized: true });
    const out = join(root, "fq-out");
    await packCheckpoint(model.dir, out, { method: "exact", groupsize: 128 });
    const back = join(root, "fq-back");
    await unpackCheckpoint(out, back);
    const a = readFileSync(join(model.dir, "model.safetensors"));
    const b = readFileSync(join(back, "model.safetensors"));
    const original = await openCheckpoint(model.dir);
    const restored = await openCheckpoint(back);
    for (const name of original.names()) {
      expect(
        Buffer.from(await restored.readBytes(name)).equals(Buffer.from(await original.readBytes(name))),
      ).toBe(true);
    }
    expect(b.length).toBe(a.length);
    await original.close();
    await restored.close();
  });

  it("honours include/exclude, dry runs and groupsize -1", async () => {
    const model = await writeTinyModel(join(root, "sel"));
    const dry = await packCheckpoint(model.dir, join(root, "sel-dry"), {
      method: "absmax",
      groupsize: -1,
      exclude: ["*.mlp.down_proj", "model.layers.1.*"],
      dryRun: true,
    });
    expect(existsSync(join(root, "sel-dry"))).toBe(false);
    const packed = dry.tensors.filter((t) => t.action === "pack").map((t) => t.name);
    expect(packed.sort()).toEqual(
      ["q", "k", "v", "o"]
        .map((p) => `model.layers.0.self_attn.${p}_proj.weight`)
        .concat(["model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"])
        .sort(),
    );
    const out = join(root, "sel-out");
    await packCheckpoint(model.dir, out, { method: "absmax", groupsize: -1, include: ["*.mlp.gate_proj"] });
    const { checkpoint } = await openTriRunCheckpoint(out);
    expect(checkpoint.metadata.groupsize).toBe(-1);
    expect(checkpoint.modules().map((m) => m.module)).toEqual([
      "model.layers.0.mlp.gate_proj",
      "model.layers.1.mlp.gate_proj",
    ]);
    const gate = model.tensors.find((t) => t.name === "model.layers.1.mlp.gate_proj.weight")!;
    expect(gate.dtype).toBe("BF16");
    const layer = await checkpoint.readLayer("model.layers.1.mlp.gate_proj");
    expect(layer.s.length).toBe(layer.n);
    // The bf16 source is quantized from its exact values.
    const q = quantize(
      { data: decodeBf16(gate.data as Uint16Array), dtype: "F32", outFeatures: 320, inFeatures: 128 },
      { method: "absmax", groupsize: -1 },
    );
    const { unpackLayer } = await import("../src/index.js");
    expect(Buffer.from(unpackLayer(layer).codes).equals(Buffer.from(q.codes))).toBe(true);
    await checkpoint.close();
  });

  it("refuses to overwrite, and leaves no partial file when a tensor fails", async () => {
    const model = await writeTinyModel(join(root, "fail"));
    const out = join(root, "fail-out");
    await expect(packCheckpoint(model.dir, out, { method: "exact", groupsize: 128 })).rejects.toThrow(
      /tensor "model.layers.0.self_attn.q_proj.weight" at \[\d+, \d+\]: value .* is not on the grid/,
    );
    expect(readdirSync(out).filter((f) => f.includes("safetensors"))).toEqual([]);
    await packCheckpoint(model.dir, out, { method: "absmean", groupsize: 128 });
    await expect(packCheckpoint(model.dir, out, { method: "absmean", groupsize: 128 })).rejects.toThrow(
      /already exists/,
    );
    await packCheckpoint(model.dir, out, { method: "absmean", groupsize: 128, overwrite: true });
    await expect(packCheckpoint(model.dir, model.dir, { method: "absmean", groupsize: 128 })).rejects.toThrow(
      /must differ/,
    );
  });
});
