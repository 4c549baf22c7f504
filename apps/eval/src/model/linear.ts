import type { HostTensor, Linear } from "@trirun/layers";

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
