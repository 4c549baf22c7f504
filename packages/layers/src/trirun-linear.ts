/**
 * `TriRunLinear`: a 2-bit layer, `weight[o][i] = (code[i][o] - 1) * scale[i / g][o]`.
 * CPU: dequantized once to fp32 `(out, in)`, then the reference matmul.
 * CUDA: packed `B`/`s` on the device in the kernel's padded shapes, run by `trirunMatmul`.
 */
import { DeviceTensor, trirunMatmul } from "@trirun/kernel-native";
import {
  CHUNK_COLUMNS,
  decodeF16,
  encodeF16,
  KERNEL_N_MULTIPLE,
  type QuantMethod,
  quantize as quantizeWeights,
} from "@trirun/packing";
import { resolveBackend } from "./backend.js";
import { CpuCore } from "./cpu-core.js";
import { shareable } from "./cpu-threads.js";
import { concatParts, copyColumns } from "./concat.js";
import { CudaCore } from "./cuda-core.js";
import { onDevice } from "./device-guard.js";
import type { Float16Linear } from "./float16-linear.js";
import { LinearBase } from "./linear-base.js";
import {
  checkBias,
  checkFeatures,
  checkGroupsize,
  checkPacked,
  asLayerGroupsize,
  checkQuantized,
  codesFromScales,
  dequantizeNatural,
  levelsNatural,
  GROUP,
  type PackedWeights,
  packPadded,
  padForKernel,
  scaleRows,
  unpackToNatural,
} from "./trirun-weights.js";
import type { Backend, LayerOptions, QuantizedWeights } from "./types.js";

/** The layer to quantize or pack: a `Float16Linear` (its host weight copy is what is read). */
function checkLinear(linear: unknown, argName: string): asserts linear is Float16Linear {
  const l = linear as Partial<Float16Linear> | null;
  if (typeof l !== "object" || l === null || !(l.weight instanceof Float32Array)) {
    throw new TypeError(`${argName} must be a Float16Linear, got ${l === null ? "null" : typeof l}`);
  }
}

/** A custom quantizer: `(out, in)` fp32 weights to natural codes and scales. */
export type QuantizerFunction = (
  weight: Float32Array,
  outFeatures: number,
  inFeatures: number,
  groupsize: number,
) => QuantizedWeights;

/** A built-in `@trirun/packing` method or a custom quantizer. */
export type Quantizer = Exclude<QuantMethod, "exact"> | "exact" | QuantizerFunction;

/** Packed weights as `trirun-pack` writes them (`k`, `n` padded; features are the true sizes). */
export interface PackedLayer {
  /** `(k / 16, n)` int32, reference layout. */
  B: Int32Array;
  /** `(k / g, n)` fp16 bits, reference layout. */
  s: Uint16Array;
  k: number;
  n: number;
  /** 128, or -1 (or k) for one scale per output column. */
  groupsize: number;
  inFeatures: number;
  outFeatures: number;
  bias?: Float32Array;
}

export type QuantizedLayer = QuantizedWeights & {
  inFeatures: number;
  outFeatures: number;
  bias?: Float32Array;
};

export class TriRunLinear extends LinearBase {
  readonly kind = "trirun" as const;
  /** 128, or -1 for one scale per output column. */
  readonly groupsize: 128 | -1;
  /** The bias rounded to fp16 (as fp32 values), or undefined. */
  readonly bias: Float32Array | undefined;
  /** Shape of the device weights, to unpack them in `dequantize`. */
  readonly #devicePacked: Omit<PackedWeights, "B" | "s"> | undefined;

  private constructor(
    core: CpuCore | CudaCore,
    groupsize: 128 | -1,
    bias: Float32Array | undefined,
    devicePacked: Omit<PackedWeights, "B" | "s"> | undefined,
  ) {
    super(core);
    this.groupsize = groupsize;
    this.bias = bias;
    this.#devicePacked = devicePacked;
  }

  protected get label(): string {
    return `TriRunLinear(${this.inFeatures} -> ${this.outFeatures}, ${this.backend})`;
  }

