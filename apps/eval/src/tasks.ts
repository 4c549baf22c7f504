import { readFileSync } from "node:fs";
import { DataError } from "./data/errors.js";
import type { TextTokenizer } from "./data/tokenizer.js";
import { logSoftmax } from "./metrics.js";
import type { LlamaConfig } from "./model/config.js";
import type { LlamaRuntime } from "./model/runtime.js";

/** One lm-eval-harness style multiple-choice item: text (needs a tokenizer) or token ids. */
export interface ChoiceItem {
  context: string | number[];
  choices: (string | number[])[];
  gold: number;
  /** Line in the task file (set by readChoiceTasks), for messages. */
  line?: number;
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
    items.push({ context, choices, gold: gold as number, line: i + 1 });
  });
  if (items.length === 0) throw new DataError("ERR_DATA_FORMAT", `${file}: no task items`);
  return items;
}

/** The token ids of an item (text through the tokenizer), as scored. */
function itemIds(
  item: ChoiceItem,
  tokenizer: TextTokenizer | undefined,
  where: string,
): { context: number[]; choices: number[][] } {
  const needsText = typeof item.context === "string" || item.choices.some((c) => typeof c === "string");
  if (needsText && !tokenizer) {
    throw new DataError("ERR_DATA_TOKENIZER", `${where}: text items need the model's tokenizer`);
  }
  const encode = (x: string | number[], specials: boolean): number[] =>
    typeof x === "string" ? (tokenizer as TextTokenizer).encode(x, { specials }) : x;
  return {
    context: encode(item.context, true),
    choices: item.choices.map((c) => encode(c, false)),
  };
}

/**
 * Checks that every token id is in the vocabulary and that each choice fits the model's positions
 * after at least one context token (a longer context is cut from the left, as lm-eval-harness does;
 * a choice that does not fit would score NaN, and argmax would count it silently). Errors name the
 * item (`where`).
 */
function checkItemIds(
  ids: { context: number[]; choices: number[][] },
  where: string,
  config: Pick<LlamaConfig, "vocabSize" | "maxSeqLen">,
): void {
  const { vocabSize, maxSeqLen } = config;
  if (ids.context.length === 0) throw new DataError("ERR_DATA_FORMAT", `${where}: the context has no tokens`);
  const parts: [string, number[]][] = [
    ["context", ids.context],
    ...ids.choices.map((c, j): [string, number[]] => [`choice ${j}`, c]),
  ];
  for (const [name, seq] of parts) {
    if (seq.length === 0) throw new DataError("ERR_DATA_FORMAT", `${where}: ${name} has no tokens`);
    const bad = seq.find((id) => id >= vocabSize);
    if (bad !== undefined) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${where}: ${name} has token ${bad}, outside the model's vocabulary of ${vocabSize}`,
      );
    }
  }
  ids.choices.forEach((c, j) => {
    // Scored as (last context token, choice) at the least: c.length positions.
    if (c.length > maxSeqLen) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${where}: choice ${j} has ${c.length} tokens; scoring it after the context needs ${c.length} positions, more than the model's ${maxSeqLen}`,
      );
    }
  });
}

/** Checks every item of a task file against the model (see checkItemIds); errors name file and line. */
export function checkChoiceItems(
  file: string,
  items: readonly ChoiceItem[],
  config: Pick<LlamaConfig, "vocabSize" | "maxSeqLen">,
  tokenizer: TextTokenizer | undefined,
): void {
  items.forEach((item, i) => {
    const where = item.line !== undefined ? `${file}:${item.line}` : `${file}: task item ${i}`;
    checkItemIds(itemIds(item, tokenizer, where), where, config);
  });
}

/**
 * Sum of log-probabilities of `continuation` after `context`, left-truncating the context to fit (as
 * lm-eval-harness does); the continuation itself must fit the model's positions.
 */
export function continuationLogLikelihood(
  runtime: LlamaRuntime,
  context: number[],
  continuation: number[],
): number {
  const { vocabSize: V, maxSeqLen } = runtime.model.config;
  if (continuation.length === 0) throw new RangeError("continuation: expected at least one token");
  if (context.length === 0) throw new RangeError("context: expected at least one token (e.g. BOS)");
  checkItemIds({ context, choices: [continuation] }, "continuationLogLikelihood", runtime.model.config);
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
    const where = `task item ${i}${item.line !== undefined ? ` (line ${item.line})` : ""}`;
    const ids = itemIds(item, tokenizer, where);
    checkItemIds(ids, where, runtime.model.config);
    const scores: number[] = [];
    const normed: number[] = [];
    for (const [j, choice] of item.choices.entries()) {
      const cont = ids.choices[j];
      const ll = continuationLogLikelihood(runtime, ids.context, cont);
      scores.push(ll);
      normed.push(ll / (typeof choice === "string" ? Math.max(1, [...choice].length) : cont.length));
    }
    if (argmax(scores) === item.gold) acc++;
    if (argmax(normed) === item.gold) accNorm++;
    onProgress?.(i + 1, items.length);
  });
  return { acc: acc / items.length, accNorm: accNorm / items.length, items: items.length };
}
