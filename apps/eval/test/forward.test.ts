import { describe, expect, it } from "vitest";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { argmax, haveShared, readStoriesBin, referenceLogits, STORIES_BIN } from "./helpers/reference-f64.js";

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
