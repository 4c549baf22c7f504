/**
 * BitNet b1.58 checkpoints (Hugging Face `quant_method: "bitnet"`), as transformers reads them.
 *
 * Two forms exist. "offline" checkpoints (e.g. the packed microsoft/bitnet-b1.58-2B-4T) store each
 * linear layer's ternary weights packed four to a byte, `weight` U8 `(out/4, in)`, and one
 * `weight_scale` per tensor; importing them is lossless apart from rounding that scale to fp16.
 * "online" checkpoints store float master weights that the model ternarizes on every forward pass
 * with one absmean scale per tensor; the `bitnet` quantizer reproduces that quantization.
 *
 * Either way the result is a per-tensor scale, which the TriRun layout stores in every group.
 * BitNet also quantizes activations to 8 bits per token; TriRun keeps them in fp16, so a TriRun
 * model computes the same weights on unquantized activations.
 */
import { bf16BitsToNumber, f16DecodeTable, numberToBf16Bits, numberToF16Bits, roundToF16 } from "./fp16.js";
import type { WeightMatrix } from "./quantize.js";

/** How a layer applies `weight_scale` (transformers' `linear_class`). */
export type BitNetLinearClass = "bitlinear" | "autobitlinear";

export interface BitNetQuantization {
  /** "offline": packed U8 weights + weight_scale; "online": float masters ternarized per call. */
  mode: "offline" | "online";
  linearClass: BitNetLinearClass;
}

/** Ternary values per packed byte. */
export const BITNET_VALUES_PER_BYTE = 4;

/**
 * Reads the BitNet settings of a Hugging Face `config.json` object: undefined unless its
 * `quantization_config.quant_method` is "bitnet". Defaults as in transformers' BitNetQuantConfig
 * (linear_class "bitlinear", quantization_mode "offline").
 * @throws RangeError for a bitnet config with settings transformers does not accept.
 */
export function bitNetQuantization(config: unknown): BitNetQuantization | undefined {
  if (typeof config !== "object" || config === null) return undefined;
  const q = (config as Record<string, unknown>).quantization_config;
  if (typeof q !== "object" || q === null) return undefined;
  const fields = q as Record<string, unknown>;
  if (fields.quant_method !== "bitnet") return undefined;
  const linearClass = fields.linear_class ?? "bitlinear";
  const mode = fields.quantization_mode ?? "offline";
  if (linearClass !== "bitlinear" && linearClass !== "autobitlinear") {
    throw new RangeError(
      `quantization_config.linear_class must be "bitlinear" or "autobitlinear", got ${JSON.stringify(linearClass)}`,
    );
  }
  if (mode !== "offline" && mode !== "online") {
    throw new RangeError(
      `quantization_config.quantization_mode must be "offline" or "online", got ${JSON.stringify(mode)}`,
    );
  }
  return { mode, linearClass };
}

/**
 * The weight a packed layer's ternary level 1 stands for: `BitLinear` divides its output by
 * `weight_scale`, `AutoBitLinear` (offline) multiplies it. Rounded to fp16 (a bf16 `weight_scale`
 * of an "autobitlinear" layer is exact in fp16).
 * @throws RangeError when the scale is not a finite non-zero number or leaves the fp16 range.
 */
export function bitNetLayerScale(
  weightScale: number,
  linearClass: BitNetLinearClass,
  name = "weight_scale",
): number {
  if (!Number.isFinite(weightScale) || weightScale === 0) {
    throw new RangeError(`${name}: weight_scale must be a finite non-zero number, got ${weightScale}`);
  }
  if (linearClass !== "bitlinear" && linearClass !== "autobitlinear") {
    throw new TypeError(`linearClass must be "bitlinear" or "autobitlinear", got ${String(linearClass)}`);
  }
  const scale = roundToF16(linearClass === "bitlinear" ? 1 / weightScale : weightScale);
  if (!Number.isFinite(scale) || scale === 0) {
    throw new RangeError(
      `${name}: the layer scale ${linearClass === "bitlinear" ? `1 / ${weightScale}` : weightScale} is outside the fp16 range`,
    );
  }
  return scale;
}

