/**
 * Numeric kernels shared by the main thread and the worker pool.
 *
 * Every function here must stay self-contained: it may call only other functions of this file, use
 * no imports, no module-level constants and no closures, because the worker pool ships their source
 * text (`Function.prototype.toString`) to `worker_threads` workers. Arguments are plain numbers and
 * typed arrays (shared memory when a pool runs them).
 */

/** Rounds to the nearest integer, ties to even (as `torch.round`). */
export function roundHalfEven(v: number): number {
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) r -= 1;
  return r;
}

/** Rounds a double to the nearest IEEE binary16 value (ties to even), returned as a double. */
export function roundToFp16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  // 65520 is the midpoint between 65504 (max finite) and 65536: it and everything above round to inf.
  if (a >= 65520) return x > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  let quantum: number;
  if (a < 6.103515625e-5) {
    quantum = 2 ** -24; // subnormal spacing 2^-24
  } else {
    let e = Math.floor(Math.log2(a));
    if (2 ** e > a) e -= 1;
    else if (2 ** (e + 1) <= a) e += 1;
    quantum = 2 ** (e - 10);
  }
  return roundHalfEven(x / quantum) * quantum;
}

/**
 * Gram accumulation on rows [rowStart, rowEnd): acc[i][j] += sum_t xt[i][t] * xt[j][t] for j >= i
 * (upper triangle; within a 4x4 diagonal tile a few lower entries are written too and later ignored).
 * xt is (n, tokens) row-major fp64: the transposed batch, so every dot product reads contiguous rows.
 */
export function gramUpperRows(
  xt: Float64Array,
  n: number,
  tokens: number,
  acc: Float64Array,
  rowStart: number,
  rowEnd: number,
): void {
  for (let i0 = rowStart; i0 < rowEnd; i0 += 4) {
    const iCount = Math.min(4, rowEnd - i0);
    for (let j0 = i0; j0 < n; j0 += 4) {
      const jCount = Math.min(4, n - j0);
      if (iCount === 4 && jCount === 4) {
        const a0 = i0 * tokens;
        const a1 = a0 + tokens;
        const a2 = a1 + tokens;
        const a3 = a2 + tokens;
        const b0 = j0 * tokens;
        const b1 = b0 + tokens;
        const b2 = b1 + tokens;
        const b3 = b2 + tokens;
        let s00 = 0;
        let s01 = 0;
        let s02 = 0;
        let s03 = 0;
        let s10 = 0;
        let s11 = 0;
        let s12 = 0;
        let s13 = 0;
        let s20 = 0;
        let s21 = 0;
        let s22 = 0;
        let s23 = 0;
        let s30 = 0;
        let s31 = 0;
        let s32 = 0;
        let s33 = 0;
        for (let t = 0; t < tokens; t++) {
          const x0 = xt[a0 + t];
          const x1 = xt[a1 + t];
          const x2 = xt[a2 + t];
          const x3 = xt[a3 + t];
          const y0 = xt[b0 + t];
          const y1 = xt[b1 + t];
          const y2 = xt[b2 + t];
          const y3 = xt[b3 + t];
          s00 += x0 * y0;
          s01 += x0 * y1;
          s02 += x0 * y2;
          s03 += x0 * y3;
          s10 += x1 * y0;
          s11 += x1 * y1;
          s12 += x1 * y2;
          s13 += x1 * y3;
          s20 += x2 * y0;
          s21 += x2 * y1;
          s22 += x2 * y2;
          s23 += x2 * y3;
          s30 += x3 * y0;
          s31 += x3 * y1;
          s32 += x3 * y2;
          s33 += x3 * y3;
        }
        let c = i0 * n + j0;
        acc[c] += s00;
        acc[c + 1] += s01;
        acc[c + 2] += s02;
        acc[c + 3] += s03;
        c += n;
        acc[c] += s10;
        acc[c + 1] += s11;
        acc[c + 2] += s12;
        acc[c + 3] += s13;
        c += n;
        acc[c] += s20;
        acc[c + 1] += s21;
        acc[c + 2] += s22;
        acc[c + 3] += s23;
        c += n;
        acc[c] += s30;
        acc[c + 1] += s31;
        acc[c + 2] += s32;
        acc[c + 3] += s33;
      } else {
        for (let i = i0; i < i0 + iCount; i++) {
          const a = i * tokens;
          for (let j = Math.max(j0, i); j < j0 + jCount; j++) {
            const b = j * tokens;
            let s = 0;
            for (let t = 0; t < tokens; t++) s += xt[a + t] * xt[b + t];
            acc[i * n + j] += s;
          }
        }
      }
    }
  }
}

