/**
 * The slice of the @trirun/layers `Linear` contract the model relies on. Kept as one module so the model
 * code names a single type whatever backend the layers run on.
 */
export interface HostTensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

export interface ModelLinear {
  readonly kind: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly byteLength: number;
  forward(x: HostTensor): unknown;
  dispose(): void;
}

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
