/**
 * The eval model with its linear layers on the GPU (@trirun/layers CUDA backend: the TriRun kernel and
 * cuBLAS) against the same model on the CPU backend. Skips, with a note, without a usable CUDA device or
 * without the shared models (set TRIRUN_SHARED_MODELS to their folder when running from a bundle).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { available, unavailableReason } from "@trirun/kernel-native";
import { describe, expect, it } from "vitest";
import { loadQuantizedCheckpoint, writeQuantizedCheckpoint } from "../src/checkpoint.js";
import { compareModels } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadModel } from "../src/model/loaders/index.js";
import type { LlamaModel } from "../src/model/llama.js";
import { quantizeModel } from "../src/pipeline.js";

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
if (!gpu) console.log(`@trirun/eval GPU tests skipped: ${unavailableReason() ?? "no CUDA device"}`);
else if (!models)
  console.log("@trirun/eval GPU tests skipped: shared models not found (set TRIRUN_SHARED_MODELS)");

function randomWindows(count: number, length: number): Int32Array[] {
  return Array.from({ length: count }, () =>
    Int32Array.from({ length }, (_, i) => (i === 0 ? 1 : 1 + Math.floor(Math.random() * 511))),
  );
}

function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

const CASES = [
  { name: "stories260K (padded: 64 / 172 features)", file: "stories260K.bin", groupsize: -1 as const },
  { name: "stories-student-3M (kernel-sized)", file: "stories-student-3M", groupsize: 128 as const },
];

describe.skipIf(!gpu || !models)("eval model on the CUDA layers", () => {
  for (const c of CASES) {
    describe(c.name, () => {
      const load = (backend: "cpu" | "cuda") => loadModel(join(models!, c.file), { backend });
      const windows = randomWindows(2, 64);

      it("unquantized: fp16 cuBLAS layers agree with the CPU layers", async () => {
        const cpu = await load("cpu");
        const cuda = await load("cuda");
        expect(cuda.blocks[0].linears["self_attn.q_proj"]).toMatchObject({ backend: "cuda" });
        const r = compareModels(new CpuLlamaRuntime(cpu), new CpuLlamaRuntime(cuda), windows);
        // KL and perplexity, not top-1: on random token windows these small models' next-token
        // distributions are nearly flat, and top-1 agreement between fp16 and fp32 runs was
        // 0.93 on the H100 with KL far below the bound (ill-conditioned, not a defect).
        expect(r.quantized.klMean).toBeLessThan(1e-3);
        expect(relDiff(r.quantized.perplexity, r.fp.perplexity)).toBeLessThan(5e-3);
      });

      it("quantized: TriRun kernel layers agree with the CPU layers (perplexity within 0.5%)", async () => {
        const fp = await load("cpu");
        const opts = {
          method: "mse" as const,
          groupsize: c.groupsize,
          levels: "int2" as const,
          calibration: [],
          quiet: true,
        };
        const onCpu = await quantizeModel(fp, { ...opts, backend: "cpu" });
        const onGpu = await quantizeModel(fp, { ...opts, backend: "cuda" });
        expect(onGpu.model.blocks[0].linears["mlp.down_proj"]).toMatchObject({
          kind: "trirun",
          backend: "cuda",
        });
        const r = compareModels(new CpuLlamaRuntime(onCpu.model), new CpuLlamaRuntime(onGpu.model), windows);
        expect(r.quantized.klMean).toBeLessThan(5e-3);
        expect(relDiff(r.quantized.perplexity, r.fp.perplexity)).toBeLessThan(5e-3);
      });

      it("a checkpoint loaded straight onto the GPU (packed upload) runs like the quantized layers it came from", async () => {
        const fp = await load("cpu");
        const q = await quantizeModel(fp, {
          method: "absmean",
          groupsize: c.groupsize,
          levels: "ternary",
          calibration: [],
          backend: "cuda",
          quiet: true,
        });
        const dir = mkdtempSync(join(tmpdir(), "trirun-eval-gpu-"));
        try {
          await writeQuantizedCheckpoint(dir, fp, q.layers, {
            method: "absmean",
            groupsize: c.groupsize,
            levels: "ternary",
            source: c.file,
          });
          const loaded: LlamaModel = (await loadQuantizedCheckpoint(dir, { backend: "cuda" })).model;
          const r = compareModels(new CpuLlamaRuntime(q.model), new CpuLlamaRuntime(loaded), windows);
          // Ternary absmean leaves these small models with nearly flat next-token distributions, so
          // top-1 agreement between two runs that differ only in fp rounding is ill-conditioned
          // (measured 0.46-0.95 on the H100 with KL < 1e-3): compare the distributions instead.
          expect(r.quantized.klMean).toBeLessThan(1e-3);
          expect(relDiff(r.quantized.perplexity, r.fp.perplexity)).toBeLessThan(5e-3);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  }
});
