import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DataError } from "../src/data/errors.js";
import { seededRandom } from "../src/data/sampling.js";
import { loadTokenizer } from "../src/data/tokenizer.js";
import { readTokenFile, toWindows } from "../src/data/tokens.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir();

function randomIds(n: number, max: number): number[] {
  return Array.from({ length: n }, () => Math.floor(Math.random() * max));
}

describe("token files", () => {
  it("reads raw u16 and u32 rows little-endian", () => {
    const ids = randomIds(3 * 7, 60000);
    const b16 = Buffer.alloc(ids.length * 2);
    const b32 = Buffer.alloc(ids.length * 4);
    ids.forEach((id, i) => {
      b16.writeUInt16LE(id, 2 * i);
      b32.writeUInt32LE(id * 7, 4 * i);
    });
    writeFileSync(join(dir, "a.u16"), b16);
    writeFileSync(join(dir, "a.u32"), b32);
    const rows16 = readTokenFile(join(dir, "a.u16"), { seqLen: 7 });
    expect(rows16.map((r) => Array.from(r))).toEqual([ids.slice(0, 7), ids.slice(7, 14), ids.slice(14)]);
    const rows32 = readTokenFile(join(dir, "a.u32"), { seqLen: 21 });
    expect(Array.from(rows32[0])).toEqual(ids.map((x) => x * 7));
  });

  it("rejects a raw file that is not whole rows, a missing seqLen, and ids beyond the vocabulary", () => {
    writeFileSync(join(dir, "odd.u16"), Buffer.alloc(15));
    expect(() => readTokenFile(join(dir, "odd.u16"), { seqLen: 4 })).toThrow(/not a whole number of 4-token/);
    expect(() => readTokenFile(join(dir, "odd.u16"))).toThrow(RangeError);
    const b = Buffer.alloc(8);
    b.writeUInt16LE(600, 2);
    writeFileSync(join(dir, "big.u16"), b);
    expect(() => readTokenFile(join(dir, "big.u16"), { seqLen: 4, vocabSize: 512 })).toThrow(/token 600/);
    expect(() => readTokenFile(join(dir, "missing.u16"), { seqLen: 4 })).toThrow(DataError);
  });

  it("reads JSON id arrays and rejects other JSON", () => {
    const seqs = [randomIds(5, 100), randomIds(9, 100)];
    writeFileSync(join(dir, "a.json"), JSON.stringify(seqs));
    expect(readTokenFile(join(dir, "a.json")).map((r) => Array.from(r))).toEqual(seqs);
    writeFileSync(join(dir, "one.json"), JSON.stringify(seqs[0]));
    expect(readTokenFile(join(dir, "one.json")).map((r) => Array.from(r))).toEqual([seqs[0]]);
    writeFileSync(join(dir, "bad.json"), JSON.stringify([[1, -2]]));
    expect(() => readTokenFile(join(dir, "bad.json"))).toThrow(/sequence 0/);
    writeFileSync(join(dir, "broken.json"), "[1, 2");
    expect(() => readTokenFile(join(dir, "broken.json"))).toThrow(/not valid JSON/);
  });

  it("asks for a tokenizer for text, and tokenizes text with tokenizer.json", () => {
    writeFileSync(join(dir, "a.txt"), "the cat sat .");
    expect(() => readTokenFile(join(dir, "a.txt"))).toThrow(/needs the model's tokenizer/);
    const words = ["the", "cat", "sat", "on", "mat", "."];
    const vocab: Record<string, number> = { "[UNK]": 0, "<s>": 1 };
    words.forEach((w, i) => {
      vocab[w] = i + 2;
    });
    const tokenizerJson = {
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
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson));
    const tokenizer = loadTokenizer(dir);
    expect(tokenizer).toBeDefined();
    const text = Array.from({ length: 12 }, () => words[Math.floor(Math.random() * words.length)]);
    writeFileSync(join(dir, "b.txt"), text.join(" "));
    const rows = readTokenFile(join(dir, "b.txt"), { tokenizer });
    expect(Array.from(rows[0])).toEqual([1, ...text.map((w) => vocab[w])]);
    expect(loadTokenizer(join(dir, "nowhere"))).toBeUndefined();
  });

  it("cuts sequences into windows of at most the given length, dropping 1-token tails", () => {
    const len = 5 + Math.floor(Math.random() * 20);
    const seq = Int32Array.from(randomIds(len, 50));
    const w = toWindows([seq], 4);
    expect(w.every((x) => x.length >= 2 && x.length <= 4)).toBe(true);
    const covered = w.reduce((s, x) => s + x.length, 0);
    expect(covered).toBe(len % 4 === 1 ? len - 1 : len);
    expect(Array.from(w[0])).toEqual(Array.from(seq.subarray(0, 4)));
  });
});

describe("seeded sampling generator", () => {
  it("repeats for a seed and differs across seeds, uniform in [0, 1)", () => {
    const seed = Math.floor(Math.random() * 1e9);
    const a = seededRandom(seed);
    const b = seededRandom(seed);
    const c = seededRandom(seed + 1);
    const xs = Array.from({ length: 2000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 2000 }, () => b()));
    expect(xs).not.toEqual(Array.from({ length: 2000 }, () => c()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
  });
});
