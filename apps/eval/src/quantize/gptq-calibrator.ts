import { GPTQ } from "@trirun/gptq";
import type { CalibratorFactory, Levels } from "./calibrators.js";

export interface GptqSettings {
  groupsize: 128 | -1;
  levels: Levels;
  /** Hessian dampening as a fraction of its mean diagonal (GPTQ's default 0.01). */
  damp?: number;
  /** Host threads for GPTQ's own work (default: its choice). */
  threads?: number;
  /** Quantize input features by decreasing Hessian diagonal (whole groups with groupsize 128). */
  actOrder?: boolean;
  /** Let int2 scales be negative, putting the extra level (+2) on the negative side. */
  negativeScales?: boolean;
}

/** GPTQ from @trirun/gptq: one Hessian per input, shared by the layers that read it. */
export function gptqCalibrator(s: GptqSettings): CalibratorFactory {
  return (inFeatures) => {
    const gptq = new GPTQ(inFeatures, { threads: s.threads });
    return {
      needsInputs: true,
      observe: (input, rows) => gptq.addBatch(input, rows),
      async quantize(_path, weight, outFeatures) {
        const r = await gptq.quantize(weight, {
          groupsize: s.groupsize,
          levels: s.levels,
          damp: s.damp,
          actOrder: s.actOrder,
          negativeScales: s.negativeScales,
        });
        return {
          codes: r.codes,
          scales: r.scales,
          groupsize: s.groupsize,
          inFeatures,
          outFeatures,
          loss: r.loss,
        };
      },
      dispose: () => gptq.dispose(),
    };
  };
}