  /**
   * Builds a layer from natural codes `(in, out)` and fp16 scales `(ceil(in / 128), out)` (or one
   * row for groupsize -1). On CUDA the weights are padded (in to 128, out to 256) and packed once.
   */
  static fromQuantized(layer: QuantizedLayer, opts: LayerOptions = {}): TriRunLinear {
    if (typeof layer !== "object" || layer === null) throw new TypeError("q must be an object");
    checkFeatures(layer.inFeatures, "q.inFeatures");
    checkFeatures(layer.outFeatures, "q.outFeatures");
    const q = asLayerGroupsize(layer, layer.inFeatures);
    checkQuantized(q, q.inFeatures, q.outFeatures, "q");
    const bias = checkBias(q.bias, q.outFeatures, "q.bias");
    return TriRunLinear.#build(q, q.inFeatures, q.outFeatures, bias, resolveBackend(opts.backend));
  }

  /** Builds a layer from reference-layout `B`/`s` (as in a TriRun checkpoint), padded to `k` x `n`. */
  static fromPacked(p: PackedLayer, opts: LayerOptions = {}): TriRunLinear {
    if (typeof p !== "object" || p === null) throw new TypeError("p must be an object");
    checkFeatures(p.inFeatures, "p.inFeatures");
    checkFeatures(p.outFeatures, "p.outFeatures");
    const packed = checkPacked(p, p.inFeatures, p.outFeatures, "p");
    const bias = checkBias(p.bias, p.outFeatures, "p.bias");
    const backend = resolveBackend(opts.backend);
    if (backend === "cuda" && bias === undefined) {
      // Already in the kernel's layout: upload as is, no unpack/repack.
      return TriRunLinear.#onDevice(packed, p.inFeatures, p.outFeatures, -1, packed.groupsize, undefined);
    }
    const natural = unpackToNatural(packed, p.inFeatures, p.outFeatures);
    return TriRunLinear.#build(natural, p.inFeatures, p.outFeatures, bias, backend);
  }

