/**
 * Host tensors: creation and the shape checks every layer's forward shares.
 */
import type { HostTensor } from "./types.js";

function checkShape(shape: readonly number[], argName: string): number {
  if (!Array.isArray(shape) || shape.length === 0) {
    throw new TypeError(`${argName} must be a non-empty array of dimensions, got ${String(shape)}`);
  }
  let numel = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0) {
      throw new RangeError(`${argName} dimensions must be non-negative integers, got [${shape.join(", ")}]`);
    }
    numel *= d;
  }
  return numel;
}

/** Wraps fp32 data as a row-major host tensor (no copy); allocates zeros when `data` is omitted. */
export function hostTensor(shape: readonly number[], data?: Float32Array | readonly number[]): HostTensor {
  const numel = checkShape(shape, "shape");
  let values: Float32Array;
  if (data === undefined) values = new Float32Array(numel);
  else if (data instanceof Float32Array) values = data;
  else if (Array.isArray(data)) values = Float32Array.from(data);
  else throw new TypeError("data must be a Float32Array or an array of numbers");
  if (values.length !== numel) {
    throw new RangeError(
      `data must have ${numel} elements for shape [${shape.join(", ")}], got ${values.length}`,
    );
  }
  return { data: values, shape: Object.freeze([...shape]) };
}

/** True for objects shaped like a {@link HostTensor} (fp32 data and a shape array). */
export function isHostTensor(x: unknown): x is HostTensor {
  return (
    typeof x === "object" &&
    x !== null &&
    (x as HostTensor).data instanceof Float32Array &&
    Array.isArray((x as HostTensor).shape)
  );
}

/**
 * Checks that `shape` is `(..., features)` and returns the number of rows (product of the leading
 * dimensions) and the leading dimensions themselves.
 */
export function rowsOf(
  shape: readonly number[],
  features: number,
  argName: string,
): { rows: number; lead: number[] } {
  checkShape(shape, `${argName}.shape`);
  const last = shape[shape.length - 1];
  if (last !== features) {
    throw new RangeError(
      `${argName} must have shape (..., ${features}), got [${shape.join(", ")}] (last dimension ${last})`,
    );
  }
  const lead = shape.slice(0, -1);
  let rows = 1;
  for (const d of lead) rows *= d;
  return { rows, lead };
}

/** Checks a caller-provided output buffer against the expected shape. */
export function checkOutShape(actual: readonly number[], expected: readonly number[], argName: string): void {
  if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) {
    throw new RangeError(`${argName} must have shape [${expected.join(", ")}], got [${actual.join(", ")}]`);
  }
}
