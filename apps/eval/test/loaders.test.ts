import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { detectModelFormat, loadModel } from "../src/model/loaders/index.js";
import { ModelLoadError } from "../src/model/loaders/errors.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { haveShared, STORIES_BIN } from "./helpers/reference-f64.js";
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
