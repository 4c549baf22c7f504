import type { LlamaRuntime } from "../model/runtime.js";

/** mulberry32: a small seeded generator so that sampled evaluation data is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Draws an index from softmax(logits / temperature); temperature 0 means argmax. */
export function sampleToken(logits: Float32Array, temperature: number, random: () => number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0) return best;
  const max = logits[best];
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp((logits[i] - max) / temperature);
    sum += p[i];
  }
  let u = random() * sum;
  for (let i = 0; i < p.length; i++) {
    u -= p[i];
    if (u <= 0) return i;
  }
  return p.length - 1;
}

export interface GenerateOptions {
  /** Total length of each sequence, prompt included. */
  length: number;
  temperature?: number;
  seed?: number;
}

/** Continues `prompt` token by token through the runtime's KV cache. */
export function generate(
  runtime: LlamaRuntime,
  prompt: ArrayLike<number>,
  opts: GenerateOptions,
): Int32Array {
  const { length, temperature = 1 } = opts;
  if (prompt.length === 0) throw new RangeError("prompt: expected at least one token");
  if (!Number.isInteger(length) || length < prompt.length) {
    throw new RangeError(`length must be an integer >= the prompt length (${prompt.length}), got ${length}`);
  }
  const random = seededRandom(opts.seed ?? 0);
  const out = new Int32Array(length);
  out.set(Array.from(prompt));
  // Sized to the sequence: a device cache of maxSeqLen positions per sampled sequence adds up.
  const cache = runtime.newCache(Math.min(length, runtime.model.config.maxSeqLen));
  try {
    let logits = runtime.forward(prompt, cache, { lastOnly: true });
    for (let t = prompt.length; t < length; t++) {
      out[t] = sampleToken(logits, temperature, random);
      if (t + 1 < length) logits = runtime.forward([out[t]], cache, { lastOnly: true });
    }
  } finally {
    cache.dispose?.();
  }
  return out;
}

/** `count` sequences sampled at temperature 1 from BOS with a fixed seed (sequence i uses seed + i). */
export function sampleSequences(
  runtime: LlamaRuntime,
  opts: { count: number; length: number; seed: number; bos?: number; temperature?: number },
  onSequence?: (done: number) => void,
): Int32Array[] {
  const out: Int32Array[] = [];
  for (let i = 0; i < opts.count; i++) {
    out.push(
      generate(runtime, [opts.bos ?? 1], {
        length: opts.length,
        temperature: opts.temperature ?? 1,
        seed: opts.seed + i,
      }),
    );
    onSequence?.(i + 1);
  }
  return out;
}
