import { Float16Array, getFloat16 } from "@petamoriken/float16";
import { describe, expect, it } from "vitest";
import {
  bf16BitsToNumber,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToNumber,
  numberToBf16Bits,
  numberToF16Bits,
} from "../src/index.js";

describe("fp16", () => {
  it("decodes every bit pattern like the library", () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const view = new DataView(bits.buffer);
    const decoded = decodeF16(bits);
    for (let i = 0; i < 65536; i++) {
      const expected = getFloat16(view, 2 * i, true);
      expect(Object.is(decoded[i], expected) || (Number.isNaN(decoded[i]) && Number.isNaN(expected))).toBe(
        true,
      );
      expect(Object.is(f16BitsToNumber(i), decoded[i]) || Number.isNaN(decoded[i])).toBe(true);
    }
  });

  it("encodes every fp16 value back to its own bits", () => {
    for (let i = 0; i < 65536; i++) {
      const v = f16BitsToNumber(i);
      if (!Number.isNaN(v)) expect(numberToF16Bits(v)).toBe(i);
      else expect(Number.isNaN(f16BitsToNumber(numberToF16Bits(v)))).toBe(true);
    }
  });

  it("rounds random numbers like the library's Float16Array", () => {
    const values = Array.from({ length: 20000 }, () => {
      const e = Math.floor(Math.random() * 50) - 30;
      return (Math.random() - 0.5) * 2 ** e;
    });
    values.push(65520, 65519, -65520, 1e-8, 2.98e-8, 5.96e-8, 0.5 + 2 ** -12, 1 + 2 ** -11, 1 + 3 * 2 ** -11);
    const expected = new Uint16Array(new Float16Array(values).buffer);
    expect(Array.from(encodeF16(values))).toEqual(Array.from(expected));
  });
});

describe("bf16", () => {
  it("decodes as the top half of an fp32", () => {
    const bits = Uint16Array.from({ length: 1000 }, () => Math.floor(Math.random() * 65536));
    const f32 = new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
    const decoded = decodeBf16(bits);
    bits.forEach((b, i) => {
      expect(Object.is(decoded[i], f32[i]) || Number.isNaN(f32[i])).toBe(true);
      expect(Object.is(bf16BitsToNumber(b), f32[i]) || Number.isNaN(f32[i])).toBe(true);
    });
  });

  it("rounds fp32 values to nearest even", () => {
    // An independent rounding: pick the nearer of the two bf16 neighbours, ties to even mantissa.
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    for (let i = 0; i < 5000; i++) {
      u32[0] = Math.floor(Math.random() * 0x7f000000) | (Math.random() < 0.5 ? 0x80000000 : 0);
      const x = f32[0];
      const lo = u32[0] >>> 16;
      const loValue = bf16BitsToNumber(lo);
      const hiValue = bf16BitsToNumber(lo + 1);
      const dLo = Math.abs(x - loValue);
      const dHi = Math.abs(hiValue - x);
      const expected = dLo < dHi ? lo : dHi < dLo ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
      expect(numberToBf16Bits(x)).toBe(expected);
    }
    expect(numberToBf16Bits(Number.NaN) & 0x7f80).toBe(0x7f80);
    expect(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(Number.NaN)))).toBe(true);
    expect(Array.from(encodeBf16([1, -2, 0.5]))).toEqual([0x3f80, 0xc000, 0x3f00]);
  });
});
