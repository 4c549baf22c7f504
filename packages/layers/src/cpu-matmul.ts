/**
 * The CPU reference matmul: `y (rows, out) = x (rows, in) @ W^T + bias` with `W (out, in)` row-major,
 * the PyTorch `Linear.weight` orientation. Blocked over four input rows so that each weight row is
 * read once per block; sums are accumulated in float64 (JavaScript numbers) and stored as fp32.
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
  const ROW_BLOCK = 4;
  let r = 0;
  for (; r + ROW_BLOCK <= rows; r += ROW_BLOCK) {
    const x0 = r * inFeatures;
    const x1 = x0 + inFeatures;
    const x2 = x1 + inFeatures;
    const x3 = x2 + inFeatures;
    const y0 = r * outFeatures;
    for (let o = 0; o < outFeatures; o++) {
      const w0 = o * inFeatures;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = 0; i < inFeatures; i++) {
        const w = weight[w0 + i];
        s0 += x[x0 + i] * w;
        s1 += x[x1 + i] * w;
        s2 += x[x2 + i] * w;
        s3 += x[x3 + i] * w;
      }
      const b = bias === undefined ? 0 : bias[o];
      y[y0 + o] = s0 + b;
      y[y0 + outFeatures + o] = s1 + b;
      y[y0 + 2 * outFeatures + o] = s2 + b;
      y[y0 + 3 * outFeatures + o] = s3 + b;
    }
  }
  for (; r < rows; r++) {
    const x0 = r * inFeatures;
    const y0 = r * outFeatures;
    for (let o = 0; o < outFeatures; o++) {
      const w0 = o * inFeatures;
      let s = 0;
      for (let i = 0; i < inFeatures; i++) s += x[x0 + i] * weight[w0 + i];
      y[y0 + o] = s + (bias === undefined ? 0 : bias[o]);
    }
  }
}
