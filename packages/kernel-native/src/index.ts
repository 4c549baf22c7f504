// @trirun/kernel-native: FP16 x INT2 TriRun matmul, device tensors, streams,
// events and a cuBLAS FP16 baseline for NVIDIA GPUs (sm_80+), through Node-API.
export {
  type DeviceInfo,
  currentDevice,
  deviceInfo,
  devices,
  memoryInfo,
  setDevice,
  synchronize,
} from "./device.js";
export { DTYPE_NAMES, type DType, dtypeBytes, type HostArray, isDType } from "./dtype.js";
export { CudaError, DisposedError, NoCudaDeviceError } from "./errors.js";
export {
  cublasLibraryPath,
  gemmF16,
  gemmF32,
  type TrirunConfig,
  type TrirunMatmulOptions,
  trirunMatmul,
} from "./matmul.js";
export { type CaptureGraphOptions, CudaGraph, captureGraph } from "./graph.js";
export { available, NATIVE_PATH_ENV, nativeInfo, unavailableReason } from "./native.js";
export * as ops from "./ops.js";
export {
  type AttentionDecodeBatchOptions,
  type AttentionDecodeOptions,
  type AttentionHeads,
  type AttentionRopeOptions,
  type NormOptions,
  type NormParams,
  OPS_MAX_HEAD_DIM,
  type RopeOptions,
  type RopeStyle,
  validateAddRmsNormArgs,
  validateAttentionDecodeArgs,
  validateAttentionDecodeBatchArgs,
  validateAttentionPrefillArgs,
  validateElementwiseArgs,
  validateEmbeddingArgs,
  validateLogSoftmaxArgs,
  validateNllArgs,
  validateQuantizeRowsArgs,
  validateRelu2MulRmsNormArgs,
  validateRmsNormArgs,
  validateRopeArgs,
} from "./ops-validate.js";
export { Event, Stream } from "./stream.js";
export { DeviceTensor } from "./tensor.js";
export {
  type TensorDescriptor,
  TRIRUN_MAX_PARALLEL,
  TRIRUN_SMALL_MAX_M,
  TRIRUN_TILES,
  type TrirunTile,
  type TrirunKnobs,
  type TrirunProblem,
  validateGemmF16Args,
  validateGemmF32Args,
  validateTrirunArgs,
} from "./validate.js";
