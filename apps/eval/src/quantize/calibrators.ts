import { type QuantMethod, quantize as rtnQuantize } from "@trirun/packing";
import type { QuantizedLayerWeights } from "../model/loaders/linear-factory.js";

export type RtnMethod = Exclude<QuantMethod, "exact">;
export type QuantizationMethod = "gptq" | RtnMethod;
export const QUANTIZATION_METHODS: readonly QuantizationMethod[] = ["gptq", "absmean", "absmax", "mse"];

/** Levels a layer is quantized to: ternary {-1, 0, 1} or full 2-bit {-1, 0, 1, 2}. */
export type Levels = "ternary" | "int2";

/** Collects a layer's calibration inputs, then quantizes its weight. */
export interface LayerCalibrator {
  readonly needsInputs: boolean;
  observe(input: Float32Array, rows: number): void | Promise<void>;
  /** weight: (out, in) fp32. */
  quantize(weight: Float32Array): Promise<QuantizedLayerWeights & { loss?: number }>;
}

export interface CalibratorOptions {
  inFeatures: number;
  outFeatures: number;
  groupsize: 128 | -1;
  name: string;
}

/** Round-to-nearest with one of @trirun/packing's quantizers; ignores calibration data. */
export function rtnCalibrator(method: RtnMethod, o: CalibratorOptions): LayerCalibrator {
  return {
    needsInputs: false,
    observe() {},
    async quantize(weight) {
      const q = rtnQuantize(
        { data: weight, dtype: "F32", outFeatures: o.outFeatures, inFeatures: o.inFeatures },
        { method, groupsize: o.groupsize, name: o.name },
      );
      return {
        codes: q.codes,
        scales: q.scales,
        groupsize: o.groupsize,
        inFeatures: o.inFeatures,
        outFeatures: o.outFeatures,
      };
    },
  };
}
