import { type Backend, Float16Linear, TriRunLinear } from "@trirun/layers";
import type { ModelLinear } from "../linear.js";

/** Builds the module for one unquantized linear layer from its (out, in) fp32 weight. */
export type LinearFactory = (
  path: string,
  weight: Float32Array,
  outFeatures: number,
  inFeatures: number,
  bias?: Float32Array,
) => ModelLinear;

/** Quantized weights of one linear layer in natural order (codes (in, out), fp16 scales (in/g, out)). */
export interface QuantizedLayerWeights {
  codes: Uint8Array;
  scales: Uint16Array;
  groupsize: 128 | -1;
  inFeatures: number;
  outFeatures: number;
  /** The layer's bias (out), when it has one. */
  bias?: Float32Array;
}

/** Unquantized layers are @trirun/layers Float16Linear (fp16 weights; CPU or CUDA, chosen by the layers). */
export function float16LinearFactory(backend?: Backend): LinearFactory {
  return (_path, weight, outFeatures, inFeatures, bias) =>
    Float16Linear.fromWeights(weight, outFeatures, inFeatures, bias, { backend });
}

export const defaultLinearFactory: LinearFactory = float16LinearFactory();

/** A TriRunLinear from natural codes and scales (the layer pads to the kernel's tile sizes itself). */
export function quantizedLinear(q: QuantizedLayerWeights, backend?: Backend): ModelLinear {
  return TriRunLinear.fromQuantized(q, { backend });
}
