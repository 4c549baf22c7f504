/**
 * The TriRun packed layout (byte-compatible with the reference `Layer.pack`).
 *
 * Codes are `(k, n)` row-major with values 0..3 (level = code - 1). Weights pack into
 * `(k/16, n)` int32 words; scales `(k/g, n)` fp16 bits are permuted in place-sized chunks.
 * See docs/trirun-format.md for the derivation of the permutations.
 */

/** Codes of one 16-row tile stream that one permutation chunk covers (4 tiles = 64 columns). */
const CHUNK = 1024;
/** Columns covered by one permutation chunk. */
export const CHUNK_COLUMNS = 64;
/** Rows of one tile (and codes per int32 word). */
export const TILE = 16;

function buildWeightPermutation(): Uint16Array {
  const base: number[] = [];
  for (let lane = 0; lane < 32; lane++) {
    const col = lane >> 2;
    const r0 = 2 * (lane % 4);
    const lanePerm: number[] = [];
    for (const block of [0, 1]) {
      for (const row of [r0, r0 + 1, r0 + 8, r0 + 9]) lanePerm.push(16 * row + col + 8 * block);
    }
    for (let j = 0; j < 4; j++) for (const p of lanePerm) base.push(p + 256 * j);
  }
  const interleave8 = [0, 2, 4, 6, 1, 3, 5, 7];
  const step2: number[] = [];
  for (let g = 0; g < CHUNK; g += 8) for (const p of interleave8) step2.push(base[g + p]);
  const interleave16 = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
  const out = new Uint16Array(CHUNK);
  let t = 0;
  for (let g = 0; g < CHUNK; g += 16) for (const p of interleave16) out[t++] = step2[g + p];
  return out;
}

function buildScalePermutations(): { grouped: Uint8Array; single: Uint8Array } {
  const grouped = new Uint8Array(64);
  let t = 0;
  for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) grouped[t++] = i + 8 * j;
  const single = new Uint8Array(32);
  t = 0;
  for (let i = 0; i < 4; i++) for (const j of [0, 1, 8, 9, 16, 17, 24, 25]) single[t++] = 2 * i + j;
  return { grouped, single };
}

/** `out[t] = in[P[t]]` within every 1024-code chunk of a tile-row stream. */
export const WEIGHT_PERMUTATION: Readonly<Uint16Array> = buildWeightPermutation();
const SCALE_PERMS = buildScalePermutations();
/** Scale permutation for grouped scales (g = 128), applied to every 64 entries. */
export const SCALE_PERMUTATION_GROUPED: Readonly<Uint8Array> = SCALE_PERMS.grouped;
/** Scale permutation for one group per column (g = k), applied to every 32 entries. */
export const SCALE_PERMUTATION_SINGLE: Readonly<Uint8Array> = SCALE_PERMS.single;

/**
 * For a code matrix addressed as `src[row * rowStride + col * colStride]`, the offset (relative to
 * a chunk's top-left code) of every permuted position t of the chunk. Cached per stride pair
 * because pack/unpack of many layers reuse a few widths.
 */
const offsetCache = new Map<string, Int32Array>();
function chunkSourceOffsets(rowStride: number, colStride: number): Int32Array {
  const key = `${rowStride},${colStride}`;
  let offsets = offsetCache.get(key);
  if (offsets === undefined) {
    offsets = new Int32Array(CHUNK);
    for (let t = 0; t < CHUNK; t++) {
      const p = WEIGHT_PERMUTATION[t];
      const row = (p >> 4) & 15;
      const col = (p >> 8) * 16 + (p & 15);
      offsets[t] = row * rowStride + col * colStride;
    }
    if (offsetCache.size > 64) offsetCache.clear();
    offsetCache.set(key, offsets);
  }
  return offsets;
}

