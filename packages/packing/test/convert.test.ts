import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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
import {
  openCheckpoint,
  openTriRunCheckpoint,
  type PackCheckpointOptions,
  packCheckpoint,
  unpackCheckpoint,
  writeSafetensorsFile,
} from "../src/node/index.js";
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
    // The error names the file and the tensor; the folder the run created goes again.
    await expect(packCheckpoint(model.dir, out, { method: "exact", groupsize: 128 })).rejects.toThrow(
      /model\.safetensors: tensor "model.layers.0.self_attn.q_proj.weight" at \[\d+, \d+\]: value .* is not on the grid/,
    );
    expect(existsSync(out)).toBe(false);
    // A folder that existed keeps what it had, and gets no partial file.
    mkdirSync(out);
    writeFileSync(join(out, "notes.txt"), "mine");
    await expect(packCheckpoint(model.dir, out, { method: "exact", groupsize: 128 })).rejects.toThrow(
      /not on the grid/,
    );
    expect(readdirSync(out)).toEqual(["notes.txt"]);
    await packCheckpoint(model.dir, out, { method: "absmean", groupsize: 128 });
    await expect(packCheckpoint(model.dir, out, { method: "absmean", groupsize: 128 })).rejects.toThrow(
      /already exists/,
    );
    await packCheckpoint(model.dir, out, { method: "absmean", groupsize: 128, overwrite: true });
    await expect(packCheckpoint(model.dir, model.dir, { method: "absmean", groupsize: 128 })).rejects.toThrow(
      /must differ/,
    );
  });

  it("never leaves a mixed output folder: other files it would replace, or another checkpoint, need overwrite", async () => {
    const sharded = await writeTinyModel(join(root, "mix-sharded"), { sharded: true });
    const single = await writeTinyModel(join(root, "mix-single"));
    const out = join(root, "mix-out");
    await packCheckpoint(sharded.dir, out, { method: "absmean", groupsize: 128 });
    expect(existsSync(join(out, "model.safetensors.index.json"))).toBe(true);
    // Another checkpoint (the sharded one) is there: refused without overwrite...
    await expect(packCheckpoint(single.dir, out, { method: "absmax", groupsize: 128 })).rejects.toThrow(
      /another checkpoint is in the output folder|already exists/,
    );
    // ...and replaced whole with it: the stale index and shards go, so readers see the new model.
    await packCheckpoint(single.dir, out, { method: "absmax", groupsize: 128, overwrite: true });
    expect(readdirSync(out).filter((f) => f.includes("safetensors"))).toEqual(["model.safetensors"]);
    const { checkpoint } = await openTriRunCheckpoint(out);
    expect(checkpoint.metadata.method).toBe("absmax");
    expect(checkpoint.modules().length).toBe(single.projections.length);
    await checkpoint.close();

    // A replacement that fails (here: method exact on weights off the grid) leaves the folder as it
    // was: the old checkpoint whole, nothing staged left behind.
    const before = readdirSync(out).sort();
    await expect(
      packCheckpoint(sharded.dir, out, { method: "exact", groupsize: 128, overwrite: true }),
    ).rejects.toThrow(/not on the grid/);
    expect(readdirSync(out).sort()).toEqual(before);
    const kept = await openTriRunCheckpoint(out);
    expect(kept.checkpoint.metadata.method).toBe("absmax");
    await kept.checkpoint.close();

    // config.json and side files of the folder are not replaced silently either.
    const cfgOut = join(root, "mix-cfg");
    mkdirSync(cfgOut);
    writeFileSync(join(cfgOut, "tokenizer.json"), "precious");
    await expect(packCheckpoint(single.dir, cfgOut, { method: "absmean", groupsize: 128 })).rejects.toThrow(
      /tokenizer\.json: already exists/,
    );
    expect(readFileSync(join(cfgOut, "tokenizer.json"), "utf8")).toBe("precious");
    expect(readdirSync(cfgOut)).toEqual(["tokenizer.json"]);

    // An output path that is a file is named as such.
    const file = join(root, "mix-file");
    writeFileSync(file, "");
    await expect(packCheckpoint(single.dir, file, { method: "absmean", groupsize: 128 })).rejects.toThrow(
      /must be a folder/,
    );
  });

  it("refuses an input that is already a TriRun checkpoint", async () => {
    const model = await writeTinyModel(join(root, "twice"));
    const once = join(root, "twice-once");
    await packCheckpoint(model.dir, once, { method: "absmean", groupsize: 128 });
    await expect(
      packCheckpoint(once, join(root, "twice-twice"), { method: "absmean", groupsize: 128 }),
    ).rejects.toThrow(/already a TriRun checkpoint/);
    expect(existsSync(join(root, "twice-twice"))).toBe(false);
  });

  it("checks its options before reading or writing anything", async () => {
    const model = await writeTinyModel(join(root, "opts"));
    const out = join(root, "opts-out");
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ method: "foo", groupsize: 128 }, /options.method must be one of/],
      [{ method: "absmean", groupsize: 64 }, /options.groupsize must be 128 or -1/],
      [{ method: "absmean", groupsize: "128" }, /options.groupsize/],
      [{ method: "absmean", groupsize: 128, include: [3] }, /options.include/],
      [{ method: "absmean", groupsize: 128, exclude: "" }, /options.exclude/],
      [{ method: "absmean", groupsize: 128, threads: 0 }, /options.threads/],
    ];
    for (const [options, message] of bad) {
      for (const dryRun of [true, false]) {
        await expect(
          packCheckpoint(model.dir, out, { ...(options as unknown as PackCheckpointOptions), dryRun }),
        ).rejects.toThrow(message);
        expect(existsSync(out)).toBe(false);
      }
    }
    // One glob as a string is that glob, not its characters.
    const dry = await packCheckpoint(model.dir, out, {
      method: "absmean",
      groupsize: 128,
      include: "*.q_proj" as unknown as string[],
      dryRun: true,
    });
    expect(dry.tensors.filter((t) => t.action === "pack").map((t) => t.name)).toEqual([
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.1.self_attn.q_proj.weight",
    ]);
  });

  it("refuses a selected projection that is not a float weight instead of copying it unquantized", async () => {
    const dir = join(root, "int-weight");
    mkdirSync(dir);
    await writeSafetensorsFile(join(dir, "model.safetensors"), [
      {
        name: "model.layers.0.self_attn.q_proj.weight",
        dtype: "I32",
        shape: [4, 4],
        data: new Int32Array(16),
      },
      { name: "model.norm.weight", dtype: "F32", shape: [4], data: new Float32Array(4) },
    ]);
    await expect(
      packCheckpoint(dir, join(root, "int-out"), { method: "absmean", groupsize: 128, dryRun: true }),
    ).rejects.toThrow(/q_proj.weight": is I32, not a weight type the quantizers read/);
    // Excluded, it is copied as it is.
    const dry = await packCheckpoint(dir, join(root, "int-out"), {
      method: "absmean",
      groupsize: 128,
      exclude: ["*.q_proj"],
      dryRun: true,
    });
    expect(dry.tensors.map((t) => t.action)).toEqual(["copy", "copy"]);
  });

  it("refuses to unpack a checkpoint whose plain tensor collides with a packed module", async () => {
    const model = await writeTinyModel(join(root, "dup"));
    const packed = join(root, "dup-packed");
    await packCheckpoint(model.dir, packed, { method: "absmean", groupsize: 128, include: ["*.q_proj"] });
    // Add "<module>.weight" beside the module's .B/.s.
    const ckpt = await openCheckpoint(packed);
    const tensors = [];
    for (const name of ckpt.names())
      tensors.push({ ...ckpt.info(name), name, data: (await ckpt.readTensor(name)).data });
    const reader = ckpt.shards[0];
    const metadata = reader.metadata;
    await ckpt.close();
    const module = "model.layers.0.self_attn.q_proj";
    tensors.push({ name: `${module}.weight`, dtype: "F16", shape: [2], data: new Uint16Array(2) });
    const dupDir = join(root, "dup-bad");
    mkdirSync(dupDir);
    await writeSafetensorsFile(join(dupDir, "model.safetensors"), tensors as TensorToWrite[], metadata);
    await expect(unpackCheckpoint(dupDir, join(root, "dup-out"))).rejects.toThrow(/would be written twice/);
    expect(existsSync(join(root, "dup-out"))).toBe(false);
  });
});
