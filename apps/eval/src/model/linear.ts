import { Float16Linear, type HostTensor, type Linear } from "@trirun/layers";

/** Every linear layer of the model is a @trirun/layers module (TriRunLinear or Float16Linear). */
export type ModelLinear = Linear;
export type { HostTensor };

/** Runs a linear layer on host activations (rows, inFeatures) and checks it answered with a host tensor. */
export function forwardHost(
  layer: ModelLinear,
  data: Float32Array,
  rows: number,
  path: string,
): Float32Array {
  if (data.length !== rows * layer.inFeatures) {
    throw new RangeError(`${path}: input has ${data.length} values, expected ${rows} x ${layer.inFeatures}`);
  }
  // CPU layers return host tensors; CUDA layers do too when given one (upload, run, download).
  const out = layer.forward({ data, shape: [rows, layer.inFeatures] }) as Partial<HostTensor> | null;
  if (!out || !(out.data instanceof Float32Array)) {
    throw new TypeError(`${path}: a host (CPU) linear layer was expected to return a Float32Array tensor`);
  }
  if (out.data.length !== rows * layer.outFeatures) {
    throw new RangeError(
      `${path}: output has ${out.data.length} values, expected ${rows} x ${layer.outFeatures}`,
    );
  }
  return out.data;
}

/**
 * The (out, in) fp32 host weight of an unquantized layer, or undefined for a quantized one; a CUDA
 * Float16Linear's is downloaded and not kept (readWeight), so a pass over a model holds one layer's
 * copy at a time.
 */
export function hostWeightOf(layer: ModelLinear | undefined): Float32Array | undefined {
  if (layer instanceof Float16Linear) return layer.readWeight();
  const weight = (layer as { weight?: unknown } | undefined)?.weight;
  return weight instanceof Float32Array ? weight : undefined;
}
