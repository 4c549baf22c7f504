/**
 * The CUDA backend of every layer. The weights live on the device in a padded shape chosen at
 * pack time; this class hides the padding: it copies the activation `(rows, in)` into a zero-padded
 * scratch `(rows, width)` when `in != width` (plus a constant 1.0 column that carries the bias
 * through the matmul), runs the layer's matmul into `(rows, n)`, and strips `n` down to `out`.
 * Inputs/outputs that are not 16-byte aligned (views) also go through the scratch buffers, since
 * the kernel needs aligned rows. Scratch buffers are kept per stream, so that a layer used on
 * several streams does not race with itself.
 */
import { DeviceTensor, type Stream, synchronize } from "@trirun/kernel-native";

/** fp16 1.0, written into the bias column of the activation scratch. */
const F16_ONE = 0x3c00;
/** Scratch buffers grow in steps of this many rows, so that varying token counts reuse them. */
const ROW_STEP = 64;
/** Alignment of matmul operands that the kernel requires. */
const OPERAND_ALIGN = 16;

/** Runs the layer's matmul: `C (rows, n) = A (rows, width) @ weights`. */
export type DeviceMatmul = (A: DeviceTensor, C: DeviceTensor, stream: Stream | undefined) => void;

export interface CudaCoreSpec {
  inFeatures: number;
  outFeatures: number;
  /** Columns of the activation the matmul reads (>= inFeatures). */
  width: number;
  /** Column of the activation scratch that holds 1.0 (the bias row of the weights), or -1. */
  onesColumn: number;
  /** Columns the matmul writes (>= outFeatures). */
  n: number;
  matmul: DeviceMatmul;
  /** Device tensors holding the weights (freed by dispose, counted by byteLength). */
  weights: DeviceTensor[];
}

interface Scratch {
  tensor: DeviceTensor;
  rows: number;
}

function roundUpRows(rows: number): number {
  return Math.max(ROW_STEP, Math.ceil(rows / ROW_STEP) * ROW_STEP);
}

/** Copies `rows` rows of `columns` elements between row-major tensors of different row strides. */
function copyRows(
  dst: DeviceTensor,
  dstStride: number,
  src: DeviceTensor,
  srcStride: number,
  rows: number,
  columns: number,
  stream: Stream | undefined,
): void {
  dst.copyRowsFrom(src, rows, columns, { dstStride, srcStride, stream });
}

/** Whether two device tensors' bytes overlap (views of one allocation). */
function sharesMemory(a: DeviceTensor, b: DeviceTensor): boolean {
  const a0 = a.address;
  const b0 = b.address;
  return a0 < b0 + BigInt(b.byteLength) && b0 < a0 + BigInt(a.byteLength);
}

export class CudaCore {
  readonly kind = "cuda" as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly width: number;
  readonly n: number;
  readonly #onesColumn: number;
  readonly #matmul: DeviceMatmul;
  #weights: DeviceTensor[];
  readonly #inputScratch = new Map<Stream | undefined, Scratch>();
  readonly #outputScratch = new Map<Stream | undefined, Scratch>();

  constructor(spec: CudaCoreSpec) {
    this.inFeatures = spec.inFeatures;
    this.outFeatures = spec.outFeatures;
    this.width = spec.width;
    this.n = spec.n;
    this.#onesColumn = spec.onesColumn;
    this.#matmul = spec.matmul;
    this.#weights = spec.weights;
  }

