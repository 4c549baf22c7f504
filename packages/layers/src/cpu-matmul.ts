/**
 * The CPU reference matmul: `y (rows, out) = x (rows, in) @ W^T + bias` with `W (out, in)` row-major,
 * the PyTorch `Linear.weight` orientation. Register-blocked over four input rows and two outputs, so
 * that each loaded weight serves four rows and each loaded input two outputs (about 1.5x the speed
 * of four rows by one output in V8); every sum still runs over `in` in order, in float64
 * (JavaScript numbers), and is stored as fp32, so the blocking does not change a single result.
 */
export function matmulWeightRows(
  x: Float32Array,
  rows: number,
  inFeatures: number,
  weight: Float32Array,
  outFeatures: number,
  bias: Float32Array | undefined,
  y: Float32Array,
): void {
  const K = inFeatures;
  const N = outFeatures;
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const x0 = r * K;
    const x1 = x0 + K;
    const x2 = x1 + K;
    const x3 = x2 + K;
    const y0 = r * N;
    let o = 0;
    for (; o + 2 <= N; o += 2) {
      const wa = o * K;
      const wb = wa + K;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let i = 0; i < K; i++) {
        const u = weight[wa + i];
        const v = weight[wb + i];
        const p0 = x[x0 + i];
        const p1 = x[x1 + i];
        const p2 = x[x2 + i];
        const p3 = x[x3 + i];
        a0 += p0 * u;
        a1 += p1 * u;
        a2 += p2 * u;
        a3 += p3 * u;
        b0 += p0 * v;
        b1 += p1 * v;
        b2 += p2 * v;
        b3 += p3 * v;
      }
      const ba = bias === undefined ? 0 : bias[o];
      const bb = bias === undefined ? 0 : bias[o + 1];
      y[y0 + o] = a0 + ba;
      y[y0 + N + o] = a1 + ba;
      y[y0 + 2 * N + o] = a2 + ba;
      y[y0 + 3 * N + o] = a3 + ba;
      y[y0 + o + 1] = b0 + bb;
      y[y0 + N + o + 1] = b1 + bb;
      y[y0 + 2 * N + o + 1] = b2 + bb;
      y[y0 + 3 * N + o + 1] = b3 + bb;
    }
    if (o < N) {
      // an odd output count: the last output alone
      const wa = o * K;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let i = 0; i < K; i++) {
        const u = weight[wa + i];
        a0 += x[x0 + i] * u;
        a1 += x[x1 + i] * u;
        a2 += x[x2 + i] * u;
        a3 += x[x3 + i] * u;
      }
      const ba = bias === undefined ? 0 : bias[o];
      y[y0 + o] = a0 + ba;
      y[y0 + N + o] = a1 + ba;
      y[y0 + 2 * N + o] = a2 + ba;
      y[y0 + 3 * N + o] = a3 + ba;
    }
  }
  // The last rows (all of them when decoding one token): four outputs per block, so that each
  // loaded input serves four weight rows (about 1.8x one output at a time).
  for (; r < rows; r++) {
    const x0 = r * K;
    const y0 = r * N;
    let o = 0;
    for (; o + 4 <= N; o += 4) {
      const wa = o * K;
      const wb = wa + K;
      const wc = wb + K;
      const wd = wc + K;
      let a = 0;
      let b = 0;
      let c = 0;
      let d = 0;
      for (let i = 0; i < K; i++) {
        const p = x[x0 + i];
        a += p * weight[wa + i];
        b += p * weight[wb + i];
        c += p * weight[wc + i];
        d += p * weight[wd + i];
      }
      y[y0 + o] = a + (bias === undefined ? 0 : bias[o]);
      y[y0 + o + 1] = b + (bias === undefined ? 0 : bias[o + 1]);
      y[y0 + o + 2] = c + (bias === undefined ? 0 : bias[o + 2]);
      y[y0 + o + 3] = d + (bias === undefined ? 0 : bias[o + 3]);
    }
    for (; o < N; o++) {
      const w0 = o * K;
      let s = 0;
      for (let i = 0; i < K; i++) s += x[x0 + i] * weight[w0 + i];
      y[y0 + o] = s + (bias === undefined ? 0 : bias[o]);
    }
  }
}

/**
 * The same matmul over ternary/2-bit weights kept as levels: `W[o][i] = levels[o * K + i] *
 * scales[o * groups + floor(i / groupLength)]` with `groups = ceil(K / groupLength)` (a quarter of
 * the memory of fp32 weights). Each weight is rebuilt exactly (a small integer times an fp16 value)
 * where it is used, and every sum runs in the same order as {@link matmulWeightRows}, so the two
 * give bit-identical results for the same weights. Self-contained (the CPU threads run its source).
 */
