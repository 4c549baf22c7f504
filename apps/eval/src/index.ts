export {
  headSize,
  kvDim,
  type LlamaConfig,
  type MlpActivation,
  type RopeStyle,
  validateConfig,
  withActivationBits,
} from "./model/config.js";
export {
  BLOCK_LINEARS,
  type BlockLinearName,
  type LlamaBlock,
  type LlamaModel,
  disposeModel,
  linearPath,
  listLinears,
} from "./model/llama.js";
export type { HostTensor, ModelLinear } from "./model/linear.js";
export type { ForwardOptions, KvCache, LlamaRuntime } from "./model/runtime.js";
export { CpuLlamaRuntime, type LinearInputObserver } from "./model/cpu-runtime.js";
export {
  CudaBatchKvCache,
  CudaKvCache,
  CudaLlamaRuntime,
  CudaRuntimeUnavailableError,
  checkCudaLayers,
} from "./model/gpu-runtime.js";
export {
  chooseRuntime,
  createRuntime,
  describeRuntime,
  RUNTIME_REQUESTS,
  type RuntimeEnvironment,
  type RuntimeKind,
  type RuntimeRequest,
  runtimeEnvironment,
} from "./model/runtime-select.js";
export { ModelLoadError, type ModelLoadErrorCode } from "./model/loaders/errors.js";
export { llama2cFloatCount, loadLlama2c, parseLlama2cHeader } from "./model/loaders/llama2c.js";
export { detectModelFormat, loadModel, type ModelFormat } from "./model/loaders/index.js";
export { DataError, type DataErrorCode } from "./data/errors.js";
export { readTokenFile, toWindows, type TokenFileFormat, type TokenFileOptions } from "./data/tokens.js";
export { loadTokenizer, type TextTokenizer } from "./data/tokenizer.js";
export { generate, sampleSequences, seededRandom } from "./data/sampling.js";
export {
  compareModels,
  type ComparisonResult,
  percentile,
  perplexity,
  type PerplexityResult,
} from "./metrics.js";
export {
  type ChoiceItem,
  type ChoiceResult,
  checkChoiceItems,
  evaluateChoices,
  readChoiceTasks,
} from "./tasks.js";
export { OutputError } from "./output.js";
export { QUANTIZATION_METHODS, type Levels, type QuantizationMethod } from "./quantize/calibrators.js";
export { quantizeSequential, SEQUENTIAL_GROUPS } from "./quantize/sequential.js";
export { chooseGroupsize, evaluatePair, prepareEvalData, quantizeModel } from "./pipeline.js";
export { type EvalReport, formatMarkdown, formatTerminal } from "./report.js";