/**
 * Unpacks transformers' BitNet weight packing into TriRun codes `(in, out)` row-major.
 * `packed` is `(rows, in)` U8 with `out = 4 * rows`: output feature `i * rows + r` is bits
 * `2i..2i+1` of `packed[r, :]`, holding `level + 1`. TriRun's code is also `level + 1`, so the
 * two bits are the code (3, level 2, is outside BitNet's ternary grid but kept as transformers
 * would read it).
 */
export function unpackBitNetCodes(packed: Uint8Array, rows: number, inFeatures: number): Uint8Array {
  if (!(packed instanceof Uint8Array)) throw new TypeError("packed must be a Uint8Array");
  for (const [v, label] of [
    [rows, "rows"],
    [inFeatures, "inFeatures"],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${label} must be a positive integer, got ${v}`);
  }
  if (packed.length !== rows * inFeatures) {
    throw new RangeError(
      `packed must have rows * inFeatures = ${rows * inFeatures} bytes, got ${packed.length}`,
    );
  }
  const out = BITNET_VALUES_PER_BYTE * rows;
  const codes = new Uint8Array(inFeatures * out);
  for (let r = 0; r < rows; r++) {
    const src = r * inFeatures;
    for (let i = 0; i < BITNET_VALUES_PER_BYTE; i++) {
      const column = i * rows + r;
      const shift = 2 * i;
      for (let c = 0; c < inFeatures; c++) codes[c * out + column] = (packed[src + c] >>> shift) & 3;
    }
  }
  return codes;
}

/**
 * BitNet b1.58's weight quantizer (transformers' `WeightQuant`), in fp32 as there: `s = 1 /
 * max(mean |w|, 1e-5)` over the whole tensor, `level = clamp(round_half_even(w * s), -1, 1)`, and
 * the layer's weight `level / s` cast back to the tensor's dtype. Returns codes `(in, out)` and
 * that one scale as fp16 bits (exact for fp16/bf16 sources within the fp16 range). The mean is
 * summed exactly and rounded once to fp32; torch's fp32 reduction may differ from it in the last
 * bit, which changes a level only for a weight within an fp32 rounding of a rounding boundary.
 * @internal called by `quantize` with method "bitnet" after it has validated the weight.
 */
export function bitNetTensorQuantize(
  weight: WeightMatrix,
  label: string,
): { codes: Uint8Array; scaleBits: number } {
  const { data, dtype, outFeatures: n, inFeatures: k } = weight;
  const count = n * k;
  const table = dtype === "F16" ? f16DecodeTable() : undefined;
  const valueAt =
    dtype === "F16"
      ? (i: number) => table![(data as Uint16Array)[i]]
      : dtype === "BF16"
        ? (i: number) => bf16BitsToNumber((data as Uint16Array)[i])
        : (i: number) => (data as Float32Array | Float64Array)[i];
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const w = valueAt(i);
    if (!Number.isFinite(w))
      throw new RangeError(`${label} at [${Math.floor(i / k)}, ${i % k}]: non-finite value ${w}`);
    sum += Math.abs(w);
  }
  const mean = Math.max(Math.fround(sum / count), Math.fround(1e-5));
  const inverse = Math.fround(1 / mean);
  const codes = new Uint8Array(count);
  for (let c = 0; c < n; c++) {
    for (let r = 0; r < k; r++) {
      const t = Math.fround(valueAt(c * k + r) * inverse);
      let level = Math.round(t);
      if (level - t === 0.5 && level % 2 !== 0) level -= 1; // Math.round rounds ties up; torch to even
      codes[r * n + c] = level < -1 ? 0 : level > 1 ? 2 : level + 1;
    }
  }
  const levelOne = Math.fround(1 / inverse);
  const scale =
    dtype === "BF16"
      ? bf16BitsToNumber(numberToBf16Bits(levelOne))
      : dtype === "F16"
        ? roundToF16(levelOne)
        : levelOne;
  if (!Number.isFinite(roundToF16(scale))) {
    throw new RangeError(`${label}: the bitnet scale (mean |w| = ${mean}) overflows fp16`);
  }
  return { codes, scaleBits: numberToF16Bits(scale) };
}