  /** Device bytes of the weights (scratch buffers are transient and not counted). */
  get byteLength(): number {
    let total = 0;
    for (const t of this.#weights) total += t.byteLength;
    return total;
  }

  /** Device bytes of the activation/output scratch buffers currently cached. */
  get scratchByteLength(): number {
    let total = 0;
    for (const s of this.#inputScratch.values()) total += s.tensor.byteLength;
    for (const s of this.#outputScratch.values()) total += s.tensor.byteLength;
    return total;
  }

  /** Column of the activation that carries the bias (1.0), or -1 without a bias. */
  get onesColumn(): number {
    return this.#onesColumn;
  }

  /** The device that holds the weights: the layer runs there, and its scratch is allocated there. */
  get device(): number {
    return (this.#weights[0] as DeviceTensor).device;
  }

  /** The device weight tensors (for downloads in checks). */
  get weights(): readonly DeviceTensor[] {
    return this.#weights;
  }

  /**
   * `y (rows, out) = x (rows, in) @ W^T + bias`, both f16 device tensors with `rows` rows. Call it with
   * `device` current (LinearBase's forward does, through onDevice): its scratch is allocated there.
   */
  run(x: DeviceTensor, rows: number, y: DeviceTensor, stream: Stream | undefined): void {
    if (rows === 0) return;
    const views: DeviceTensor[] = [];
    try {
      let A: DeviceTensor;
      if (this.width === this.inFeatures && x.byteOffset % OPERAND_ALIGN === 0) {
        A = x.view([rows, this.inFeatures]);
      } else {
        // Only the first inFeatures columns are ever written, so padding stays 0 and the bias column 1.
        const scratch = this.#scratch(this.#inputScratch, rows, this.width, this.#onesColumn, stream);
        copyRows(scratch, this.width, x, this.inFeatures, rows, this.inFeatures, stream);
        A = scratch.view([rows, this.width]);
      }
      views.push(A);
      // An output that shares memory with the input (in place) goes through the scratch too: the
      // kernel refuses C overlapping A, and padded layers already worked in place that way.
      if (this.n === this.outFeatures && y.byteOffset % OPERAND_ALIGN === 0 && !sharesMemory(A, y)) {
        const C = y.view([rows, this.outFeatures]);
        views.push(C);
        this.#matmul(A, C, stream);
      } else {
        const scratch = this.#scratch(this.#outputScratch, rows, this.n, -1, stream);
        const C = scratch.view([rows, this.n]);
        views.push(C);
        this.#matmul(A, C, stream);
        copyRows(y, this.outFeatures, scratch, this.n, rows, this.outFeatures, stream);
      }
    } finally {
      for (const v of views) v.dispose();
    }
  }

  #scratch(
    cache: Map<Stream | undefined, Scratch>,
    rows: number,
    columns: number,
    onesColumn: number,
    stream: Stream | undefined,
  ): DeviceTensor {
    // Scratch of streams disposed since goes (a map of live streams would otherwise keep every
    // short-lived stream's buffers, and the streams, until the layer is disposed).
    for (const [key, s] of cache) {
      if (key?.disposed) {
        s.tensor.dispose();
        cache.delete(key);
      }
    }
    const cached = cache.get(stream);
    if (cached !== undefined && cached.rows >= rows) return cached.tensor;
    if (cached !== undefined) {
      // Queued work on this stream may still read the old buffer: finish it before freeing.
      if (stream === undefined) synchronize();
      else stream.synchronize();
      cached.tensor.dispose();
      cache.delete(stream);
    }
    const capacity = roundUpRows(rows);
    let tensor: DeviceTensor;
    if (onesColumn < 0) tensor = DeviceTensor.zeros("f16", [capacity, columns]);
    else {
      const host = new Uint16Array(capacity * columns);
      for (let r = 0; r < capacity; r++) host[r * columns + onesColumn] = F16_ONE;
      tensor = DeviceTensor.fromArray(host, [capacity, columns], "f16");
    }
    cache.set(stream, { tensor, rows: capacity });
    return tensor;
  }

  dispose(): void {
    for (const s of this.#inputScratch.values()) s.tensor.dispose();
    for (const s of this.#outputScratch.values()) s.tensor.dispose();
    this.#inputScratch.clear();
    this.#outputScratch.clear();
    for (const t of this.#weights) t.dispose();
    this.#weights = [];
  }
}
