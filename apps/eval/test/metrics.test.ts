import { describe, expect, it } from "vitest";
import { compareModels, percentile, perplexity } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { defaultLinearFactory } from "../src/model/loaders/linear-factory.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { argmax, haveShared, readStoriesBin, referenceLogits, STORIES_BIN } from "./helpers/reference-f64.js";

function randomWindow(n: number): Int32Array {
  return Int32Array.from({ length: n }, () => 1 + Math.floor(Math.random() * 511));
}

function logSoftmax64(z: ArrayLike<number>): number[] {
  const m = Math.max(...Array.from(z));
  const lse = m + Math.log(Array.from(z).reduce((s, v) => s + Math.exp(v - m), 0));
  return Array.from(z, (v) => v - lse);
}

describe("percentile", () => {
  it("is the nearest-rank percentile of shuffled values", () => {
    const n = 50 + Math.floor(Math.random() * 200);
    const values = Array.from({ length: n }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
    expect(percentile(values, 99)).toBe(Math.ceil(0.99 * n));
    expect(percentile(values, 100)).toBe(n);
    expect(percentile(values, 50)).toBe(Math.ceil(0.5 * n));
  });
});

describe.skipIf(!haveShared)("perplexity and KL on stories260K", () => {
  const model = loadLlama2c(STORIES_BIN);
  const fp = new CpuLlamaRuntime(model);
  const ref = readStoriesBin();
  const windows = [randomWindow(5), randomWindow(7)];
  const refLogits = windows.map((w) => referenceLogits(ref, Array.from(w)));

  it("perplexity equals exp(mean NLL) from an fp64 forward pass", () => {
    let nll = 0;
    let count = 0;
    windows.forEach((w, i) => {
      for (let t = 0; t + 1 < w.length; t++) {
        nll -= logSoftmax64(refLogits[i][t])[w[t + 1]];
        count++;
      }
    });
    const r = perplexity(fp, windows);
    expect(r.tokens).toBe(count);
    expect(Math.abs(r.nll - nll / count)).toBeLessThan(1e-3);
    expect(r.perplexity).toBeCloseTo(Math.exp(r.nll), 10);
  });

  it("names the window and position of a non-finite logit instead of returning NaN", () => {
    const broken = {
      ...fp,
      forward: (t: ArrayLike<number>) => {
        const out = fp.forward(t);
        out[3 * 512 + 7] = Number.NaN;
        return out;
      },
    } as CpuLlamaRuntime;
    expect(() => compareModels(fp, broken, windows)).toThrow(
      /quantized model: logit NaN at window 0, position 3, token 7/,
    );
    expect(() => perplexity(broken, windows)).toThrow(/position 3/);
  });

  it("KL of a model against itself is 0 with full top-1 agreement", () => {
    const r = compareModels(fp, fp, windows);
    expect(r.quantized.klMean).toBe(0);
    expect(r.quantized.klP99).toBe(0);
    expect(r.quantized.top1Agreement).toBe(1);
    expect(r.quantized.perplexity).toBe(r.fp.perplexity);
  });

  it("KL against a sharpened model (classifier x2) matches KL(softmax(z) || softmax(2z)) in fp64", () => {
    const V = model.config.vocabSize;
    const w = Float32Array.from(ref.cls, (x) => 2 * x);
    const sharp = { ...model, classifier: defaultLinearFactory("lm_head", w, V, model.config.dim) };
    const r = compareModels(fp, new CpuLlamaRuntime(sharp), windows);
    const kls: number[] = [];
    for (const z of refLogits.flat()) {
      const lp = logSoftmax64(z);
      const lq = logSoftmax64(Array.from(z, (v) => 2 * v));
      kls.push(lp.reduce((s, v, i) => s + Math.exp(v) * (v - lq[i]), 0));
      expect(argmax(lp)).toBe(argmax(lq));
    }
    const mean = kls.reduce((s, v) => s + v, 0) / kls.length;
    expect(r.quantized.positions).toBe(kls.length);
    expect(Math.abs(r.quantized.klMean - mean) / mean).toBeLessThan(1e-3);
    expect(Math.abs(r.quantized.klP99 - Math.max(...kls)) / mean).toBeLessThan(1e-3);
    expect(r.quantized.top1Agreement).toBe(1);
  });
});
