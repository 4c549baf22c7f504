/**
 * `Float16Linear`: an unquantized layer with fp16 weights. CPU: fp32 matmul over the fp16-rounded
 * weights. CUDA: cuBLAS FP16 GEMM (`gemmF16`) on `(out, in)` weights; a bias rides along as one
 * extra weight column against a constant 1.0 activation column, so no separate add kernel is needed.
 */
import { DeviceTensor, gemmF16 } from "@trirun/kernel-native";
import { decodeF16, encodeF16 } from "@trirun/packing";
import { resolveBackend } from "./backend.js";
import { CpuCore } from "./cpu-core.js";
import { shareable } from "./cpu-threads.js";
import { concatParts } from "./concat.js";
import { CudaCore } from "./cuda-core.js";
import { onDevice } from "./device-guard.js";
import { LinearBase } from "./linear-base.js";
import { checkBias, checkFeatures, roundUp } from "./trirun-weights.js";
import type { LayerOptions } from "./types.js";

/** Keeps fp16 GEMM rows 16-byte aligned when a bias column widens the weights. */
const BIAS_WIDTH_ALIGN = 8;

export class Float16Linear extends LinearBase {
  readonly kind = "float16" as const;
  /** The bias rounded to fp16 (as fp32 values), or undefined. */
  readonly bias: Float32Array | undefined;
  /** The host copy behind `weight`: the CPU core's own; for CUDA layers made on first read. */
  #weight: Float32Array | undefined;

  private constructor(
    core: CpuCore | CudaCore,
    weight: Float32Array | undefined,
    bias: Float32Array | undefined,
  ) {
    super(core);
    this.#weight = weight;
    this.bias = bias;
  }

  /**
   * `(out, in)` row-major host copy of the fp16 weights (as fp32 values), for quantizers and GPTQ.
   * A CUDA layer keeps its weights on the device only and downloads them on the first read (then
   * keeps this copy): building a model's layers then costs no host memory and no fp16 -> fp32
   * conversion (a Llama-2-13B FP16 model held 52 GB of such copies). Reading it from a disposed
   * CUDA layer that was never read before is a LayerDisposedError; a download is refused inside
   * a graph capture.
   */
  get weight(): Float32Array {
    this.#weight ??= this.readWeight();
    return this.#weight;
  }

  /**
   * The same values as `weight`, without keeping them: a CUDA layer that was not read before
   * downloads a fresh copy on every call (for one pass over a model's layers, e.g. quantizing it,
   * with one layer's copy alive at a time); otherwise the copy `weight` holds.
   */
  readWeight(): Float32Array {
    if (this.#weight !== undefined) return this.#weight;
    const core = this.core;
    if (core.kind !== "cuda") throw new Error(`${this.label}: no host weights`); // (CPU layers always have them)
    const [W] = core.weights;
    const bits = onDevice(core.device, () => W.download() as Uint16Array);
    const { inFeatures, outFeatures, width } = core;
    let rows = bits;
    if (width !== inFeatures) {
      rows = new Uint16Array(outFeatures * inFeatures);
      for (let o = 0; o < outFeatures; o++)
        rows.set(bits.subarray(o * width, o * width + inFeatures), o * inFeatures);
    }
    return decodeF16(rows);
  }

  protected get label(): string {
    return `Float16Linear(${this.inFeatures} -> ${this.outFeatures}, ${this.backend})`;
  }

  /**
   * Builds a layer from PyTorch-style `(out, in)` row-major weights: fp32 values (rounded to fp16)
   * or a Uint16Array of fp16 bits. The bias (optional, `out` entries) is rounded to fp16 as well.
   */
  static fromWeights(
    weight: Float32Array | Uint16Array,
    outFeatures: number,
    inFeatures: number,
    bias?: Float32Array,
    opts: LayerOptions = {},
  ): Float16Linear {
    checkFeatures(outFeatures, "outFeatures");
    checkFeatures(inFeatures, "inFeatures");
    if (!(weight instanceof Float32Array) && !(weight instanceof Uint16Array)) {
      throw new TypeError("weight must be a Float32Array or a Uint16Array of fp16 bits");
    }
    if (weight.length !== outFeatures * inFeatures) {
      throw new RangeError(
        `weight must have outFeatures * inFeatures = ${outFeatures * inFeatures} elements (${outFeatures} x ${inFeatures}), got ${weight.length}`,
      );
    }
    const biasChecked = checkBias(bias, outFeatures, "bias");
    const backend = resolveBackend(opts.backend);
    const weightBits = weight instanceof Uint16Array ? weight : encodeF16(weight);
    const biasBits = biasChecked === undefined ? undefined : encodeF16(biasChecked);
    if (backend === "cpu") {
      const weight32 = shareable(decodeF16(weightBits));
      const bias32 = biasBits === undefined ? undefined : shareable(decodeF16(biasBits));
      return new Float16Linear(new CpuCore(inFeatures, outFeatures, weight32, bias32), weight32, bias32);
    }
    const bias32 = biasBits === undefined ? undefined : decodeF16(biasBits);
    const width = biasBits === undefined ? inFeatures : roundUp(inFeatures + 1, BIAS_WIDTH_ALIGN);
    let deviceBits = weightBits;
    if (biasBits !== undefined) {
      deviceBits = new Uint16Array(outFeatures * width);
      for (let o = 0; o < outFeatures; o++) {
        deviceBits.set(weightBits.subarray(o * inFeatures, (o + 1) * inFeatures), o * width);
        deviceBits[o * width + inFeatures] = biasBits[o];
      }
    }
    const W = DeviceTensor.fromArray(deviceBits, [outFeatures, width], "f16");
    const core = gemmCore(W, inFeatures, biasBits === undefined ? -1 : inFeatures);
    return new Float16Linear(core, undefined, bias32);
  }

  /**
   * One layer whose output is the outputs of `parts` side by side (`[gate | up]`), run as one cuBLAS
   * GEMM. CUDA layers only, same input width, no bias. The fused `(out, in)` weights are the parts'
   * rows one after the other (device-to-device copies). With `{ dispose: true }` the parts are disposed
   * after the copy.
   */
  static concat(parts: readonly Float16Linear[], opts: { dispose?: boolean } = {}): Float16Linear {
    const cores = concatParts(
      parts,
      "Float16Linear",
      (p) => p instanceof Float16Linear,
      (p) => p.core,
    );
    const width = cores[0].width;
    const n = cores.reduce((sum, c) => sum + c.n, 0);
    // On the parts' device, whichever is current (and the current device left as it was).
    const W = onDevice(cores[0].device, () => {
      const fused = DeviceTensor.empty("f16", [n, width]);
      try {
        let row = 0;
        for (const core of cores) {
          fused.view([core.n * width], row * width).copyFrom(core.weights[0]);
          row += core.n;
        }
      } catch (error) {
        fused.dispose();
        throw error;
      }
      return fused;
    });
    const core = gemmCore(W, parts[0].inFeatures, -1);
    if (opts.dispose === true) for (const p of parts) p.dispose();
    return new Float16Linear(core, undefined, undefined);
  }
}

/** The CUDA core over device weights `W` (out, width) fp16: one cuBLAS GEMM per forward (it takes `W` over). */
function gemmCore(W: DeviceTensor, inFeatures: number, onesColumn: number): CudaCore {
  const [outFeatures, width] = W.shape;
  return new CudaCore({
    inFeatures,
    outFeatures,
    width,
    onesColumn,
    n: outFeatures,
    matmul: (A, C, stream) => gemmF16(A, W, C, { transposeW: true, stream }),
    weights: [W],
  });
}