/**
 * Unblocked Cholesky of the diagonal block [k0, k1) of the lower triangle of `a` (n x n row-major),
 * assuming columns before k0 were already applied. Returns the failing pivot index, or -1.
 */
export function choleskyDiagonalBlock(a: Float64Array, n: number, k0: number, k1: number): number {
  for (let c = k0; c < k1; c++) {
    const rc = c * n;
    let d = a[rc + c];
    for (let t = k0; t < c; t++) d -= a[rc + t] * a[rc + t];
    if (!(d > 0) || !Number.isFinite(d)) return c;
    const l = Math.sqrt(d);
    a[rc + c] = l;
    for (let i = c + 1; i < k1; i++) {
      const ri = i * n;
      let s = a[ri + c];
      for (let t = k0; t < c; t++) s -= a[ri + t] * a[rc + t];
      a[ri + c] = s / l;
    }
  }
  return -1;
}

/** Cholesky panel solve for rows [rowStart, rowEnd) (all >= k1): A[i, k0:k1] <- A[i, k0:k1] L11^-T. */
export function choleskyPanelRows(
  a: Float64Array,
  n: number,
  k0: number,
  k1: number,
  rowStart: number,
  rowEnd: number,
): void {
  for (let i = rowStart; i < rowEnd; i++) {
    const ri = i * n;
    for (let c = k0; c < k1; c++) {
      const rc = c * n;
      let s = a[ri + c];
      for (let t = k0; t < c; t++) s -= a[ri + t] * a[rc + t];
      a[ri + c] = s / a[rc + c];
    }
  }
}

/**
 * Cholesky trailing update for rows [rowStart, rowEnd): A[i][j] -= A[i, k0:k1] . A[j, k0:k1] for
 * k1 <= j <= i, over 4 x 4 tiles of (i, j) with 16 accumulators (scalar at the diagonal and edges).
 */
export function choleskyUpdateRows(
  a: Float64Array,
  n: number,
  k0: number,
  k1: number,
  rowStart: number,
  rowEnd: number,
): void {
  for (let i0 = rowStart; i0 < rowEnd; i0 += 4) {
    const iCount = Math.min(4, rowEnd - i0);
    const iLast = i0 + iCount - 1;
    for (let j0 = k1; j0 <= iLast; j0 += 4) {
      if (iCount === 4 && j0 + 3 <= i0) {
        const ra0 = i0 * n;
        const ra1 = ra0 + n;
        const ra2 = ra1 + n;
        const ra3 = ra2 + n;
        const rb0 = j0 * n;
        const rb1 = rb0 + n;
        const rb2 = rb1 + n;
        const rb3 = rb2 + n;
        let s00 = 0;
        let s01 = 0;
        let s02 = 0;
        let s03 = 0;
        let s10 = 0;
        let s11 = 0;
        let s12 = 0;
        let s13 = 0;
        let s20 = 0;
        let s21 = 0;
        let s22 = 0;
        let s23 = 0;
        let s30 = 0;
        let s31 = 0;
        let s32 = 0;
        let s33 = 0;
        for (let t = k0; t < k1; t++) {
          const x0 = a[ra0 + t];
          const x1 = a[ra1 + t];
          const x2 = a[ra2 + t];
          const x3 = a[ra3 + t];
          const y0 = a[rb0 + t];
          const y1 = a[rb1 + t];
          const y2 = a[rb2 + t];
          const y3 = a[rb3 + t];
          s00 += x0 * y0;
          s01 += x0 * y1;
          s02 += x0 * y2;
          s03 += x0 * y3;
          s10 += x1 * y0;
          s11 += x1 * y1;
          s12 += x1 * y2;
          s13 += x1 * y3;
          s20 += x2 * y0;
          s21 += x2 * y1;
          s22 += x2 * y2;
          s23 += x2 * y3;
          s30 += x3 * y0;
          s31 += x3 * y1;
          s32 += x3 * y2;
          s33 += x3 * y3;
        }
        a[ra0 + j0] -= s00;
        a[ra0 + j0 + 1] -= s01;
        a[ra0 + j0 + 2] -= s02;
        a[ra0 + j0 + 3] -= s03;
        a[ra1 + j0] -= s10;
        a[ra1 + j0 + 1] -= s11;
        a[ra1 + j0 + 2] -= s12;
        a[ra1 + j0 + 3] -= s13;
        a[ra2 + j0] -= s20;
        a[ra2 + j0 + 1] -= s21;
        a[ra2 + j0 + 2] -= s22;
        a[ra2 + j0 + 3] -= s23;
        a[ra3 + j0] -= s30;
        a[ra3 + j0 + 1] -= s31;
        a[ra3 + j0 + 2] -= s32;
        a[ra3 + j0 + 3] -= s33;
      } else {
        for (let i = i0; i <= iLast; i++) {
          const ri = i * n;
          const jEnd = Math.min(j0 + 3, i);
          for (let j = j0; j <= jEnd; j++) {
            const rj = j * n;
            let sum = 0;
            for (let t = k0; t < k1; t++) sum += a[ri + t] * a[rj + t];
            a[ri + j] -= sum;
          }
        }
      }
    }
  }
}

