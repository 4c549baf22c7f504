/**
 * The CUDA runtime (the whole forward pass on the GPU) against the fp32 CPU runtime with CPU layers:
 * perplexity and KL within 0.5% relative, unquantized and quantized, on stories260K (padded by the layers)
 * and stories-student-3M (kernel-sized); decoding token by token with the device KV cache agrees with
 * prefill; device NLL agrees with host log-softmax over the downloaded logits. Skips, with a note,
 * without a usable CUDA device or without the shared models (set TRIRUN_SHARED_MODELS to their folder
 * when running from a bundle).
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { available, unavailableReason } from "@trirun/kernel-native";
import { decodeF16 } from "@trirun/packing";
import { afterAll, describe, expect, it } from "vitest";
import { readTokenFile } from "../src/data/tokens.js";
import { compareModels, logSoftmax, perplexity } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { withActivationBits } from "../src/model/config.js";
import { CudaLlamaRuntime, stepPartsOf } from "../src/model/gpu-runtime.js";
import { disposeModel, type LlamaModel } from "../src/model/llama.js";
import { loadModel } from "../src/model/loaders/index.js";
import { quantizeModel } from "../src/pipeline.js";
import { randomCudaModel } from "../src/speed/random-model.js";
import { runSpeed } from "../src/speed/run-speed.js";
import { weightBytes, speedConfig } from "../src/speed/shapes.js";
import { relRms } from "./helpers/compare.js";

function findModels(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.TRIRUN_SHARED_MODELS,
    resolve(here, "../../../../shared/models"),
    resolve(process.cwd(), "../shared/models"),
    resolve(process.cwd(), "shared/models"),
    resolve(process.cwd(), "../../../shared/models"),
  ];
  return candidates.find((d) => d !== undefined && existsSync(join(d, "stories260K.bin")));
}

const gpu = available();
const models = findModels();
if (!gpu) console.log(`@trirun/eval GPU runtime tests skipped: ${unavailableReason() ?? "no CUDA device"}`);
else if (!models)
  console.log("@trirun/eval GPU runtime tests skipped: shared models not found (set TRIRUN_SHARED_MODELS)");

const VOCAB = 512;
const WINDOW = 96;

/** Evaluation windows: held-out rows of the samples file at a random offset when present, else random ids. */
function evalWindows(count: number): Int32Array[] {
  const samples = models && join(models, "stories260K-samples-8192x256.u16");
  if (samples && existsSync(samples)) {
    const rows = readTokenFile(samples, { seqLen: 256, vocabSize: VOCAB });
    const first = 4096 + Math.floor(Math.random() * (rows.length - 4096 - count));
    return rows.slice(first, first + count).map((r) => r.slice(0, WINDOW));
  }
  return Array.from({ length: count }, () =>
    Int32Array.from({ length: WINDOW }, (_, i) =>
      i === 0 ? 1 : 1 + Math.floor(Math.random() * (VOCAB - 1)),
    ),
  );
}

function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

