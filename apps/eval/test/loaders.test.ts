import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { detectModelFormat, loadModel } from "../src/model/loaders/index.js";
import { ModelLoadError } from "../src/model/loaders/errors.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { buildShardIndex } from "@trirun/packing";
import { openCheckpoint, writeSafetensorsFile } from "@trirun/packing/node";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadHfFolder } from "../src/model/loaders/hf.js";
import { haveShared, STORIES_BIN, STUDENT_DIR } from "./helpers/reference-f64.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir();

function expectLoadError(fn: () => unknown, code: string, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).code).toBe(code);
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error("expected a ModelLoadError");
}

describe.skipIf(!haveShared)("llama2.c loader", () => {
  const original = readFileSync(STORIES_BIN);

  it("reads the header of stories260K", () => {
    const m = loadLlama2c(STORIES_BIN);
    expect(m.config).toMatchObject({
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
    });
    expect(m.config.tiedClassifier).toBe(true);
    expect(m.config.ropeStyle).toBe("interleaved");
  });

  it("rejects a truncated file, naming it", () => {
    const cut = Math.floor(original.length * (0.2 + 0.7 * Math.random()));
    const file = join(dir, "cut.bin");
    writeFileSync(file, original.subarray(0, cut));
    expectLoadError(() => loadLlama2c(file), "ERR_MODEL_TRUNCATED", /cut\.bin.*truncated/);
    writeFileSync(join(dir, "tiny.bin"), original.subarray(0, 10));
    expectLoadError(() => loadLlama2c(join(dir, "tiny.bin")), "ERR_MODEL_TRUNCATED", /28-byte/);
  });

  it("rejects trailing bytes and implausible or inconsistent headers", () => {
    const extra = join(dir, "extra.bin");
    writeFileSync(extra, Buffer.concat([original, Buffer.alloc(4 * (1 + Math.floor(Math.random() * 9)))]));
    expectLoadError(() => loadLlama2c(extra), "ERR_MODEL_FORMAT", /trailing bytes/);

    const negDim = Buffer.from(original);
    negDim.writeInt32LE(-64, 0);
    writeFileSync(join(dir, "neg.bin"), negDim);
    expectLoadError(() => loadLlama2c(join(dir, "neg.bin")), "ERR_MODEL_HEADER", /dim = -64/);

    const badHeads = Buffer.from(original);
    badHeads.writeInt32LE(3, 16); // n_kv_heads 3 does not divide n_heads 8
    writeFileSync(join(dir, "heads.bin"), badHeads);
    expectLoadError(() => loadLlama2c(join(dir, "heads.bin")), "ERR_MODEL_HEADER", /divisible by nKvHeads/);

    const magic = Buffer.from(original);
    magic.writeUInt32LE(0x616b3432, 0);
    writeFileSync(join(dir, "v1.bin"), magic);
    expectLoadError(() => loadLlama2c(join(dir, "v1.bin")), "ERR_MODEL_HEADER", /versioned/);
  });

  it("reads an untied classifier (negative vocab_size) from after the RoPE tables", () => {
    const dim = 64;
    const cls = Float32Array.from({ length: 512 * dim }, () => Math.random() - 0.5);
    const file = join(dir, "untied.bin");
    const buf = Buffer.concat([original, Buffer.from(cls.buffer)]);
    buf.writeInt32LE(-512, 20);
    writeFileSync(file, buf);
    const m = loadLlama2c(file);
    expect(m.config.tiedClassifier).toBe(false);
    // Run the classifier on a one-hot input: it returns one column of the stored matrix.
    const j = Math.floor(Math.random() * dim);
    const x = new Float32Array(dim);
    x[j] = 1;
    const y = (m.classifier.forward({ data: x, shape: [1, dim] }) as { data: Float32Array }).data;
    for (let v = 0; v < 512; v += 37) expect(y[v]).toBeCloseTo(cls[v * dim + j], 2);
  });

  it("names missing paths and unknown file types", async () => {
    await expect(loadModel(join(dir, "nope.bin"))).rejects.toMatchObject({ code: "ERR_MODEL_NOT_FOUND" });
    writeFileSync(join(dir, "model.onnx"), "x");
    expect(() => detectModelFormat(join(dir, "model.onnx"))).toThrow(/unknown model file type/);
  });
});

