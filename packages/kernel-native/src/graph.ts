// CUDA graphs: record a sequence of launches once, replay it with one call.
import { currentDevice } from "./device.js";
import { DisposedError } from "./errors.js";
import { type NativeGraph, requireNative } from "./native.js";
import { nativeStream, type Stream } from "./stream.js";

const graphs = new WeakMap<CudaGraph, NativeGraph>();

/**
 * A captured sequence of launches (kernels, cuBLAS calls, device-to-device copies), replayed by
 * `launch()` with a single CUDA call. The graph reads and writes the same device memory at every
 * replay: change inputs by uploading new values into the tensors it captured, not by passing new ones.
 * It keeps the tensors it uses alive; disposing one of them makes `launch()` throw.
 */
export class CudaGraph {
  /** @internal Made by captureGraph(). */
  constructor(native: NativeGraph) {
    graphs.set(this, native);
  }

  get disposed(): boolean {
    return graphs.get(this)!.destroyed;
  }

  /** Operations (kernel, copy and memset nodes) in the graph. */
  get nodes(): number {
    return graphs.get(this)!.nodes;
  }

  /** The device the graph runs on. */
  get device(): number {
    return graphs.get(this)!.device;
  }

  /**
   * Queues one replay on `stream` (default: the default stream, so it runs after earlier uploads and
   * before later downloads that name no stream). Returns at once.
   */
  launch(stream?: Stream): void {
    const native = graphs.get(this)!;
    if (native.destroyed) throw new DisposedError("graph");
    native.launch(nativeStream(stream, "stream"));
  }

  /** Idempotent; releases the graph and its references to tensors. */
  dispose(): void {
    graphs.get(this)!.destroy();
  }
}

export interface CaptureGraphOptions {
  /** Device to capture on (default: the current device). */
  device?: number;
}

/**
 * Captures every launch `record` makes into a CudaGraph. Nothing runs during the capture. Inside
 * `record`: pass no `stream` (launches go to the capture stream), do not upload, download or
 * synchronize, and make sure each call has run once before (so that kernel workspaces and scratch
 * buffers exist; growing them during a capture is refused). A failing call or a throw from `record`
 * ends the capture and is rethrown; no graph is made.
 *
 * ```ts
 * step(); // warm-up: allocations happen here
 * const graph = captureGraph(() => step());
 * ids.upload(next); graph.launch();
 * ```
 */
export function captureGraph(record: () => void, opts: CaptureGraphOptions = {}): CudaGraph {
  if (typeof record !== "function") throw new TypeError("record: expected a function");
  const device = opts.device ?? currentDevice();
  if (!Number.isInteger(device) || device < 0) {
    throw new RangeError(`device: expected a device index, got ${String(device)}`);
  }
  const native = requireNative().captureGraph(device, () => {
    record();
  });
  return new CudaGraph(native);
}
