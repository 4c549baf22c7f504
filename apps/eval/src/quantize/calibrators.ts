import { type QuantMethod, quantize as rtnQuantize } from "@trirun/packing";
import type { QuantizedLayerWeights } from "../model/loaders/linear-factory.js";

export type RtnMethod = Exclude<QuantMethod, "exact">;
export type QuantizationMethod = "gptq" | RtnMethod;
export const QUANTIZATION_METHODS: readonly QuantizationMethod[] = [
  "gptq",
  "absmean",
  "absmax",
  "mse",
  "bitnet",
];

/** Levels a layer is quantized to: ternary {-1, 0, 1} or full 2-bit {-1, 0, 1, 2}. */
export type Levels = "ternary" | "int2";

export type QuantizedWithLoss = QuantizedLayerWeights & { loss?: number };

/**
 * Quantizes the layers that read one input (q/k/v, gate/up, or a single layer): collects that input's
 * calibration activations, then quantizes each layer's weight.
 */
export interface GroupCalibrator {
  readonly needsInputs: boolean;
  observe(input: Float32Array, rows: number): Promise<void>;
  /** weight: (outFeatures, inFeatures) fp32. */
  quantize(path: string, weight: Float32Array, outFeatures: number): Promise<QuantizedWithLoss>;
  dispose(): Promise<void>;
}

export type CalibratorFactory = (inFeatures: number) => GroupCalibrator;

/** Round-to-nearest with one of @trirun/packing's quantizers; needs no calibration data. */
export function rtnCalibrator(method: RtnMethod, groupsize: 128 | -1): CalibratorFactory {
  return (inFeatures) => ({
    needsInputs: false,
    async observe() {},
    async quantize(path, weight, outFeatures) {
      const q = rtnQuantize(
        { data: weight, dtype: "F32", outFeatures, inFeatures },
        { method, groupsize, name: path },
      );
      return { codes: q.codes, scales: q.scales, groupsize, inFeatures, outFeatures };
    },
    async dispose() {},
  });
}
