/**
 * The CPU backend of every layer: fp32 weights `(out, in)` and the blocked reference matmul.
 * Weights in a SharedArrayBuffer (`shareable`) let the matmul run on several threads.
 */
import { parallelMatmul } from "./cpu-threads.js";

export class CpuCore {
  readonly kind = "cpu" as const;
  #weight: Float32Array | undefined;
  #bias: Float32Array | undefined;

  /** `weight` is `(out, in)` row-major fp32; `bias` has `out` entries. Both are kept, not copied. */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    weight: Float32Array,
    bias: Float32Array | undefined,
  ) {
    this.#weight = weight;
    this.#bias = bias;
  }

  get byteLength(): number {
    return (this.#weight?.byteLength ?? 0) + (this.#bias?.byteLength ?? 0);
  }

  /** The `(out, in)` fp32 weights (the layer's own array: do not modify). */
  get weight(): Float32Array {
    if (this.#weight === undefined) throw new Error("CPU weights have been released");
    return this.#weight;
  }

  get bias(): Float32Array | undefined {
    return this.#bias;
  }

  /** `y (rows, out) = x (rows, in) @ W^T + bias` (on several threads when large: cpu-threads.ts). */
  run(x: Float32Array, rows: number, y: Float32Array): void {
    parallelMatmul(x, rows, this.inFeatures, this.weight, this.outFeatures, this.#bias, y);
  }

  dispose(): void {
    this.#weight = undefined;
    this.#bias = undefined;
  }
}
