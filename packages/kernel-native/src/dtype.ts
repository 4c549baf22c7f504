// Element types of device tensors and the host typed arrays that hold them.
// fp16 values cross the API as Uint16Array bit patterns.

export type DType = "f16" | "f32" | "i32" | "u8" | "u16" | "i8" | "u32";
export type HostArray = Uint16Array | Float32Array | Int32Array | Uint8Array | Int8Array | Uint32Array;

type HostArrayConstructor = {
  new (length: number): HostArray;
  readonly name: string;
  readonly BYTES_PER_ELEMENT: number;
};

interface DTypeInfo {
  readonly bytes: number;
  readonly host: HostArrayConstructor;
}

const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  f16: { bytes: 2, host: Uint16Array },
  f32: { bytes: 4, host: Float32Array },
  i32: { bytes: 4, host: Int32Array },
  u8: { bytes: 1, host: Uint8Array },
  u16: { bytes: 2, host: Uint16Array },
  i8: { bytes: 1, host: Int8Array },
  u32: { bytes: 4, host: Uint32Array },
};

export const DTYPE_NAMES: readonly DType[] = Object.freeze(Object.keys(DTYPES) as DType[]);

export function isDType(value: unknown): value is DType {
  return typeof value === "string" && Object.hasOwn(DTYPES, value);
}

/** Checks `value` is a DType; throws a TypeError naming `name` otherwise. */
export function checkDType(value: unknown, name: string): DType {
  if (!isDType(value)) {
    throw new TypeError(`${name}: expected a dtype (${DTYPE_NAMES.join(", ")}), got ${String(value)}`);
  }
  return value;
}

export function dtypeBytes(dtype: DType): number {
  return DTYPES[checkDType(dtype, "dtype")].bytes;
}

/** The typed array class that holds `dtype` on the host. */
export function hostArrayClassName(dtype: DType): string {
  return DTYPES[dtype].host.name;
}

export function newHostArray(dtype: DType, length: number): HostArray {
  return new DTYPES[dtype].host(length);
}

/** The default dtype of a host array (Uint16Array means fp16 bits). */
export function dtypeOfHostArray(data: HostArray): DType {
  if (data instanceof Uint16Array) return "f16";
  if (data instanceof Float32Array) return "f32";
  if (data instanceof Int32Array) return "i32";
  if (data instanceof Uint8Array) return "u8";
  if (data instanceof Int8Array) return "i8";
  if (data instanceof Uint32Array) return "u32";
  throw new TypeError(
    `data: expected a Uint16Array, Float32Array, Int32Array, Uint8Array, Int8Array or Uint32Array`,
  );
}

/** Throws a TypeError unless `data` is the host array class of `dtype`. */
export function checkHostArray(data: unknown, dtype: DType, name: string): asserts data is HostArray {
  const expected = DTYPES[dtype].host;
  if (!(data instanceof expected)) {
    const got =
      data === null
        ? "null"
        : typeof data === "object"
          ? (data.constructor?.name ?? "an object")
          : typeof data;
    throw new TypeError(`${name}: expected a ${expected.name} for dtype ${dtype}, got ${got}`);
  }
}