/**
 * Columns [colStart, colEnd) of X = L^-1 for lower-triangular L (n x n row-major, upper part ignored).
 * X must be zero in those columns on entry. Forward substitution over 4-row x 4-column tiles: the
 * dot products over finished rows k < i0 run with 16 accumulators in registers, then the triangle
 * inside the row quad is finished row by row.
 */
export function lowerInverseColumns(
  l: Float64Array,
  n: number,
  x: Float64Array,
  colStart: number,
  colEnd: number,
): void {
  const acc = new Float64Array(16);
  for (let i0 = colStart; i0 < n; i0 += 4) {
    const iCount = Math.min(4, n - i0);
    for (let c0 = colStart; c0 < colEnd && c0 < i0 + iCount; c0 += 4) {
      const cCount = Math.min(4, colEnd - c0);
      if (iCount === 4 && cCount === 4) {
        const r0 = i0 * n;
        const r1 = r0 + n;
        const r2 = r1 + n;
        const r3 = r2 + n;
        let s00 = 0;
        let s01 = 0;
        let s02 = 0;
        let s03 = 0;
        let s10 = 0;
        let s11 = 0;
        let s12 = 0;
        let s13 = 0;
        let s20 = 0;
        let s21 = 0;
        let s22 = 0;
        let s23 = 0;
        let s30 = 0;
        let s31 = 0;
        let s32 = 0;
        let s33 = 0;
        for (let k = c0; k < i0; k++) {
          const xk = k * n + c0;
          const x0 = x[xk];
          const x1 = x[xk + 1];
          const x2 = x[xk + 2];
          const x3 = x[xk + 3];
          const l0 = l[r0 + k];
          const l1 = l[r1 + k];
          const l2 = l[r2 + k];
          const l3 = l[r3 + k];
          s00 += l0 * x0;
          s01 += l0 * x1;
          s02 += l0 * x2;
          s03 += l0 * x3;
          s10 += l1 * x0;
          s11 += l1 * x1;
          s12 += l1 * x2;
          s13 += l1 * x3;
          s20 += l2 * x0;
          s21 += l2 * x1;
          s22 += l2 * x2;
          s23 += l2 * x3;
          s30 += l3 * x0;
          s31 += l3 * x1;
          s32 += l3 * x2;
          s33 += l3 * x3;
        }
        acc[0] = s00;
        acc[1] = s01;
        acc[2] = s02;
        acc[3] = s03;
        acc[4] = s10;
        acc[5] = s11;
        acc[6] = s12;
        acc[7] = s13;
        acc[8] = s20;
        acc[9] = s21;
        acc[10] = s22;
        acc[11] = s23;
        acc[12] = s30;
        acc[13] = s31;
        acc[14] = s32;
        acc[15] = s33;
      } else {
        for (let r = 0; r < iCount; r++) {
          const ri = (i0 + r) * n;
          for (let c = 0; c < cCount; c++) {
            let sum = 0;
            for (let k = c0; k < i0; k++) sum += l[ri + k] * x[k * n + c0 + c];
            acc[r * 4 + c] = sum;
          }
        }
      }
      for (let r = 0; r < iCount; r++) {
        const i = i0 + r;
        const ri = i * n;
        for (let c = 0; c < cCount; c++) {
          const col = c0 + c;
          if (col > i) continue;
          if (col === i) {
            x[ri + i] = 1 / l[ri + i];
            continue;
          }
          let sum = acc[r * 4 + c];
          for (let k = i0; k < i; k++) sum += l[ri + k] * x[k * n + col];
          x[ri + col] = -sum / l[ri + i];
        }
      }
    }
  }
}

