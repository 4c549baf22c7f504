// Checks of tensor descriptors shared by the matmul validation (validate.ts) and the model
// operations' (ops-validate.ts): each message names the argument.
import type { DType } from "./dtype.js";
import { DisposedError } from "./errors.js";
import { formatShape } from "./shape.js";
import type { TensorDescriptor } from "./validate.js";

export const INT32_MAX = 2 ** 31 - 1;

/** A live tensor descriptor with an integer shape (a descriptor built by hand may hold anything). */
export function checkTensor(t: TensorDescriptor | undefined, name: string): TensorDescriptor {
  if (t === null || typeof t !== "object" || !Array.isArray(t.shape) || typeof t.dtype !== "string") {
    throw new TypeError(`${name}: expected a DeviceTensor`);
  }
  if (t.disposed) throw new DisposedError(name);
  if (!t.shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
    throw new TypeError(`${name}: shape must hold non-negative integers, got ${formatShape(t.shape)}`);
  }
  for (const [key, value] of [
    ["device", t.device],
    ["byteOffset", t.byteOffset],
  ] as const) {
    if (value !== undefined && !(typeof value === "number" && Number.isSafeInteger(value) && value >= 0)) {
      throw new TypeError(`${name}: ${key} must be a non-negative integer, got ${JSON.stringify(value)}`);
    }
  }
  return t;
}

export function checkDTypeOf(t: TensorDescriptor, name: string, allowed: readonly DType[]): void {
  if (!allowed.includes(t.dtype)) {
    throw new TypeError(`${name}: expected dtype ${allowed.join(" or ")}, got ${t.dtype}`);
  }
}

/** Every dimension at least 1 and below 2^31 (the kernels' int arguments). */
export function checkPositiveDims(dims: Record<string, number>): void {
  for (const [name, value] of Object.entries(dims)) {
    if (value < 1) throw new RangeError(`${name}: must be at least 1, got ${value}`);
    if (value > INT32_MAX) throw new RangeError(`${name}: must be below 2^31, got ${value}`);
  }
}

export function checkAligned(t: TensorDescriptor, name: string, bytes: number): void {
  const offset = t.byteOffset ?? 0;
  if (offset % bytes !== 0) {
    throw new RangeError(
      `${name}: data must be ${bytes}-byte aligned, but it starts at byte offset ${offset} of its allocation (a view?)`,
    );
  }
}

/** All on one device: compared with the first tensor that says where it lives. */
export function checkSameDevice(tensors: readonly [TensorDescriptor, string][]): void {
  const first = tensors.find(([t]) => t.device !== undefined);
  if (first === undefined) return;
  for (const [t, name] of tensors) {
    if (t.device !== undefined && t.device !== first[0].device) {
      throw new RangeError(`${name}: on device ${t.device}, but ${first[1]} is on device ${first[0].device}`);
    }
  }
}
