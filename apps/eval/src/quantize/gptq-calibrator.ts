import type { CalibratorOptions, LayerCalibrator, Levels } from "./calibrators.js";

export interface GptqSettings {
  levels: Levels;
  /** Hessian dampening as a fraction of its mean diagonal. */
  damp?: number;
}

// Bound to @trirun/gptq when it lands.
export function gptqCalibrator(_o: CalibratorOptions, _s: GptqSettings): LayerCalibrator {
  throw new Error("gptq: @trirun/gptq is not available yet");
}