/**
 * sum_r weights[r] * (w - q(w) s)^2 over a group's column, q(w) = clamp(round(w / s), qmin, qmax)
 * (w / s as w * (1 / s)), summed in row order: the definition the scale search must reproduce.
 */
export function groupScaleError(
  col: Float64Array,
  wts: Float64Array,
  rowCount: number,
  signed: number,
  qmin: number,
  qmax: number,
): number {
  const inv = 1 / signed;
  let err = 0;
  for (let r = 0; r < rowCount; r++) {
    const w = col[r];
    let level = roundHalfEven(w * inv);
    level = level < qmin ? qmin : level > qmax ? qmax : level;
    const d = w - level * signed;
    err += wts[r] * d * d;
  }
  return err;
}

/**
 * Hessian-weighted scale search for one group of rows of a (rows x out) fp32 matrix, columns
 * [o0, o1) (one output feature each). For every output it tries scales s = f * base, f on a grid
 * from 1 down to minShrink, where base is the smallest scale that clips nothing, rounds each to
 * fp16, and keeps the first with the least sum_r weights[r] * (w - q(w))^2 (`groupScaleError`).
 * With allowNegative it also tries the mirrored orientation (a negative scale puts the extra int2
 * level on the other side). Results (fp16-exact values) go to scalesOut[scalesOffset + o].
 *
 * Two passes per output, so that the result is the plain search's, bit for bit, at a fraction of
 * its cost. First, every candidate of an orientation at once: as the scale shrinks, a weight's
 * level only moves away from 0, one step at a time, so each weight adds its steps (to level m at
 * the first candidate with |w| > (m - 0.5) s, found from a guessed index without dividing) to the
 * candidate where they happen, and a sweep over the candidates gives each one's
 * sum c w^2 - 2 s sum c q w + s^2 sum c q^2. Those differ from the row-order sums only by
 * rounding (a weight on a level boundary may land on the other side, where both levels' errors
 * agree to rounding), at most `tolerance` apart; so, second, only the candidates rated within
 * 2 * tolerance of the best are summed the plain way, in the plain search's order.
 */
