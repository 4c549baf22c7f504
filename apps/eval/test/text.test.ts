import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTokenizer } from "../src/data/tokenizer.js";
import { readTokenFile, toWindows } from "../src/data/tokens.js";
import { perplexity } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadModel } from "../src/model/loaders/index.js";
import { continuationLogLikelihood, evaluateChoices } from "../src/tasks.js";
import { haveShared, STUDENT_DIR } from "./helpers/reference-f64.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir();
const WORDS = [
  "once",
  "upon",
  "a",
  "time",
  "there",
  "was",
  "little",
  "girl",
  "named",
  "lily",
  "she",
  "liked",
  "to",
  "play",
  ".",
];

/** A Hugging Face folder: the student's weights plus a small word-level tokenizer.json over its ids. */
function folderWithTokenizer(): { path: string; vocab: Record<string, number> } {
  const path = join(dir, "student-with-tokenizer");
  mkdirSync(path, { recursive: true });
  copyFileSync(join(STUDENT_DIR, "config.json"), join(path, "config.json"));
  copyFileSync(join(STUDENT_DIR, "model.safetensors"), join(path, "model.safetensors"));
  const ids = new Set<number>();
  while (ids.size < WORDS.length) ids.add(3 + Math.floor(Math.random() * 500));
  const vocab: Record<string, number> = { "[UNK]": 0, "<s>": 1 };
  [...ids].forEach((id, i) => {
    vocab[WORDS[i]] = id;
  });
  const tokenizer = {
    version: "1.0",
    added_tokens: [
      {
        id: 1,
        content: "<s>",
        special: true,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: "Whitespace" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: null,
    model: { type: "WordLevel", vocab, unk_token: "[UNK]" },
  };
  writeFileSync(join(path, "tokenizer.json"), JSON.stringify(tokenizer));
  return { path, vocab };
}

const pick = (n: number) => Array.from({ length: n }, () => WORDS[Math.floor(Math.random() * WORDS.length)]);

describe.skipIf(!haveShared)("text data and text tasks through tokenizer.json", () => {
  it("text perplexity equals the perplexity of the same ids given as tokens", async () => {
    const { path, vocab } = folderWithTokenizer();
    const tokenizer = loadTokenizer(path)!;
    const rt = new CpuLlamaRuntime(await loadModel(path));
    const words = pick(40);
    writeFileSync(join(dir, "story.txt"), words.join(" "));
    const fromText = toWindows(readTokenFile(join(dir, "story.txt"), { tokenizer, vocabSize: 512 }), 16);
    const ids = Int32Array.from([1, ...words.map((w) => vocab[w])]);
    expect(perplexity(rt, fromText).perplexity).toBe(perplexity(rt, toWindows([ids], 16)).perplexity);
  });

  it("text multiple-choice items score like their ids, with acc_norm over characters", async () => {
    const { path, vocab } = folderWithTokenizer();
    const tokenizer = loadTokenizer(path)!;
    const rt = new CpuLlamaRuntime(await loadModel(path));
    const items = Array.from({ length: 4 }, () => {
      const choices = [pick(1), pick(2), pick(3)].map((c) => c.join(" "));
      return { context: pick(5).join(" "), choices, gold: Math.floor(Math.random() * 3) };
    });
    let acc = 0;
    let accNorm = 0;
    for (const item of items) {
      const ctx = [1, ...item.context.split(" ").map((w) => vocab[w])];
      const lls = item.choices.map((c) =>
        continuationLogLikelihood(
          rt,
          ctx,
          c.split(" ").map((w) => vocab[w]),
        ),
      );
      const best = (xs: number[]) => xs.indexOf(Math.max(...xs));
      if (best(lls) === item.gold) acc++;
      if (best(lls.map((l, i) => l / item.choices[i].length)) === item.gold) accNorm++;
    }
    const r = evaluateChoices(rt, items, tokenizer);
    expect(r.acc).toBe(acc / items.length);
    expect(r.accNorm).toBe(accNorm / items.length);
  });

  it("refuses text with words the tokenizer cannot map", async () => {
    const { path } = folderWithTokenizer();
    const tokenizer = loadTokenizer(path)!;
    writeFileSync(join(dir, "unknown.txt"), "once upon a zebra");
    expect(() => readTokenFile(join(dir, "unknown.txt"), { tokenizer })).toThrow(/unknown token/);
  });
});