/**
 * Packs output columns [c0, c0 + 64) of a `(k, n)` code matrix stored at
 * `src[base + row * rowStride + (col - c0) * colStride]` into `packed` (`(k/16, n)` words).
 * Returns the OR of every code read, so that callers can detect codes above 3 in one test.
 * @internal Shared by packWeights and the fused quantize-and-pack path.
 */
export function packColumnBlock(
  src: Uint8Array,
  base: number,
  rowStride: number,
  colStride: number,
  k: number,
  n: number,
  c0: number,
  packed: Int32Array,
): number {
  const off = chunkSourceOffsets(rowStride, colStride);
  let seen = 0;
  for (let tr = 0; tr < k / TILE; tr++) {
    const inBase = base + tr * TILE * rowStride;
    const outBase = tr * n + c0;
    for (let w = 0, t = 0; w < 64; w++, t += 16) {
      // Unrolled: one word takes 16 consecutive permuted codes, code i in bits 2i..2i+1.
      const c0_ = src[inBase + off[t]];
      const c1 = src[inBase + off[t + 1]];
      const c2 = src[inBase + off[t + 2]];
      const c3 = src[inBase + off[t + 3]];
      const c4 = src[inBase + off[t + 4]];
      const c5 = src[inBase + off[t + 5]];
      const c6 = src[inBase + off[t + 6]];
      const c7 = src[inBase + off[t + 7]];
      const c8 = src[inBase + off[t + 8]];
      const c9 = src[inBase + off[t + 9]];
      const c10 = src[inBase + off[t + 10]];
      const c11 = src[inBase + off[t + 11]];
      const c12 = src[inBase + off[t + 12]];
      const c13 = src[inBase + off[t + 13]];
      const c14 = src[inBase + off[t + 14]];
      const c15 = src[inBase + off[t + 15]];
      seen |= c0_ | c1 | c2 | c3 | c4 | c5 | c6 | c7 | c8 | c9 | c10 | c11 | c12 | c13 | c14 | c15;
      packed[outBase + w] =
        c0_ |
        (c1 << 2) |
        (c2 << 4) |
        (c3 << 6) |
        (c4 << 8) |
        (c5 << 10) |
        (c6 << 12) |
        (c7 << 14) |
        (c8 << 16) |
        (c9 << 18) |
        (c10 << 20) |
        (c11 << 22) |
        (c12 << 24) |
        (c13 << 26) |
        (c14 << 28) |
        (c15 << 30);
    }
  }
  return seen;
}

