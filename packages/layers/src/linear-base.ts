/**
 * What both layer kinds share: input/output checks, dispatch to the CPU or CUDA core, disposal.
 */
import { DeviceTensor, type Stream } from "@trirun/kernel-native";
import { decodeF16, encodeF16 } from "@trirun/packing";
import type { CpuCore } from "./cpu-core.js";
import type { CudaCore } from "./cuda-core.js";
import { onDevice } from "./device-guard.js";
import { checkOutShape, hostTensor, isHostTensor, rowsOf } from "./host-tensor.js";
import {
  type Backend,
  type ForwardOptions,
  type HostTensor,
  type Linear,
  LayerDisposedError,
  type Tensor,
} from "./types.js";

export abstract class LinearBase implements Linear {
  abstract readonly kind: "trirun" | "float16";
  readonly backend: Backend;
  readonly inFeatures: number;
  readonly outFeatures: number;
  #core: CpuCore | CudaCore | undefined;

  protected constructor(core: CpuCore | CudaCore) {
    this.backend = core.kind;
    this.inFeatures = core.inFeatures;
    this.outFeatures = core.outFeatures;
    this.#core = core;
  }

  /** e.g. `TriRunLinear(172 -> 64, cpu)`, used in error messages. */
  protected abstract get label(): string;

  get disposed(): boolean {
    return this.#core === undefined;
  }

  get byteLength(): number {
    return this.#core?.byteLength ?? 0;
  }

  protected get core(): CpuCore | CudaCore {
    if (this.#core === undefined) throw new LayerDisposedError(this.label);
    return this.#core;
  }

  forward(x: HostTensor, opts?: ForwardOptions): HostTensor;
  forward(x: DeviceTensor, opts?: ForwardOptions): DeviceTensor;
  forward(x: Tensor, opts?: ForwardOptions): Tensor;
  forward(x: Tensor, opts: ForwardOptions = {}): Tensor {
    const core = this.core;
    if (isHostTensor(x)) return this.#forwardHost(core, x, opts);
    if (x instanceof DeviceTensor) {
      if (core.kind === "cpu") {
        throw new TypeError(`${this.label}: x must be a HostTensor on the CPU backend, got a DeviceTensor`);
      }
      return this.#forwardDevice(core, x, opts);
    }
    throw new TypeError(
      `${this.label}: x must be a HostTensor ({ data: Float32Array, shape }) or an f16 DeviceTensor`,
    );
  }

  #forwardHost(core: CpuCore | CudaCore, x: HostTensor, opts: ForwardOptions): HostTensor {
    const { rows, lead } = rowsOf(x.shape, this.inFeatures, "x");
    if (x.data.length !== rows * this.inFeatures) {
      throw new RangeError(
        `x.data must have ${rows * this.inFeatures} elements for its shape, got ${x.data.length}`,
      );
    }
    const outShape = [...lead, this.outFeatures];
    let y: HostTensor;
    if (opts.out === undefined) y = hostTensor(outShape);
    else {
      if (!isHostTensor(opts.out))
        throw new TypeError("opts.out must be a HostTensor when x is a HostTensor");
      checkOutShape(opts.out.shape, outShape, "opts.out");
      if (opts.out.data.length !== rows * this.outFeatures) {
        throw new RangeError(`opts.out.data must have ${rows * this.outFeatures} elements`);
      }
      // The CPU matmul writes y while it still reads x: shared memory would give wrong sums. (The CUDA
      // backend copies x to the device first, so in place is fine there.)
      if (core.kind === "cpu" && overlaps(opts.out.data, x.data)) {
        throw new RangeError(`${this.label}: opts.out must not share memory with x`);
      }
      y = opts.out;
    }
    if (core.kind === "cpu") {
      core.run(x.data, rows, y.data);
      return y;
    }
    if (rows === 0) return y;
    // Convenience path on CUDA: fp16 round trip through the device (synchronous).
    // (Both inside the try: an out-of-memory on the second must not leak the first.)
    let dx: DeviceTensor | undefined;
    let dy: DeviceTensor | undefined;
    try {
      const input = encodeF16(x.data);
      // On the layer's device, whichever is current (multi-GPU; the addon's calls would otherwise
      // leave the current device switched to their operands').
      onDevice(core.device, () => {
        dx = DeviceTensor.fromArray(input, [rows, this.inFeatures], "f16");
        dy = DeviceTensor.empty("f16", [rows, this.outFeatures]);
        core.run(dx, rows, dy, opts.stream);
        decodeF16(dy.download(opts.stream) as Uint16Array, y.data);
      });
    } finally {
      dx?.dispose();
      dy?.dispose();
    }
    return y;
  }

  #forwardDevice(core: CudaCore, x: DeviceTensor, opts: ForwardOptions): DeviceTensor {
    if (x.disposed) throw new TypeError(`${this.label}: x is a disposed DeviceTensor`);
    if (x.dtype !== "f16")
      throw new TypeError(`${this.label}: x must be an f16 DeviceTensor, got dtype ${x.dtype}`);
    const { rows, lead } = rowsOf(x.shape, this.inFeatures, "x");
    if (x.device !== core.device) {
      throw new RangeError(
        `${this.label}: x is on device ${x.device}, the layer's weights on device ${core.device}`,
      );
    }
    const outShape = [...lead, this.outFeatures];
    const out = opts.out;
    if (out !== undefined) {
      if (!(out instanceof DeviceTensor))
        throw new TypeError("opts.out must be a DeviceTensor when x is one");
      if (out.disposed) throw new TypeError("opts.out is a disposed DeviceTensor");
      if (out.dtype !== "f16") throw new TypeError(`opts.out must have dtype f16, got ${out.dtype}`);
      checkOutShape(out.shape, outShape, "opts.out");
      if (out.device !== core.device) {
        throw new RangeError(
          `${this.label}: opts.out is on device ${out.device}, the layer's weights on device ${core.device}`,
        );
      }
    }
    // On the layer's device, whichever is current (see #forwardHost).
    return onDevice(core.device, () => {
      const y = out ?? DeviceTensor.empty("f16", outShape);
      try {
        core.run(x, rows, y, opts.stream as Stream | undefined);
      } catch (error) {
        if (out === undefined) y.dispose();
        throw error;
      }
      return y;
    });
  }

  dispose(): void {
    this.#core?.dispose();
    this.#core = undefined;
  }
}

/** Whether two typed arrays view overlapping bytes of one buffer. */
function overlaps(a: Float32Array, b: Float32Array): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
