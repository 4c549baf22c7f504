/**
 * Linear layers with a bias: a Qwen2-style checkpoint (the Llama block with q/k/v biases), made here from
 * stories-student-3M's weights plus random biases, against the independent fp64 forward; quantized and
 * written as a TriRun checkpoint, it loads back with its biases.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { f16round } from "@petamoriken/float16";
import { encodeF16, type TensorToWrite } from "@trirun/packing";
import { openCheckpoint, writeSafetensorsFile } from "@trirun/packing/node";
import { describe, expect, it } from "vitest";
import { loadQuantizedCheckpoint, writeQuantizedCheckpoint } from "../src/checkpoint.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadHfFolder } from "../src/model/loaders/hf.js";
import { quantizeModel } from "../src/pipeline.js";
import { argmax, haveShared, readStudent, referenceLogits, STUDENT_DIR } from "./helpers/reference-f64.js";
import { tempDir } from "./helpers/tmp.js";

const root = tempDir();

function maxRelDiff(row: ArrayLike<number>, expected: ArrayLike<number>): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < row.length; i++) {
    m = Math.max(m, Math.abs(row[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return m / scale;
}

describe.skipIf(!haveShared)("linear layers with a bias (Qwen2's q/k/v)", () => {
  it("load, run as the fp64 reference defines them, and survive quantization and a checkpoint round trip", async () => {
    const config = JSON.parse(readFileSync(join(STUDENT_DIR, "config.json"), "utf8"));
    const dir = join(root, "qwen2");
    mkdirSync(dir, { recursive: true });
    const src = await openCheckpoint(STUDENT_DIR);
    const tensors: TensorToWrite[] = [];
    for (const name of src.names()) {
      const t = await src.readTensor(name);
      tensors.push({ name, dtype: t.dtype, shape: t.shape, data: t.data });
    }
    await src.close();
    const kvd = (config.hidden_size / config.num_attention_heads) * config.num_key_value_heads;
    const biases: Record<string, Float64Array[]> = { q: [], k: [], v: [] };
    for (let l = 0; l < config.num_hidden_layers; l++) {
      for (const [p, width] of [
        ["q", config.hidden_size],
        ["k", kvd],
        ["v", kvd],
      ] as const) {
        const values = Array.from({ length: width }, () => f16round((Math.random() - 0.5) * 0.6));
        biases[p].push(Float64Array.from(values));
        tensors.push({
          name: `model.layers.${l}.self_attn.${p}_proj.bias`,
          dtype: "F16",
          shape: [width],
          data: encodeF16(values),
        });
      }
    }
    await writeSafetensorsFile(join(dir, "model.safetensors"), tensors);
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ ...config, model_type: "qwen2", architectures: ["Qwen2ForCausalLM"] }),
    );

    const model = await loadHfFolder(dir);
    expect(model.config).toMatchObject({ qkvBias: true });
    expect(model.config.oBias).toBeUndefined();
    const tokens = [1, ...Array.from({ length: 5 }, () => 1 + Math.floor(Math.random() * 511))];
    const logits = new CpuLlamaRuntime(model).forward(tokens);
    const ref = { ...readStudent(dir), bq: biases.q, bk: biases.k, bv: biases.v };
    const expected = referenceLogits(ref, tokens);
    const withoutBias = referenceLogits(readStudent(dir), tokens);
    const V = model.config.vocabSize;
    for (let t = 0; t < tokens.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      expect(maxRelDiff(row, expected[t])).toBeLessThan(1e-4);
      expect(argmax(row)).toBe(argmax(expected[t]));
      expect(maxRelDiff(withoutBias[t], expected[t])).toBeGreaterThan(1e-3); // the biases matter
    }

    const q = await quantizeModel(model, {
      method: "absmean",
      groupsize: 128,
      levels: "ternary",
      calibration: [],
      quiet: true,
    });
    const out = join(root, "qwen2-trirun");
    await writeQuantizedCheckpoint(out, model, q.layers, {
      method: "absmean",
      groupsize: 128,
      levels: "ternary",
      source: "test",
    });
    const written = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(written).toMatchObject({ model_type: "qwen2", attention_bias: false });
    const loaded = (await loadQuantizedCheckpoint(out)).model;
    const a = new CpuLlamaRuntime(q.model).forward(tokens);
    const b = new CpuLlamaRuntime(loaded).forward(tokens);
    expect(maxRelDiff(b, a)).toBeLessThan(1e-5);
    for (const block of loaded.blocks) {
      for (const name of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"] as const) {
        expect((block.linears[name] as { bias?: Float32Array }).bias?.length, name).toBeGreaterThan(0);
      }
    }
  });
});