export function matmulLevelRows(
  x: Float32Array,
  rows: number,
  inFeatures: number,
  levels: Int8Array,
  scales: Float32Array,
  groupLength: number,
  outFeatures: number,
  bias: Float32Array | undefined,
  y: Float32Array,
): void {
  const K = inFeatures;
  const N = outFeatures;
  const G = groupLength;
  const groups = Math.ceil(K / G);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const x0 = r * K;
    const x1 = x0 + K;
    const x2 = x1 + K;
    const x3 = x2 + K;
    const y0 = r * N;
    let o = 0;
    for (; o + 2 <= N; o += 2) {
      const wa = o * K;
      const wb = wa + K;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let g = 0; g < groups; g++) {
        const sa = scales[o * groups + g];
        const sb = scales[(o + 1) * groups + g];
        const end = Math.min(K, (g + 1) * G);
        for (let i = g * G; i < end; i++) {
          const u = levels[wa + i] * sa;
          const v = levels[wb + i] * sb;
          const p0 = x[x0 + i];
          const p1 = x[x1 + i];
          const p2 = x[x2 + i];
          const p3 = x[x3 + i];
          a0 += p0 * u;
          a1 += p1 * u;
          a2 += p2 * u;
          a3 += p3 * u;
          b0 += p0 * v;
          b1 += p1 * v;
          b2 += p2 * v;
          b3 += p3 * v;
        }
      }
      const ba = bias === undefined ? 0 : bias[o];
      const bb = bias === undefined ? 0 : bias[o + 1];
      y[y0 + o] = a0 + ba;
      y[y0 + N + o] = a1 + ba;
      y[y0 + 2 * N + o] = a2 + ba;
      y[y0 + 3 * N + o] = a3 + ba;
      y[y0 + o + 1] = b0 + bb;
      y[y0 + N + o + 1] = b1 + bb;
      y[y0 + 2 * N + o + 1] = b2 + bb;
      y[y0 + 3 * N + o + 1] = b3 + bb;
    }
    if (o < N) {
      const wa = o * K;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let g = 0; g < groups; g++) {
        const sa = scales[o * groups + g];
        const end = Math.min(K, (g + 1) * G);
        for (let i = g * G; i < end; i++) {
          const u = levels[wa + i] * sa;
          a0 += x[x0 + i] * u;
          a1 += x[x1 + i] * u;
          a2 += x[x2 + i] * u;
          a3 += x[x3 + i] * u;
        }
      }
      const ba = bias === undefined ? 0 : bias[o];
      y[y0 + o] = a0 + ba;
      y[y0 + N + o] = a1 + ba;
      y[y0 + 2 * N + o] = a2 + ba;
      y[y0 + 3 * N + o] = a3 + ba;
    }
  }
  for (; r < rows; r++) {
    const x0 = r * K;
    const y0 = r * N;
    let o = 0;
    for (; o + 4 <= N; o += 4) {
      const wa = o * K;
      const wb = wa + K;
      const wc = wb + K;
      const wd = wc + K;
      let a = 0;
      let b = 0;
      let c = 0;
      let d = 0;
      for (let g = 0; g < groups; g++) {
        const sa = scales[o * groups + g];
        const sb = scales[(o + 1) * groups + g];
        const sc = scales[(o + 2) * groups + g];
        const sd = scales[(o + 3) * groups + g];
        const end = Math.min(K, (g + 1) * G);
        for (let i = g * G; i < end; i++) {
          const p = x[x0 + i];
          a += p * (levels[wa + i] * sa);
          b += p * (levels[wb + i] * sb);
          c += p * (levels[wc + i] * sc);
          d += p * (levels[wd + i] * sd);
        }
      }
      y[y0 + o] = a + (bias === undefined ? 0 : bias[o]);
      y[y0 + o + 1] = b + (bias === undefined ? 0 : bias[o + 1]);
      y[y0 + o + 2] = c + (bias === undefined ? 0 : bias[o + 2]);
      y[y0 + o + 3] = d + (bias === undefined ? 0 : bias[o + 3]);
    }
    for (; o < N; o++) {
      const w0 = o * K;
      let s = 0;
      for (let g = 0; g < groups; g++) {
        const sa = scales[o * groups + g];
        const end = Math.min(K, (g + 1) * G);
        for (let i = g * G; i < end; i++) s += x[x0 + i] * (levels[w0 + i] * sa);
      }
      y[y0 + o] = s + (bias === undefined ? 0 : bias[o]);
    }
  }
}
