/**
 * The CPU backend of every layer: weights `(out, in)`, either fp32 or, for quantized layers, levels
 * with per-group scales (a quarter of the memory; the same results bit for bit), and the blocked
 * reference matmul. Weights in SharedArrayBuffers (`shareable`) let the matmul run on several threads.
 */
import { parallelMatmul } from "./cpu-threads.js";

/** Weights of a CPU layer, `(out, in)` row-major. */
export type CpuWeights =
  | { readonly kind: "dense"; readonly weight: Float32Array }
  | {
      readonly kind: "levels";
      /** `(out, in)` levels (code - 1). */
      readonly levels: Int8Array;
      /** `(out, ceil(in / groupLength))` scale values. */
      readonly scales: Float32Array;
      readonly groupLength: number;
    };

export class CpuCore {
  readonly kind = "cpu" as const;
  #weights: CpuWeights | undefined;
  #bias: Float32Array | undefined;

  /** `weight`: `(out, in)` fp32, or levels and scales; `bias` has `out` entries. Kept, not copied. */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    weight: Float32Array | CpuWeights,
    bias: Float32Array | undefined,
  ) {
    this.#weights = weight instanceof Float32Array ? { kind: "dense", weight } : weight;
    this.#bias = bias;
  }

  get byteLength(): number {
    const w = this.#weights;
    const weights =
      w === undefined
        ? 0
        : w.kind === "dense"
          ? w.weight.byteLength
          : w.levels.byteLength + w.scales.byteLength;
    return weights + (this.#bias?.byteLength ?? 0);
  }

  get weights(): CpuWeights {
    if (this.#weights === undefined) throw new Error("CPU weights have been released");
    return this.#weights;
  }

  /** The `(out, in)` fp32 weights: the layer's own array when dense (do not modify), else rebuilt. */
  get weight(): Float32Array {
    const w = this.weights;
    if (w.kind === "dense") return w.weight;
    const { levels, scales, groupLength } = w;
    const k = this.inFeatures;
    const groups = Math.ceil(k / groupLength);
    const out = new Float32Array(levels.length);
    for (let o = 0; o < this.outFeatures; o++) {
      for (let i = 0; i < k; i++)
        out[o * k + i] = levels[o * k + i] * scales[o * groups + Math.floor(i / groupLength)];
    }
    return out;
  }

  get bias(): Float32Array | undefined {
    return this.#bias;
  }

  /** `y (rows, out) = x (rows, in) @ W^T + bias` (on several threads when large: cpu-threads.ts). */
  run(x: Float32Array, rows: number, y: Float32Array): void {
    parallelMatmul(x, rows, this.inFeatures, this.weights, this.outFeatures, this.#bias, y);
  }

  dispose(): void {
    this.#weights = undefined;
    this.#bias = undefined;
  }
}
