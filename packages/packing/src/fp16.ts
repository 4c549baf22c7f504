/**
 * Half-precision conversions. fp16 goes through @petamoriken/float16 (IEEE round-to-nearest-even,
 * subnormals, NaN/Inf); bf16 is the top half of an fp32 and is converted by hand.
 * All values cross package boundaries as Uint16Array bit patterns.
 */
import { f16round, getFloat16 } from "@petamoriken/float16";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** fp16 bits -> number (exact). */
export function f16BitsToNumber(bits: number): number {
  return f16DecodeTable()[bits & 0xffff];
}

/** Rounds a number to the nearest fp16 value (ties to even, overflow to +-Inf). */
export const roundToF16: (value: number) => number = f16round;

/**
 * Bits of a number that is already exactly representable in fp16 (the output of f16round).
 * Only bit extraction, no rounding: the rounding is the library's.
 */
function exactF16Bits(r: number): number {
  f32[0] = r;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  if (exp === 0) return sign;
  const e = exp - 112;
  if (e >= 1) return sign | (e << 10) | (mant >>> 13);
  return sign | ((0x800000 | mant) >>> (14 - e));
}

/** number -> fp16 bits, rounding to nearest even (overflow gives +-Inf, NaN a quiet NaN). */
export function numberToF16Bits(value: number): number {
  return exactF16Bits(f16round(value));
}

let f16Table: Float32Array | undefined;
/** All 65536 fp16 values as float32 (every fp16 is exact in fp32); built once on first use. */
export function f16DecodeTable(): Float32Array {
  if (f16Table === undefined) {
    const table = new Float32Array(65536);
    const view = new DataView(new ArrayBuffer(2));
    for (let bits = 0; bits < 65536; bits++) {
      view.setUint16(0, bits, true);
      table[bits] = getFloat16(view, 0, true);
    }
    f16Table = table;
  }
  return f16Table;
}

/** fp16 bits -> float32 values. */
export function decodeF16(
  bits: Uint16Array,
  out: Float32Array = new Float32Array(bits.length),
): Float32Array {
  if (out.length !== bits.length)
    throw new RangeError(`out must have ${bits.length} elements, got ${out.length}`);
  const table = f16DecodeTable();
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Numbers -> fp16 bits (round to nearest even). */
export function encodeF16(
  values: ArrayLike<number>,
  out: Uint16Array = new Uint16Array(values.length),
): Uint16Array {
  if (out.length !== values.length) {
    throw new RangeError(`out must have ${values.length} elements, got ${out.length}`);
  }
  for (let i = 0; i < values.length; i++) out[i] = exactF16Bits(f16round(values[i]));
  return out;
}

/** bf16 bits -> number (exact): the bits are the top half of an fp32. */
export function bf16BitsToNumber(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** number -> bf16 bits, rounding the fp32 value to nearest even; NaN stays a quiet NaN. */
export function numberToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits -> float32 values. */
export function decodeBf16(
  bits: Uint16Array,
  out: Float32Array = new Float32Array(bits.length),
): Float32Array {
  if (out.length !== bits.length)
    throw new RangeError(`out must have ${bits.length} elements, got ${out.length}`);
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}

/** Numbers -> bf16 bits (round to nearest even). */
export function encodeBf16(
  values: ArrayLike<number>,
  out: Uint16Array = new Uint16Array(values.length),
): Uint16Array {
  if (out.length !== values.length) {
    throw new RangeError(`out must have ${values.length} elements, got ${out.length}`);
  }
  for (let i = 0; i < values.length; i++) out[i] = numberToBf16Bits(values[i]);
  return out;
}
