/**
 * Regression tests for the user audit of 2026-12-05 (NOTES.md "User audit"): foreign checkpoints,
 * output folders, task validation, unused tensors, report fields and up-front argument checks.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { openCheckpoint, packCheckpoint, writeSafetensorsFile } from "@trirun/packing/node";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  checkCheckpointMatchesModel,
  levelsFromCheckpoint,
  loadQuantizedCheckpoint,
  writeQuantizedCheckpoint,
} from "../src/checkpoint.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import type { LlamaModel } from "../src/model/llama.js";
import { loadHfFolder } from "../src/model/loaders/hf.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { evaluatePair, quantizeModel } from "../src/pipeline.js";
import type { EvalReport } from "../src/report.js";
import { formatTerminal, useColor } from "../src/report.js";
import { continuationLogLikelihood, evaluateChoices } from "../src/tasks.js";
import { haveShared, STORIES_BIN, STUDENT_DIR } from "./helpers/reference-f64.js";
import { runCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir("trirun-eval-audit-");

const cli = runCli;

/** A quick evaluation: one sampled window of 8 tokens, no progress output. */
const SMALL_EVAL = ["--sample", "1", "--window", "8", "--quiet"];

afterEach(() => vi.restoreAllMocks());

/** A copy of the student folder (config.json may be replaced). */
function studentCopy(name: string, config?: Record<string, unknown>): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  copyFileSync(join(STUDENT_DIR, "model.safetensors"), join(d, "model.safetensors"));
  const cfg = JSON.parse(readFileSync(join(STUDENT_DIR, "config.json"), "utf8"));
  writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, ...config }));
  return d;
}

