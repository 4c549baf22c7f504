import { allocate, type Executor, type KernelTask, splitByCost } from "./executor.js";
import {
  choleskyDiagonalBlock,
  choleskyPanelRows,
  choleskyUpdateRows,
  lowerInverseColumns,
} from "./kernels.js";

/** Below this many trailing rows a step is not worth a round trip to the workers. */
const PARALLEL_MIN_ROWS = 96;

async function runRows(
  exec: Executor,
  start: number,
  end: number,
  cost: (i: number) => number,
  task: (from: number, to: number) => KernelTask,
  direct: (from: number, to: number) => void,
): Promise<void> {
  if (exec.threads === 1 || end - start < PARALLEL_MIN_ROWS) {
    direct(start, end);
    return;
  }
  await exec.run(splitByCost(start, end, exec.threads, cost).map(([from, to]) => task(from, to)));
}

/**
 * Blocked right-looking Cholesky in float64, in place on the lower triangle of `a` (n x n row-major,
 * symmetric; the strict upper triangle is left as it was). Panel solves and trailing updates are
 * split over the executor's threads. Returns -1 on success or the index of the first pivot that is
 * not positive (the matrix is not positive definite).
 */
export async function choleskyLowerInPlace(
  a: Float64Array,
  n: number,
  exec: Executor,
  blockSize = 64,
): Promise<number> {
  for (let k0 = 0; k0 < n; k0 += blockSize) {
    const k1 = Math.min(k0 + blockSize, n);
    const failed = choleskyDiagonalBlock(a, n, k0, k1);
    if (failed >= 0) return failed;
    if (k1 === n) break;
    await runRows(
      exec,
      k1,
      n,
      () => 1,
      (from, to) => ({ kernel: "choleskyPanelRows", args: [a, n, k0, k1, from, to] }),
      (from, to) => choleskyPanelRows(a, n, k0, k1, from, to),
    );
    await runRows(
      exec,
      k1,
      n,
      (i) => i - k1 + 1,
      (from, to) => ({ kernel: "choleskyUpdateRows", args: [a, n, k0, k1, from, to] }),
      (from, to) => choleskyUpdateRows(a, n, k0, k1, from, to),
    );
  }
  return -1;
}

/** Inverse of a lower-triangular matrix (n x n row-major); the result is lower triangular. */
export async function lowerTriangularInverse(
  l: Float64Array,
  n: number,
  exec: Executor,
): Promise<Float64Array> {
  const x = allocate(Float64Array, n * n, exec);
  const width = 32;
  if (exec.threads === 1 || n < 2 * PARALLEL_MIN_ROWS) {
    for (let c = 0; c < n; c += width) lowerInverseColumns(l, n, x, c, Math.min(c + width, n));
    return x;
  }
  // Column blocks are independent; the first ones cost the most, so deal them out greedily.
  const blocks: [number, number][] = [];
  for (let c = 0; c < n; c += width) blocks.push([c, Math.min(c + width, n)]);
  const lanes: { cost: number; blocks: [number, number][] }[] = Array.from({ length: exec.threads }, () => ({
    cost: 0,
    blocks: [],
  }));
  for (const block of blocks) {
    const lane = lanes.reduce((best, cur) => (cur.cost < best.cost ? cur : best));
    lane.blocks.push(block);
    lane.cost += (n - block[0]) ** 2;
  }
  const tasks: KernelTask[] = [];
  for (const lane of lanes) {
    for (const [from, to] of lane.blocks)
      tasks.push({ kernel: "lowerInverseColumns", args: [l, n, x, from, to] });
  }
  await exec.run(tasks);
  return x;
}

/** Result of {@link upperCholeskyOfInverse}: the factor, or the pivot where H was not positive definite. */
export type InverseFactorResult = { ok: true; u: Float64Array } | { ok: false; pivot: number };

/**
 * The upper Cholesky factor U of H^-1 (H^-1 = U^T U), which GPTQ reads row by row.
 *
 * Same matrix as the reference's cholesky -> cholesky_inverse -> cholesky(upper), with one
 * factorisation and one triangular inverse instead of two factorisations and a full inverse: with J
 * the index reversal, chol(J H J) = L gives H = V V^T for the upper triangular V = J L J, so
 * H^-1 = V^-T V^-1 and U = V^-1 = J L^-1 J. For row-major storage, J M J is the flat array reversed.
 * `h` (n x n, symmetric, damped) is not modified.
 */
export async function upperCholeskyOfInverse(
  h: Float64Array,
  n: number,
  exec: Executor,
): Promise<InverseFactorResult> {
  const reversed = allocate(Float64Array, n * n, exec);
  reversed.set(h);
  reversed.reverse();
  const failed = await choleskyLowerInPlace(reversed, n, exec);
  if (failed >= 0) return { ok: false, pivot: n - 1 - failed };
  const inverse = await lowerTriangularInverse(reversed, n, exec);
  inverse.reverse();
  return { ok: true, u: inverse };
}
