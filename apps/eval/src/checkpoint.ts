import type { LlamaModel } from "./model/llama.js";
import type { Levels } from "./quantize/calibrators.js";
import type { QuantizedLayerRecord } from "./quantize/sequential.js";

export interface CheckpointMeta {
  method: string;
  groupsize: 128 | -1;
  levels: Levels;
  /** The model the checkpoint was made from (file name). */
  source: string;
}

// Bound to @trirun/packing's checkpoint writer/reader when it lands.
export function writeQuantizedCheckpoint(
  _file: string,
  _fp: LlamaModel,
  _layers: QuantizedLayerRecord[],
  _meta: CheckpointMeta,
): number {
  throw new Error("checkpoint: @trirun/packing's checkpoint writer is not available yet");
}

export async function loadQuantizedCheckpoint(
  _file: string,
  _fp?: LlamaModel,
): Promise<{ model: LlamaModel; meta: CheckpointMeta; bytes: number }> {
  throw new Error("checkpoint: @trirun/packing's checkpoint reader is not available yet");
}
