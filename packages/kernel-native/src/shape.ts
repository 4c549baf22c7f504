// Shape helpers shared by tensors and argument validation.

/** Checks that `shape` is an array of non-negative safe integers; returns a frozen copy. */
export function checkShape(shape: unknown, name: string): readonly number[] {
  if (!Array.isArray(shape))
    throw new TypeError(`${name}: expected an array of dimensions, got ${typeof shape}`);
  for (const dim of shape) {
    if (typeof dim !== "number" || !Number.isSafeInteger(dim) || dim < 0) {
      throw new RangeError(`${name}: dimensions must be non-negative integers, got [${shape.join(", ")}]`);
    }
  }
  return Object.freeze([...shape]);
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const dim of shape) n *= dim;
  return n;
}

export function formatShape(shape: readonly number[]): string {
  return `(${shape.join(", ")})`;
}
