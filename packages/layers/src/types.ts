/**
 * The public types shared by every layer: tensors, backends and the `Linear` interface.
 */
import type { DeviceTensor, Stream } from "@trirun/kernel-native";

/** Where a layer keeps its weights and runs its matmul. */
export type Backend = "cpu" | "cuda";

/** fp32 host tensor used by the CPU backend (row-major, last dimension contiguous). */
export interface HostTensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** A layer input or output: a {@link HostTensor}, or on the CUDA backend an f16 `DeviceTensor`. */
export type Tensor = HostTensor | DeviceTensor;

export interface ForwardOptions {
  /** CUDA backend: the stream to run on (default stream when omitted). Ignored on the CPU. */
  stream?: Stream;
  /** Where to write the result; shape `(..., outFeatures)` of the same kind as the input. */
  out?: Tensor;
}

/** What every linear layer offers, whatever its weight format and backend. */
export interface Linear {
  readonly kind: "trirun" | "float16";
  readonly backend: Backend;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Bytes of weight memory (weights, scales, bias) the layer holds on its backend. */
  readonly byteLength: number;
  readonly disposed: boolean;
  /**
   * `x (..., inFeatures) -> (..., outFeatures)`, returned as the same kind of tensor as `x`.
   * CUDA layers take f16 `DeviceTensor`s (asynchronous on `opts.stream`), and also `HostTensor`s
   * for convenience (uploaded, computed, downloaded: synchronous). CPU layers take `HostTensor`s.
   */
  forward(x: HostTensor, opts?: ForwardOptions): HostTensor;
  forward(x: DeviceTensor, opts?: ForwardOptions): DeviceTensor;
  forward(x: Tensor, opts?: ForwardOptions): Tensor;
  /** Frees the weights; idempotent. Any later `forward` throws a {@link LayerDisposedError}. */
  dispose(): void;
}

/**
 * Quantized weights as `@trirun/packing` quantizers and `@trirun/gptq` produce them, in natural
 * (unpermuted) order: `weight[o][i] = (codes[i][o] - 1) * scales[floor(i / g)][o]`.
 */
export interface QuantizedWeights {
  /** `(inFeatures, outFeatures)` row-major, values 0..3. */
  codes: Uint8Array;
  /** fp16 bits, `(ceil(inFeatures / g), outFeatures)` row-major; one row when `groupsize` is -1. */
  scales: Uint16Array;
  /** 128, or -1 for one scale per output column. */
  groupsize: number;
}

/** Options for building a layer. */
export interface LayerOptions {
  /** Default: {@link defaultBackend}(), i.e. "cuda" when a CUDA device is usable, else "cpu". */
  backend?: Backend;
}

/** Thrown when a disposed layer is used. */
export class LayerDisposedError extends Error {
  readonly code = "ERR_LAYER_DISPOSED";
  constructor(what: string) {
    super(`${what} has been disposed`);
    this.name = "LayerDisposedError";
  }
}
