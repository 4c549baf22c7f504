// DeviceTensor: a typed, shaped window (byte offset + dtype + shape) onto a
// device allocation. Views share the allocation and keep it alive; the
// allocation is freed by dispose() on the tensor that created it, or by the
// garbage collector once no tensor refers to it.
import {
  checkDType,
  checkHostArray,
  type DType,
  dtypeBytes,
  dtypeOfHostArray,
  type HostArray,
  newHostArray,
} from "./dtype.js";
import { DisposedError } from "./errors.js";
import { type NativeBuffer, requireNative } from "./native.js";
import { checkShape, formatShape, numelOf } from "./shape.js";
import { nativeStream, type Stream } from "./stream.js";

interface TensorInternals {
  buffer: NativeBuffer;
  owner: boolean; // this tensor allocated the buffer (dispose frees it)
  disposed: boolean; // this handle was disposed (a view's dispose does not free memory)
}

const internals = new WeakMap<DeviceTensor, TensorInternals>();

export class DeviceTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly byteLength: number;
  /** Offset of element 0 in the underlying allocation (views). */
  readonly byteOffset: number;
  /** The device that holds the memory. */
  readonly device: number;

  private constructor(
    buffer: NativeBuffer,
    owner: boolean,
    dtype: DType,
    shape: readonly number[],
    byteOffset: number,
  ) {
    this.dtype = dtype;
    this.shape = shape;
    this.numel = numelOf(shape);
    this.byteLength = this.numel * dtypeBytes(dtype);
    this.byteOffset = byteOffset;
    this.device = buffer.device;
    internals.set(this, { buffer, owner, disposed: false });
  }

  /** Uninitialised device memory. */
  static empty(dtype: DType, shape: readonly number[]): DeviceTensor {
    checkDType(dtype, "dtype");
    const dims = checkShape(shape, "shape");
    const bytes = numelOf(dims) * dtypeBytes(dtype);
    if (!Number.isSafeInteger(bytes)) throw new RangeError(`shape: ${formatShape(dims)} is too large`);
    const buffer = new (requireNative().DeviceBuffer)(bytes);
    return new DeviceTensor(buffer, true, dtype, dims, 0);
  }

  static zeros(dtype: DType, shape: readonly number[]): DeviceTensor {
    const t = DeviceTensor.empty(dtype, shape);
    t.fillBytes(0);
    return t;
  }

  /** Copies `data` to a new tensor; the dtype defaults from the array type (Uint16Array: f16). */
  static fromArray(data: HostArray, shape: readonly number[], dtype?: DType): DeviceTensor {
    const type = dtype === undefined ? dtypeOfHostArray(data) : checkDType(dtype, "dtype");
    checkHostArray(data, type, "data");
    const dims = checkShape(shape, "shape");
    if (numelOf(dims) !== data.length) {
      throw new RangeError(
        `shape: ${formatShape(dims)} holds ${numelOf(dims)} elements, data has ${data.length}`,
      );
    }
    const t = DeviceTensor.empty(type, dims);
    try {
      t.upload(data);
    } catch (error) {
      t.dispose();
      throw error;
    }
    return t;
  }

  /** True once this tensor, or the tensor whose memory it views, was disposed. */
  get disposed(): boolean {
    const i = internals.get(this)!;
    return i.disposed || i.buffer.freed;
  }

  /** Device address of element 0 (diagnostics, alignment checks). */
  get address(): bigint {
    return nativeTensor(this, "tensor").buffer.address + BigInt(this.byteOffset);
  }

  /** Copies host data in; `data` may be reused as soon as this returns. */
  upload(data: HostArray, stream?: Stream): void {
    const { buffer } = nativeTensor(this, "tensor");
    checkHostArray(data, this.dtype, "data");
    if (data.length !== this.numel) {
      throw new RangeError(
        `data: expected ${this.numel} elements for shape ${formatShape(this.shape)}, got ${data.length}`,
      );
    }
    requireNative().copyHostToDevice(buffer, this.byteOffset, data, nativeStream(stream, "stream"));
  }

  /** Copies the tensor to a new host array (Uint16Array for f16/u16, Float32Array for f32, ...); waits for the stream. */
  download(stream?: Stream): HostArray {
    const { buffer } = nativeTensor(this, "tensor");
    const out = newHostArray(this.dtype, this.numel);
    requireNative().copyDeviceToHost(buffer, this.byteOffset, out, nativeStream(stream, "stream"));
    return out;
  }

  /** Device-to-device copy from a tensor of the same byteLength (asynchronous on `stream`). */
  copyFrom(src: DeviceTensor, stream?: Stream): void {
    const dst = nativeTensor(this, "tensor");
    const from = nativeTensor(src, "src");
    if (src.byteLength !== this.byteLength) {
      throw new RangeError(`src: expected ${this.byteLength} bytes, got ${src.byteLength}`);
    }
    if (src.device !== this.device)
      throw new RangeError(`src: on device ${src.device}, tensor on device ${this.device}`);
    requireNative().copyDeviceToDevice(
      dst.buffer,
      this.byteOffset,
      from.buffer,
      src.byteOffset,
      this.byteLength,
      nativeStream(stream, "stream"),
    );
  }

  /**
   * Copies `rows` rows of `columns` elements from `src` (asynchronously on
   * `stream`), row r starting at element r * srcStride of `src` and r * dstStride
   * of this tensor (strides default to `columns`). One device copy in all.
   */
  copyRowsFrom(
    src: DeviceTensor,
    rows: number,
    columns: number,
    opts: { dstStride?: number; srcStride?: number; stream?: Stream } = {},
  ): void {
    const dst = nativeTensor(this, "tensor");
    const from = nativeTensor(src, "src");
    if (src.dtype !== this.dtype) throw new TypeError(`src: expected dtype ${this.dtype}, got ${src.dtype}`);
    if (src.device !== this.device)
      throw new RangeError(`src: on device ${src.device}, tensor on device ${this.device}`);
    const dstStride = opts.dstStride ?? columns;
    const srcStride = opts.srcStride ?? columns;
    for (const [name, value] of [
      ["rows", rows],
      ["columns", columns],
      ["opts.dstStride", dstStride],
      ["opts.srcStride", srcStride],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 0)
        throw new RangeError(`${name}: expected a non-negative integer, got ${value}`);
    }
    if (dstStride < columns)
      throw new RangeError(`opts.dstStride: ${dstStride} is less than columns = ${columns}`);
    if (srcStride < columns)
      throw new RangeError(`opts.srcStride: ${srcStride} is less than columns = ${columns}`);
    if (rows === 0 || columns === 0) return;
    if ((rows - 1) * dstStride + columns > this.numel) {
      throw new RangeError(
        `rows: ${rows} rows of stride ${dstStride} exceed the ${this.numel} elements of the tensor`,
      );
    }
    if ((rows - 1) * srcStride + columns > src.numel) {
      throw new RangeError(
        `rows: ${rows} rows of stride ${srcStride} exceed the ${src.numel} elements of src`,
      );
    }
    const size = dtypeBytes(this.dtype);
    requireNative().copy2D(
      dst.buffer,
      this.byteOffset,
      dstStride * size,
      from.buffer,
      src.byteOffset,
      srcStride * size,
      columns * size,
      rows,
      nativeStream(opts.stream, "opts.stream"),
    );
  }

  /** Sets every byte to `value` (0..255), asynchronously on `stream`. fillBytes(0x7e) poisons f16 data with NaN (0x7e7e). */
  fillBytes(value: number, stream?: Stream): void {
    const { buffer } = nativeTensor(this, "tensor");
    if (!Number.isInteger(value) || value < 0 || value > 255) {
      throw new RangeError(`value: expected a byte 0..255, got ${value}`);
    }
    requireNative().memset(buffer, this.byteOffset, value, this.byteLength, nativeStream(stream, "stream"));
  }

  /** A tensor of `shape` sharing this memory from element `elementOffset`; keeps the memory alive. */
  view(shape: readonly number[], elementOffset = 0): DeviceTensor {
    const { buffer } = nativeTensor(this, "tensor");
    const dims = checkShape(shape, "shape");
    if (!Number.isSafeInteger(elementOffset) || elementOffset < 0) {
      throw new RangeError(`elementOffset: expected a non-negative integer, got ${elementOffset}`);
    }
    if (elementOffset + numelOf(dims) > this.numel) {
      throw new RangeError(
        `shape: a view of ${formatShape(dims)} at element ${elementOffset} exceeds the ${this.numel} elements of ${formatShape(this.shape)}`,
      );
    }
    return new DeviceTensor(
      buffer,
      false,
      this.dtype,
      dims,
      this.byteOffset + elementOffset * dtypeBytes(this.dtype),
    );
  }

  /** The same elements with another shape of equal size. */
  reshape(shape: readonly number[]): DeviceTensor {
    const dims = checkShape(shape, "shape");
    if (numelOf(dims) !== this.numel) {
      throw new RangeError(
        `shape: ${formatShape(dims)} has ${numelOf(dims)} elements, tensor has ${this.numel}`,
      );
    }
    return this.view(dims, 0);
  }

  /** Idempotent. On the allocating tensor it frees the memory (views then report disposed); on a view it only retires the view. */
  dispose(): void {
    const i = internals.get(this)!;
    if (i.disposed) return;
    i.disposed = true;
    if (i.owner) i.buffer.free();
  }

  toString(): string {
    return `DeviceTensor(${this.dtype}, ${formatShape(this.shape)}${this.disposed ? ", disposed" : ""})`;
  }
}

/** @internal The native allocation behind a live tensor; throws when disposed. For the package's own bindings. */
export function nativeTensor(
  tensor: DeviceTensor,
  name: string,
): { buffer: NativeBuffer; byteOffset: number } {
  const i = tensor instanceof DeviceTensor ? internals.get(tensor) : undefined;
  if (i === undefined) throw new TypeError(`${name}: expected a DeviceTensor`);
  if (i.disposed || i.buffer.freed) throw new DisposedError(`${name} (${tensor.toString()})`);
  return { buffer: i.buffer, byteOffset: tensor.byteOffset };
}