describe.skipIf(!haveShared)("audit 2026-12-05", () => {
  const ck260 = join(dir, "ck260");
  const packedStudent = join(dir, "packed-student");

  /** stories260K and its mse quantization in memory, made once for the tests that need them. */
  let mseModels: Promise<{ fp: LlamaModel; q: Awaited<ReturnType<typeof quantizeModel>> }> | undefined;
  const mseStories = () => {
    mseModels ??= (async () => {
      const fp = loadLlama2c(STORIES_BIN);
      const q = await quantizeModel(fp, {
        method: "mse",
        groupsize: -1,
        levels: "int2",
        calibration: [],
        quiet: true,
      });
      return { fp, q };
    })();
    return mseModels;
  };

  beforeAll(async () => {
    await cli(["quantize", STORIES_BIN, "--method", "mse", "--out", ck260, "--quiet"]);
    // A checkpoint written by trirun-pack (no `eval` block in its config.json).
    await packCheckpoint(STUDENT_DIR, packedStudent, { method: "absmean", groupsize: 128 });
  });

  it("H1: run and generate refuse a checkpoint made from another model, naming both paths", async () => {
    await expect(
      cli(["run", STORIES_BIN, "--quantized", packedStudent, ...SMALL_EVAL]),
    ).rejects.toMatchObject({
      code: "ERR_CHECKPOINT_MISMATCH",
      message: expect.stringMatching(
        /packed-student is not a checkpoint of .*stories260K\.bin: hidden_size is 256 .* but 64/,
      ),
    });
    await expect(cli(["run", STUDENT_DIR, "--quantized", ck260, ...SMALL_EVAL])).rejects.toThrow(
      /ck260 \(made from stories260K\.bin\) is not a checkpoint of .*stories-student-3M/,
    );
    await expect(
      cli(["generate", STORIES_BIN, "--quantized", packedStudent, "--length", "4"]),
    ).rejects.toMatchObject({ code: "ERR_CHECKPOINT_MISMATCH" });
    // The matching pair still runs.
    expect(await cli(["generate", STORIES_BIN, "--quantized", ck260, "--length", "4"])).toMatch(
      /quantized: 1 /,
    );
  });

  it("L1: quantization options beside --quantized are refused; --max-windows bounds sampled windows", async () => {
    const sample = ["--sample", "4", "--window", "8", "--quiet"];
    for (const extra of [
      ["--method", "absmean"],
      ["--groupsize", "128"],
      ["--levels", "ternary"],
      ["--calib", "/nonexistent"],
    ]) {
      await expect(cli(["run", STORIES_BIN, "--quantized", ck260, ...sample, ...extra])).rejects.toThrow(
        new RegExp(`^${extra[0]} has no effect with --quantized`),
      );
    }
    const json = join(dir, "l1.json");
    await cli(["run", STORIES_BIN, "--quantized", ck260, ...sample, "--max-windows", "2", "--json", json]);
    const report = JSON.parse(readFileSync(json, "utf8"));
    expect(report.data.windows).toBe(2);
  });

  it("L8: a checkpoint quantized with int8 activations records it and is run with them by default", async () => {
    const ck = join(dir, "ck-int8");
    await cli([
      "quantize",
      STORIES_BIN,
      "--method",
      "absmean",
      "--activations",
      "int8",
      "--out",
      ck,
      "--quiet",
    ]);
    const cfg = JSON.parse(readFileSync(join(ck, "config.json"), "utf8"));
    expect(cfg.quantization_config.eval.activations).toBe("int8");
    const args = ["run", STORIES_BIN, "--quantized", ck, "--sample", "2", "--window", "8", "--quiet"];
    const eightBit = /quantized to 8 bits per row/;
    const json = join(dir, "l8.json");
    await cli([...args, "--json", json]);
    expect(JSON.parse(readFileSync(json, "utf8")).notes.join("\n")).toMatch(eightBit);
    // Asked for explicitly, fp wins, with a note on stderr.
    let err = "";
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    await cli([...args, "--activations", "fp", "--json", json]);
    expect(JSON.parse(readFileSync(json, "utf8")).notes.join("\n")).not.toMatch(eightBit);
    expect(err).toMatch(/ck-int8 was quantized with int8 activations; running with fp as --activations asks/);
  });

  it("L6: quantize and run report the same checkpoint size (model.safetensors)", async () => {
    const ck = join(dir, "ck-size");
    const out = await cli(["quantize", STORIES_BIN, "--method", "absmean", "--out", ck, "--quiet"]);
    const size = statSync(join(ck, "model.safetensors")).size;
    expect(out).toContain(`(${(size / 2 ** 20).toFixed(3)} MiB)`);
    const json = join(dir, "l6.json");
    await cli(["run", STORIES_BIN, "--quantized", ck, ...SMALL_EVAL, "--json", json]);
    expect(JSON.parse(readFileSync(json, "utf8")).checkpoint.bytes).toBe(size);
  });

  it("H1: a quantized module whose shape differs from the model's is named", async () => {
    const fp = loadLlama2c(STORIES_BIN);
    const loaded = await loadQuantizedCheckpoint(ck260);
    const modules = loaded.modules.map((m) =>
      m.module === "model.layers.2.mlp.up_proj" ? { ...m, inFeatures: 32 } : m,
    );
    expect(() => checkCheckpointMatchesModel(fp, "model.bin", { ...loaded, modules }, "ck")).toThrow(
      /ck \(made from stories260K\.bin\) is not a checkpoint of model\.bin: "model\.layers\.2\.mlp\.up_proj" is 32 -> 172 in the checkpoint but 64 -> 172/,
    );
    const extra = [
      ...loaded.modules,
      { module: "model.layers.9.mlp.up_proj", inFeatures: 64, outFeatures: 172 },
    ];
    expect(() => checkCheckpointMatchesModel(fp, "m", { ...loaded, modules: extra }, "ck")).toThrow(
      /quantizes "model\.layers\.9\.mlp\.up_proj", which the model does not have/,
    );
  });

  it("H1: a checkpoint of other weights in the same architecture is run with a warning (embedding, norms)", async () => {
    const loaded = await loadQuantizedCheckpoint(ck260);
    const fp = loadLlama2c(STORIES_BIN);
    expect(checkCheckpointMatchesModel(fp, "model.bin", loaded, "ck")).toBeUndefined();
    // Another fine-tune of the same network: one embedding value moved by 1% (fp16 rounding moves
    // it by at most 0.05%), then, with the embedding restored, one norm weight.
    const row = 1 + Math.floor(Math.random() * (fp.config.vocabSize - 1));
    const at = row * fp.config.dim + Math.floor(Math.random() * fp.config.dim);
    const kept = fp.embedding[at] as number;
    fp.embedding[at] = kept === 0 ? 0.01 : kept * 1.01;
    expect(checkCheckpointMatchesModel(fp, "model.bin", loaded, "ck")).toMatch(
      new RegExp(
        `^ck \\(made from stories260K\\.bin\\) was made from other weights than model\\.bin: its model\\.embed_tokens\\.weight differs \\(element ${at}:`,
      ),
    );
    fp.embedding[at] = kept;
    const layer = Math.floor(Math.random() * fp.config.nLayers);
    const norm = fp.blocks[layer]?.ffnNorm as Float32Array;
    norm[3] = -(norm[3] as number) - 0.5;
    expect(checkCheckpointMatchesModel(fp, "model.bin", loaded, "ck")).toContain(
      `its model.layers.${layer}.post_attention_layernorm.weight differs (element 3:`,
    );

    // From the command line: the same model file with one embedding value changed runs, with a
    // warning on stderr and the same words in the report's notes.
    const bytes = readFileSync(STORIES_BIN);
    const other = join(dir, "stories-other.bin");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // embedding row 1, element 0: header of 7 int32, then the embedding (vocab x dim) in fp32.
    const offset = 28 + fp.config.dim * 4;
    view.setFloat32(offset, view.getFloat32(offset, true) * 1.5 + 0.01, true);
    writeFileSync(other, bytes);
    let err = "";
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    const json = join(dir, "h1-other.json");
    await cli(["run", other, "--quantized", ck260, ...SMALL_EVAL, "--json", json]);
    const warning = new RegExp(
      `ck260 \\(made from stories260K\\.bin\\) was made from other weights than .*stories-other\\.bin: its model\\.embed_tokens\\.weight differs \\(element ${fp.config.dim}:`,
    );
    expect(err).toMatch(new RegExp(`trirun-eval: warning: \\S*${warning.source}`));
    expect(JSON.parse(readFileSync(json, "utf8")).notes.join("\n")).toMatch(warning);
  });

  it("M1: quantize refuses to overwrite its input model and existing checkpoints unless --force", async () => {
    const model = studentCopy("student-in-place");
    const before = readFileSync(join(model, "model.safetensors"));
    await expect(cli(["quantize", model, "--out", model, "--method", "mse", "--quiet"])).rejects.toThrow(
      /--out .*student-in-place: the output folder must differ from the input model/,
    );
    await expect(
      cli(["quantize", model, "--out", model, "--method", "mse", "--quiet", "--force"]),
    ).rejects.toThrow(/must differ from the input model/);
    expect(readFileSync(join(model, "model.safetensors")).equals(before)).toBe(true);

    await expect(
      cli(["quantize", STORIES_BIN, "--out", ck260, "--method", "absmean", "--quiet"]),
    ).rejects.toThrow(/ck260\/model\.safetensors already exists .*use --force/);

    // A folder with another (sharded) checkpoint: refused, then replaced with --force.
    const stale = join(dir, "stale");
    mkdirSync(stale);
    writeFileSync(join(stale, "model.safetensors.index.json"), "{}");
    writeFileSync(join(stale, "model-00001-of-00001.safetensors"), "x");
    await expect(
      cli(["quantize", STORIES_BIN, "--out", stale, "--method", "mse", "--quiet"]),
    ).rejects.toThrow(/another checkpoint is in the folder .*--force/);
    await cli(["quantize", STORIES_BIN, "--out", stale, "--method", "mse", "--quiet", "--force"]);
    expect(readdirSync(stale).sort()).toEqual(["config.json", "model.safetensors"]);
    expect((await loadQuantizedCheckpoint(stale)).meta.method).toBe("mse");

    // The library writer refuses too unless told to overwrite.
    const { fp, q } = await mseStories();
    const meta = { method: "mse", groupsize: -1 as const, levels: "int2" as const, source: "x" };
    await expect(writeQuantizedCheckpoint(stale, fp, q.layers, meta)).rejects.toThrow(/already exists/);
    await writeQuantizedCheckpoint(stale, fp, q.layers, meta, { overwrite: true });
  });

  it("M2: task items with out-of-vocabulary or too-long choices are refused, naming file and line", async () => {
    const tasks = join(dir, "bad-tasks.jsonl");
    const good = JSON.stringify({ context: [1, 403], choices: [[404], [405]], gold: 0 });
    writeFileSync(
      tasks,
      `${good}\n${JSON.stringify({ context: [1, 403], choices: [[600], [405]], gold: 0 })}\n`,
    );
    const args = ["run", STORIES_BIN, "--quantized", ck260, ...SMALL_EVAL];
    await expect(cli([...args, "--tasks", tasks])).rejects.toThrow(
      /bad-tasks\.jsonl:2: choice 0 has token 600, outside the model's vocabulary of 512/,
    );
    const long = Array.from({ length: 600 }, () => 5);
    writeFileSync(tasks, `${JSON.stringify({ context: [1, 403], choices: [[404], long], gold: 0 })}\n`);
    await expect(cli([...args, "--tasks", tasks])).rejects.toThrow(
      /bad-tasks\.jsonl:1: choice 1 has 600 tokens; scoring it after the context needs 600 positions, more than the model's 512/,
    );
    // The library refuses instead of returning NaN scores.
    const rt = new CpuLlamaRuntime(loadLlama2c(STORIES_BIN));
    // A long context is cut from the left (lm-eval-harness), not refused: the same score as its last tokens.
    const context = Array.from({ length: 600 }, (_, i) => 1 + ((i * 7) % 500));
    const whole = continuationLogLikelihood(rt, context, [404, 405]);
    expect(Number.isFinite(whole)).toBe(true);
    expect(whole).toBe(continuationLogLikelihood(rt, context.slice(-511), [404, 405]));
    expect(() =>
      evaluateChoices(rt, [{ context: [1, 403], choices: [[600], [405]], gold: 0 }], undefined),
    ).toThrow(/task item 0: choice 0 has token 600/);
  });

  it("M3: a config.json with fewer layers than the weights is refused, naming the file and tensor", async () => {
    const cut = join(dir, "ck260-4-layers");
    mkdirSync(cut);
    copyFileSync(join(ck260, "model.safetensors"), join(cut, "model.safetensors"));
    const cfg = JSON.parse(readFileSync(join(ck260, "config.json"), "utf8"));
    writeFileSync(join(cut, "config.json"), JSON.stringify({ ...cfg, num_hidden_layers: 4 }));
    await expect(loadQuantizedCheckpoint(cut)).rejects.toMatchObject({
      code: "ERR_MODEL_CONFIG",
      message: expect.stringMatching(
        /ck260-4-layers\/model\.safetensors: tensor "model\.layers\.4\..*" .*not used/,
      ),
    });
    await expect(loadHfFolder(studentCopy("student-3-layers", { num_hidden_layers: 3 }))).rejects.toThrow(
      /student-3-layers\/model\.safetensors: tensor "model\.layers\.3\.[^"]+" \(and \d+ more\) is not used/,
    );
  });

  it("M3: benign extra tensors of real checkpoints (rotary inv_freq) still load", async () => {
    const d = studentCopy("student-inv-freq");
    const src = await openCheckpoint(STUDENT_DIR);
    const tensors = [];
    for (const name of src.names()) {
      const t = await src.readTensor(name);
      tensors.push({ name, dtype: t.dtype, shape: t.shape, data: t.data });
    }
    await src.close();
    const invFreq = new Float32Array(32).map((_, i) => 10000 ** (-i / 32));
    tensors.push({
      name: "model.layers.0.self_attn.rotary_emb.inv_freq",
      dtype: "F32" as const,
      shape: [32],
      data: invFreq,
    });
    await writeSafetensorsFile(join(d, "model.safetensors"), tensors);
    const m = await loadHfFolder(d);
    expect(m.config.nLayers).toBe(4);
  });

  it("M4: levels come from what the checkpoint records; trirun-pack's absmean is ternary", async () => {
    expect(levelsFromCheckpoint(undefined, "absmean")).toBe("ternary");
    expect(levelsFromCheckpoint(undefined, "bitnet")).toBe("ternary");
    expect(levelsFromCheckpoint(undefined, "mse")).toBe("int2");
    expect(levelsFromCheckpoint(undefined, "gptq-ternary")).toBe("ternary");
    expect(levelsFromCheckpoint("int2", "whatever")).toBe("int2");
    expect(levelsFromCheckpoint(undefined, "exact")).toBe("unknown");
    expect(levelsFromCheckpoint(undefined, undefined)).toBe("unknown");
    const json = join(dir, "packed.json");
    const text = await cli(["run", STUDENT_DIR, "--quantized", packedStudent, ...SMALL_EVAL, "--json", json]);
    expect(text).toMatch(/method: absmean \(ternary\)/);
    expect((JSON.parse(readFileSync(json, "utf8")) as EvalReport).levels).toBe("ternary");
  });

  it("M4: ragged calibration rows are used whole and reported with their real counts", async () => {
    const calib = join(dir, "ragged.json");
    writeFileSync(
      calib,
      JSON.stringify([
        [1, 5, 6],
        [1, 5, 6, 7, 8, 9, 10, 11, 12, 13],
      ]),
    );
    const json = join(dir, "ragged-report.json");
    const args = ["run", STORIES_BIN, "--method", "gptq", ...SMALL_EVAL];
    const text = await cli([...args, "--calib", calib, "--json", json]);
    expect(text).toMatch(/calibration: 2 sequences of 3\.\.10 tokens \(13 in all\) from .*ragged\.json/);
    // Without --calib the rows are sampled, and the line says so once ("from sampled from" before).
    const sampled = await cli([...args, "--calib-samples", "2", "--calib-seq-len", "8"]);
    expect(sampled).toMatch(/calibration: 2 x \d+ tokens sampled from the unquantized model\n/);
    expect((JSON.parse(readFileSync(json, "utf8")) as EvalReport).calibration).toMatchObject({
      sequences: 2,
      seqLen: 10,
      minSeqLen: 3,
      tokens: 13,
    });
    writeFileSync(calib, JSON.stringify([[1, 2], Array.from({ length: 600 }, () => 3)]));
    await expect(cli([...args, "--calib", calib])).rejects.toThrow(
      /ragged\.json: calibration sequence 1 has 600 tokens, more than the model's 512 positions/,
    );
    writeFileSync(calib, "[[]]");
    await expect(cli([...args, "--calib", calib])).rejects.toThrow(/calibration sequence 0 is empty/);
  });

  it("M4: sampled evaluation data blames the missing tokenizer only when there is none", async () => {
    const { fp, q } = await mseStories();
    const data = {
      windows: [Int32Array.from([1, 5, 6, 7])],
      source: "sampled",
      sampledFromModel: true,
      seed: 0,
    };
    const base = { modelName: "m", method: "mse", groupsize: -1, levels: "int2" as const, data, quiet: true };
    const tokenizer = { encode: () => [1], decode: () => "" };
    const withTok = evaluatePair(fp, q.model, { ...base, tokenizer });
    expect(`${formatTerminal(withTok)}`).not.toMatch(/no tokenizer/);
    expect(withTok.notes.join(" ")).toMatch(/no evaluation data was given:/);
    const without = evaluatePair(fp, q.model, base);
    expect(without.notes.join(" ")).toMatch(/the model has no tokenizer/);
  });

  it("L2/L3/L7/L9: bad lengths, output paths and prompts fail up front with the flag or file named", async () => {
    await expect(cli(["generate", STORIES_BIN, "--length", "600"])).rejects.toThrow(
      /--length 600 exceeds the model's 512 positions/,
    );
    await expect(cli(["generate", STORIES_BIN, "--prompt", "1,,2"])).rejects.toThrow(
      /--prompt "1,,2": not a list of token ids/,
    );
    await expect(cli(["generate", STORIES_BIN, "--prompt", "-1"])).rejects.toThrow(/not a list of token ids/);
    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    let wrote = "";
    const run = ["run", STORIES_BIN, "--quantized", ck260, ...SMALL_EVAL];
    await expect(
      cli([...run, "--json", dir]).then((o) => {
        wrote = o;
      }),
    ).rejects.toThrow(/--json .*: is a folder; give a file name/);
    expect(wrote).toBe(""); // refused before any evaluation was printed
    await expect(cli([...run, "--markdown", join(file, "x.md")])).rejects.toThrow(
      /--markdown .*a-file\/x\.md: .*a-file is a file, not a folder/,
    );
    await expect(cli(["quantize", STORIES_BIN, "--out", file, "--method", "mse", "--quiet"])).rejects.toThrow(
      /--out .*a-file: is a file; the checkpoint is a folder/,
    );
    await expect(cli(["run", ck260, "--method", "mse", "--quiet"])).rejects.toThrow(
      /ck260: this is a TriRun checkpoint \(already quantized\)/,
    );
    const one = join(dir, "one-token.json");
    writeFileSync(one, "[1]");
    await expect(cli([...run.slice(0, 4), "--data", one, "--quiet"])).rejects.toThrow(
      /one-token\.json: no sequence has the 2 tokens a window needs/,
    );
    expect(existsSync(join(dir, "x.md"))).toBe(false);
  });

  it("L4: no colour codes when stdout is not a terminal or NO_COLOR is set", async () => {
    const json = join(dir, "l4.json");
    const text = await cli(["run", STORIES_BIN, "--quantized", ck260, ...SMALL_EVAL, "--json", json]);
    expect(text).toMatch(/perplexity/);
    expect(text).not.toContain("\u001b[");
    // (Whether color: true gives escape codes is up to the colour library and the environment: CI
    // turns them off. What is ours is that a redirected stdout or NO_COLOR asks for none.)
    const report = JSON.parse(readFileSync(json, "utf8")) as EvalReport;
    expect(formatTerminal(report, { color: false })).not.toContain("\u001b[");
    expect(useColor({ isTTY: false })).toBe(false);
    expect(useColor({ isTTY: true })).toBe(!process.env.NO_COLOR);
    vi.stubEnv("NO_COLOR", "1");
    expect(useColor({ isTTY: true })).toBe(false);
    vi.unstubAllEnvs();
  });
});
