import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { type ChoiceItem, evaluateChoices, readChoiceTasks } from "../src/tasks.js";
import { haveShared, readStoriesBin, referenceLogits, STORIES_BIN } from "./helpers/reference-f64.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir();
const rand = (n: number) => Math.floor(Math.random() * n);
const ids = (n: number) => Array.from({ length: n }, () => 1 + rand(511));

function argmax(a: number[]): number {
  return a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
}

describe("task files", () => {
  it("reads JSONL items and names the bad line", () => {
    const file = join(dir, "t.jsonl");
    writeFileSync(
      file,
      `${JSON.stringify({ context: "a", choices: ["b", "c"], gold: 1 })}\n\n${JSON.stringify({ context: [1, 2], choices: [[3], [4, 5]], gold: 0 })}\n`,
    );
    expect(readChoiceTasks(file)).toHaveLength(2);
    writeFileSync(
      file,
      `${JSON.stringify({ context: "a", choices: ["b", "c"], gold: 1 })}\n{"context": "a", "choices": ["b"], "gold": 0}\n`,
    );
    expect(() => readChoiceTasks(file)).toThrow(/t\.jsonl:2: "choices"/);
    writeFileSync(file, `{"context": "a", "choices": ["b", "c"], "gold": 2}\n`);
    expect(() => readChoiceTasks(file)).toThrow(/t\.jsonl:1: "gold"/);
    writeFileSync(file, "{nope\n");
    expect(() => readChoiceTasks(file)).toThrow(/t\.jsonl:1: not valid JSON/);
  });
});

describe.skipIf(!haveShared)("multiple-choice scoring on stories260K (token ids)", () => {
  it("acc and acc_norm equal those from fp64 log-likelihoods", () => {
    const rt = new CpuLlamaRuntime(loadLlama2c(STORIES_BIN));
    const ref = readStoriesBin();
    const items: ChoiceItem[] = Array.from({ length: 6 }, () => {
      const choices = Array.from({ length: 2 + rand(2) }, () => ids(1 + rand(3)));
      return { context: [1, ...ids(2 + rand(3))], choices, gold: rand(choices.length) };
    });
    let acc = 0;
    let accNorm = 0;
    for (const item of items) {
      const ctx = item.context as number[];
      const lls = (item.choices as number[][]).map((cont) => {
        const z = referenceLogits(ref, [...ctx, ...cont].slice(0, -1));
        let ll = 0;
        cont.forEach((tok, j) => {
          const row = z[ctx.length - 1 + j];
          const m = Math.max(...row);
          const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
          ll += row[tok] - lse;
        });
        return ll;
      });
      if (argmax(lls) === item.gold) acc++;
      if (argmax(lls.map((l, i) => l / (item.choices[i] as number[]).length)) === item.gold) accNorm++;
    }
    const r = evaluateChoices(rt, items, undefined);
    expect(r.items).toBe(items.length);
    expect(r.acc).toBeCloseTo(acc / items.length, 10);
    expect(r.accNorm).toBeCloseTo(accNorm / items.length, 10);
  });

  it("refuses text items without a tokenizer", () => {
    const rt = new CpuLlamaRuntime(loadLlama2c(STORIES_BIN));
    expect(() => evaluateChoices(rt, [{ context: "Once", choices: ["a", "b"], gold: 0 }], undefined)).toThrow(
      /tokenizer/,
    );
  });
});
