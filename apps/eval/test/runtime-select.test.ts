/**
 * Runtime selection and the CUDA runtime's host-side checks, all of which run without a GPU.
 */
import { available } from "@trirun/kernel-native";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildProgram } from "../src/cli.js";
import { logSoftmax, perplexity } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import {
  CudaLlamaRuntime,
  CudaRuntimeUnavailableError,
  checkCudaLayers,
  tokenIds,
} from "../src/model/gpu-runtime.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import type { LlamaRuntime } from "../src/model/runtime.js";
import {
  chooseRuntime,
  createRuntime,
  type RuntimeRequest,
  runtimeEnvironment,
} from "../src/model/runtime-select.js";
import { haveShared, STORIES_BIN } from "./helpers/reference-f64.js";

const cuda = new Set(["cuda"]);
const cpu = new Set(["cpu"]);
const mixed = new Set(["cpu", "cuda"]);

describe("chooseRuntime", () => {
  it("auto picks cuda only when a GPU is usable and every layer is on it", () => {
    expect(chooseRuntime("auto", { gpu: true, layerBackends: cuda })).toBe("cuda");
    expect(chooseRuntime("auto", { gpu: true, layerBackends: cpu })).toBe("cpu");
    expect(chooseRuntime("auto", { gpu: true, layerBackends: mixed })).toBe("cpu");
    expect(chooseRuntime("auto", { gpu: true, layerBackends: new Set() })).toBe("cpu");
    expect(chooseRuntime("auto", { gpu: false, layerBackends: cuda })).toBe("cpu");
    expect(chooseRuntime("auto", { gpu: false, layerBackends: cpu })).toBe("cpu");
  });

  it("cpu is always honoured, even with the layers on the GPU", () => {
    for (const gpu of [true, false]) {
      for (const layerBackends of [cpu, cuda, mixed]) {
        expect(chooseRuntime("cpu", { gpu, layerBackends })).toBe("cpu");
      }
    }
  });

  it("cuda without a GPU says why, with a code", () => {
    const call = () => chooseRuntime("cuda", { gpu: false, gpuReason: "no driver here", layerBackends: cpu });
    expect(call).toThrow(CudaRuntimeUnavailableError);
    expect(call).toThrow(/no CUDA device is usable \(no driver here\)/);
    try {
      call();
    } catch (e) {
      expect((e as { code?: string }).code).toBe("ERR_NO_CUDA_RUNTIME");
    }
  });

  it("cuda with layers on the CPU backend names the backend and the flag to change", () => {
    expect(() => chooseRuntime("cuda", { gpu: true, layerBackends: mixed })).toThrow(RangeError);
    expect(() => chooseRuntime("cuda", { gpu: true, layerBackends: cpu })).toThrow(/cpu backend.*--backend/);
    expect(chooseRuntime("cuda", { gpu: true, layerBackends: cuda })).toBe("cuda");
  });

  it("rejects an unknown request", () => {
    expect(() => chooseRuntime("gpu" as RuntimeRequest, { gpu: true, layerBackends: cuda })).toThrow(
      TypeError,
    );
  });
});

describe("tokenIds", () => {
  it("copies valid ids to i32 and names the first bad one", () => {
    const ids = Array.from({ length: 9 }, () => Math.floor(Math.random() * 100));
    expect(Array.from(tokenIds(ids, 100))).toEqual(ids);
    expect(() => tokenIds([3, 100], 100)).toThrow(/tokens\[1\] = 100 is outside the vocabulary \[0, 100\)/);
    expect(() => tokenIds([-1], 100)).toThrow(RangeError);
    expect(() => tokenIds([1.5], 100)).toThrow(/tokens\[0\] = 1.5/);
  });
});

describe.skipIf(!haveShared)("runtimes on a model loaded here", () => {
  const model = haveShared ? loadLlama2c(STORIES_BIN, { backend: "cpu" }) : (undefined as never);

  it("the CUDA runtime refuses layers on the CPU backend, naming the first", () => {
    expect(() => checkCudaLayers(model)).toThrow(TypeError);
    expect(() => new CudaLlamaRuntime(model)).toThrow(
      /model\.layers\.0\.self_attn\.q_proj: .*"cuda" backend/,
    );
  });

  it("the environment lists the layers' backends, and auto falls back to the CPU runtime", () => {
    const env = runtimeEnvironment([model]);
    expect([...env.layerBackends]).toEqual(["cpu"]);
    expect(env.gpu).toBe(available());
    const kind = chooseRuntime("auto", env);
    expect(kind).toBe("cpu");
    expect(createRuntime(model, kind)).toBeInstanceOf(CpuLlamaRuntime);
  });

  it("perplexity uses a runtime's own per-token losses when it has them, with the same result", () => {
    const base = new CpuLlamaRuntime(model);
    const V = model.config.vocabSize;
    let calls = 0;
    // Per-token losses from the logits, computed independently of perplexity()'s own loop.
    const withLosses: LlamaRuntime = {
      backend: "cpu",
      model,
      newCache: () => base.newCache(),
      forward: () => {
        throw new Error("forward should not be called when targetNll exists");
      },
      targetNll: (tokens) => {
        calls++;
        const logits = base.forward(tokens);
        const lp = new Float64Array(V);
        return Float64Array.from({ length: tokens.length - 1 }, (_, t) => {
          logSoftmax(logits, t * V, V, lp);
          return -lp[tokens[t + 1]];
        });
      },
      dispose: () => {},
    };
    const windows = Array.from({ length: 3 }, () =>
      Int32Array.from({ length: 12 }, (_, i) => (i === 0 ? 1 : 1 + Math.floor(Math.random() * (V - 1)))),
    );
    const a = perplexity(base, windows);
    const b = perplexity(withLosses, windows);
    expect(calls).toBe(3);
    expect(b.tokens).toBe(a.tokens);
    expect(Math.abs(b.nll - a.nll)).toBeLessThan(1e-12);
  });

  it("a non-finite loss from a runtime is reported with its window and position", () => {
    const broken: LlamaRuntime = {
      backend: "cpu",
      model,
      newCache: () => new CpuLlamaRuntime(model).newCache(),
      forward: () => new Float32Array(),
      targetNll: (tokens) =>
        Float64Array.from({ length: tokens.length - 1 }, (_, t) => (t === 2 ? Number.NaN : 1)),
      dispose: () => {},
    };
    expect(() => perplexity(broken, [Int32Array.from([1, 2, 3, 4, 5])])).toThrow(/window 0, position 2/);
  });
});

describe.skipIf(!haveShared || available())("trirun-eval --runtime without a GPU", () => {
  afterEach(() => vi.restoreAllMocks());

  async function cli(args: string[]): Promise<void> {
    vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    await buildProgram({ embedded: true }).parseAsync(["node", "trirun-eval", ...args]);
  }

  it("run --runtime cuda fails before quantizing, saying no CUDA device is usable", async () => {
    await expect(cli(["run", STORIES_BIN, "--runtime", "cuda", "--quiet"])).rejects.toThrow(
      /runtime "cuda": no CUDA device is usable/,
    );
  });

  it("generate --runtime cuda fails the same way; an unknown runtime is rejected by the parser", async () => {
    await expect(cli(["generate", STORIES_BIN, "--runtime", "cuda", "--length", "4"])).rejects.toThrow(
      /no CUDA device is usable/,
    );
    await expect(cli(["generate", STORIES_BIN, "--runtime", "gpu"])).rejects.toThrow(/runtime/);
  });
});
