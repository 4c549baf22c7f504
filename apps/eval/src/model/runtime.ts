import type { LlamaModel } from "./llama.js";

/** Keys and values of the positions a runtime has already seen; opaque outside the runtime that made it. */
export interface KvCache {
  /** Number of positions stored. */
  readonly length: number;
  reset(): void;
  /** Frees what the cache holds now rather than at garbage collection (device caches). */
  dispose?(): void;
}

export interface ForwardOptions {
  /** Compute the classifier for the last position only (decoding). */
  lastOnly?: boolean;
}

/**
 * The seam between the model and where its ops run. The CPU runtime is the fp32 reference; a GPU runtime
 * implements the same interface with device kernels.
 */
export interface LlamaRuntime {
  readonly backend: "cpu" | "cuda";
  readonly model: LlamaModel;
  /** A cache for up to `capacity` positions (default and upper bound: the model's maxSeqLen). */
  newCache(capacity?: number): KvCache;
  /**
   * Logits (rows, vocab) row-major for `tokens` at positions cache.length.. (0 without a cache); appends the
   * tokens' keys and values to the cache. With lastOnly, one row.
   */
  forward(tokens: ArrayLike<number>, cache?: KvCache, opts?: ForwardOptions): Float32Array;
  /**
   * Optional: negative log-likelihood (nats) of tokens[1..] given the tokens before each (positions from
   * 0, no cache), for runtimes that can compute it without returning every logit.
   */
  targetNll?(tokens: ArrayLike<number>): Float64Array;
  dispose(): void;
}
