import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Float16Array } from "@petamoriken/float16";
import { buildShardIndex, encodeBf16, type TensorToWrite } from "../src/index.js";
import { writeSafetensorsFile } from "../src/node/index.js";

export interface TinyModel {
  dir: string;
  tensors: TensorToWrite[];
  /** Module names of the projections (the default include set). */
  projections: string[];
}

const f16 = (values: number[]) => new Uint16Array(new Float16Array(values).buffer);
const randomValues = (count: number, scale = 0.05) =>
  Array.from({ length: count }, () => (Math.random() - 0.5) * 2 * scale);

/**
 * A small random Llama-style checkpoint: hidden 128, MLP 320 (not a multiple of 256, so the
 * MLP projections need padding), 2 layers, fp16 mostly, one bf16 and one fp32 projection.
 * With `fakeQuantized`, projections hold exact fp16 values (code - 1) * scale.
 */
export async function writeTinyModel(
  dir: string,
  options: { sharded?: boolean; fakeQuantized?: boolean } = {},
): Promise<TinyModel> {
  mkdirSync(dir, { recursive: true });
  const hidden = 128;
  const mlp = 320;
  const vocab = 64;
  const tensors: TensorToWrite[] = [];
  const projections: string[] = [];
  const linear = (module: string, out: number, inF: number, dtype: "F16" | "BF16" | "F32") => {
    let values = randomValues(out * inF);
    if (options.fakeQuantized) {
      const scales = Array.from({ length: out * Math.ceil(inF / 128) }, () => 0.01 + Math.random() * 0.02);
      values = values.map((_, i) => {
        const c = Math.floor(i / inF);
        const r = i % inF;
        const level = r % 128 === 0 ? -1 : Math.floor(Math.random() * 3) - 1;
        return level * new Float16Array([scales[c * Math.ceil(inF / 128) + Math.floor(r / 128)]])[0];
      });
    }
    const data =
      dtype === "F16" ? f16(values) : dtype === "BF16" ? encodeBf16(values) : Float32Array.from(values);
    tensors.push({ name: `${module}.weight`, dtype, shape: [out, inF], data });
    projections.push(module);
  };
  tensors.push({
    name: "model.embed_tokens.weight",
    dtype: "F16",
    shape: [vocab, hidden],
    data: f16(randomValues(vocab * hidden)),
  });
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}`;
    tensors.push({
      name: `${p}.input_layernorm.weight`,
      dtype: "F16",
      shape: [hidden],
      data: f16(randomValues(hidden, 1)),
    });
    for (const proj of ["q", "k", "v", "o"]) linear(`${p}.self_attn.${proj}_proj`, hidden, hidden, "F16");
    tensors.push({
      name: `${p}.self_attn.q_proj.bias`,
      dtype: "F16",
      shape: [hidden],
      data: f16(randomValues(hidden)),
    });
    tensors.push({
      name: `${p}.post_attention_layernorm.weight`,
      dtype: "F16",
      shape: [hidden],
      data: f16(randomValues(hidden, 1)),
    });
    linear(`${p}.mlp.gate_proj`, mlp, hidden, options.fakeQuantized ? "F16" : "BF16");
    linear(`${p}.mlp.up_proj`, mlp, hidden, options.fakeQuantized ? "F16" : "F32");
    linear(`${p}.mlp.down_proj`, hidden, mlp, "F16");
  }
  tensors.push({
    name: "model.norm.weight",
    dtype: "F16",
    shape: [hidden],
    data: f16(randomValues(hidden, 1)),
  });
  tensors.push({
    name: "lm_head.weight",
    dtype: "F16",
    shape: [vocab, hidden],
    data: f16(randomValues(vocab * hidden)),
  });

  if (options.sharded) {
    const half = Math.floor(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const map = new Map<string, string>();
    for (const [i, shard] of shards.entries()) {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensorsFile(join(dir, name), shard, { format: "pt" });
      for (const t of shard) map.set(t.name, name);
    }
    writeFileSync(join(dir, "model.safetensors.index.json"), buildShardIndex(map, 0));
  } else {
    await writeSafetensorsFile(join(dir, "model.safetensors"), tensors, { format: "pt" });
  }
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      architectures: ["LlamaForCausalLM"],
      hidden_size: hidden,
      intermediate_size: mlp,
      num_hidden_layers: 2,
    }),
  );
  writeFileSync(join(dir, "tokenizer.json"), '{"dummy": true}');
  return { dir, tensors, projections };
}
