/**
 * `loadTriRunCheckpoint`: builds `TriRunLinear`s from a `trirun-pack` output (through the
 * `@trirun/packing` checkpoint reader) and returns every other tensor as it is stored.
 */
import { decodeBf16, decodeF16, type SafetensorsDType, type Tensor as StoredTensor } from "@trirun/packing";
import { openTriRunCheckpoint } from "@trirun/packing/node";
import { resolveBackend } from "./backend.js";
import { Float16Linear } from "./float16-linear.js";
import { TriRunLinear } from "./trirun-linear.js";
import type { Backend, Linear } from "./types.js";

export interface LoadCheckpointOptions {
  /** Backend of the layers; default: CUDA when usable, else CPU. */
  backend?: Backend;
  /**
   * Unquantized modules to build as `Float16Linear`s from their 2-D `<module>.weight` (and
   * `<module>.bias`), e.g. `(module) => module === "lm_head"`. Their tensors are then not in `tensors`.
   */
  float16Modules?: (module: string, shape: readonly number[]) => boolean;
}

export interface LoadedCheckpoint {
  /** Module name (e.g. `model.layers.0.mlp.up_proj`) to layer. */
  layers: Map<string, Linear>;
  /** Every tensor that is not part of a layer: embeddings, norms, ... (dtype as stored). */
  tensors: Map<string, StoredTensor>;
  /** The folder's config.json, when there is one. */
  config: Record<string, unknown> | undefined;
  /** Quantization settings recorded in the checkpoint. */
  quantization: { groupsize: 128 | -1; method: string | undefined };
}

const FLOAT_DTYPES: readonly SafetensorsDType[] = ["F16", "BF16", "F32", "F64"];

/** fp32 values of a floating-point tensor, naming the tensor when its dtype is not one. */
function toFloat32(tensor: StoredTensor, name: string, file: string): Float32Array {
  switch (tensor.dtype) {
    case "F16":
      return decodeF16(tensor.data as Uint16Array);
    case "BF16":
      return decodeBf16(tensor.data as Uint16Array);
    case "F32":
      return tensor.data as Float32Array;
    case "F64":
      return Float32Array.from(tensor.data as Float64Array);
    default:
      throw new TypeError(`${file}: tensor "${name}" must be F16, BF16, F32 or F64, got ${tensor.dtype}`);
  }
}

/**
 * Opens a TriRun checkpoint (file, folder or shard index) and builds its layers. A quantized
 * module's `<module>.bias`, when present, becomes the layer's bias. Layers on CUDA upload their
 * weights now; dispose them when done.
 * @throws packing's `CheckpointError` (with a `code`) for missing, truncated or inconsistent files.
 */
export async function loadTriRunCheckpoint(
  path: string,
  opts: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  if (typeof path !== "string" || path === "") throw new TypeError("path must be a non-empty string");
  const backend = resolveBackend(opts.backend);
  const { checkpoint, config } = await openTriRunCheckpoint(path);
  const layers = new Map<string, Linear>();
  const tensors = new Map<string, StoredTensor>();
  const file = checkpoint.files.shards[0]?.file ?? path;
  try {
    const consumed = new Set<string>();
    const readBias = async (module: string): Promise<Float32Array | undefined> => {
      const name = `${module}.bias`;
      if (!checkpoint.files.has(name)) return undefined;
      consumed.add(name);
      return toFloat32(await checkpoint.files.readTensor(name), name, file);
    };
    for (const info of checkpoint.modules()) {
      const packed = await checkpoint.readLayer(info.module);
      const bias = await readBias(info.module);
      layers.set(info.module, TriRunLinear.fromPacked({ ...packed, bias }, { backend }));
    }
    const filter = opts.float16Modules;
    for (const name of checkpoint.passthroughNames()) {
      if (consumed.has(name)) continue;
      const info = checkpoint.files.info(name);
      if (
        filter !== undefined &&
        name.endsWith(".weight") &&
        info.shape.length === 2 &&
        FLOAT_DTYPES.includes(info.dtype)
      ) {
        const module = name.slice(0, -".weight".length);
        if (filter(module, info.shape)) {
          const stored = await checkpoint.files.readTensor(name);
          const [outFeatures, inFeatures] = info.shape;
          const weight =
            stored.dtype === "F16" ? (stored.data as Uint16Array) : toFloat32(stored, name, file);
          const bias = await readBias(module);
          layers.set(module, Float16Linear.fromWeights(weight, outFeatures, inFeatures, bias, { backend }));
          consumed.add(name);
        }
      }
    }
    for (const name of checkpoint.passthroughNames()) {
      if (!consumed.has(name)) tensors.set(name, await checkpoint.files.readTensor(name));
    }
  } catch (error) {
    for (const layer of layers.values()) layer.dispose();
    throw error;
  } finally {
    await checkpoint.close();
  }
  return {
    layers,
    tensors,
    config,
    quantization: { groupsize: checkpoint.metadata.groupsize, method: checkpoint.metadata.method },
  };
}
