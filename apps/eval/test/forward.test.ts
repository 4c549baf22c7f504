import { describe, expect, it } from "vitest";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadHfFolder } from "../src/model/loaders/hf.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import {
  argmax,
  haveShared,
  readStoriesBin,
  readStudent,
  referenceLogits,
  STORIES_BIN,
  STUDENT_DIR,
} from "./helpers/reference-f64.js";

function randomTokens(n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => 1 + Math.floor(Math.random() * (vocab - 1)));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe.skipIf(!haveShared)("stories260K forward (llama2.c, interleaved RoPE)", () => {
  it("matches an independent fp64 forward pass on random tokens", () => {
    const model = loadLlama2c(STORIES_BIN);
    const rt = new CpuLlamaRuntime(model);
    const ref = readStoriesBin();
    const tokens = randomTokens(6, model.config.vocabSize);
    const logits = rt.forward(tokens);
    const expected = referenceLogits(ref, tokens);
    const V = model.config.vocabSize;
    for (let t = 0; t < tokens.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const scale = Math.max(...expected[t].map(Math.abs));
      expect(maxAbsDiff(row, expected[t]) / scale).toBeLessThan(1e-4);
      expect(argmax(row)).toBe(argmax(expected[t]));
    }
  });

  it("gives the same logits token by token through the KV cache as for the whole sequence", () => {
    const model = loadLlama2c(STORIES_BIN);
    const rt = new CpuLlamaRuntime(model);
    const tokens = randomTokens(9, model.config.vocabSize);
    const full = rt.forward(tokens);
    const cache = rt.newCache();
    const V = model.config.vocabSize;
    rt.forward(tokens.slice(0, 4), cache);
    for (let t = 4; t < tokens.length; t++) {
      const step = rt.forward([tokens[t]], cache, { lastOnly: true });
      expect(maxAbsDiff(step, full.subarray(t * V, (t + 1) * V))).toBeLessThan(1e-4);
    }
    expect(cache.length).toBe(tokens.length);
  });
});

describe.skipIf(!haveShared)("stories-student-3M forward (Hugging Face folder, rotate-half RoPE)", () => {
  it("matches an independent fp64 forward pass on random tokens", async () => {
    const model = await loadHfFolder(STUDENT_DIR);
    expect(model.config).toMatchObject({ dim: 256, hiddenDim: 768, nLayers: 4, ropeStyle: "half" });
    expect(model.config.tiedClassifier).toBe(false);
    const rt = new CpuLlamaRuntime(model);
    const tokens = randomTokens(5, model.config.vocabSize);
    const logits = rt.forward(tokens);
    const expected = referenceLogits(readStudent(), tokens);
    const V = model.config.vocabSize;
    for (let t = 0; t < tokens.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const scale = Math.max(...expected[t].map(Math.abs));
      expect(maxAbsDiff(row, expected[t]) / scale).toBeLessThan(1e-4);
      expect(argmax(row)).toBe(argmax(expected[t]));
    }
  });

  it("differs from the same weights run with interleaved RoPE (the convention matters)", async () => {
    const model = await loadHfFolder(STUDENT_DIR);
    const tokens = randomTokens(4, model.config.vocabSize);
    const half = new CpuLlamaRuntime(model).forward(tokens);
    const wrong = new CpuLlamaRuntime({
      ...model,
      config: { ...model.config, ropeStyle: "interleaved" },
    }).forward(tokens);
    const V = model.config.vocabSize;
    // Position 0 has no rotation; later positions must change.
    expect(maxAbsDiff(half.subarray(0, V), wrong.subarray(0, V))).toBeLessThan(1e-5);
    expect(maxAbsDiff(half.subarray(V), wrong.subarray(V))).toBeGreaterThan(1e-2);
  });
});