function checkDim(value: unknown, name: string): asserts value is number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${String(value)}`);
  }
  if (value <= 0) throw new RangeError(`${name} must be positive, got ${value}`);
}

/** Validates `k` and `n` for the weight layout: k % 16 == 0 (tile rows), n % 64 == 0 (permutation chunk). */
export function checkWeightShape(k: number, n: number): void {
  checkDim(k, "k");
  checkDim(n, "n");
  if (k % TILE !== 0) throw new RangeError(`k must be a multiple of ${TILE}, got ${k}`);
  if (n % CHUNK_COLUMNS !== 0) throw new RangeError(`n must be a multiple of ${CHUNK_COLUMNS}, got ${n}`);
}

/**
 * Packs `(k, n)` row-major codes 0..3 into the reference `(k/16, n)` int32 layout.
 * @throws TypeError if `codes` is not a Uint8Array; RangeError for bad shapes or codes above 3.
 */
export function packWeights(codes: Uint8Array, k: number, n: number): Int32Array {
  if (!(codes instanceof Uint8Array)) throw new TypeError("codes must be a Uint8Array of values 0..3");
  checkWeightShape(k, n);
  if (codes.length !== k * n) {
    throw new RangeError(`codes must have k * n = ${k * n} elements, got ${codes.length}`);
  }
  const out = new Int32Array((k / TILE) * n);
  let seen = 0;
  for (let c0 = 0; c0 < n; c0 += CHUNK_COLUMNS) seen |= packColumnBlock(codes, c0, n, 1, k, n, c0, out);
  if (seen > 3) {
    const index = codes.findIndex((v) => v > 3);
    const row = Math.floor(index / n);
    throw new RangeError(
      `codes must be in 0..3; codes[${index}] (row ${row}, column ${index - row * n}) = ${codes[index]}`,
    );
  }
  return out;
}

/** Inverse of {@link packWeights}: `(k/16, n)` int32 words back to `(k, n)` codes 0..3. */
export function unpackWeights(packed: Int32Array, k: number, n: number): Uint8Array {
  if (!(packed instanceof Int32Array)) throw new TypeError("packed must be an Int32Array");
  checkWeightShape(k, n);
  if (packed.length !== (k / TILE) * n) {
    throw new RangeError(`packed must have (k / 16) * n = ${(k / TILE) * n} elements, got ${packed.length}`);
  }
  const codes = new Uint8Array(k * n);
  const off = chunkSourceOffsets(n, 1);
  for (let tr = 0; tr < k / TILE; tr++) {
    const rowBase = tr * TILE * n;
    const inRow = tr * n;
    for (let c = 0; c < n; c += CHUNK_COLUMNS) {
      const base = rowBase + c;
      const inBase = inRow + c;
      for (let w = 0, t = 0; w < 64; w++, t += 16) {
        const word = packed[inBase + w];
        for (let b = 0; b < 16; b++) codes[base + off[t + b]] = (word >>> (2 * b)) & 3;
      }
    }
  }
  return codes;
}

/** Resolves the group size (-1 or k means one group per column) and checks it. */
export function resolveGroupSize(groupsize: number, k: number): number {
  if (typeof groupsize !== "number" || !Number.isInteger(groupsize)) {
    throw new TypeError(`groupsize must be an integer (128, -1 or k), got ${String(groupsize)}`);
  }
  if (groupsize === -1 || groupsize === k) return k;
  if (groupsize !== 128) throw new RangeError(`groupsize must be 128, -1 or k (${k}), got ${groupsize}`);
  if (k % groupsize !== 0) throw new RangeError(`k must be a multiple of groupsize ${groupsize}, got ${k}`);
  return groupsize;
}

function permuteScales(
  scales: Uint16Array,
  k: number,
  n: number,
  groupsize: number,
  inverse: boolean,
  argName: string,
): Uint16Array {
  if (!(scales instanceof Uint16Array)) throw new TypeError(`${argName} must be a Uint16Array of fp16 bits`);
  checkDim(k, "k");
  checkDim(n, "n");
  const g = resolveGroupSize(groupsize, k);
  const single = g === k;
  const perm = single ? SCALE_PERMUTATION_SINGLE : SCALE_PERMUTATION_GROUPED;
  if (n % perm.length !== 0) {
    throw new RangeError(`n must be a multiple of ${perm.length} for groupsize ${groupsize}, got ${n}`);
  }
  const expected = (k / g) * n;
  if (scales.length !== expected) {
    throw new RangeError(`${argName} must have (k / g) * n = ${expected} elements, got ${scales.length}`);
  }
  const out = new Uint16Array(expected);
  const len = perm.length;
  for (let base = 0; base < expected; base += len) {
    for (let t = 0; t < len; t++) {
      if (inverse) out[base + perm[t]] = scales[base + t];
      else out[base + t] = scales[base + perm[t]];
    }
  }
  return out;
}

/**
 * Permutes natural `(k/g, n)` fp16 scale bits into the reference layout.
 * `groupsize` is 128, or -1 (or k) for one scale per output column.
 */
export function packScales(scales: Uint16Array, k: number, n: number, groupsize: number): Uint16Array {
  return permuteScales(scales, k, n, groupsize, false, "scales");
}

/** Inverse of {@link packScales}. */
export function unpackScales(packed: Uint16Array, k: number, n: number, groupsize: number): Uint16Array {
  return permuteScales(packed, k, n, groupsize, true, "packed");
}
