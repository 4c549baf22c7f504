import type { Rng } from "./rng.js";

/**
 * Activations with a non-trivial covariance, as in LLMs: x = z L^T with a random mixing matrix L,
 * per-feature scales spanning two orders of magnitude and a few outlier features.
 */
export function correlatedActivations(
  rng: Rng,
  tokens: number,
  n: number,
  mixing?: Float64Array,
): {
  x: Float32Array;
  mixing: Float64Array;
} {
  let l = mixing;
  if (!l) {
    l = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const featureScale = 10 ** (rng.next() * 2 - 1) * (rng.next() < 0.03 ? 8 : 1);
      for (let j = 0; j < n; j++)
        l[i * n + j] = (rng.normal() / Math.sqrt(n) + (i === j ? 1 : 0)) * featureScale;
    }
    // Shared low-rank directions make the features strongly correlated.
    for (let r = 0; r < 4; r++) {
      const v = Array.from({ length: n }, () => rng.normal());
      const c = Math.floor(rng.next() * n);
      for (let i = 0; i < n; i++) l[i * n + c] += v[i];
    }
  }
  const x = new Float32Array(tokens * n);
  const z = new Float64Array(n);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < n; j++) z[j] = rng.normal();
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += l[i * n + j] * z[j];
      x[t * n + i] = s;
    }
  }
  return { x, mixing: l };
}
