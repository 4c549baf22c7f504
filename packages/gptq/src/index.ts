export {
  GPTQ,
  type BackendChoice,
  type GPTQOptions,
  type QuantizeResult,
  actOrderPermutation,
  sweepBlocks,
} from "./gptq.js";
export type { Levels, QuantizeOptions, QuantizeProgress, ScaleSearchOptions } from "./options.js";
export { GPTQError, type GPTQErrorCode } from "./errors.js";
export type { Backend, GramAccumulator, SweepState } from "./backends/types.js";
export { CpuBackend } from "./backends/cpu.js";
export {
  CudaBackend,
  probeKernelNative,
  type KernelNativeLike,
  type DeviceTensorLike,
} from "./backends/cuda.js";
export {
  type Executor,
  InlineExecutor,
  WorkerExecutor,
  WorkerPoolError,
  getExecutor,
  allocate,
} from "./executor.js";
export { choleskyLowerInPlace, lowerTriangularInverse, upperCholeskyOfInverse } from "./cholesky.js";
export { roundToFp16 } from "./kernels.js";