/** KL(p || q) per row of two (rows, V) logit matrices, in fp64. */
function rowKl(p: Float32Array, q: Float32Array, rows: number, V: number, qRow0 = 0): number[] {
  const lp = new Float64Array(V);
  const lq = new Float64Array(V);
  return Array.from({ length: rows }, (_, r) => {
    logSoftmax(p, r * V, V, lp);
    logSoftmax(q, (qRow0 + r) * V, V, lq);
    let kl = 0;
    for (let v = 0; v < V; v++) kl += Math.exp(lp[v]) * (lp[v] - lq[v]);
    return Math.max(0, kl);
  });
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

const CASES = [
  { name: "stories260K (padded: 64 / 172 features)", file: "stories260K.bin", groupsize: -1 as const },
  { name: "stories-student-3M (kernel-sized)", file: "stories-student-3M", groupsize: 128 as const },
];

describe.skipIf(!gpu || !models)("CUDA Llama runtime", () => {
  for (const c of CASES) {
    describe(c.name, () => {
      const owned: LlamaModel[] = [];
      const runtimes: CudaLlamaRuntime[] = [];
      const load = async (backend: "cpu" | "cuda") => {
        const m = await loadModel(join(models!, c.file), { backend });
        owned.push(m);
        return m;
      };
      const cudaRuntime = (m: LlamaModel) => {
        const rt = new CudaLlamaRuntime(m);
        runtimes.push(rt);
        return rt;
      };
      const quantize = async (fp: LlamaModel, backend: "cpu" | "cuda") => {
        // RTN (mse, int2) reads only the host weight copies (the same fp16 values on both backends), so
        // both get the same codes and scales; the quantized model shares the classifier of `fp`.
        const q = await quantizeModel(fp, {
          method: "mse",
          groupsize: c.groupsize,
          levels: "int2",
          calibration: [],
          backend,
          quiet: true,
        });
        owned.push(q.model);
        return q.model;
      };
      afterAll(() => {
        for (const rt of runtimes) rt.dispose();
        for (const m of owned) disposeModel(m);
      });

      it("unquantized: perplexity within 0.5% of the CPU runtime; next-token distributions agree", async () => {
        const windows = evalWindows(3);
        const cpu = new CpuLlamaRuntime(await load("cpu"));
        const gpuRt = cudaRuntime(await load("cuda"));
        const ref = perplexity(cpu, windows);
        // perplexity() takes the device NLL path (targetNll); compareModels the downloaded logits.
        const onDevice = perplexity(gpuRt, windows);
        const cmp = compareModels(cpu, gpuRt, windows);
        console.log(
          `${c.file} fp: perplexity cpu ${ref.perplexity.toFixed(4)} cuda ${onDevice.perplexity.toFixed(4)} (logits ${cmp.quantized.perplexity.toFixed(4)}), KL(cpu || cuda) ${cmp.quantized.klMean.toExponential(2)}`,
        );
        expect(onDevice.tokens).toBe(ref.tokens);
        expect(relDiff(onDevice.perplexity, ref.perplexity)).toBeLessThan(5e-3);
        expect(relDiff(cmp.quantized.perplexity, ref.perplexity)).toBeLessThan(5e-3);
        expect(cmp.quantized.klMean).toBeLessThan(1e-3);
      });

      it("quantized (int2 RTN): perplexities and KL(fp || quantized) within 0.5% of the CPU runtime's", async () => {
        const windows = evalWindows(3);
        const fpCpu = await load("cpu");
        const fpCuda = await load("cuda");
        const qCpu = await quantize(fpCpu, "cpu");
        const qCuda = await quantize(fpCuda, "cuda");
        expect(qCuda.blocks[0].linears["mlp.down_proj"]).toMatchObject({ kind: "trirun", backend: "cuda" });
        const onCpu = compareModels(new CpuLlamaRuntime(fpCpu), new CpuLlamaRuntime(qCpu), windows);
        const gq = cudaRuntime(qCuda);
        const onGpu = compareModels(cudaRuntime(fpCuda), gq, windows);
        const direct = compareModels(new CpuLlamaRuntime(qCpu), gq, windows);
        console.log(
          `${c.file} int2: perplexity fp ${onCpu.fp.perplexity.toFixed(4)} / ${onGpu.fp.perplexity.toFixed(4)}, quantized ${onCpu.quantized.perplexity.toFixed(4)} / ${onGpu.quantized.perplexity.toFixed(4)}, KL ${onCpu.quantized.klMean.toFixed(5)} / ${onGpu.quantized.klMean.toFixed(5)} (cpu / cuda); KL(cpu q || cuda q) ${direct.quantized.klMean.toExponential(2)}`,
        );
        expect(relDiff(onGpu.fp.perplexity, onCpu.fp.perplexity)).toBeLessThan(5e-3);
        expect(relDiff(onGpu.quantized.perplexity, onCpu.quantized.perplexity)).toBeLessThan(5e-3);
        expect(relDiff(onGpu.quantized.klMean, onCpu.quantized.klMean)).toBeLessThan(5e-3);
        expect(direct.quantized.klMean).toBeLessThan(5e-3);
        expect(relDiff(perplexity(gq, windows).perplexity, onCpu.quantized.perplexity)).toBeLessThan(5e-3);
      });

      it("decoding token by token with the device KV cache agrees with prefill (fp and quantized)", async () => {
        const [w] = evalWindows(1);
        const fp = await load("cuda");
        for (const model of [fp, await quantize(fp, "cuda")]) {
          const rt = cudaRuntime(model);
          const prefill = rt.forward(w);
          const cache = rt.newCache();
          const decoded = new Float32Array(prefill.length);
          for (let t = 0; t < w.length; t++)
            decoded.set(rt.forward([w[t]], cache, { lastOnly: true }), t * VOCAB);
          expect(cache.length).toBe(w.length);
          const kls = rowKl(prefill, decoded, w.length, VOCAB);
          // A prompt prefilled into the cache, then one token at a time.
          const split = 1 + Math.floor(Math.random() * (w.length - 2));
          cache.reset();
          const promptLogits = rt.forward(w.subarray(0, split), cache);
          const next = rt.forward(w.subarray(split, split + 1), cache, { lastOnly: true });
          const promptKl = rowKl(prefill, promptLogits, split, VOCAB);
          const nextKl = rowKl(prefill.subarray(split * VOCAB, (split + 1) * VOCAB), next, 1, VOCAB);
          console.log(
            `${c.file} ${model === fp ? "fp" : "int2"} decode vs prefill: KL mean ${mean(kls).toExponential(2)} max ${Math.max(...kls).toExponential(2)}; cached prompt of ${split} ${mean(promptKl).toExponential(2)}, next ${nextKl[0].toExponential(2)}`,
          );
          expect(mean(kls)).toBeLessThan(1e-3);
          expect(Math.max(...kls)).toBeLessThan(1e-2);
          expect(mean(promptKl)).toBeLessThan(1e-3);
          expect(nextKl[0]).toBeLessThan(1e-2);
          cache.dispose();
        }
      });

      it("a batch of sequences decoded together matches each decoded alone", async () => {
        const rt = cudaRuntime(await load("cuda"));
        const batch = 2 + Math.floor(Math.random() * 3);
        const steps = 6;
        const seqs = Array.from({ length: batch }, () =>
          Int32Array.from({ length: steps }, () => Math.floor(Math.random() * VOCAB)),
        );
        const together = Array.from({ length: batch }, () => rt.newCache(steps));
        const batchCache = rt.newBatchCache(batch, steps);
        const alone = Array.from({ length: batch }, () => rt.newCache(steps));
        const kls: number[] = [];
        const batchKls: number[] = [];
        for (let t = 0; t < steps; t++) {
          const tokens = seqs.map((s) => s[t]);
          const logits = decodeF16(rt.decodeBatch(tokens, together).download() as Uint16Array);
          const batched = decodeF16(rt.decodeBatch(tokens, batchCache).download() as Uint16Array);
          for (let b = 0; b < batch; b++) {
            const single = rt.forward([seqs[b][t]], alone[b], { lastOnly: true });
            kls.push(...rowKl(single, logits, 1, VOCAB, b));
            batchKls.push(...rowKl(single, batched, 1, VOCAB, b));
          }
        }
        expect(mean(batchKls)).toBeLessThan(1e-3);
        expect(batchCache.lengths.every((n) => n === steps)).toBe(true);
        batchCache.dispose();
        expect(together.every((c) => c.length === steps)).toBe(true);
        console.log(
          `${c.file} batch ${batch} decode vs single: KL mean ${mean(kls).toExponential(2)} (per-sequence caches), ${mean(batchKls).toExponential(2)} (batch cache)`,
        );
        expect(mean(kls)).toBeLessThan(1e-3);
        expect(() => rt.decodeBatch([1], together)).toThrow(/one cache per token/);
        expect(() => rt.decodeBatch([1], [together[0]])).toThrow(/full/);
        for (const cache of [...together, ...alone]) cache.dispose();
      });

      it("device NLL matches host log-softmax over the downloaded logits; bad tokens and caches are refused", async () => {
        const [w] = evalWindows(1);
        const rt = cudaRuntime(await load("cuda"));
        const logits = rt.forward(w);
        const losses = rt.targetNll(w);
        const lp = new Float64Array(VOCAB);
        expect(losses.length).toBe(w.length - 1);
        let worst = 0;
        for (let t = 0; t + 1 < w.length; t++) {
          logSoftmax(logits, t * VOCAB, VOCAB, lp);
          worst = Math.max(worst, Math.abs(losses[t] + lp[w[t + 1]]));
        }
        expect(worst).toBeLessThan(1e-3);
        expect(() => rt.forward([1, VOCAB])).toThrow(/tokens\[1\] = 512 is outside the vocabulary/);
        expect(() => rt.forward([1], new CpuLlamaRuntime(rt.model).newCache())).toThrow(TypeError);
        const small = rt.newCache(4);
        rt.forward([1, 2, 3], small);
        expect(() => rt.forward([4, 5], small)).toThrow(/exceed the cache capacity 4/);
        small.dispose();
      });
    });
  }

  it("BitNet b1.58's block (sub-norms, relu2 gate; bitnet RTN weights) agrees with the CPU runtime within 0.5%", async () => {
    // stories-student-3M's weights with BitNet's block: the two runtimes must agree on whatever weights.
    const windows = evalWindows(3);
    const subNorm = (n: number) => Float32Array.from({ length: n }, () => 0.8 + Math.random() * 0.4);
    const asBitNet = async (backend: "cpu" | "cuda", norms?: { attn: Float32Array; ffn: Float32Array }[]) => {
      const m = await loadModel(join(models!, "stories-student-3M"), { backend });
      const sub =
        norms ?? m.blocks.map(() => ({ attn: subNorm(m.config.dim), ffn: subNorm(m.config.hiddenDim) }));
      const bitnet: LlamaModel = {
        ...m,
        config: { ...m.config, mlpActivation: "relu2", subNorms: true },
        blocks: m.blocks.map((b, l) => ({ ...b, attnSubNorm: sub[l].attn, ffnSubNorm: sub[l].ffn })),
      };
      const q = await quantizeModel(bitnet, {
        method: "bitnet",
        groupsize: 128,
        levels: "ternary",
        calibration: [],
        backend,
        quiet: true,
      });
      return { fp: bitnet, q: q.model, sub };
    };
    const cpu = await asBitNet("cpu");
    const cuda = await asBitNet("cuda", cpu.sub);
    const rt = new CudaLlamaRuntime(cuda.q);
    try {
      const onCpu = compareModels(new CpuLlamaRuntime(cpu.fp), new CpuLlamaRuntime(cpu.q), windows);
      const direct = compareModels(new CpuLlamaRuntime(cpu.q), rt, windows);
      console.log(
        `BitNet block (student-3M weights): perplexity cpu ${onCpu.quantized.perplexity.toFixed(4)} cuda ${direct.quantized.perplexity.toFixed(4)}, KL(cpu || cuda) ${direct.quantized.klMean.toExponential(2)}`,
      );
      expect(relDiff(direct.quantized.perplexity, onCpu.quantized.perplexity)).toBeLessThan(5e-3);
      expect(direct.quantized.klMean).toBeLessThan(1e-3);
      expect(relDiff(perplexity(rt, windows).perplexity, onCpu.quantized.perplexity)).toBeLessThan(5e-3);
    } finally {
      rt.dispose();
      for (const m of [cpu.fp, cpu.q, cuda.fp, cuda.q]) disposeModel(m);
    }
  });
});

describe.skipIf(!gpu)("speed on random weights (smoke run, no timing assertions)", () => {
  it("measures both formats on one block of the TriLM 3.9B shape and reports the weights it allocated", () => {
    const r = runSpeed({
      shape: "trilm-3.9b",
      layers: 1,
      batches: [1, 3],
      steps: 2,
      warmup: 1,
      seed: 1 + Math.floor(Math.random() * 1000),
      formats: ["fp16", "trirun"],
      breakdown: true,
    });
    const config = speedConfig("trilm-3.9b", 1);
    expect(r.breakdown).toBe(true);
    for (const x of r.results) {
      expect(x.skipped).toBeUndefined();
      expect(x.measurements.map((m) => m.batch)).toEqual([1, 3]);
      for (const m of x.measurements) {
        expect(m.tokensPerSecond).toBeGreaterThan(0);
        expect(Number.isFinite(m.msPerToken)).toBe(true);
        // The device's part of a step is inside the wall-clock step.
        expect(m.deviceMsPerTokenMedian).toBeGreaterThan(0);
        expect(m.deviceMsPerTokenMedian).toBeLessThanOrEqual(m.msPerTokenMedian * 1.05);
        // --breakdown: every part of the Llama block timed without it (costs are differences of medians).
        expect(m.breakdown?.map((p) => p.part)).toEqual(stepPartsOf(config));
        for (const p of m.breakdown ?? []) {
          expect(p.deviceMsWithout).toBeGreaterThan(0);
          expect(Number.isFinite(p.msPerStep)).toBe(true);
          expect(p.usPerBlock).toBeCloseTo((p.msPerStep * 1000) / config.nLayers, 6);
        }
      }
      // Layers' and runtime's own bytes: the estimate plus the fp32 norms and the activation buffers.
      const expected = weightBytes(config, x.format);
      expect(x.weightBytes).toBeGreaterThanOrEqual(expected);
      expect(x.weightBytes! / expected).toBeLessThan(1.05);
      expect(x.deviceBytesUsed).toBeGreaterThan(0);
    }
  }, 300_000); // host-side random weights for a 50k-word vocabulary take a while
});

describe.skipIf(!gpu)("CUDA graphs and fused projections in batched decoding", () => {
  it("graph replay equals eager launches exactly; fused q/k/v and gate/up agree within fp16 rounding; the batch cache (RoPE inside the attention launch) agrees with per-sequence caches (separate RoPE)", () => {
    // Two blocks of the Llama-2-7B shape with a small vocabulary: kernel-sized, so every block fuses.
    const config = { ...speedConfig("llama2-7b", 2), vocabSize: 1024 };
    const seed = 1 + Math.floor(Math.random() * 1000);
    for (const format of ["fp16", "trirun"] as const) {
      const model = randomCudaModel(config, format, seed);
      const eager = new CudaLlamaRuntime(model, { graphs: false });
      const graphs = new CudaLlamaRuntime(model);
      const fused = new CudaLlamaRuntime(model, { fuse: "copy" });
      expect(fused.fusedBlocks).toBe(2);
      expect(fused.fusedByteLength).toBeGreaterThan(0);
      for (const batch of [1, 3]) {
        const steps = 6;
        const caches = [eager, graphs, fused].map((rt) => rt.newBatchCache(batch, steps));
        // One newCache() per sequence: attentionDecode after separate RoPE launches.
        const alone = Array.from({ length: batch }, () => eager.newCache(steps));
        for (let t = 0; t < steps; t++) {
          const tokens = Array.from({ length: batch }, () => Math.floor(Math.random() * config.vocabSize));
          const [a, b, c] = [eager, graphs, fused].map((rt, i) =>
            decodeF16(rt.decodeBatch(tokens, caches[i]).download() as Uint16Array),
          );
          const d = decodeF16(eager.decodeBatch(tokens, alone).download() as Uint16Array);
          expect(
            relRms(a, d),
            `${format} batch ${batch} step ${t}: batch cache vs per-sequence caches`,
          ).toBeLessThan(1e-3);
          expect(
            relRms(b, d),
            `${format} batch ${batch} step ${t}: graphed batch cache vs per-sequence caches`,
          ).toBeLessThan(1e-3);
          expect(
            a.every((x) => Number.isFinite(x)),
            `${format} batch ${batch} step ${t}: eager logits are finite`,
          ).toBe(true);
          // cuBLAS may pick another algorithm inside a capture, so graph vs eager is compared to 1e-3
          // (a stale position or token would move the logits by far more).
          expect(relRms(b, a), `${format} batch ${batch} step ${t}: graph vs eager`).toBeLessThan(1e-3);
          expect(relRms(c, a), `${format} batch ${batch} step ${t}: fused vs separate`).toBeLessThan(1e-2);
        }
        // Layer 0's keys and values come from the embedding, the norm, the k/v projections and RoPE, the
        // same launches on both eager paths: the fused kernel's rotated keys must equal RoPE's bit for bit.
        const [k0, v0] = [caches[0].keys[0], caches[0].values[0]].map((x) => x.download() as Uint16Array);
        const width = k0.length / (batch * steps);
        for (let s = 0; s < batch; s++) {
          const rows = [s * steps * width, (s + 1) * steps * width] as const;
          expect(
            Array.from(k0.subarray(...rows)),
            `${format} batch ${batch}: layer 0 keys of sequence ${s}`,
          ).toEqual(Array.from(alone[s].keys[0].download() as Uint16Array));
          expect(
            Array.from(v0.subarray(...rows)),
            `${format} batch ${batch}: layer 0 values of sequence ${s}`,
          ).toEqual(Array.from(alone[s].values[0].download() as Uint16Array));
        }
        for (const cache of [...caches, ...alone]) cache.dispose();
      }
      for (const rt of [eager, graphs, fused]) rt.dispose();
      disposeModel(model);
    }
  }, 300_000);
});

describe.skipIf(!gpu)("BitNet's row ops fused (fuseRowOps)", () => {
  it("decodeBatch gives the unfused runtime's logits bit for bit, with and without 8-bit activations, eager and in graphs", () => {
    // Two blocks of the BitNet b1.58 2B4T shape (sub-norms, relu2 gate) with a small vocabulary.
    const config = { ...speedConfig("bitnet-2b", 2), vocabSize: 1024 };
    const seed = 1 + Math.floor(Math.random() * 1000);
    for (const bits of [8, undefined]) {
      const model = withActivationBits(randomCudaModel(config, "trirun", seed), bits);
      // Pairs that launch the same matmuls (graphs launch them as dependents on one SM fewer than
      // eager calls, which may sum in another order): unfused and fused, eager, then replayed.
      for (const graphs of [false, true]) {
        const runtimes = [false, true].map(
          (fuseRowOps) => new CudaLlamaRuntime(model, { graphs, fuseRowOps }),
        );
        for (const batch of [1, 3]) {
          const steps = 5; // with graphs: warm-up, capture, three replays
          const caches = runtimes.map((rt) => rt.newBatchCache(batch, steps));
          for (let t = 0; t < steps; t++) {
            const tokens = Array.from({ length: batch }, () => Math.floor(Math.random() * config.vocabSize));
            const [separate, fused] = runtimes.map(
              (rt, i) => rt.decodeBatch(tokens, caches[i]).download() as Uint16Array,
            );
            const where = `bits ${bits}, graphs ${graphs}, batch ${batch}, step ${t}`;
            expect(
              decodeF16(separate).every((x) => Number.isFinite(x)),
              `${where}: finite`,
            ).toBe(true);
            expect(Array.from(fused), `${where}: fused vs unfused`).toEqual(Array.from(separate));
          }
          for (const cache of caches) cache.dispose();
        }
        for (const rt of runtimes) rt.dispose();
      }
      disposeModel(model);
    }
  }, 300_000);
});
