/** Order statistics of repeated timings. */

/** Summary of a set of samples (all in the samples' unit). */
export interface SampleStats {
  readonly count: number;
  readonly median: number;
  /** 10th percentile. */
  readonly p10: number;
  /** 90th percentile. */
  readonly p90: number;
  /** 25th and 75th percentiles. */
  readonly q1: number;
  readonly q3: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

function sortedCopy(values: readonly number[], what: string): number[] {
  if (values.length === 0) {
    throw new RangeError(`${what}: at least one sample is required`);
  }
  for (const value of values) {
    if (!Number.isFinite(value)) {
      throw new RangeError(`${what}: samples must be finite numbers, got ${String(value)}`);
    }
  }
  return [...values].sort((a, b) => a - b);
}

/**
 * Percentile `p` (0..100) with linear interpolation between closest ranks
 * (the "linear" method of NumPy and R type 7) over already sorted values.
 */
function percentileOfSorted(sorted: readonly number[], p: number): number {
  // Multiply first: (55 * 100) / 100 is exactly 55, (55 / 100) * 100 is not.
  const position = (p * (sorted.length - 1)) / 100;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const fraction = position - lower;
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

/** Percentile `p` in [0, 100] of `values`, linearly interpolated. */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) {
    throw new RangeError(`percentile: p must be in [0, 100], got ${String(p)}`);
  }
  return percentileOfSorted(sortedCopy(values, "percentile"), p);
}

/** Median of `values` (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  return percentileOfSorted(sortedCopy(values, "median"), 50);
}

/** Median, percentiles, extremes and mean of `values`. */
export function summarize(values: readonly number[]): SampleStats {
  const sorted = sortedCopy(values, "summarize");
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    count: sorted.length,
    median: percentileOfSorted(sorted, 50),
    p10: percentileOfSorted(sorted, 10),
    p90: percentileOfSorted(sorted, 90),
    q1: percentileOfSorted(sorted, 25),
    q3: percentileOfSorted(sorted, 75),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    mean: sum / sorted.length,
  };
}
