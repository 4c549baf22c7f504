/**
 * `TriRunGatePair`: the gate and up projections of a SwiGLU MLP (Llama's `gate_proj` and `up_proj`) as
 * one CUDA layer whose output is `silu(x Wg^T) * (x Wu^T)`. Its weights are the two layers' packed
 * 64-column chunks interleaved (gate chunk c, then up chunk c), so the same lane of the kernel holds a
 * gate column and its up column and the SiLU-multiply happens in the matmul's output stage: one launch
 * and half the output bytes, where a fused `[gate | up]` layer needs a matmul and a separate kernel.
 */
import { DeviceTensor, ops, type Stream, TRIRUN_SMALL_MAX_M, trirunMatmul } from "@trirun/kernel-native";
import { LayerDisposedError } from "./types.js";

export interface GatePairForwardOptions {
  /** The stream to run on (default stream when omitted). */
  stream?: Stream;
  /** Where to write the result, f16 `(..., outFeatures)`; allocated when omitted. */
  out?: DeviceTensor;
  /**
   * f16 with room for `rows * 2 * outFeatures` elements: the product before the SiLU-multiply, for
   * more than 32 rows (the epilogue's limit). Allocated and freed per call when omitted.
   */
  scratch?: DeviceTensor;
}

interface GatePairWeights {
  B: DeviceTensor;
  s: DeviceTensor;
}

export class TriRunGatePair {
  readonly kind = "trirun-gate-pair" as const;
  readonly backend = "cuda" as const;
  readonly inFeatures: number;
  /** Width of the output: the hidden size (each projection's output features). */
  readonly outFeatures: number;
  readonly groupsize: 128 | -1;
  #weights: GatePairWeights | undefined;

  /** @internal Made by `TriRunLinear.gatePair`. */
  constructor(weights: GatePairWeights, inFeatures: number, outFeatures: number, groupsize: 128 | -1) {
    this.#weights = weights;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.groupsize = groupsize;
  }

  get disposed(): boolean {
    return this.#weights === undefined;
  }

  /** Device bytes of the packed weights and scales. */
  get byteLength(): number {
    const w = this.#weights;
    return w === undefined ? 0 : w.B.byteLength + w.s.byteLength;
  }

  /** The interleaved device weights `B (k/16, 2 h)` and `s (k/g, 2 h)`, for checks. */
  get weights(): readonly DeviceTensor[] {
    const w = this.#live();
    return [w.B, w.s];
  }

  /** `silu(x Wg^T) * (x Wu^T)` for `x` f16 `(..., inFeatures)` on the device. */
  forward(x: DeviceTensor, opts: GatePairForwardOptions = {}): DeviceTensor {
    const w = this.#live();
    if (!(x instanceof DeviceTensor)) throw new TypeError("x: expected a DeviceTensor");
    if (x.dtype !== "f16") throw new TypeError(`x: expected dtype f16, got ${x.dtype}`);
    const last = x.shape[x.shape.length - 1];
    if (x.shape.length < 1 || last !== this.inFeatures) {
      throw new RangeError(
        `x: expected shape (..., ${this.inFeatures}), got (${x.shape.join(", ")}) for ${this.#label()}`,
      );
    }
    const rows = x.numel / this.inFeatures;
    const hidden = this.outFeatures;
    const out = opts.out ?? DeviceTensor.empty("f16", [...x.shape.slice(0, -1), hidden]);
    if (!(out instanceof DeviceTensor) || out.dtype !== "f16" || out.numel !== rows * hidden) {
      throw new RangeError(`opts.out: expected an f16 DeviceTensor of ${rows} x ${hidden} elements`);
    }
    if (rows === 0) return out;
    const groupsize = this.groupsize;
    const views: DeviceTensor[] = [];
    let temporary: DeviceTensor | undefined;
    try {
      const A = x.view([rows, this.inFeatures]);
      const C = out.view([rows, hidden]);
      views.push(A, C);
      if (rows <= TRIRUN_SMALL_MAX_M) {
        trirunMatmul(A, w.B, w.s, C, { groupsize, stream: opts.stream, epilogue: "silu-mul" });
      } else {
        const scratch = opts.scratch ?? (temporary = DeviceTensor.empty("f16", [rows, 2 * hidden]));
        if (!(scratch instanceof DeviceTensor) || scratch.dtype !== "f16" || scratch.numel < rows * 2 * hidden) {
          throw new RangeError(
            `opts.scratch: expected an f16 DeviceTensor of at least ${rows} x ${2 * hidden} elements`,
          );
        }
        const P = scratch.view([rows, 2 * hidden]);
        views.push(P);
        trirunMatmul(A, w.B, w.s, P, { groupsize, stream: opts.stream });
        ops.siluMulPairs(P, C, { stream: opts.stream });
      }
    } finally {
      for (const v of views) v.dispose();
      temporary?.dispose();
    }
    return out;
  }

  /** Frees the weights; idempotent. Any later `forward` throws a {@link LayerDisposedError}. */
  dispose(): void {
    const w = this.#weights;
    if (w === undefined) return;
    this.#weights = undefined;
    w.B.dispose();
    w.s.dispose();
  }

  #live(): GatePairWeights {
    if (this.#weights === undefined) throw new LayerDisposedError(this.#label());
    return this.#weights;
  }

  #label(): string {
    return `TriRunGatePair(${this.inFeatures} -> ${this.outFeatures})`;
  }
}