export function searchGroupScales(
  rows: Float32Array,
  out: number,
  rowStart: number,
  rowCount: number,
  weights: Float64Array,
  weightOffset: number,
  o0: number,
  o1: number,
  qmin: number,
  qmax: number,
  grid: number,
  minShrink: number,
  allowNegative: boolean,
  scalesOut: Float32Array,
  scalesOffset: number,
): void {
  const smallest = 2 ** -24;
  const largest = 65504;
  const orientations = allowNegative && qmin !== -qmax ? 2 : 1;
  const steps = grid > 1 ? grid : 1;
  const levels = Math.max(qmax, -qmin);
  // The group's column for one output, gathered contiguously (it is strided by `out` in `rows`).
  const col = new Float64Array(rowCount);
  const wts = weights.subarray(weightOffset, weightOffset + rowCount);
  // Per orientation: its distinct candidate scales (non-increasing), their first-pass errors, and
  // the per-candidate steps of sum c q w and sum c q^2.
  const cand = new Float64Array(2 * steps);
  const fast = new Float64Array(2 * steps);
  const linear = new Float64Array(steps + 1);
  const quadratic = new Float64Array(steps + 1);
  const counts = [0, 0];
  let weightSum = 0;
  for (let r = 0; r < rowCount; r++) weightSum += wts[r];
  const shrinkPerStep = steps > 1 ? (1 - minShrink) / (steps - 1) : 1;
  for (let o = o0; o < o1; o++) {
    let mx = 0;
    let mn = 0;
    let squares = 0;
    for (let r = 0; r < rowCount; r++) {
      const w = rows[(rowStart + r) * out + o];
      col[r] = w;
      squares += wts[r] * w * w;
      if (w > mx) mx = w;
      if (w < mn) mn = w;
    }
    if (mx === 0 && mn === 0) {
      scalesOut[scalesOffset + o] = 0;
      continue;
    }
    let fastBest = Number.POSITIVE_INFINITY;
    let biggestScale = 0;
    for (let orient = 0; orient < orientations; orient++) {
      const sign = orient === 0 ? 1 : -1;
      const hi = sign > 0 ? mx : -mn;
      const lo = sign > 0 ? mn : -mx;
      const base = Math.max(hi / qmax, lo / qmin);
      const at = orient * steps;
      let count = 0;
      let lastScale = -1;
      for (let k = 0; k < steps; k++) {
        const f = steps > 1 ? 1 - shrinkPerStep * k : 1;
        let s = roundToFp16(base * f);
        if (s < smallest) s = smallest;
        if (s > largest) s = largest;
        if (s === lastScale) continue;
        lastScale = s;
        cand[at + count++] = s;
      }
      counts[orient] = count;
      if (cand[at] > biggestScale) biggestScale = cand[at];
      linear.fill(0, 0, count + 1);
      quadratic.fill(0, 0, count + 1);
      for (let r = 0; r < rowCount; r++) {
        const w = sign * col[r];
        if (w === 0) continue;
        const a = w > 0 ? w : -w;
        const top = w > 0 ? qmax : -qmin;
        const c = wts[r];
        let j = 0;
        for (let m = 1; m <= top; m++) {
          // First candidate with a > (m - 0.5) s: candidate k is about base (1 - shrinkPerStep k).
          const t = m - 0.5;
          let guess = Math.ceil((1 - a / (t * base)) / shrinkPerStep);
          // (NaN, from a grid without shrink, falls back to j)
          guess = guess > j ? (guess > count ? count : guess) : j;
          while (guess > j && a > t * cand[at + guess - 1]) guess--;
          while (guess < count && !(a > t * cand[at + guess])) guess++;
          if (guess === count) break;
          j = guess;
          linear[j] += c * a;
          quadratic[j] += c * (2 * m - 1);
        }
      }
      let runLinear = 0;
      let runQuadratic = 0;
      for (let k = 0; k < count; k++) {
        runLinear += linear[k];
        runQuadratic += quadratic[k];
        const s = cand[at + k];
        const e = squares - 2 * s * runLinear + s * s * runQuadratic;
        fast[at + k] = e;
        if (e < fastBest) fastBest = e;
      }
    }
    // Rounding bound of either sum for one candidate: fewer than (2 levels + 4) rowCount + 2 steps
    // roundings of terms that add up to at most weightSum (max|w| + levels s)^2, plus rowCount
    // boundary weights (2^-50 weightSum s^2 (2 levels + 1)); doubled for margin.
    const amax = mx > -mn ? mx : -mn;
    const spread = amax + levels * biggestScale;
    const tolerance =
      2 *
      2 ** -52 *
      weightSum *
      spread *
      spread *
      ((2 * levels + 4) * rowCount + 2 * steps + 4 * (2 * levels + 1));
    let bestErr = Number.POSITIVE_INFINITY;
    let bestScale = 0;
    for (let orient = 0; orient < orientations; orient++) {
      const sign = orient === 0 ? 1 : -1;
      const at = orient * steps;
      for (let k = 0; k < counts[orient]; k++) {
        if (fast[at + k] > fastBest + 2 * tolerance) continue;
        const signed = sign * cand[at + k];
        const err = groupScaleError(col, wts, rowCount, signed, qmin, qmax);
        if (err < bestErr) {
          bestErr = err;
          bestScale = signed;
        }
      }
    }
    scalesOut[scalesOffset + o] = bestScale;
  }
}

/**
 * The GPTQ column sweep over one block of processing positions [r0, r1) for outputs [o0, o1).
 * block holds rows r0..r1 of the (permuted) transposed weight Wt (rows = input features in processing
 * order, columns = outputs); u is the upper Cholesky factor of H^-1 (n x n, processing order).
 * Per position p: quantize with its group's scale, store the code at the natural input row perm[p],
 * write the scaled error to err, and push it onto the later rows of the block (the eager part; the
 * lazy update of rows >= r1 is a separate rank-k update). A group that starts inside the block and
 * ends within it gets its scales searched here, on the weights as updated so far.
 * Returns the GPTQ loss sum((w - q)^2 / d^2) / 2 of this slice.
 */
