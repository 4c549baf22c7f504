import { CpuLlamaRuntime } from "../model/cpu-runtime.js";
import { quantizedLinear, type QuantizedLayerWeights } from "../model/loaders/linear-factory.js";
import { type BlockLinearName, type LlamaModel, linearPath } from "../model/llama.js";
import type { LayerCalibrator } from "./calibrators.js";

/**
 * The order layers of a block are quantized in ("true sequential" GPTQ): each group is calibrated on inputs
 * computed through the already-quantized groups before it.
 */
export const SEQUENTIAL_GROUPS: readonly (readonly BlockLinearName[])[] = [
  ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
  ["self_attn.o_proj"],
  ["mlp.gate_proj", "mlp.up_proj"],
  ["mlp.down_proj"],
];

export interface QuantizedLayerRecord extends QuantizedLayerWeights {
  path: string;
  loss?: number;
}

export interface SequentialQuantizeOptions {
  /** Makes the calibrator for one layer. */
  calibrator: (path: string, inFeatures: number, outFeatures: number) => LayerCalibrator;
  /** Calibration token sequences (each at most maxSeqLen long). */
  calibration: Int32Array[];
  /** Reads the (out, in) fp32 weight of an unquantized layer. */
  weightOf: (path: string) => Float32Array;
  onLayer?: (path: string, done: number, total: number) => void;
}

/** A shallow copy whose block linears can be swapped without touching the original model. */
export function cloneModelStructure(model: LlamaModel): LlamaModel {
  return {
    ...model,
    blocks: model.blocks.map((b) => ({ ...b, linears: { ...b.linears } })),
  };
}

/**
 * Quantizes every block linear of `model` block by block: block l is calibrated on the hidden states that
 * the already-quantized blocks 0..l-1 produce. The classifier stays unquantized (as in GPTQ for Llama).
 * Returns the quantized model (sharing embedding, norms and classifier with `model`) and each layer's weights.
 */
export async function quantizeSequential(
  model: LlamaModel,
  opts: SequentialQuantizeOptions,
): Promise<{ model: LlamaModel; layers: QuantizedLayerRecord[] }> {
  const { calibration } = opts;
  const quantized = cloneModelStructure(model);
  const runtime = new CpuLlamaRuntime(quantized);
  const records: QuantizedLayerRecord[] = [];
  const total = model.blocks.length * SEQUENTIAL_GROUPS.flat().length;
  let hidden = calibration.map((seq) => runtime.embed(seq));
  for (let l = 0; l < model.blocks.length; l++) {
    for (const group of SEQUENTIAL_GROUPS) {
      const calibrators = new Map<string, LayerCalibrator>();
      for (const name of group) {
        const layer = quantized.blocks[l].linears[name];
        const path = linearPath(l, name);
        calibrators.set(path, opts.calibrator(path, layer.inFeatures, layer.outFeatures));
      }
      if ([...calibrators.values()].some((c) => c.needsInputs)) {
        if (calibration.length === 0) {
          throw new RangeError(
            `calibration: ${[...calibrators.keys()][0]} needs calibration sequences, got none`,
          );
        }
        // Inputs are queued during the (synchronous) forward and handed over afterwards, in order.
        const queue: [LayerCalibrator, Float32Array, number][] = [];
        runtime.observer = (path, input, rows) => {
          const c = calibrators.get(path);
          if (c?.needsInputs) queue.push([c, input, rows]);
        };
        for (let s = 0; s < hidden.length; s++) {
          runtime.blockForward(l, hidden[s], calibration[s].length);
          for (const [c, input, rows] of queue.splice(0)) await c.observe(input, rows);
        }
        runtime.observer = undefined;
      }
      for (const name of group) {
        const path = linearPath(l, name);
        const q = await calibrators.get(path)!.quantize(opts.weightOf(path));
        quantized.blocks[l].linears[name] = quantizedLinear(q);
        records.push({ ...q, path });
        opts.onLayer?.(path, records.length, total);
      }
    }
    if (hidden.length) hidden = hidden.map((x, s) => runtime.blockForward(l, x, calibration[s].length));
  }
  return { model: quantized, layers: records };
}
