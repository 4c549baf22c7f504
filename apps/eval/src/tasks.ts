import { readFileSync } from "node:fs";
import { DataError } from "./data/errors.js";
import type { TextTokenizer } from "./data/tokenizer.js";
import { logSoftmax } from "./metrics.js";
import type { LlamaRuntime } from "./model/runtime.js";

/** One lm-eval-harness style multiple-choice item: text (needs a tokenizer) or token ids. */
export interface ChoiceItem {
  context: string | number[];
  choices: (string | number[])[];
  gold: number;
}

export interface ChoiceResult {
  acc: number;
  accNorm: number;
  items: number;
}

function isIds(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((v) => Number.isInteger(v) && v >= 0);
}

/** Reads a JSONL file of { context, choices, gold }; every line is checked and errors name the line. */
export function readChoiceTasks(file: string): ChoiceItem[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataError("ERR_DATA_NOT_FOUND", `${file}: cannot read the task file`, { cause: err });
  }
  const items: ChoiceItem[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      throw new DataError("ERR_DATA_FORMAT", `${where}: not valid JSON (${(err as Error).message})`);
    }
    const { context, choices, gold } = obj ?? {};
    if (typeof context !== "string" && !isIds(context)) {
      throw new DataError("ERR_DATA_FORMAT", `${where}: "context" must be a string or an array of token ids`);
    }
    if (
      !Array.isArray(choices) ||
      choices.length < 2 ||
      !choices.every((c) => typeof c === "string" || isIds(c))
    ) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${where}: "choices" must hold at least two strings or token id arrays`,
      );
    }
    if (!Number.isInteger(gold) || (gold as number) < 0 || (gold as number) >= choices.length) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${where}: "gold" must be an index into choices (0..${choices.length - 1})`,
      );
    }
    items.push({ context, choices, gold: gold as number });
  });
  if (items.length === 0) throw new DataError("ERR_DATA_FORMAT", `${file}: no task items`);
  return items;
}

/** Sum of log-probabilities of `continuation` after `context`, left-truncating the context to fit. */
export function continuationLogLikelihood(
  runtime: LlamaRuntime,
  context: number[],
  continuation: number[],
): number {
  const { vocabSize: V, maxSeqLen } = runtime.model.config;
  if (continuation.length === 0) throw new RangeError("continuation: expected at least one token");
  if (context.length === 0) throw new RangeError("context: expected at least one token (e.g. BOS)");
  const all = [...context, ...continuation].slice(-(maxSeqLen + 1));
  const input = all.slice(0, -1);
  const logits = runtime.forward(input);
  const lp = new Float64Array(V);
  let sum = 0;
  const first = input.length - continuation.length;
  for (let j = 0; j < continuation.length; j++) {
    logSoftmax(logits, (first + j) * V, V, lp);
    sum += lp[continuation[j]];
  }
  return sum;
}

function argmax(a: number[]): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/**
 * acc: the choice with the highest log-likelihood is gold; acc_norm: the same after dividing by the choice's
 * length in characters (lm-eval-harness), or in tokens for id choices.
 */
export function evaluateChoices(
  runtime: LlamaRuntime,
  items: ChoiceItem[],
  tokenizer: TextTokenizer | undefined,
  onProgress?: (done: number, total: number) => void,
): ChoiceResult {
  let acc = 0;
  let accNorm = 0;
  items.forEach((item, i) => {
    const needsText = typeof item.context === "string" || item.choices.some((c) => typeof c === "string");
    if (needsText && !tokenizer) {
      throw new DataError("ERR_DATA_TOKENIZER", `task item ${i}: text items need the model's tokenizer`);
    }
    const ctx = typeof item.context === "string" ? tokenizer!.encode(item.context) : item.context;
    const scores: number[] = [];
    const normed: number[] = [];
    for (const choice of item.choices) {
      const cont = typeof choice === "string" ? tokenizer!.encode(choice, { specials: false }) : choice;
      const ll = continuationLogLikelihood(runtime, ctx, cont);
      scores.push(ll);
      normed.push(ll / (typeof choice === "string" ? Math.max(1, [...choice].length) : cont.length));
    }
    if (argmax(scores) === item.gold) acc++;
    if (argmax(normed) === item.gold) accNorm++;
    onProgress?.(i + 1, items.length);
  });
  return { acc: acc / items.length, accNorm: accNorm / items.length, items: items.length };
}