export function sweepBlock(
  block: Float32Array,
  out: number,
  u: Float64Array,
  n: number,
  r0: number,
  r1: number,
  o0: number,
  o1: number,
  err: Float32Array,
  codes: Uint8Array,
  scales: Float32Array,
  perm: Int32Array,
  groupsize: number,
  searchWeights: Float64Array,
  qmin: number,
  qmax: number,
  grid: number,
  minShrink: number,
  allowNegative: boolean,
): number {
  const count = r1 - r0;
  let loss = 0;
  for (let i = 0; i < count; i++) {
    const p = r0 + i;
    const natural = perm[p];
    const group = Math.floor(natural / groupsize);
    const scaleRow = group * out;
    if (p % groupsize === 0 && p + groupsize <= r1) {
      searchGroupScales(
        block,
        out,
        i,
        groupsize,
        searchWeights,
        p,
        o0,
        o1,
        qmin,
        qmax,
        grid,
        minShrink,
        allowNegative,
        scales,
        scaleRow,
      );
    }
    const d = u[p * n + p];
    const invD = 1 / d;
    const row = i * out;
    const codeRow = natural * out;
    for (let o = o0; o < o1; o++) {
      const w = block[row + o];
      const s = scales[scaleRow + o];
      let level = 0;
      if (s !== 0) {
        level = roundHalfEven(w / s);
        if (level < qmin) level = qmin;
        else if (level > qmax) level = qmax;
      }
      const diff = w - level * s;
      codes[codeRow + o] = level + 1;
      const e = diff * invD;
      err[row + o] = e;
      loss += e * e;
    }
    // Eager update of the rest of the block: row j -= U[p][r0 + j] * err_i.
    const uRow = p * n + r0;
    for (let j = i + 1; j < count; j++) {
      const c = u[uRow + j];
      if (c === 0) continue;
      const rj = j * out;
      for (let o = o0; o < o1; o++) block[rj + o] -= c * err[row + o];
    }
  }
  return loss / 2;
}

/**
 * Lazy batch update of the rows after a block, outputs [o0, o1):
 * wt[j][o] -= sum_t u[r0 + t][j] * err[t][o] for j in [r1, n), t in [0, r1 - r0).
 */
export function rankUpdateRows(
  wt: Float32Array,
  out: number,
  u: Float64Array,
  n: number,
  r0: number,
  r1: number,
  err: Float32Array,
  o0: number,
  o1: number,
): void {
  const count = r1 - r0;
  for (let j = r1; j < n; j++) {
    const row = j * out;
    let t = 0;
    for (; t + 8 <= count; t += 8) {
      const base = (r0 + t) * n + j;
      const a0 = u[base];
      const a1 = u[base + n];
      const a2 = u[base + 2 * n];
      const a3 = u[base + 3 * n];
      const a4 = u[base + 4 * n];
      const a5 = u[base + 5 * n];
      const a6 = u[base + 6 * n];
      const a7 = u[base + 7 * n];
      const e0 = t * out;
      const e1 = e0 + out;
      const e2 = e1 + out;
      const e3 = e2 + out;
      const e4 = e3 + out;
      const e5 = e4 + out;
      const e6 = e5 + out;
      const e7 = e6 + out;
      for (let o = o0; o < o1; o++) {
        wt[row + o] -=
          a0 * err[e0 + o] +
          a1 * err[e1 + o] +
          a2 * err[e2 + o] +
          a3 * err[e3 + o] +
          a4 * err[e4 + o] +
          a5 * err[e5 + o] +
          a6 * err[e6 + o] +
          a7 * err[e7 + o];
      }
    }
    for (; t < count; t++) {
      const a = u[(r0 + t) * n + j];
      if (a === 0) continue;
      const e = t * out;
      for (let o = o0; o < o1; o++) wt[row + o] -= a * err[e + o];
    }
  }
}

/** The kernels a pool task may name (helpers above are shipped too, as they are called by these). */
export const KERNELS = {
  gramUpperRows,
  choleskyPanelRows,
  choleskyUpdateRows,
  lowerInverseColumns,
  searchGroupScales,
  sweepBlock,
  rankUpdateRows,
} as const;

/** Every function of this file, in definition order: the worker's source. */
export const KERNEL_SOURCE_FUNCTIONS = [
  roundHalfEven,
  roundToFp16,
  gramUpperRows,
  choleskyDiagonalBlock,
  choleskyPanelRows,
  choleskyUpdateRows,
  lowerInverseColumns,
  groupScaleError,
  searchGroupScales,
  sweepBlock,
  rankUpdateRows,
] as const;

export type KernelName = keyof typeof KERNELS;