describe.skipIf(!haveShared)("Hugging Face folder loader", () => {
  const config = JSON.parse(readFileSync(join(STUDENT_DIR, "config.json"), "utf8"));
  let n = 0;
  function folder(cfg: unknown, weights = true): string {
    const d = join(dir, `hf${n++}`);
    mkdirSync(d);
    writeFileSync(join(d, "config.json"), typeof cfg === "string" ? cfg : JSON.stringify(cfg));
    if (weights) copyFileSync(join(STUDENT_DIR, "model.safetensors"), join(d, "model.safetensors"));
    return d;
  }

  it("rejects a config that does not match the tensors, naming the tensor", async () => {
    const d = folder({ ...config, intermediate_size: 512 });
    await expect(loadHfFolder(d)).rejects.toMatchObject({
      code: "ERR_MODEL_CONFIG",
      message: expect.stringMatching(/mlp\.(gate|up|down)_proj\.weight" has shape/),
    });
    const more = folder({ ...config, num_hidden_layers: 5 });
    await expect(loadHfFolder(more)).rejects.toMatchObject({
      code: "ERR_MODEL_TENSOR",
      message: expect.stringMatching(/model\.layers\.4\..* is missing/),
    });
  });

  it("rejects unsupported architectures and broken config files", async () => {
    await expect(
      loadHfFolder(folder({ ...config, model_type: "gpt2", architectures: ["GPT2LMHeadModel"] })),
    ).rejects.toMatchObject({ code: "ERR_MODEL_CONFIG", message: expect.stringMatching(/only Llama/) });
    await expect(
      loadHfFolder(folder({ ...config, rope_scaling: { type: "linear", factor: 2 } })),
    ).rejects.toMatchObject({
      message: expect.stringMatching(/rope_scaling/),
    });
    await expect(loadHfFolder(folder("{ not json"))).rejects.toMatchObject({ code: "ERR_MODEL_CONFIG" });
    await expect(loadHfFolder(folder(config, false))).rejects.toMatchObject({ code: "ERR_MODEL_FORMAT" });
  });

  it("loads a Mistral config as the Llama block, its sliding window capping the positions", async () => {
    const tokens = [1, ...Array.from({ length: 4 }, () => 1 + Math.floor(Math.random() * 511))];
    const llama = new CpuLlamaRuntime(await loadHfFolder(STUDENT_DIR)).forward(tokens);
    const mistral = { ...config, model_type: "mistral", architectures: ["MistralForCausalLM"] };
    const windowed = await loadHfFolder(folder({ ...mistral, sliding_window: 64 }));
    expect(windowed.config.maxSeqLen).toBe(64);
    expect(Array.from(new CpuLlamaRuntime(windowed).forward(tokens))).toEqual(Array.from(llama));
    const open = await loadHfFolder(folder({ ...mistral, sliding_window: null }));
    expect(open.config.maxSeqLen).toBe(config.max_position_embeddings);
    await expect(loadHfFolder(folder({ ...mistral, sliding_window: "wide" }))).rejects.toMatchObject({
      message: expect.stringMatching(/sliding_window must be a positive integer or null/),
    });
  });

  it("loads a sharded copy (index + two shards) to the same logits", async () => {
    const d = folder(config, false);
    const src = await openCheckpoint(STUDENT_DIR);
    const names = src.names();
    const cut = 1 + Math.floor(Math.random() * (names.length - 2));
    const shards = [names.slice(0, cut), names.slice(cut)];
    const weightMap = new Map<string, string>();
    let total = 0;
    for (const [i, group] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const tensors = [];
      for (const name of group) {
        const t = await src.readTensor(name);
        tensors.push({ name, dtype: t.dtype, shape: t.shape, data: t.data });
        weightMap.set(name, file);
        total += src.info(name).byteLength;
      }
      await writeSafetensorsFile(join(d, file), tensors);
    }
    await src.close();
    writeFileSync(join(d, "model.safetensors.index.json"), buildShardIndex(weightMap, total));
    const tokens = [1, ...Array.from({ length: 4 }, () => 1 + Math.floor(Math.random() * 511))];
    const a = new CpuLlamaRuntime(await loadHfFolder(STUDENT_DIR)).forward(tokens);
    const b = new CpuLlamaRuntime(await loadHfFolder(d)).forward(tokens);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it("rejects a truncated safetensors file", async () => {
    const d = folder(config, false);
    const bytes = readFileSync(join(STUDENT_DIR, "model.safetensors"));
    writeFileSync(
      join(d, "model.safetensors"),
      bytes.subarray(0, Math.floor(bytes.length * (0.3 + 0.6 * Math.random()))),
    );
    await expect(loadHfFolder(d)).rejects.toBeInstanceOf(ModelLoadError);
  });
});
