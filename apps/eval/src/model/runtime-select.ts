import { available, unavailableReason } from "@trirun/kernel-native";
import { cpuThreads } from "@trirun/layers";
import { CpuLlamaRuntime } from "./cpu-runtime.js";
import { CudaLlamaRuntime, CudaRuntimeUnavailableError, cudaBlockUnsupported } from "./gpu-runtime.js";
import { type LlamaModel, listLinears } from "./llama.js";
import type { LlamaRuntime } from "./runtime.js";

export type RuntimeKind = "cpu" | "cuda";
/** What a user asks for: a runtime, or "auto" (the GPU when it can run the model). */
export type RuntimeRequest = "auto" | RuntimeKind;
export const RUNTIME_REQUESTS: readonly RuntimeRequest[] = ["auto", "cpu", "cuda"];

export interface RuntimeEnvironment {
  /** A CUDA device is usable. */
  gpu: boolean;
  /** Why not, when it is not. */
  gpuReason?: string;
  /** Backends of the linear layers of the models to run. */
  layerBackends: ReadonlySet<string>;
  /** Why the CUDA runtime cannot run these models' blocks, when it cannot (e.g. BitNet's). */
  blockUnsupported?: string;
}

/**
 * Picks the runtime: "cpu" always works; "cuda" needs a GPU and every linear layer on the CUDA backend;
 * "auto" is "cuda" when both hold, else "cpu".
 */
export function chooseRuntime(request: RuntimeRequest, env: RuntimeEnvironment): RuntimeKind {
  if (!RUNTIME_REQUESTS.includes(request)) {
    throw new TypeError(`runtime: expected "auto", "cpu" or "cuda", got ${JSON.stringify(request)}`);
  }
  const layersOnGpu = env.layerBackends.size > 0 && [...env.layerBackends].every((b) => b === "cuda");
  if (request === "cpu") return "cpu";
  if (request === "auto")
    return env.gpu && layersOnGpu && env.blockUnsupported === undefined ? "cuda" : "cpu";
  if (env.blockUnsupported !== undefined) {
    throw new RangeError(`runtime "cuda": ${env.blockUnsupported}; use --runtime cpu or auto`);
  }
  if (!env.gpu) {
    throw new CudaRuntimeUnavailableError(
      `runtime "cuda": no CUDA device is usable (${env.gpuReason ?? "unknown reason"}); use --runtime cpu or auto`,
    );
  }
  if (!layersOnGpu) {
    throw new RangeError(
      `runtime "cuda": the linear layers are on the ${[...env.layerBackends].join("+")} backend; use --backend cuda (or auto)`,
    );
  }
  return "cuda";
}

/** The environment of the models as loaded here. */
export function runtimeEnvironment(models: readonly LlamaModel[]): RuntimeEnvironment {
  const gpu = available();
  const env: RuntimeEnvironment = {
    gpu,
    gpuReason: gpu ? undefined : (unavailableReason() ?? undefined),
    layerBackends: new Set(models.flatMap((m) => listLinears(m).map((e) => e.layer.backend))),
  };
  const blockUnsupported = models.map(cudaBlockUnsupported).find((r) => r !== undefined);
  if (blockUnsupported !== undefined) env.blockUnsupported = blockUnsupported;
  return env;
}

export function createRuntime(model: LlamaModel, kind: RuntimeKind): LlamaRuntime {
  return kind === "cuda" ? new CudaLlamaRuntime(model) : new CpuLlamaRuntime(model);
}

/** A short description of where a runtime's ops run, for reports. */
export function describeRuntime(kind: RuntimeKind): string {
  return kind === "cuda"
    ? "model ops on the GPU (fp16 activations, fp32 math in the kernels); linear layers through @trirun/layers"
    : `model ops on the CPU in fp32; linear layers through @trirun/layers (CPU matmul on ${cpuThreads()} thread${cpuThreads() === 1 ? "" : "s"})`;
}
