/**
 * Worker of {@link PackPool}: quantizes and packs one range of output columns of a layer (the
 * rows of a PyTorch-style `(out, in)` weight) and sends back its packed words and scales.
 * Built as its own file (dist/pack-worker.js) so that the pool can start it by path.
 */
import { parentPort } from "node:worker_threads";
import { type FloatDType, type QuantMethod, quantizePacked, type WeightMatrix } from "../quantize.js";

export interface PackJob {
  id: number;
  /** The range's weights, `outFeatures * inFeatures` values of `dtype`. */
  data: ArrayBuffer;
  dtype: FloatDType;
  outFeatures: number;
  inFeatures: number;
  method: QuantMethod;
  groupsize: number;
}

/** A range's packed words and scales, and the group size as `quantizePacked` names it (same k, so the layer's). */
export type PackedPart = { id: number; B: Int32Array; s: Uint16Array; groupsize: number };
export type PackJobResult = PackedPart | { id: number; error: string };

function view(job: PackJob): WeightMatrix["data"] {
  if (job.dtype === "F64") return new Float64Array(job.data);
  if (job.dtype === "F32") return new Float32Array(job.data);
  return new Uint16Array(job.data);
}

parentPort?.on("message", (job: PackJob) => {
  let result: PackJobResult;
  try {
    const packed = quantizePacked(
      { data: view(job), dtype: job.dtype, outFeatures: job.outFeatures, inFeatures: job.inFeatures },
      { method: job.method, groupsize: job.groupsize },
    );
    result = { id: job.id, B: packed.B, s: packed.s, groupsize: packed.groupsize };
  } catch (err) {
    result = { id: job.id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(
    result,
    "B" in result ? [result.B.buffer as ArrayBuffer, result.s.buffer as ArrayBuffer] : [],
  );
});
