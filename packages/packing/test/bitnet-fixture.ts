import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bf16BitsToNumber,
  buildShardIndex,
  encodeBf16,
  numberToBf16Bits,
  type TensorToWrite,
} from "../src/index.js";
import { writeSafetensorsFile } from "../src/node/index.js";

const randomInt = (n: number) => Math.floor(Math.random() * n);

/** transformers' `pack_weights`, transcribed: (out, in) levels -> (ceil(out/4), in) bytes. */
export function hfPackWeights(levels: Int8Array, out: number, inF: number): Uint8Array {
  const rowDim = Math.ceil(out / 4);
  const packed = new Uint8Array(rowDim * inF);
  const it = Math.min(4, Math.floor(out / rowDim) + 1);
  for (let i = 0; i < it; i++) {
    const start = i * rowDim;
    const end = Math.min(start + rowDim, out);
    for (let r = 0; r < end - start; r++)
      for (let c = 0; c < inF; c++) packed[r * inF + c] |= (levels[(start + r) * inF + c] + 1) << (2 * i);
  }
  return packed;
}

/** Random ternary levels (out, in), with a few level-2 values when asked. */
export function randomLevels(out: number, inF: number, withTwos = false): Int8Array {
  return Int8Array.from({ length: out * inF }, () =>
    withTwos && Math.random() < 0.02 ? 2 : randomInt(3) - 1,
  );
}

export interface BitNetModel {
  dir: string;
  tensors: TensorToWrite[];
  /** When sharded: the tensors of each shard (weights and norms, then the weight_scales). */
  shards?: TensorToWrite[][];
  /** module -> (levels, weight_scale value) */
  layers: Map<string, { levels: Int8Array; out: number; inF: number; weightScale: number }>;
}

/**
 * A tiny BitNet b1.58 checkpoint in transformers' offline format: packed U8 projections with a
 * bf16 weight_scale each, sub-norms, a bf16 embedding; optionally sharded with the scales in the
 * second shard (so that a layer's two tensors are in different files).
 */
export function writeBitNetModel(
  dir: string,
  options: { linearClass?: string; mode?: string; sharded?: boolean; config?: boolean } = {},
): BitNetModel {
  mkdirSync(dir, { recursive: true });
  const hidden = 128;
  const mlp = 344; // not a multiple of 256: padded
  const tensors: TensorToWrite[] = [];
  const scales: TensorToWrite[] = [];
  const layers: BitNetModel["layers"] = new Map();
  const bf16 = (values: number[]) => encodeBf16(values);
  tensors.push({
    name: "model.embed_tokens.weight",
    dtype: "BF16",
    shape: [64, hidden],
    data: bf16(Array.from({ length: 64 * hidden }, () => Math.random() - 0.5)),
  });
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}`;
    const linear = (module: string, out: number, inF: number) => {
      const levels = randomLevels(out, inF);
      const weightScale = bf16BitsToNumber(
        numberToBf16Bits(
          options.linearClass === "autobitlinear" ? 0.02 + Math.random() * 0.02 : 30 + Math.random() * 30,
        ),
      );
      tensors.push({
        name: `${module}.weight`,
        dtype: "U8",
        shape: [out / 4, inF],
        data: hfPackWeights(levels, out, inF),
      });
      scales.push({ name: `${module}.weight_scale`, dtype: "BF16", shape: [1], data: bf16([weightScale]) });
      layers.set(module, { levels, out, inF, weightScale });
    };
    for (const proj of ["q", "k", "v", "o"]) linear(`${p}.self_attn.${proj}_proj`, hidden, hidden);
    for (const norm of [`${p}.input_layernorm`, `${p}.self_attn.attn_sub_norm`, `${p}.mlp.ffn_sub_norm`]) {
      const width = norm.endsWith("ffn_sub_norm") ? mlp : hidden;
      tensors.push({
        name: `${norm}.weight`,
        dtype: "BF16",
        shape: [width],
        data: bf16(Array(width).fill(1)),
      });
    }
    linear(`${p}.mlp.gate_proj`, mlp, hidden);
    linear(`${p}.mlp.up_proj`, mlp, hidden);
    linear(`${p}.mlp.down_proj`, hidden, mlp);
  }
  tensors.push({
    name: "model.norm.weight",
    dtype: "BF16",
    shape: [hidden],
    data: bf16(Array(hidden).fill(1)),
  });
  if (options.config !== false) {
    const quantization: Record<string, string> = {
      quant_method: "bitnet",
      quantization_mode: options.mode ?? "offline",
    };
    if (options.linearClass !== undefined) quantization.linear_class = options.linearClass;
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        architectures: ["BitNetForCausalLM"],
        model_type: "bitnet",
        hidden_act: "relu2",
        quantization_config: quantization,
      }),
    );
  }
  const model: BitNetModel = { dir, tensors: [...tensors, ...scales], layers };
  if (options.sharded) model.shards = [tensors, scales];
  return model;
}

export async function writeModelFiles(model: BitNetModel): Promise<void> {
  if (model.shards === undefined) {
    await writeSafetensorsFile(join(model.dir, "model.safetensors"), model.tensors);
    return;
  }
  const map = new Map<string, string>();
  for (const [i, shard] of model.shards.entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensorsFile(join(model.dir, file), shard);
    for (const t of shard) map.set(t.name, file);
  }
  writeFileSync(join(model.dir, "model.safetensors.index.json"), buildShardIndex(map, 0));
}
