import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadQuantizedCheckpoint } from "../src/checkpoint.js";
import { generate } from "../src/data/sampling.js";
import { compareModels } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import type { EvalReport } from "../src/report.js";
import { haveShared, STORIES_BIN } from "./helpers/reference-f64.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir();

const cli = runCli;

afterEach(() => vi.restoreAllMocks());

describe.skipIf(!haveShared)("trirun-eval command line", () => {
  const windows = Array.from({ length: 3 }, () => [
    1,
    ...Array.from({ length: 23 }, () => 1 + Math.floor(Math.random() * 511)),
  ]);

  it("quantize writes a checkpoint, run evaluates it on a JSON token file with tasks and writes JSON + markdown", async () => {
    const ckpt = join(dir, "ckpt");
    const quantOut = await cli(["quantize", STORIES_BIN, "--method", "absmean", "--out", ckpt, "--quiet"]);
    expect(quantOut).toMatch(/wrote .*ckpt .* 35 layers, absmean \(ternary\), groupsize -1/);

    const data = join(dir, "windows.json");
    writeFileSync(data, JSON.stringify(windows));
    const tasks = join(dir, "tasks.jsonl");
    writeFileSync(
      tasks,
      [0, 1, 2]
        .map((g) =>
          JSON.stringify({
            context: windows[g].slice(0, 8),
            choices: windows.map((w) => w.slice(8, 10 + g)),
            gold: g,
          }),
        )
        .join("\n"),
    );
    const json = join(dir, "report.json");
    const md = join(dir, "report.md");
    const text = await cli([
      "run",
      STORIES_BIN,
      "--quantized",
      ckpt,
      "--data",
      data,
      "--window",
      "24",
      "--tasks",
      tasks,
      "--json",
      json,
      "--markdown",
      md,
      "--quiet",
    ]);
    expect(text).toMatch(/KL\(fp \|\| q\) mean/);
    const report = JSON.parse(readFileSync(json, "utf8")) as EvalReport;
    expect(report).toMatchObject({
      model: "stories260K.bin",
      method: "absmean",
      groupsize: -1,
      backend: "cpu",
    });
    expect(report.data).toMatchObject({ sampledFromModel: false, windows: 3, windowLength: 24 });
    expect(report.tasks?.items).toBe(3);

    // The same numbers straight from the library.
    const fp = loadLlama2c(STORIES_BIN);
    const q = await loadQuantizedCheckpoint(ckpt);
    const cmp = compareModels(
      new CpuLlamaRuntime(fp),
      new CpuLlamaRuntime(q.model),
      windows.map((w) => Int32Array.from(w)),
    );
    expect(report.fp.perplexity).toBeCloseTo(cmp.fp.perplexity, 6);
    expect(report.quantized.perplexity).toBeCloseTo(cmp.quantized.perplexity, 6);
    expect(report.quantized.kl_mean).toBeCloseTo(cmp.quantized.klMean, 6);
    expect(report.quantized.top1_agreement).toBeCloseTo(cmp.quantized.top1Agreement, 10);
    expect(readFileSync(md, "utf8")).toMatch(/\| perplexity \| [0-9.]+ \| [0-9.]+ \|/);
  });

  it("samples evaluation data from the model when there is none, and says so", async () => {
    const json = join(dir, "sampled.json");
    const text = await cli([
      "run",
      STORIES_BIN,
      "--method",
      "absmax",
      "--sample",
      "2",
      "--window",
      "16",
      "--json",
      json,
      "--quiet",
    ]);
    expect(text).toMatch(/sampled from the unquantized model \(temperature 1, seed 0\)/);
    const report = JSON.parse(readFileSync(json, "utf8")) as EvalReport;
    expect(report.data).toMatchObject({ sampledFromModel: true, seed: 0, windows: 2, windowLength: 16 });
    expect(report.notes.join(" ")).toMatch(/sampled from the unquantized model/);
  });

  it("generate prints the greedy continuation of the library's generate(), the same each time", async () => {
    const prompt = [1, ...Array.from({ length: 3 }, () => 1 + Math.floor(Math.random() * 511))];
    const args = ["generate", STORIES_BIN, "--prompt", prompt.join(","), "--length", "12"];
    const a = await cli(args);
    expect(await cli(args)).toBe(a);
    const want = generate(new CpuLlamaRuntime(loadLlama2c(STORIES_BIN)), prompt, {
      length: 12,
      temperature: 0,
    });
    expect(a.trim()).toBe(`fp: ${Array.from(want).join(" ")}`);
    await expect(cli(["generate", STORIES_BIN, "--prompt", "Once upon"])).rejects.toThrow(/no tokenizer/);
    await expect(cli(["generate", STORIES_BIN, "--prompt", "1,999"])).rejects.toThrow(
      /outside the vocabulary/,
    );
  });

  it("rejects bad options with a clear message", async () => {
    await expect(cli(["run", STORIES_BIN, "--groupsize", "64"])).rejects.toThrow(/groupsize must be 128, -1/);
    await expect(cli(["run", STORIES_BIN, "--method", "nope"])).rejects.toThrow(/Allowed choices are gptq/);
  });
});
