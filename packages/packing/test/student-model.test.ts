import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeF16 } from "../src/index.js";
import { openCheckpoint } from "../src/node/index.js";
import { hasStudentModel, studentModelDir } from "./shared.js";

if (!hasStudentModel) console.warn(`student model not found at ${studentModelDir}: skipping`);

describe.skipIf(!hasStudentModel)("stories-student-3M (Hugging Face fp16 safetensors)", () => {
  it("lists every tensor with shapes matching config.json and reads them lazily", async () => {
    const config = JSON.parse(readFileSync(join(studentModelDir, "config.json"), "utf8"));
    const ckpt = await openCheckpoint(studentModelDir);
    const names = ckpt.names();
    expect(names.length).toBe(3 + 9 * config.num_hidden_layers);
    const h = config.hidden_size;
    const m = config.intermediate_size;
    const expected: Record<string, number[]> = {
      "model.embed_tokens.weight": [config.vocab_size, h],
      "lm_head.weight": [config.vocab_size, h],
      "model.norm.weight": [h],
      "model.layers.0.self_attn.q_proj.weight": [h, h],
      "model.layers.3.mlp.gate_proj.weight": [m, h],
      "model.layers.3.mlp.down_proj.weight": [h, m],
    };
    for (const [name, shape] of Object.entries(expected)) {
      expect(ckpt.info(name).shape).toEqual(shape);
      expect(ckpt.info(name).dtype).toBe("F16");
    }
    // Compare one tensor with the bytes at the offset an independent header parse gives.
    const raw = readFileSync(join(studentModelDir, "model.safetensors"));
    const headerLength = Number(raw.readBigUInt64LE(0));
    const header = JSON.parse(raw.subarray(8, 8 + headerLength).toString("utf8"));
    const name = "model.layers.2.mlp.up_proj.weight";
    const [begin, end] = header[name].data_offsets as [number, number];
    const tensor = await ckpt.readTensor(name, "F16");
    expect(
      Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength).equals(
        raw.subarray(8 + headerLength + begin, 8 + headerLength + end),
      ),
    ).toBe(true);
    const values = decodeF16(tensor.data);
    const std = Math.sqrt(values.reduce((a, v) => a + v * v, 0) / values.length);
    expect(values.every(Number.isFinite)).toBe(true);
    expect(std).toBeGreaterThan(1e-3);
    await ckpt.close();
  });
});
