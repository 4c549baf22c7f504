/**
 * The CUDA runtime's orchestration on a machine without a GPU: @trirun/kernel-native's host-memory
 * stand-in of its native addon (the package's test support: fake-native.ts with an fp32 TriRun/GEMM
 * emulation, fake-ops.ts with fp64 model ops) is bundled to a CommonJS file and loaded through
 * TRIRUN_NATIVE_PATH. This checks what this package controls (which ops run in which order on which
 * views, the KV caches, batching, the device NLL) against the CPU runtime; it says nothing about the CUDA
 * kernels, which gpu-runtime.gpu.test.ts checks on a GPU. Skips, with a note, when esbuild (through
 * vitest -> vite) or the shared models are missing. Vitest runs each test file in its
 * own process, so the stand-in does not leak into other files.
 */
import { createRequire } from "node:module";
import type { DeviceTensor } from "@trirun/kernel-native";
import type { CudaRuntimeOptions } from "../src/model/gpu-runtime.js";
import type { LlamaModel } from "../src/model/llama.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { relRms } from "./helpers/compare.js";
import { haveShared, STORIES_BIN } from "./helpers/reference-f64.js";

// kernel-native's test support, imported by URL: it lies outside this package's TypeScript project.
const support = new URL("../../../packages/kernel-native/test/support/fake-addon-file.ts", import.meta.url)
  .href;
const { fakeAddonBundler } = (await import(support)) as {
  fakeAddonBundler(): { bundle(): { file: string; dispose(): void }; skip?: undefined } | { skip: string };
};
const bundler = fakeAddonBundler();
const skipReason = bundler.skip ?? (!haveShared ? "shared models not found" : undefined);
if (skipReason) console.log(`@trirun/eval host-emulated CUDA runtime tests skipped: ${skipReason}`);

const VOCAB = 512;

function randomWindow(length: number): Int32Array {
  return Int32Array.from({ length }, (_, i) => (i === 0 ? 1 : 1 + Math.floor(Math.random() * (VOCAB - 1))));
}

/** Largest difference over the largest reference magnitude: for paths that must agree (almost) exactly. */
function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/**
 * The runtime's fp16 activations against the CPU runtime's fp32 ones, as relRms (||a - b|| / ||b||) over a
 * whole set of logits. Measured over 26 runs of each test below (572 comparisons of random windows,
 * fp and int2, Llama, BitNet and Qwen2 blocks): 0.3-0.4% at the median, 0.99% at most, so FP16_TOLERANCE
 * leaves three times the worst; an off-by-one row or the batch's other sequence gives 110-120%. The per-row
 * maximum ratio used before had a long tail (a row whose largest logit is small): one CI window reached 2.4%.
 */
const FP16_TOLERANCE = 3e-2;
/** Decoding (cached, batched) against the same runtime's own prefill: the same fp16 pipeline, row by row. */
const SAME_PIPELINE_TOLERANCE = 1e-3;

function stack(rows: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) {
    out.set(r, at);
    at += r.length;
  }
  return out;
}