  /**
   * The reference `pack(linear, scales)`: the layer's weights must lie on the grid
   * `{-1, 0, 1, 2} * scale`; codes are `clamp(round(w / s) + 1, 0, 3)`. `scales` are natural
   * `(ceil(in / 128), out)` fp16 bits (one row for groupsize -1).
   */
  static pack(
    linear: Float16Linear,
    scales: Uint16Array,
    groupsize: number,
    opts: LayerOptions = {},
  ): TriRunLinear {
    checkLinear(linear, "linear");
    checkGroupsize(groupsize, "groupsize");
    if (!(scales instanceof Uint16Array)) throw new TypeError("scales must be a Uint16Array of fp16 bits");
    const { inFeatures, outFeatures } = linear;
    const rows = scaleRows(inFeatures, groupsize);
    if (scales.length !== rows * outFeatures) {
      throw new RangeError(
        `scales must have ${rows} x ${outFeatures} = ${rows * outFeatures} elements for groupsize ${groupsize}, got ${scales.length}`,
      );
    }
    const codes = codesFromScales(linear.weight, inFeatures, outFeatures, scales, groupsize);
    return TriRunLinear.#build(
      { codes, scales, groupsize },
      inFeatures,
      outFeatures,
      linear.bias,
      resolveBackend(opts.backend ?? linear.backend),
    );
  }

  /**
   * Quantizes a `Float16Linear` with a `@trirun/packing` method (absmean, absmax, mse, exact) or a
   * custom function. `groupsize` is 128 or -1; a layer with `in <= 128` gets one group per column.
   */
  static quantize(
    linear: Float16Linear,
    quantizer: Quantizer,
    groupsize: number,
    opts: LayerOptions = {},
  ): TriRunLinear {
    checkLinear(linear, "linear");
    checkGroupsize(groupsize, "groupsize");
    const { inFeatures, outFeatures } = linear;
    let q: QuantizedWeights;
    if (typeof quantizer === "function") {
      const result: unknown = quantizer(linear.weight, outFeatures, inFeatures, groupsize);
      if (typeof (result as PromiseLike<unknown> | null)?.then === "function") {
        throw new TypeError(
          "the quantizer returned a Promise: quantize first (e.g. `const q = await gptq.quantize(...)`) and pass `() => q`",
        );
      }
      q = asLayerGroupsize(result as QuantizedWeights, inFeatures);
      checkQuantized(q, inFeatures, outFeatures, "quantizer result");
      // With in <= 128 both group sizes are one scale row per column; otherwise they must agree.
      if (q.groupsize !== groupsize && inFeatures > GROUP) {
        throw new RangeError(
          `quantizer result.groupsize is ${q.groupsize}, but groupsize ${groupsize} was asked for`,
        );
      }
    } else if (typeof quantizer === "string") {
      const result = quantizeWeights(
        { data: linear.weight, dtype: "F32", outFeatures, inFeatures },
        { method: quantizer, groupsize },
      );
      // With in <= 128 both group sizes give one scale row per column: the same natural layout.
      q = { codes: result.codes, scales: result.scales, groupsize };
    } else {
      throw new TypeError(`quantizer must be "absmean", "absmax", "mse", "exact" or a function`);
    }
    return TriRunLinear.#build(
      q,
      inFeatures,
      outFeatures,
      linear.bias,
      resolveBackend(opts.backend ?? linear.backend),
    );
  }

  static #build(
    q: QuantizedWeights,
    inFeatures: number,
    outFeatures: number,
    bias: Float32Array | undefined,
    backend: Backend,
  ): TriRunLinear {
    const biasBits = bias === undefined ? undefined : encodeF16(bias);
    const bias16 = biasBits === undefined ? undefined : decodeF16(biasBits);
    const groupsize = q.groupsize as 128 | -1;
    if (backend === "cpu") {
      // Levels and scales, not fp32 weights: a quarter of the memory, the same results bit for bit.
      const natural = levelsNatural(q, inFeatures, outFeatures);
      const weights = {
        kind: "levels" as const,
        levels: shareable(natural.levels),
        scales: shareable(natural.scales),
        groupLength: natural.groupLength,
      };
      return new TriRunLinear(
        new CpuCore(inFeatures, outFeatures, weights, bias16 === undefined ? undefined : shareable(bias16)),
        groupsize,
        bias16,
        undefined,
      );
    }
    const padded = padForKernel(q, inFeatures, outFeatures, biasBits);
    return TriRunLinear.#onDevice(
      packPadded(padded),
      inFeatures,
      outFeatures,
      padded.onesColumn,
      groupsize,
      bias16,
    );
  }

  static #onDevice(
    packed: PackedWeights,
    inFeatures: number,
    outFeatures: number,
    onesColumn: number,
    groupsize: 128 | -1,
    bias16: Float32Array | undefined,
  ): TriRunLinear {
    const { k, n } = packed;
    const g = packed.groupsize === -1 ? k : GROUP;
    const B = DeviceTensor.fromArray(packed.B, [k / 16, n], "i32");
    let s: DeviceTensor;
    try {
      s = DeviceTensor.fromArray(packed.s, [k / g, n], "f16");
    } catch (error) {
      B.dispose();
      throw error;
    }
    return TriRunLinear.#onDeviceTensors(B, s, {
      inFeatures,
      outFeatures,
      onesColumn,
      groupsize,
      packedGroupsize: packed.groupsize,
      bias16,
    });
  }

  /**
   * A CUDA layer over device weights `B` (k/16, n) and `s` (k/g, n) in the kernel's layout (it takes them
   * over). `packedGroupsize` is that of the device scales, which a bias can make 128 where the layer's
   * `groupsize` is -1.
   */
  static #onDeviceTensors(
    B: DeviceTensor,
    s: DeviceTensor,
    spec: {
      inFeatures: number;
      outFeatures: number;
      onesColumn: number;
      groupsize: 128 | -1;
      packedGroupsize: 128 | -1;
      bias16: Float32Array | undefined;
    },
  ): TriRunLinear {
    const { inFeatures, outFeatures, onesColumn, groupsize, packedGroupsize, bias16 } = spec;
    const [k16, n] = B.shape;
    const k = k16 * 16;
    const g = packedGroupsize === -1 ? k : GROUP;
    const core = new CudaCore({
      inFeatures,
      outFeatures,
      width: k,
      onesColumn,
      n,
      matmul: (A, C, stream) => {
        trirunMatmul(A, B, s, C, { groupsize: g, stream });
      },
      weights: [B, s],
    });
    return new TriRunLinear(core, groupsize, bias16, { k, n, groupsize: packedGroupsize });
  }

  /**
   * One layer whose output is the outputs of `parts` side by side (`[q | k | v]`): parts that read the
   * same input then run as one matmul, one launch instead of several, with the wider problem keeping
   * every SM busy. CUDA layers only, all with the same input width and group size, no bias and no
   * padded output columns (out a multiple of 256). The packed layout is made of 64-column chunks, so
   * the fused weights are the parts' rows concatenated (device-to-device copies). With
   * `{ dispose: true }` the parts are disposed after the copy.
   */
  static concat(parts: readonly TriRunLinear[], opts: { dispose?: boolean } = {}): TriRunLinear {
    // Padded parts fuse too when their real columns are whole 64-column chunks of the layout (the
    // padding is the last columns; no chunk mixes columns of two chunks): only those are copied.
    const cores = concatParts(
      parts,
      "TriRunLinear",
      (p) => p instanceof TriRunLinear,
      (p) => p.core,
      CHUNK_COLUMNS,
    );
    const first = parts[0];
    for (const [i, p] of parts.entries()) {
      if (p.groupsize !== first.groupsize) {
        throw new TypeError(`parts[${i}]: group size ${p.groupsize}, parts[0] has ${first.groupsize}`);
      }
    }
    const k = cores[0].width;
    const g = first.groupsize === -1 ? k : GROUP;
    const n = parts.reduce((sum, p) => sum + p.outFeatures, 0);
    if (n % KERNEL_N_MULTIPLE !== 0) {
      throw new RangeError(
        `the parts' ${n} output features together are not a multiple of ${KERNEL_N_MULTIPLE}, as the kernel needs`,
      );
    }
    // On the parts' device, whichever is current (and the current device left as it was).
    const { B, s } = onDevice(cores[0].device, () => {
      const B = DeviceTensor.empty("i32", [k / 16, n]);
      let s: DeviceTensor | undefined;
      try {
        s = DeviceTensor.empty("f16", [k / g, n]);
        let column = 0;
        for (const [i, core] of cores.entries()) {
          const [pb, ps] = core.weights;
          const width = parts[i].outFeatures;
          copyColumns(B, pb, k / 16, n, column, width, core.n);
          copyColumns(s, ps, k / g, n, column, width, core.n);
          column += width;
        }
      } catch (error) {
        B.dispose();
        s?.dispose();
        throw error;
      }
      return { B, s };
    });
    const fused = TriRunLinear.#onDeviceTensors(B, s, {
      inFeatures: first.inFeatures,
      outFeatures: n,
      onesColumn: -1,
      groupsize: first.groupsize,
      packedGroupsize: first.groupsize,
      bias16: undefined,
    });
    if (opts.dispose === true) for (const p of parts) p.dispose();
    return fused;
  }

  /** `(out, in)` row-major fp32 weights, for checks (CUDA: downloads and unpacks the device copy). */
  dequantize(): Float32Array {
    const core = this.core;
    if (core.kind === "cpu") return core.weight.slice();
    const shape = this.#devicePacked!;
    const [B, s] = core.weights;
    const natural = unpackToNatural(
      // (On the layer's device, the current one left as it was.)
      onDevice(core.device, () => ({
        ...shape,
        B: B.download() as Int32Array,
        s: s.download() as Uint16Array,
      })),
      this.inFeatures,
      this.outFeatures,
    );
    return dequantizeNatural(natural, this.inFeatures, this.outFeatures);
  }
}
