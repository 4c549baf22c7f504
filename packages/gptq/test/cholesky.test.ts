import { describe, expect, it } from "vitest";
import {
  choleskyLowerInPlace,
  type Executor,
  InlineExecutor,
  WorkerExecutor,
  upperCholeskyOfInverse,
} from "../src/index.js";
import { allocate } from "../src/executor.js";
import { choleskyUpper, inverse, maxAbs, maxAbsDiff, randomSpd } from "./helpers/linalg.js";
import { testRng } from "./helpers/rng.js";

const executors: [string, () => Promise<Executor>][] = [
  ["inline", async () => new InlineExecutor()],
  ["2 workers", () => WorkerExecutor.create(2)],
];

describe.each(executors)("float64 Cholesky (%s)", (_name, make) => {
  it("factors random SPD matrices: L L^T = A", async () => {
    const rng = testRng();
    const exec = await make();
    try {
      for (const n of [1, 5, 64, 65, 250]) {
        const a = randomSpd(rng, n);
        const l = allocate(Float64Array, n * n, exec);
        l.set(a);
        expect(await choleskyLowerInPlace(l, n, exec)).toBe(-1);
        let err = 0;
        for (let i = 0; i < n; i++) {
          for (let j = 0; j <= i; j++) {
            let s = 0;
            for (let k = 0; k <= j; k++) s += l[i * n + k] * l[j * n + k];
            err = Math.max(err, Math.abs(s - a[i * n + j]));
          }
        }
        expect(err, `n=${n}`).toBeLessThan(1e-10 * maxAbs(a));
      }
    } finally {
      await exec.dispose();
    }
  });

  it("computes the upper factor of H^-1 like inverse-then-Cholesky", async () => {
    const rng = testRng();
    const exec = await make();
    try {
      for (const n of [3, 70, 230]) {
        const h = randomSpd(rng, n, 0.5);
        const result = await upperCholeskyOfInverse(h, n, exec);
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        const ref = choleskyUpper(inverse(h, n), n);
        expect(maxAbsDiff(result.u, ref), `n=${n}`).toBeLessThan(1e-9 * maxAbs(ref));
        for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(result.u[i * n + j]).toBe(0);
      }
    } finally {
      await exec.dispose();
    }
  });

  it("reports the pivot where a matrix is not positive definite", async () => {
    const rng = testRng();
    const exec = await make();
    try {
      const n = 120;
      const a = randomSpd(rng, n);
      const bad = 77;
      a[bad * n + bad] = -1;
      const l = allocate(Float64Array, n * n, exec);
      l.set(a);
      const pivot = await choleskyLowerInPlace(l, n, exec);
      expect(pivot).toBeGreaterThanOrEqual(0);
      expect(pivot).toBeLessThanOrEqual(bad);
    } finally {
      await exec.dispose();
    }
  });
});