describe.skipIf(skipReason !== undefined)("CUDA runtime on the host stand-in of the addon", () => {
  let fake: { file: string; dispose(): void } | undefined;
  // Loaded after TRIRUN_NATIVE_PATH is set (kernel-native picks its addon on first use).
  let m: {
    kernel: typeof import("@trirun/kernel-native");
    packing: typeof import("@trirun/packing");
    gpu: typeof import("../src/model/gpu-runtime.js");
    cpu: typeof import("../src/model/cpu-runtime.js");
    loaders: typeof import("../src/model/loaders/llama2c.js");
    metrics: typeof import("../src/metrics.js");
    pipeline: typeof import("../src/pipeline.js");
    select: typeof import("../src/model/runtime-select.js");
    config: typeof import("../src/model/config.js");
    layers: typeof import("@trirun/layers");
  };

  beforeAll(async () => {
    if (bundler.skip !== undefined) return;
    fake = bundler.bundle();
    process.env.TRIRUN_NATIVE_PATH = fake.file;
    m = {
      kernel: await import("@trirun/kernel-native"),
      packing: await import("@trirun/packing"),
      gpu: await import("../src/model/gpu-runtime.js"),
      cpu: await import("../src/model/cpu-runtime.js"),
      loaders: await import("../src/model/loaders/llama2c.js"),
      metrics: await import("../src/metrics.js"),
      pipeline: await import("../src/pipeline.js"),
      select: await import("../src/model/runtime-select.js"),
      config: await import("../src/model/config.js"),
      layers: await import("@trirun/layers"),
    };
  });

  afterAll(() => {
    fake?.dispose();
  });

  /**
   * Decodes the sequences together one position at a time: each row must match that sequence's prefill on
   * the same runtime (SAME_PIPELINE_TOLERANCE), and all of a sequence's rows the CPU runtime (FP16_TOLERANCE).
   */
  function expectBatchedDecoding(
    gpu: InstanceType<typeof m.gpu.CudaLlamaRuntime>,
    caches: Parameters<InstanceType<typeof m.gpu.CudaLlamaRuntime>["decodeBatch"]>[1],
    sequences: readonly Int32Array[],
    prefills: readonly Float32Array[],
    expected: readonly Float32Array[],
  ): void {
    const rows: Float32Array[][] = sequences.map(() => []);
    for (let t = 0; t < sequences[0].length; t++) {
      const logits = m.packing.decodeF16(
        gpu
          .decodeBatch(
            sequences.map((seq) => seq[t]),
            caches,
          )
          .download() as Uint16Array,
      );
      prefills.forEach((own, s) => {
        const row = logits.slice(s * VOCAB, (s + 1) * VOCAB);
        rows[s].push(row);
        expect(
          maxRelDiff(row, own.subarray(t * VOCAB, (t + 1) * VOCAB)),
          `sequence ${s} of the batch at position ${t} against its prefill`,
        ).toBeLessThan(SAME_PIPELINE_TOLERANCE);
      });
    }
    rows.forEach((r, s) => {
      expect(relRms(stack(r), expected[s]), `sequence ${s} against the CPU runtime`).toBeLessThan(
        FP16_TOLERANCE,
      );
    });
  }

  it("the stand-in is in use, and auto picks the CUDA runtime for layers on it", () => {
    expect(m.kernel.available()).toBe(true);
    expect(m.kernel.devices()[0].name).toMatch(/Fake/);
    const model = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    const kind = m.select.chooseRuntime("auto", m.select.runtimeEnvironment([model]));
    expect(kind).toBe("cuda");
    const rt = m.select.createRuntime(model, kind);
    expect(rt).toBeInstanceOf(m.gpu.CudaLlamaRuntime);
    rt.dispose();
  });

  it("prefill, cached decoding, batched decoding and the device NLL follow the CPU runtime (fp and int2)", async () => {
    const fpCpu = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cpu" });
    const fpCuda = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    const opts = { method: "mse" as const, groupsize: -1 as const, levels: "int2" as const, calibration: [] };
    const pairs = [
      [fpCpu, fpCuda],
      [
        (await m.pipeline.quantizeModel(fpCpu, { ...opts, backend: "cpu", quiet: true })).model,
        (await m.pipeline.quantizeModel(fpCuda, { ...opts, backend: "cuda", quiet: true })).model,
      ],
    ];
    const w = randomWindow(12 + Math.floor(Math.random() * 12));
    for (const [onCpu, onGpu] of pairs) {
      const cpu = new m.cpu.CpuLlamaRuntime(onCpu);
      const gpu = new m.gpu.CudaLlamaRuntime(onGpu);
      const expected = cpu.forward(w);
      // fp16 activations against the fp32 reference.
      const prefill = gpu.forward(w);
      expect(relRms(prefill, expected)).toBeLessThan(FP16_TOLERANCE);

      const cache = gpu.newCache();
      const split = 1 + Math.floor(Math.random() * (w.length - 2));
      const decoded = [gpu.forward(w.subarray(0, split), cache, { lastOnly: true })];
      for (let t = split; t < w.length; t++) decoded.push(gpu.forward([w[t]], cache, { lastOnly: true }));
      expect(cache.length).toBe(w.length);
      const rowsFrom = (logits: Float32Array, first: number) => logits.subarray(first * VOCAB);
      expect(relRms(stack(decoded), rowsFrom(expected, split - 1))).toBeLessThan(FP16_TOLERANCE);
      for (let i = 0; i < decoded.length; i++) {
        const row = split - 1 + i;
        expect(
          maxRelDiff(decoded[i], prefill.subarray(row * VOCAB, (row + 1) * VOCAB)),
          `cached step at position ${row} against the prefill`,
        ).toBeLessThan(SAME_PIPELINE_TOLERANCE);
      }

      // Two sequences decoded together: the second is w shifted by one token.
      const other = Int32Array.from(w, (t) => (t + 1) % VOCAB);
      const otherExpected = cpu.forward(other);
      const otherPrefill = gpu.forward(other);
      const caches = [gpu.newCache(w.length), gpu.newCache(w.length)];
      expectBatchedDecoding(gpu, caches, [w, other], [prefill, otherPrefill], [expected, otherExpected]);

      const ref = m.metrics.perplexity(cpu, [w]);
      const onDevice = m.metrics.perplexity(gpu, [w]);
      expect(onDevice.tokens).toBe(w.length - 1);
      // 52 runs: 0.0034 at the median, 0.009 at most.
      expect(Math.abs(onDevice.nll - ref.nll)).toBeLessThan(FP16_TOLERANCE);
      for (const c of [cache, ...caches]) c.dispose();
      gpu.dispose();
    }
  });

  it("BitNet b1.58's block (sub-norms, relu2 gate) follows the CPU runtime: prefill, cached and batched decoding", () => {
    // stories260K's weights with BitNet's block: the two runtimes must agree on whatever weights.
    const subNorms = (n: number) => Float32Array.from({ length: n }, () => 0.8 + Math.random() * 0.4);
    const base = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cpu" });
    const norms = base.blocks.map(() => ({
      attn: subNorms(base.config.dim),
      ffn: subNorms(base.config.hiddenDim),
    }));
    const asBitNet = (model: typeof base): typeof base => ({
      ...model,
      config: { ...model.config, mlpActivation: "relu2", subNorms: true },
      blocks: model.blocks.map((b, l) => ({ ...b, attnSubNorm: norms[l].attn, ffnSubNorm: norms[l].ffn })),
    });
    const onCpu = asBitNet(base);
    const onGpu = asBitNet(m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" }));
    expect(m.select.chooseRuntime("auto", m.select.runtimeEnvironment([onGpu]))).toBe("cuda");
    const cpu = new m.cpu.CpuLlamaRuntime(onCpu);
    const w = randomWindow(10 + Math.floor(Math.random() * 8));
    const expected = cpu.forward(w);
    // Without the sub-norms the same weights give other logits (so the comparison can fail).
    const llama = new m.cpu.CpuLlamaRuntime(m.loaders.loadLlama2c(STORIES_BIN, { backend: "cpu" })).forward(
      w,
    );
    expect(maxRelDiff(llama, expected)).toBeGreaterThan(5e-2);
    // With BitNet's 8-bit activations: every block linear must receive rows on their 8-bit grid (fp16 and
    // fp32 pipelines round different elements across a level boundary, so the logits are not compared).
    const seen = new Set<string>();
    const spied = m.config.withActivationBits(
      {
        ...onGpu,
        blocks: onGpu.blocks.map((b, l) => ({
          ...b,
          linears: Object.fromEntries(
            Object.entries(b.linears).map(([name, layer]) => [
              name,
              new Proxy(layer, {
                get(target, prop) {
                  if (prop === "forward") {
                    return (x: DeviceTensor, opts: unknown) => {
                      const [rows, width] = x.shape;
                      const v = m.packing.decodeF16(x.download() as Uint16Array);
                      for (let r = 0; r < rows; r++) {
                        const row = v.subarray(r * width, (r + 1) * width);
                        const s = 127 / Math.max(...Array.from(row, Math.abs));
                        const off = row.filter((e) => Math.abs(e * s - Math.round(e * s)) > 0.1).length;
                        expect(off, `layer ${l} ${name} row ${r}: elements off the 8-bit grid`).toBe(0);
                      }
                      seen.add(`${l} ${name}`);
                      return (target.forward as (x: unknown, o: unknown) => unknown)(x, opts);
                    };
                  }
                  const value = Reflect.get(target, prop, target);
                  return typeof value === "function" ? value.bind(target) : value;
                },
              }),
            ]),
          ) as typeof b.linears,
        })),
      },
      8,
    );
    const a8 = new m.gpu.CudaLlamaRuntime(spied, { graphs: false, fuseRowOps: false });
    const a8Logits = a8.forward(w.subarray(0, 4));
    expect(seen.size).toBe(7 * onGpu.blocks.length);
    a8.dispose();
    // fuseRowOps: the norms quantize for the next layer themselves (every input still on the grid), with
    // the unfused runtime's logits exactly.
    seen.clear();
    const a8Fused = new m.gpu.CudaLlamaRuntime(spied, { graphs: false, fuseRowOps: true });
    expect(Array.from(a8Fused.forward(w.subarray(0, 4)))).toEqual(Array.from(a8Logits));
    expect(seen.size).toBe(7 * onGpu.blocks.length);
    a8Fused.dispose();
    const plain = new m.gpu.CudaLlamaRuntime(onGpu, { graphs: false, fuseRowOps: false });
    const fusedRows = new m.gpu.CudaLlamaRuntime(onGpu, { graphs: false, fuseRowOps: true });
    expect(Array.from(fusedRows.forward(w))).toEqual(Array.from(plain.forward(w)));
    for (const rt of [plain, fusedRows]) rt.dispose();
    expect(() => new m.gpu.CudaLlamaRuntime(onGpu, { fuseRowOps: 1 as unknown as boolean })).toThrow(
      /opts.fuseRowOps: expected a boolean/,
    );
    for (const opts of [
      { graphs: false, fuseRowOps: false },
      { graphs: true, fuse: "copy" as const, fuseRowOps: false },
      { graphs: true },
    ]) {
      const gpu = new m.gpu.CudaLlamaRuntime(onGpu, opts);
      const prefill = gpu.forward(w);
      expect(relRms(prefill, expected)).toBeLessThan(FP16_TOLERANCE);
      const cache = gpu.newCache();
      gpu.forward(w.subarray(0, 3), cache);
      const steps: Float32Array[] = [];
      for (let t = 3; t < w.length; t++) {
        const step = gpu.forward([w[t]], cache, { lastOnly: true });
        steps.push(step);
        expect(
          maxRelDiff(step, prefill.subarray(t * VOCAB, (t + 1) * VOCAB)),
          `cached step at position ${t} against the prefill`,
        ).toBeLessThan(SAME_PIPELINE_TOLERANCE);
      }
      expect(relRms(stack(steps), expected.subarray(3 * VOCAB))).toBeLessThan(FP16_TOLERANCE);
      const batchCache = gpu.newBatchCache(2, w.length);
      const other = Int32Array.from(w, (t) => (t + 3) % VOCAB);
      const otherExpected = cpu.forward(other);
      const otherPrefill = gpu.forward(other);
      expectBatchedDecoding(gpu, batchCache, [w, other], [prefill, otherPrefill], [expected, otherExpected]);
      for (const c of [cache, batchCache]) c.dispose();
      gpu.dispose();
    }
  });

  it("batch-cache decoding (RoPE inside the attention launch) equals per-sequence caches (separate RoPE)", () => {
    const model = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    for (const graphs of [false, true]) {
      const rt = new m.gpu.CudaLlamaRuntime(model, { graphs });
      for (const batch of [1, 3]) {
        const steps = 5;
        const w = Array.from({ length: batch }, () => randomWindow(steps));
        const batchCache = rt.newBatchCache(batch, steps);
        const alone = Array.from({ length: batch }, () => rt.newCache(steps));
        for (let t = 0; t < steps; t++) {
          const tokens = w.map((seq) => seq[t]);
          const fused = Array.from(rt.decodeBatch(tokens, batchCache).download() as Uint16Array);
          const separate = Array.from(rt.decodeBatch(tokens, alone).download() as Uint16Array);
          expect(fused, `graphs ${graphs} batch ${batch} step ${t}`).toEqual(separate);
        }
        // Every layer's cache holds the same (rotated) keys and values.
        for (let l = 0; l < model.config.nLayers; l++) {
          for (const kind of ["keys", "values"] as const) {
            const all = batchCache[kind][l].download() as Uint16Array;
            const rows = all.length / batch;
            for (let b = 0; b < batch; b++) {
              expect(
                Array.from(all.subarray(b * rows, (b + 1) * rows)),
                `graphs ${graphs} batch ${batch} layer ${l} ${kind} of sequence ${b}`,
              ).toEqual(Array.from(alone[b][kind][l].download() as Uint16Array));
            }
          }
        }
        for (const c of [batchCache, ...alone]) c.dispose();
      }
      rt.dispose();
    }
  });

  it("q/k/v biases (Qwen2's block), unquantized and quantized, follow the CPU runtime", async () => {
    const { Float16Linear } = m.layers;
    const base = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cpu" });
    const biases = base.blocks.map((b) =>
      (["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"] as const).map((name) =>
        Float32Array.from({ length: b.linears[name].outFeatures }, () => (Math.random() - 0.5) * 0.5),
      ),
    );
    const withBiases = (backend: "cpu" | "cuda"): typeof base => {
      const model = m.loaders.loadLlama2c(STORIES_BIN, { backend });
      return {
        ...model,
        config: { ...model.config, qkvBias: true },
        blocks: model.blocks.map((b, l) => {
          const linears = { ...b.linears };
          (["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"] as const).forEach((name, i) => {
            const layer = b.linears[name] as unknown as {
              weight: Float32Array;
              inFeatures: number;
              outFeatures: number;
            };
            linears[name] = Float16Linear.fromWeights(
              layer.weight,
              layer.outFeatures,
              layer.inFeatures,
              biases[l][i],
              {
                backend,
              },
            );
          });
          return { ...b, linears };
        }),
      };
    };
    const w = randomWindow(12);
    const plain = new m.cpu.CpuLlamaRuntime(base).forward(w);
    const opts = { method: "mse" as const, groupsize: -1 as const, levels: "int2" as const, calibration: [] };
    const fpCpu = withBiases("cpu");
    const fpCuda = withBiases("cuda");
    const pairs = [
      [fpCpu, fpCuda],
      [
        (await m.pipeline.quantizeModel(fpCpu, { ...opts, backend: "cpu", quiet: true })).model,
        (await m.pipeline.quantizeModel(fpCuda, { ...opts, backend: "cuda", quiet: true })).model,
      ],
    ];
    for (const [onCpu, onGpu] of pairs) {
      const expected = new m.cpu.CpuLlamaRuntime(onCpu).forward(w);
      const gpu = new m.gpu.CudaLlamaRuntime(onGpu, { fuse: "copy" });
      expect(relRms(gpu.forward(w), expected)).toBeLessThan(FP16_TOLERANCE);
      gpu.dispose();
    }
    // The biases matter: without them the logits differ by more than the runtimes do.
    expect(maxRelDiff(plain, new m.cpu.CpuLlamaRuntime(fpCpu).forward(w))).toBeGreaterThan(5e-2);
  });

  it("TriRunLinear.concat fuses padded parts whose real columns are whole 64-column chunks (BitNet's 640-wide k/v)", () => {
    const { Float16Linear, TriRunLinear, hostTensor } = m.layers;
    const inF = 128;
    // q 128 + k 64 + v 64 = 256 outputs: each part padded to 256 on the device, the fused layer not at all.
    const parts = [128, 64, 64].map((out) => {
      const w = Float32Array.from({ length: out * inF }, () => (Math.random() - 0.5) / 8);
      const fp = Float16Linear.fromWeights(w, out, inF, undefined, { backend: "cuda" });
      const q = TriRunLinear.quantize(fp, "absmean", 128);
      fp.dispose();
      return q;
    });
    const fused = TriRunLinear.concat(parts);
    expect(fused.outFeatures).toBe(256);
    const x = hostTensor(
      [3, inF],
      Float32Array.from({ length: 3 * inF }, () => Math.random() - 0.5),
    );
    const y = fused.forward(x).data as Float32Array;
    let column = 0;
    for (const part of parts) {
      const yp = part.forward(x).data as Float32Array;
      for (let r = 0; r < 3; r++) {
        for (let o = 0; o < part.outFeatures; o++)
          expect(y[r * 256 + column + o]).toBe(yp[r * part.outFeatures + o]);
      }
      column += part.outFeatures;
    }
    // A part with 32 real columns (half a chunk), or a total that is not a multiple of 256, stays refused.
    const small = TriRunLinear.quantize(
      Float16Linear.fromWeights(new Float32Array(32 * inF).fill(0.01), 32, inF, undefined, {
        backend: "cuda",
      }),
      "absmean",
      128,
    );
    expect(() => TriRunLinear.concat([parts[0], small])).toThrow(
      /32 output features are padded to 256.*multiple of 64/,
    );
    expect(() => TriRunLinear.concat([parts[1], parts[2]])).toThrow(
      /128 output features together are not a multiple of 256/,
    );
    for (const layer of [...parts, fused, small]) layer.dispose();
  });

  it("batch-cache graphs: returned logits are the caller's to dispose, a disposed cache drops its graph, a refused replay runs eagerly and recaptures", () => {
    const fp = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    const plain = new m.gpu.CudaLlamaRuntime(fp, { graphs: false });
    const rt = new m.gpu.CudaLlamaRuntime(fp);
    const steps = 8;
    const w = [randomWindow(steps), randomWindow(steps)];
    const [a, b] = [plain.newBatchCache(2, steps), rt.newBatchCache(2, steps)];
    const launch = m.kernel.CudaGraph.prototype.launch;
    let refusals = 0;
    try {
      for (let t = 0; t < steps; t++) {
        const tokens = w.map((seq) => seq[t]);
        const want = Array.from(plain.decodeBatch(tokens, a).download() as Uint16Array);
        if (t === 4) {
          // The next replay is refused as after a workspace reallocation: nothing runs, so the
          // runtime must run this step eagerly and capture again two steps later.
          m.kernel.CudaGraph.prototype.launch = function (this: InstanceType<typeof m.kernel.CudaGraph>) {
            m.kernel.CudaGraph.prototype.launch = launch;
            refusals++;
            throw new Error(
              "graph: the kernel workspace it was captured with has been reallocated; capture it again",
            );
          };
        }
        const logits = rt.decodeBatch(tokens, b);
        expect(Array.from(logits.download() as Uint16Array), `step ${t}`).toEqual(want);
        // Disposing what decodeBatch returned must not break the next steps.
        logits.dispose();
        // Step 0 warms up, 1 captures, 4 is refused (eager, graph dropped), 5 warms up, 6 captures.
        expect(rt.graphCount, `step ${t}`).toBe(t === 0 || t === 4 || t === 5 ? 0 : 1);
      }
      expect(refusals).toBe(1);
      // A disposed cache takes its graph with it.
      b.dispose();
      expect(rt.graphCount).toBe(0);
    } finally {
      m.kernel.CudaGraph.prototype.launch = launch;
      a.dispose();
      plain.dispose();
      rt.dispose();
    }
  });

  /**
   * Launches of one decoding step (batch cache, graphs off) with each part left out in turn: the stand-in
   * addon as kernel-native loaded it (one module instance), its kernel entry points wrapped to count.
   */
  function partLaunches(model: LlamaModel, opts: CudaRuntimeOptions) {
    const rt = new m.gpu.CudaLlamaRuntime(model, { ...opts, graphs: false });
    const addon = createRequire(import.meta.url)(fake?.file as string) as Record<string, unknown>;
    const originals = Object.entries(addon).filter(
      ([name, fn]) => typeof fn === "function" && /^(ops[A-Z]|trirunMatmul|gemmF16)/.test(name),
    ) as [string, (...args: unknown[]) => unknown][];
    let launches = 0;
    for (const [name, fn] of originals) {
      addon[name] = (...args: unknown[]) => {
        launches++;
        return fn(...args);
      };
    }
    const token = 1 + Math.floor(Math.random() * (VOCAB - 1));
    const step = () => {
      const cache = rt.newBatchCache(1, 4);
      launches = 0;
      try {
        const logits = Array.from(rt.decodeBatch([token], cache).download() as Uint16Array);
        return { logits, launches };
      } finally {
        cache.dispose();
      }
    };
    try {
      const full = step();
      const fewer = new Map<string, number>();
      for (const part of m.gpu.stepPartsOf(model.config)) {
        rt.setOmitParts([part]);
        expect(rt.omitParts).toEqual([part]);
        const without = step();
        expect(
          (full.launches - without.launches) % model.config.nLayers,
          `${part}: the same in every block`,
        ).toBe(0);
        fewer.set(part, (full.launches - without.launches) / model.config.nLayers);
        expect(without.logits, `${part} left out changes the logits`).not.toEqual(full.logits);
      }
      rt.setOmitParts([]);
      expect(step(), "[] restores the full step").toEqual(full);
      return { fewer };
    } finally {
      for (const [name, fn] of originals) addon[name] = fn;
      rt.dispose();
    }
  }

  it("setOmitParts leaves a part out of every block (fewer launches, other logits); [] restores the step", () => {
    const fp = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    expect(m.gpu.stepPartsOf(fp.config)).toEqual([
      "qkv",
      "attention",
      "o",
      "norms",
      "gate-up",
      "mlp-activation",
      "down",
    ]);
    const { fewer } = partLaunches(fp, {});
    for (const [part, least] of [
      ["qkv", 3],
      ["attention", 1],
      ["o", 1],
      ["gate-up", 2],
      ["down", 1],
    ] as const) {
      expect(fewer.get(part), part).toBeGreaterThanOrEqual(least);
    }
    expect(fewer.get("norms")).toBe(2); // add + RMSNorm after attention and after the MLP
    expect(fewer.get("mlp-activation")).toBe(1);
    // A graphed runtime recaptures after each change.
    const rt = new m.gpu.CudaLlamaRuntime(fp);
    const token = 1 + Math.floor(Math.random() * (VOCAB - 1));
    const logitsOf = () => {
      const cache = rt.newBatchCache(1, 4);
      try {
        rt.decodeBatch([token], cache);
        rt.decodeBatch([token], cache); // captured
        return Array.from(rt.decodeBatch([token], cache).download() as Uint16Array); // replayed
      } finally {
        cache.dispose();
      }
    };
    try {
      const full = logitsOf();
      rt.setOmitParts(["attention", "down"]);
      expect(logitsOf()).not.toEqual(full);
      rt.setOmitParts([]);
      expect(logitsOf()).toEqual(full);
      expect(() => rt.setOmitParts(["sub-norms"])).toThrow(/this model's block has no "sub-norms" part/);
      expect(() => rt.setOmitParts(["quantize"])).toThrow(/no "quantize" part/);
      expect(() => rt.setOmitParts(["mlp" as never])).toThrow(/unknown step part "mlp"/);
      expect(rt.omitParts).toEqual([]);
    } finally {
      rt.dispose();
    }
  });

  it("setOmitParts on BitNet's block with 8-bit activations, row ops fused or not: each part's launches", () => {
    const subNorms = (n: number) => Float32Array.from({ length: n }, () => 0.8 + Math.random() * 0.4);
    const base = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    const bitnet = m.config.withActivationBits(
      {
        ...base,
        config: { ...base.config, mlpActivation: "relu2", subNorms: true },
        blocks: base.blocks.map((b) => ({
          ...b,
          attnSubNorm: subNorms(base.config.dim),
          ffnSubNorm: subNorms(base.config.hiddenDim),
        })),
      },
      8,
    );
    expect(m.gpu.stepPartsOf(bitnet.config)).toEqual([...m.gpu.STEP_PARTS]);
    // Per block. Unfused: 4 quantizations (q/k/v input, o input after its sub-norm, gate/up input, down
    // input after its sub-norm), two sub-norms. Fused (fuseRowOps): quantization rides in the norms (none
    // of its own), the MLP's sub-norm in the gate launch; the o sub-norm left out leaves its quantization.
    const unfused = partLaunches(bitnet, { fuseRowOps: false }).fewer;
    expect(
      Object.fromEntries(
        ["norms", "mlp-activation", "sub-norms", "quantize"].map((p) => [p, unfused.get(p)]),
      ),
    ).toEqual({
      norms: 2,
      "mlp-activation": 1,
      "sub-norms": 2,
      quantize: 4,
    });
    const fused = partLaunches(bitnet, { fuseRowOps: true }).fewer;
    expect(
      Object.fromEntries(["norms", "mlp-activation", "sub-norms", "quantize"].map((p) => [p, fused.get(p)])),
    ).toEqual({
      norms: 2,
      "mlp-activation": 1,
      "sub-norms": 0,
      quantize: 0,
    });
    for (const f of [unfused, fused]) expect(f.get("qkv")).toBeGreaterThanOrEqual(3);
  });

  it("a runtime whose construction fails part-way frees what it allocated", () => {
    const fp = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    const used = () => m.kernel.memoryInfo().totalBytes - m.kernel.memoryInfo().freeBytes;
    const before = used();
    const fromArray = m.kernel.DeviceTensor.fromArray;
    let calls = 0;
    // The 6th upload fails as an out-of-memory would (after the embedding, final norm and a few norms).
    m.kernel.DeviceTensor.fromArray = ((...args: Parameters<typeof fromArray>) => {
      if (++calls === 6) throw new Error("cudaMalloc: out of memory (injected)");
      return fromArray.apply(m.kernel.DeviceTensor, args);
    }) as typeof fromArray;
    try {
      expect(() => new m.gpu.CudaLlamaRuntime(fp, { fuse: "copy" })).toThrow(/out of memory \(injected\)/);
    } finally {
      m.kernel.DeviceTensor.fromArray = fromArray;
    }
    expect(calls).toBe(6);
    expect(used()).toBe(before);
  });

  it("fused projections and graph-replayed batch steps give the same logits as the plain runtime", async () => {
    const fp = m.loaders.loadLlama2c(STORIES_BIN, { backend: "cuda" });
    const opts = { method: "mse" as const, groupsize: -1 as const, levels: "int2" as const, calibration: [] };
    const q = (await m.pipeline.quantizeModel(fp, { ...opts, backend: "cuda", quiet: true })).model;
    for (const model of [fp, q]) {
      const plain = new m.gpu.CudaLlamaRuntime(model, { graphs: false });
      const fast = new m.gpu.CudaLlamaRuntime(model, { fuse: "copy" });
      // stories260K (dim 64, hidden 172) is padded on the device: TriRun blocks stay unfused, FP16 fuse.
      expect(fast.fusedBlocks).toBe(model === fp ? model.config.nLayers : 0);
      for (const batch of [1, 3]) {
        const steps = 5;
        const w = Array.from({ length: batch }, () => randomWindow(steps));
        const [a, b] = [plain.newBatchCache(batch, steps), fast.newBatchCache(batch, steps)];
        for (let t = 0; t < steps; t++) {
          const tokens = w.map((seq) => seq[t]);
          const want = Array.from(plain.decodeBatch(tokens, a).download() as Uint16Array);
          const got = Array.from(fast.decodeBatch(tokens, b).download() as Uint16Array);
          expect(got, `batch ${batch} step ${t}`).toEqual(want);
        }
        a.dispose();
        b.dispose();
      }
      plain.dispose();
      fast.dispose();
    }
  });
});
