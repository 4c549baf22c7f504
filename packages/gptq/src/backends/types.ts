/**
 * What a compute backend provides to the GPTQ algorithm: the rank-k update that accumulates the
 * Hessian, and storage of the weight being quantized together with the matmul that applies a
 * block's error to the rows after it (the lazy batch update). Everything else (Cholesky in float64,
 * the per-column sweep, the scale search) runs on the host through the executor.
 */
export interface Backend {
  /** "cpu", "cuda", or a custom name. */
  readonly name: string;
  /** A running sum of x^T x over batches of n features. */
  createGramAccumulator(n: number): GramAccumulator;
  /**
   * Takes ownership of the transposed, permuted weight `wt` (n rows = input features in processing
   * order, `out` columns) for one GPTQ sweep with the upper factor `u` of H^-1 (n x n).
   */
  createSweep(wt: Float32Array, n: number, out: number, u: Float64Array): Promise<SweepState>;
}

export interface GramAccumulator {
  /** Adds x^T x for x = (tokens, n) row-major. */
  add(x: Float32Array, tokens: number): Promise<void>;
  /** Adds the sum so far (full symmetric n x n, float64) into `into` and restarts from zero. */
  flushInto(into: Float64Array): Promise<void>;
  /** Frees device memory, if any (idempotent). */
  dispose(): void;
}

export interface SweepState {
  /**
   * Rows [r0, r1) of the current weight (all error updates applied), (r1 - r0) x out row-major,
   * in memory that the executor's workers can share. Writes to it are not sent back.
   */
  readRows(r0: number, r1: number): Promise<Float32Array>;
  /** wt[r1:, :] -= u[r0:r1, r1:]^T err, err being (r1 - r0) x out row-major. */
  rankUpdate(r0: number, r1: number, err: Float32Array): Promise<void>;
  /** Frees device memory, if any (idempotent). */
  dispose(): void;
}
