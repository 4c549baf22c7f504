// The reference TriRun layout (docs/trirun-format.md), written here from the
// format description and independently of the kernel, so that the device
// check can feed the kernel packed weights whose true values it knows. A CPU
// test checks it byte for byte against the reference vectors.

/** The permutation P of 1024 codes (4 tiles of 16x16) within a chunk. */
export function weightPermutation(): Int32Array {
  const base: number[] = [];
  for (let lane = 0; lane < 32; lane++) {
    const col = Math.floor(lane / 4);
    const r0 = 2 * (lane % 4);
    const offsets: number[] = [];
    for (const block of [0, 1]) {
      for (const row of [r0, r0 + 1, r0 + 8, r0 + 9]) offsets.push(16 * row + col + 8 * block);
    }
    for (let j = 0; j < 4; j++) for (const o of offsets) base.push(o + 256 * j);
  }
  const interleave8 = [0, 2, 4, 6, 1, 3, 5, 7];
  const step1 = base.map((_, t) => base[t - (t % 8) + interleave8[t % 8]]);
  const interleave16 = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
  return Int32Array.from(step1.map((_, t) => step1[t - (t % 16) + interleave16[t % 16]]));
}

/** Packs codes (k, n) row-major, values 0..3, into B: int32 (k/16, n). */
export function packWeights(codes: Uint8Array, k: number, n: number): Int32Array {
  if (codes.length !== k * n) throw new RangeError(`codes: expected ${k * n} codes, got ${codes.length}`);
  if (k % 16 !== 0 || n % 64 !== 0) throw new RangeError("k must be a multiple of 16 and n of 64");
  const perm = weightPermutation();
  const out = new Int32Array((k / 16) * n);
  const stream = new Uint8Array(16 * n); // one tile row: its tiles left to right, each row-major
  for (let tr = 0; tr < k / 16; tr++) {
    for (let i = 0; i < 16; i++) {
      const rowBase = (16 * tr + i) * n;
      for (let c = 0; c < n; c++) {
        const tile = c >> 4;
        stream[tile * 256 + i * 16 + (c & 15)] = codes[rowBase + c];
      }
    }
    const outBase = tr * n;
    for (let chunk = 0; chunk < (16 * n) / 1024; chunk++) {
      const chunkBase = chunk * 1024;
      for (let w = 0; w < 64; w++) {
        let word = 0;
        for (let j = 0; j < 16; j++) word |= (stream[chunkBase + perm[w * 16 + j]] & 3) << (2 * j);
        out[outBase + chunk * 64 + w] = word;
      }
    }
  }
  return out;
}

/** Permutes natural scales (k/g, n) (fp16 bits) into the kernel's order. */
export function packScales(scales: Uint16Array, groups: number, n: number): Uint16Array {
  if (scales.length !== groups * n)
    throw new RangeError(`scales: expected ${groups * n} values, got ${scales.length}`);
  const perm: number[] = [];
  if (groups > 1) {
    for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) perm.push(i + 8 * j);
  } else {
    for (let i = 0; i < 4; i++) for (const j of [0, 1, 8, 9, 16, 17, 24, 25]) perm.push(2 * i + j);
  }
  const out = new Uint16Array(scales.length);
  const size = perm.length;
  for (let base = 0; base < scales.length; base += size) {
    for (let t = 0; t < size; t++) out[base + t] = scales[base + perm[t]];
  }
  return out;
}
