import type { LlamaRuntime } from "./model/runtime.js";

/** log-softmax of one row of logits, in fp64 for stable sums. */
export function logSoftmax(logits: ArrayLike<number>, offset: number, size: number, out: Float64Array): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < size; i++) if (logits[offset + i] > max) max = logits[offset + i];
  let sum = 0;
  for (let i = 0; i < size; i++) sum += Math.exp(logits[offset + i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < size; i++) out[i] = logits[offset + i] - lse;
}

/** Nearest-rank percentile (q in [0, 100]) of values. */
export function percentile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((q / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface PerplexityResult {
  perplexity: number;
  /** Mean negative log-likelihood per predicted token (nats). */
  nll: number;
  tokens: number;
}

export interface ComparisonResult {
  fp: PerplexityResult;
  quantized: PerplexityResult & {
    /** KL(fp || quantized) of the next-token distributions, nats, mean over positions. */
    klMean: number;
    klP99: number;
    /** Fraction of positions where both models rank the same token first. */
    top1Agreement: number;
    positions: number;
  };
}

export type WindowProgress = (windowsDone: number, windowsTotal: number) => void;

/** Non-finite logits (an overflow, a broken layer) would turn every metric into NaN: say where instead. */
function checkFinite(logits: Float32Array, which: string, window: number, vocab: number): Float32Array {
  for (let i = 0; i < logits.length; i++) {
    if (!Number.isFinite(logits[i])) {
      throw new RangeError(
        `${which}: logit ${logits[i]} at window ${window}, position ${Math.floor(i / vocab)}, token ${i % vocab}`,
      );
    }
  }
  return logits;
}

function checkWindows(windows: Int32Array[]): void {
  if (windows.length === 0) throw new RangeError("windows: expected at least one token window");
  windows.forEach((w, i) => {
    if (w.length < 2)
      throw new RangeError(`windows[${i}]: a window needs at least 2 tokens, got ${w.length}`);
  });
}

/** Perplexity of one model over windows; each window predicts its tokens 1.. from the ones before. */
export function perplexity(
  runtime: LlamaRuntime,
  windows: Int32Array[],
  onProgress?: WindowProgress,
): PerplexityResult {
  checkWindows(windows);
  const V = runtime.model.config.vocabSize;
  const lp = new Float64Array(V);
  let nll = 0;
  let tokens = 0;
  windows.forEach((w, i) => {
    if (runtime.targetNll) {
      const losses = runtime.targetNll(w);
      losses.forEach((loss, t) => {
        if (!Number.isFinite(loss)) throw new RangeError(`model: loss ${loss} at window ${i}, position ${t}`);
        nll += loss;
      });
      tokens += losses.length;
    } else {
      const logits = checkFinite(runtime.forward(w), "model", i, V);
      for (let t = 0; t + 1 < w.length; t++) {
        logSoftmax(logits, t * V, V, lp);
        nll -= lp[w[t + 1]];
        tokens++;
      }
    }
    onProgress?.(i + 1, windows.length);
  });
  return { perplexity: Math.exp(nll / tokens), nll: nll / tokens, tokens };
}

/**
 * Runs the unquantized and the quantized model over the same windows: both perplexities, and per position
 * KL(fp || quantized) and whether the top-1 tokens agree.
 */
export function compareModels(
  fp: LlamaRuntime,
  quantized: LlamaRuntime,
  windows: Int32Array[],
  onProgress?: WindowProgress,
): ComparisonResult {
  checkWindows(windows);
  const V = fp.model.config.vocabSize;
  if (quantized.model.config.vocabSize !== V) {
    throw new RangeError(`quantized model: vocabulary ${quantized.model.config.vocabSize} differs from ${V}`);
  }
  const lp = new Float64Array(V);
  const lq = new Float64Array(V);
  const kls: number[] = [];
  let agree = 0;
  let nllP = 0;
  let nllQ = 0;
  let tokens = 0;
  windows.forEach((w, i) => {
    const a = checkFinite(fp.forward(w), "unquantized model", i, V);
    const b = checkFinite(quantized.forward(w), "quantized model", i, V);
    for (let t = 0; t < w.length; t++) {
      logSoftmax(a, t * V, V, lp);
      logSoftmax(b, t * V, V, lq);
      let kl = 0;
      let argP = 0;
      let argQ = 0;
      for (let v = 0; v < V; v++) {
        kl += Math.exp(lp[v]) * (lp[v] - lq[v]);
        if (lp[v] > lp[argP]) argP = v;
        if (lq[v] > lq[argQ]) argQ = v;
      }
      kls.push(Math.max(0, kl));
      if (argP === argQ) agree++;
      if (t + 1 < w.length) {
        nllP -= lp[w[t + 1]];
        nllQ -= lq[w[t + 1]];
        tokens++;
      }
    }
    onProgress?.(i + 1, windows.length);
  });
  const klMean = kls.reduce((s, v) => s + v, 0) / kls.length;
  return {
    fp: { perplexity: Math.exp(nllP / tokens), nll: nllP / tokens, tokens },
    quantized: {
      perplexity: Math.exp(nllQ / tokens),
      nll: nllQ / tokens,
      tokens,
      klMean,
      klP99: percentile(kls, 99),
      top1Agreement: agree / kls.length,
      positions: kls.length,
    },
  };
}
