export { defaultBackend, resolveBackend } from "./backend.js";
export { cpuThreads, cpuThreadsUnavailableReason, setCpuThreads } from "./cpu-threads.js";
export { Float16Linear } from "./float16-linear.js";
export { hostTensor, isHostTensor } from "./host-tensor.js";
export {
  type PackedLayer,
  type QuantizedLayer,
  type Quantizer,
  type QuantizerFunction,
  TriRunLinear,
} from "./trirun-linear.js";
export {
  type Backend,
  type ForwardOptions,
  type HostTensor,
  LayerDisposedError,
  type LayerOptions,
  type Linear,
  type QuantizedWeights,
  type Tensor,
} from "./types.js";
export { type Replacement, type ReplaceLinearOptions, replaceLinear } from "./replace.js";
export { type LoadCheckpointOptions, type LoadedCheckpoint, loadTriRunCheckpoint } from "./checkpoint.js";
