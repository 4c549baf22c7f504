import { describe, expect, it } from "vitest";
import { median, percentile, summarize } from "../src/stats.js";

function randomValues(count: number): number[] {
  return Array.from({ length: count }, () => Math.random() * 1000 - 200);
}

/** Median by counting, without sorting: the value with as many values below as above. */
function medianByCounting(values: readonly number[]): number {
  // Odd count only: exactly (n - 1) / 2 values are strictly smaller (values are distinct).
  const half = (values.length - 1) / 2;
  const found = values.find((v) => values.filter((w) => w < v).length === half);
  if (found === undefined) throw new Error("no median found");
  return found;
}

describe("median", () => {
  it("matches a counting definition on fresh random data (odd counts)", () => {
    for (let trial = 0; trial < 20; trial++) {
      const values = randomValues(2 * Math.floor(Math.random() * 50) + 1);
      expect(median(values)).toBe(medianByCounting(values));
    }
  });

  it("averages the middle two values for even counts", () => {
    for (let trial = 0; trial < 20; trial++) {
      const values = randomValues(2 * Math.floor(Math.random() * 50) + 2);
      const lowerMiddle = values.filter(
        (v) => values.filter((w) => w < v).length === values.length / 2 - 1,
      )[0];
      const upperMiddle = values.filter((v) => values.filter((w) => w < v).length === values.length / 2)[0];
      expect(median(values)).toBeCloseTo((lowerMiddle + upperMiddle) / 2, 10);
    }
  });

  it("rejects empty and non-finite input", () => {
    expect(() => median([])).toThrow(RangeError);
    expect(() => median([1, Number.NaN])).toThrow(/finite/);
  });
});

describe("percentile", () => {
  it("interpolates linearly between ranks (NumPy's default method)", () => {
    // numpy.percentile([1, 2, 3, 4], [10, 25, 90]) == [1.3, 1.75, 3.7]
    expect(percentile([4, 1, 3, 2], 10)).toBeCloseTo(1.3, 12);
    expect(percentile([4, 1, 3, 2], 25)).toBeCloseTo(1.75, 12);
    expect(percentile([4, 1, 3, 2], 90)).toBeCloseTo(3.7, 12);
  });

  it("is the minimum at 0, the maximum at 100, monotone in p, and bounds the right share of values", () => {
    const values = randomValues(101);
    expect(percentile(values, 0)).toBe(Math.min(...values));
    expect(percentile(values, 100)).toBe(Math.max(...values));
    let previous = Number.NEGATIVE_INFINITY;
    for (let p = 0; p <= 100; p += 5) {
      const value = percentile(values, p);
      expect(value).toBeGreaterThanOrEqual(previous);
      previous = value;
      // With 101 values, percentile p (a multiple of 1) is exactly a sample with p values below it.
      expect(values.filter((v) => v < value).length).toBe(p);
    }
  });

  it("rejects p outside [0, 100]", () => {
    expect(() => percentile([1, 2], 101)).toThrow(RangeError);
    expect(() => percentile([1, 2], -1)).toThrow(RangeError);
  });
});

describe("summarize", () => {
  it("agrees with the separate functions and with a direct mean", () => {
    const values = randomValues(37);
    const stats = summarize(values);
    expect(stats.count).toBe(37);
    expect(stats.median).toBe(median(values));
    expect(stats.p10).toBe(percentile(values, 10));
    expect(stats.p90).toBe(percentile(values, 90));
    expect(stats.q1).toBe(percentile(values, 25));
    expect(stats.q3).toBe(percentile(values, 75));
    expect(stats.min).toBe(Math.min(...values));
    expect(stats.max).toBe(Math.max(...values));
    expect(stats.mean).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 9);
    expect(stats.p10).toBeLessThanOrEqual(stats.q1);
    expect(stats.q3).toBeLessThanOrEqual(stats.p90);
  });

  it("does not reorder its input", () => {
    const values = [3, 1, 2];
    summarize(values);
    expect(values).toEqual([3, 1, 2]);
  });
});
