import type { Backend } from "@trirun/layers";
import { CpuLlamaRuntime } from "../model/cpu-runtime.js";
import { quantizedLinear, type QuantizedLayerWeights } from "../model/loaders/linear-factory.js";
import { type BlockLinearName, type LlamaModel, linearPath } from "../model/llama.js";
import type { CalibratorFactory } from "./calibrators.js";

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

/** Activation values per calibration batch handed to a calibrator (32 MiB of fp32). */
const BATCH_VALUES = 1 << 23;

export interface QuantizedLayerRecord extends QuantizedLayerWeights {
  path: string;
  loss?: number;
}

export interface SequentialQuantizeOptions {
  /** Makes the calibrator for the layers that share one input of `inFeatures` features. */
  calibrator: CalibratorFactory;
  /** Calibration token sequences (each at most maxSeqLen long); may be empty for RTN. */
  calibration: Int32Array[];
  /** Reads the (out, in) fp32 weight of an unquantized layer. */
  weightOf: (path: string) => Float32Array;
  /** Backend for the TriRunLinear layers (default: the layers' choice). */
  backend?: Backend;
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
 * the already-quantized blocks 0..l-1 produce, and within a block each group of layers on inputs computed
 * through the groups quantized before it. The classifier stays unquantized (as in GPTQ for Llama).
 * Returns the quantized model (sharing embedding, norms and classifier with `model`) and each layer's weights.
 */
export async function quantizeSequential(
  model: LlamaModel,
  opts: SequentialQuantizeOptions,
): Promise<{ model: LlamaModel; layers: QuantizedLayerRecord[] }> {
  const { calibration } = opts;
  const quantized = cloneModelStructure(model);
  const rt = new CpuLlamaRuntime(quantized);
  const records: QuantizedLayerRecord[] = [];
  const total = model.blocks.length * SEQUENTIAL_GROUPS.flat().length;
  const rows = calibration.map((seq) => seq.length);
  let hidden = calibration.map((seq) => rt.embed(seq));

  /** Calibrates one group on `inputs` (one per sequence), quantizes its layers and swaps them in. */
  const quantizeGroup = async (l: number, group: readonly BlockLinearName[], inputs: Float32Array[]) => {
    const inFeatures = quantized.blocks[l].linears[group[0]].inFeatures;
    const calibrator = opts.calibrator(inFeatures);
    try {
      if (calibrator.needsInputs) {
        if (inputs.length === 0) {
          throw new RangeError(
            `calibration: ${linearPath(l, group[0])} needs calibration sequences, got none`,
          );
        }
        // Hand the activations over in batches of about BATCH_VALUES values: fewer, larger updates.
        for (let s = 0; s < inputs.length; ) {
          let end = s;
          let values = 0;
          while (end < inputs.length && (end === s || values + inputs[end].length <= BATCH_VALUES)) {
            values += inputs[end].length;
            end++;
          }
          const batch = new Float32Array(values);
          let offset = 0;
          for (let i = s; i < end; i++) {
            batch.set(inputs[i], offset);
            offset += inputs[i].length;
          }
          await calibrator.observe(batch, values / inFeatures);
          s = end;
        }
      }
      for (const name of group) {
        const path = linearPath(l, name);
        const layer = quantized.blocks[l].linears[name];
        const quantizedWeights = await calibrator.quantize(path, opts.weightOf(path), layer.outFeatures);
        // The bias stays as it is (fp16-rounded by the layer), as in GPTQ.
        const bias = (layer as { bias?: Float32Array }).bias;
        const q = bias === undefined ? quantizedWeights : { ...quantizedWeights, bias };
        quantized.blocks[l].linears[name] = quantizedLinear(q, opts.backend);
        records.push({ ...q, path });
        opts.onLayer?.(path, records.length, total);
      }
    } finally {
      await calibrator.dispose();
    }
  };

  // Each stage's input is computed once, through the layers quantized before it (the groups of
  // SEQUENTIAL_GROUPS in order).
  const [qkv, o, gateUp, down] = SEQUENTIAL_GROUPS;
  for (let l = 0; l < model.blocks.length; l++) {
    const normed = hidden.map((x, s) => rt.attnNormed(l, x, rows[s]));
    await quantizeGroup(l, qkv, normed);
    const att = normed.map((h, s) => rt.attention(l, h, rows[s]));
    await quantizeGroup(l, o, att);
    const x1 = hidden.map((x, s) => rt.attentionResidual(l, x, att[s], rows[s]));
    const h2 = x1.map((x, s) => rt.ffnNormed(l, x, rows[s]));
    await quantizeGroup(l, gateUp, h2);
    const act = h2.map((h, s) => rt.mlpActivation(l, h, rows[s]));
    await quantizeGroup(l, down, act);
    hidden = x1.map((x, s) => rt.mlpResidual(l, x, act[s], rows[s]));
  }
  return { model: quantized, layers: records };
}
