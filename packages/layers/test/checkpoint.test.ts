import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError, packCodes } from "@trirun/packing";
import {
  openCheckpoint,
  packCheckpoint,
  writeSafetensorsFile,
  writeTriRunCheckpoint,
} from "@trirun/packing/node";
import { afterAll, describe, expect, it } from "vitest";
import { Float16Linear, hostTensor, loadTriRunCheckpoint, TriRunLinear } from "../src/index.js";
import {
  halfToNumber,
  makeRng,
  randomFloats,
  randomHalfBits,
  randomQuantized,
  referenceDequantize,
} from "./helpers.js";
import { hasStudentModel, studentModelDir } from "./shared.js";

const rng = makeRng();
const dir = mkdtempSync(join(tmpdir(), "trirun-layers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("loadTriRunCheckpoint", () => {
  it("builds layers (awkward shapes, biases, an fp16 head) and returns the other tensors", async () => {
    const shapes = [
      ["blocks.0.up", 64, 172],
      ["blocks.0.down", 172, 64],
      ["blocks.1.proj", 256, 256],
    ] as const;
    const naturals = shapes.map(([, inF, outF]) => randomQuantized(rng, inF, outF, 128));
    const layers = shapes.map(([module, inF, outF], i) =>
      packCodes(module, naturals[i].codes, naturals[i].scales, inF, outF, 128),
    );
    const upBias = Uint16Array.from({ length: 172 }, () => randomHalfBits(rng));
    const headBits = Uint16Array.from({ length: 32 * 64 }, () => randomHalfBits(rng, 0.1));
    const embed = randomFloats(rng, 10 * 64);
    const path = join(dir, "small.safetensors");
    await writeTriRunCheckpoint(path, {
      layers,
      groupsize: 128,
      method: "absmean",
      tensors: [
        { name: "blocks.0.up.bias", dtype: "F16", shape: [172], data: upBias },
        { name: "embed.weight", dtype: "F32", shape: [10, 64], data: embed },
        { name: "head.weight", dtype: "F16", shape: [32, 64], data: headBits },
      ],
    });
    const loaded = await loadTriRunCheckpoint(path, {
      backend: "cpu",
      float16Modules: (module) => module === "head",
    });
    expect([...loaded.layers.keys()]).toEqual(["blocks.0.up", "blocks.0.down", "blocks.1.proj", "head"]);
    expect(loaded.quantization).toEqual({ groupsize: 128, method: "absmean" });
    expect([...loaded.tensors.keys()]).toEqual(["embed.weight"]);
    expect(Array.from(loaded.tensors.get("embed.weight")!.data as Float32Array)).toEqual(Array.from(embed));
    shapes.forEach(([module, inF, outF], i) => {
      const layer = loaded.layers.get(module) as TriRunLinear;
      expect(layer).toBeInstanceOf(TriRunLinear);
      expect([layer.inFeatures, layer.outFeatures]).toEqual([inF, outF]);
      expect(Array.from(layer.dequantize())).toEqual(
        Array.from(referenceDequantize(naturals[i].codes, naturals[i].scales, inF, outF, 128)),
      );
    });
    const up = loaded.layers.get("blocks.0.up") as TriRunLinear;
    expect(Array.from(up.bias!)).toEqual(Array.from(upBias, halfToNumber));
    const head = loaded.layers.get("head") as Float16Linear;
    expect(head).toBeInstanceOf(Float16Linear);
    expect(Array.from(head.weight)).toEqual(Array.from(headBits, halfToNumber));
    // Without the filter the head stays a tensor.
    const plain = await loadTriRunCheckpoint(path, { backend: "cpu" });
    expect([...plain.tensors.keys()].sort()).toEqual(["embed.weight", "head.weight"]);
  });

  it("reports missing, non-TriRun and truncated files with a code naming the file", async () => {
    await expect(loadTriRunCheckpoint(join(dir, "missing.safetensors"))).rejects.toBeInstanceOf(
      CheckpointError,
    );
    const plainPath = join(dir, "plain.safetensors");
    await writeSafetensorsFile(plainPath, [
      { name: "w", dtype: "F32", shape: [2], data: new Float32Array(2) },
    ]);
    await expect(loadTriRunCheckpoint(plainPath)).rejects.toMatchObject({ code: "ERR_TRIRUN_BAD_METADATA" });
    const truncated = join(dir, "truncated.safetensors");
    writeFileSync(truncated, new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123]));
    await expect(loadTriRunCheckpoint(truncated)).rejects.toHaveProperty("code");
    await expect(loadTriRunCheckpoint("" as string)).rejects.toBeInstanceOf(TypeError);
  });
});

describe.skipIf(!hasStudentModel)("trirun-pack output of the stories-student-3M model", () => {
  if (!hasStudentModel)
    console.log("shared/models/stories-student-3M not found: skipping the real-model test");

  it("loads every packed module; each equals quantizing the original weight directly", async () => {
    const out = join(dir, "student-trirun");
    await packCheckpoint(studentModelDir, out, { method: "absmean", groupsize: 128 });
    const loaded = await loadTriRunCheckpoint(out, {
      backend: "cpu",
      float16Modules: (m) => m === "lm_head",
    });
    expect(loaded.config?.hidden_size).toBe(256);
    const original = await openCheckpoint(studentModelDir);
    try {
      let checked = 0;
      for (const [module, layer] of loaded.layers) {
        if (!(layer instanceof TriRunLinear)) continue;
        const stored = await original.readTensor(`${module}.weight`, "F16");
        const fp16 = Float16Linear.fromWeights(stored.data, layer.outFeatures, layer.inFeatures, undefined, {
          backend: "cpu",
        });
        const direct = TriRunLinear.quantize(fp16, "absmean", 128);
        expect(Array.from(layer.dequantize()), module).toEqual(Array.from(direct.dequantize()));
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(4 * 7);
      expect(loaded.layers.get("lm_head")).toBeInstanceOf(Float16Linear);
      expect(loaded.tensors.has("model.embed_tokens.weight")).toBe(true);
      // A forward pass through one loaded layer, on a few hundred tokens.
      const q = loaded.layers.get("model.layers.0.self_attn.q_proj")!;
      const x = hostTensor([300, q.inFeatures], randomFloats(rng, 300 * q.inFeatures));
      expect(q.forward(x).shape).toEqual([300, q.outFeatures]);
    } finally {
      await original.close();
    }
  });
});
