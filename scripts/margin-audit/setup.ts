/**
 * Vitest setup file for a margin audit: how close each numeric assertion comes to its bound.
 *
 * Tests draw fresh random inputs each run, so a bound that a typical run clears by a little fails on
 * some later CI run. With TRIRUN_MARGIN_AUDIT=<file.jsonl> set, every project's vitest config loads
 * this file; it re-registers the ordering matchers (toBeLessThan, toBeLessThanOrEqual,
 * toBeGreaterThan, toBeGreaterThanOrEqual, toBeCloseTo) with the same pass/fail rule and appends one
 * line per call: the matcher, the calling test line, the value and the bound. `report.mjs` ranks the
 * call sites whose values vary from run to run by how near they came. See README.md beside it.
 */
import { appendFileSync } from "node:fs";
import { expect } from "vitest";

const log = process.env.TRIRUN_MARGIN_AUDIT;
if (!log) throw new Error("scripts/margin-audit/setup.ts: TRIRUN_MARGIN_AUDIT (the log file) is not set");

// Deep enough to reach the test file through vitest's and chai's frames.
Error.stackTraceLimit = 80;

/** "packages/x/test/y.ts:12", or "helper:34 <- test:56" when a test helper made the call. */
function callSite(): string {
  const frames = (new Error().stack ?? "")
    .split("\n")
    .filter((f) => /\/(packages|apps)\//.test(f) && !f.includes("node_modules"));
  const where = (frame: string | undefined) => {
    const m = frame?.match(/((?:packages|apps)\/[\w\-./]+):(\d+)/);
    return m ? `${m[1]}:${m[2]}` : "?";
  };
  const first = where(frames[0]);
  const test = where(frames.find((f) => /\.test\.ts:\d+/.test(f)));
  return first === test ? first : `${first} <- ${test}`;
}

function record(matcher: string, negated: boolean, value: unknown, bound: unknown): void {
  const line = { matcher, negated, site: callSite(), value: Number(value), bound: Number(bound) };
  appendFileSync(log as string, `${JSON.stringify(line)}\n`);
}

type Ctx = { isNot: boolean };
const ordering = (name: string, pass: (a: number, b: number) => boolean, words: string) =>
  function (this: Ctx, received: number | bigint, bound: number | bigint) {
    record(name, this.isNot, received, bound);
    return {
      pass: pass(Number(received), Number(bound)),
      message: () => `expected ${received} ${this.isNot ? "not " : ""}to be ${words} ${bound}`,
    };
  };

expect.extend({
  toBeLessThan: ordering("lt", (a, b) => a < b, "less than"),
  toBeLessThanOrEqual: ordering("le", (a, b) => a <= b, "less than or equal to"),
  toBeGreaterThan: ordering("gt", (a, b) => a > b, "greater than"),
  toBeGreaterThanOrEqual: ordering("ge", (a, b) => a >= b, "greater than or equal to"),
  toBeCloseTo(this: Ctx, received: number, expected: number, digits = 2) {
    // vitest's rule: |received - expected| < 10^-digits / 2. Logged as a distance against its bound.
    const distance = Math.abs(received - expected);
    const bound = 10 ** -digits / 2;
    record("close", this.isNot, distance, bound);
    return {
      pass: distance < bound || received === expected,
      message: () =>
        `expected ${received} ${this.isNot ? "not " : ""}to be close to ${expected} (${digits} digits)`,
    };
  },
});
