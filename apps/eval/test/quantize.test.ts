import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { quantize as rtnQuantize } from "@trirun/packing";
import { describe, expect, it } from "vitest";
import { loadQuantizedCheckpoint, writeQuantizedCheckpoint } from "../src/checkpoint.js";
import { readTokenFile } from "../src/data/tokens.js";
import { compareModels } from "../src/metrics.js";
import { CpuLlamaRuntime } from "../src/model/cpu-runtime.js";
import { loadHfFolder } from "../src/model/loaders/hf.js";
import { loadModel } from "../src/model/loaders/index.js";
import { loadLlama2c } from "../src/model/loaders/llama2c.js";
import { BLOCK_LINEARS, linearPath } from "../src/model/llama.js";
import { hostWeight, quantizeModel } from "../src/pipeline.js";
import type { CalibratorFactory } from "../src/quantize/calibrators.js";
import { quantizeSequential } from "../src/quantize/sequential.js";
import {
  haveShared,
  type RefWeights,
  readStoriesBin,
  referenceLogits,
  SAMPLES_U16,
  STORIES_BIN,
  STUDENT_DIR,
} from "./helpers/reference-f64.js";
import { tempDir } from "./helpers/tmp.js";

const dir = tempDir();

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return m / scale;
}

describe.skipIf(!haveShared)("quantization of stories260K", () => {
  const samples = haveShared ? readTokenFile(SAMPLES_U16, { seqLen: 256 }) : [];
  // Disjoint random rows for calibration and evaluation, shortened to keep the test fast.
  const start = Math.floor(Math.random() * 4000);
  const calibration = samples.slice(start, start + 16).map((r) => r.subarray(0, 128));
  const heldOut = samples.slice(start + 4000, start + 4008).map((r) => r.subarray(0, 128));

  it("GPTQ (sequential) has a lower KL from the fp model than RTN on the same 2-bit grid", async () => {
    const fp = loadLlama2c(STORIES_BIN);
    const gptq = await quantizeModel(fp, {
      method: "gptq",
      groupsize: -1,
      levels: "int2",
      calibration,
      quiet: true,
    });
    const rtn = await quantizeModel(fp, {
      method: "mse",
      groupsize: -1,
      levels: "int2",
      calibration: [],
      quiet: true,
    });
    const rt = new CpuLlamaRuntime(fp);
    const a = compareModels(rt, new CpuLlamaRuntime(gptq.model), heldOut);
    const b = compareModels(rt, new CpuLlamaRuntime(rtn.model), heldOut);
    expect(gptq.layers).toHaveLength(5 * 7);
    expect(a.quantized.klMean).toBeLessThan(b.quantized.klMean);
    expect(a.quantized.perplexity).toBeLessThan(b.quantized.perplexity);
  });

  it("runs the quantized model as the fp64 forward pass of its dequantized weights", async () => {
    const fp = loadLlama2c(STORIES_BIN);
    const q = await quantizeModel(fp, {
      method: "absmean",
      groupsize: -1,
      levels: "ternary",
      calibration: [],
      quiet: true,
    });
    const ref: RefWeights = readStoriesBin();
    const keys = {
      "self_attn.q_proj": "wq",
      "self_attn.k_proj": "wk",
      "self_attn.v_proj": "wv",
      "self_attn.o_proj": "wo",
      "mlp.gate_proj": "w1",
      "mlp.up_proj": "w3",
      "mlp.down_proj": "w2",
    } as const;
    for (const rec of q.layers) {
      const [, l, name] = /^model\.layers\.(\d+)\.(.*)$/.exec(rec.path)!;
      const w = new Float64Array(rec.outFeatures * rec.inFeatures);
      const scale = (o: number) => {
        const h = rec.scales[o];
        const e = (h >> 10) & 31;
        const m = h & 1023;
        const s = h & 0x8000 ? -1 : 1;
        return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
      };
      for (let i = 0; i < rec.inFeatures; i++) {
        for (let o = 0; o < rec.outFeatures; o++)
          w[o * rec.inFeatures + i] = (rec.codes[i * rec.outFeatures + o] - 1) * scale(o);
      }
      ref[keys[name as keyof typeof keys]][Number(l)] = w;
    }
    const tokens = Array.from({ length: 6 }, () => 1 + Math.floor(Math.random() * 511));
    const got = new CpuLlamaRuntime(q.model).forward(tokens);
    const want = referenceLogits(ref, tokens);
    for (let t = 0; t < tokens.length; t++)
      expect(maxRelDiff(got.subarray(t * 512, (t + 1) * 512), want[t])).toBeLessThan(1e-4);
  });

  it("calibrates each block on the hidden states of the already-quantized blocks before it", async () => {
    const fp = loadLlama2c(STORIES_BIN);
    const seen = new Map<string, Float32Array[]>();
    let group = 0;
    // An RTN calibrator that records what it was shown, one record per (block, group).
    const spy: CalibratorFactory = (inFeatures) => {
      const inputs: Float32Array[] = [];
      seen.set(String(group++), inputs);
      return {
        needsInputs: true,
        async observe(x) {
          inputs.push(x.slice());
        },
        async quantize(path, weight, outFeatures) {
          const r = rtnQuantize(
            { data: weight, dtype: "F32", outFeatures, inFeatures },
            { method: "mse", groupsize: -1, name: path },
          );
          return { codes: r.codes, scales: r.scales, groupsize: -1, inFeatures, outFeatures };
        },
        async dispose() {},
      };
    };
    const calib = calibration.slice(0, 2).map((r) => r.subarray(0, 32));
    const q = await quantizeSequential(fp, {
      calibrator: spy,
      calibration: calib,
      weightOf: (p) => hostWeight(fp, p),
    });
    // Recompute block 2's q/k/v input (group 2 * 4) through the final quantized model: blocks 0 and 1 quantized.
    const rt = new CpuLlamaRuntime(q.model);
    const fpRt = new CpuLlamaRuntime(fp);
    const joined = (seqs: Float32Array[]) => Float32Array.from(seqs.flatMap((s) => Array.from(s)));
    let x = calib.map((s) => rt.embed(s));
    for (let l = 0; l < 2; l++) x = x.map((h, s) => rt.blockForward(l, h, calib[s].length));
    const expected = joined(x.map((h, s) => rt.attnNormed(2, h, calib[s].length)));
    expect(Array.from(seen.get("8")![0])).toEqual(Array.from(expected));
    // ... and not what the unquantized blocks would give.
    let y = calib.map((s) => fpRt.embed(s));
    for (let l = 0; l < 2; l++) y = y.map((h, s) => fpRt.blockForward(l, h, calib[s].length));
    const unquantized = joined(y.map((h, s) => fpRt.attnNormed(2, h, calib[s].length)));
    expect(maxRelDiff(expected, unquantized)).toBeGreaterThan(1e-2);
    expect(BLOCK_LINEARS.every((n) => q.model.blocks[4].linears[n].kind === "trirun")).toBe(true);
    expect(fp.blocks[0].linears[BLOCK_LINEARS[0]].kind).toBe("float16");
    expect(q.layers.map((r) => r.path)).toContain(linearPath(4, "mlp.down_proj"));
  });
});

describe.skipIf(!haveShared)("TriRun checkpoints", () => {
  const tokens = () => [1, ...Array.from({ length: 7 }, () => 1 + Math.floor(Math.random() * 511))];

  it("round-trips stories260K (interleaved RoPE exported in the Hugging Face convention) to the same logits", async () => {
    const fp = loadLlama2c(STORIES_BIN);
    const q = await quantizeModel(fp, {
      method: "mse",
      groupsize: -1,
      levels: "int2",
      calibration: [],
      quiet: true,
    });
    const out = join(dir, "stories");
    await writeQuantizedCheckpoint(out, fp, q.layers, {
      method: "mse",
      groupsize: -1,
      levels: "int2",
      source: "stories260K.bin",
    });
    const loaded = await loadQuantizedCheckpoint(out);
    expect(loaded.model.config.ropeStyle).toBe("half");
    expect(loaded.meta).toMatchObject({ method: "mse", groupsize: -1, levels: "int2" });
    expect(loaded.model.blocks[0].linears["self_attn.q_proj"].kind).toBe("trirun");
    const t = tokens();
    const a = new CpuLlamaRuntime(q.model).forward(t);
    const b = new CpuLlamaRuntime(loaded.model).forward(t);
    expect(maxRelDiff(b, a)).toBeLessThan(1e-5);
    const viaLoadModel = await loadModel(out);
    expect(Array.from(new CpuLlamaRuntime(viaLoadModel).forward(t))).toEqual(Array.from(b));
  });

  it("round-trips the student model (groupsize 128, untied classifier) exactly", async () => {
    const fp = await loadHfFolder(STUDENT_DIR);
    const q = await quantizeModel(fp, {
      method: "absmax",
      groupsize: 128,
      levels: "ternary",
      calibration: [],
      quiet: true,
    });
    const out = join(dir, "student");
    await writeQuantizedCheckpoint(out, fp, q.layers, {
      method: "absmax",
      groupsize: 128,
      levels: "ternary",
      source: "student",
    });
    const loaded = await loadQuantizedCheckpoint(join(out, "model.safetensors"));
    const t = tokens();
    expect(Array.from(new CpuLlamaRuntime(loaded.model).forward(t))).toEqual(
      Array.from(new CpuLlamaRuntime(q.model).forward(t)),
    );
  });

  it("loads a checkpoint written by trirun-pack like its own (same codes, same logits)", async () => {
    const packingDir = dirname(createRequire(import.meta.url).resolve("@trirun/packing/package.json"));
    const packBin = join(packingDir, "dist", "cli", "pack.js");
    if (!existsSync(packBin)) {
      console.warn(`[eval tests] ${packBin} is not built: trirun-pack interoperability not checked`);
      return;
    }
    const out = join(dir, "packed-by-trirun-pack");
    const r = spawnSync(
      process.execPath,
      [packBin, STUDENT_DIR, out, "--method", "absmean", "--groupsize", "128", "--quiet"],
      {
        encoding: "utf8",
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const packed = await loadModel(out);
    expect(packed.blocks[3].linears["mlp.down_proj"].kind).toBe("trirun");
    const fp = await loadHfFolder(STUDENT_DIR);
    const ours = await quantizeModel(fp, {
      method: "absmean",
      groupsize: 128,
      levels: "ternary",
      calibration: [],
      quiet: true,
    });
    const t = tokens();
    expect(Array.from(new CpuLlamaRuntime(packed).forward(t))).toEqual(
      Array.from(new CpuLlamaRuntime(ours.model).forward(t)),
    );
  });

  it("rejects a checkpoint whose config does not match, or whose weights are truncated", async () => {
    const fp = loadLlama2c(STORIES_BIN);
    const q = await quantizeModel(fp, {
      method: "absmean",
      groupsize: -1,
      levels: "ternary",
      calibration: [],
      quiet: true,
    });
    const out = join(dir, "broken");
    await writeQuantizedCheckpoint(out, fp, q.layers, {
      method: "absmean",
      groupsize: -1,
      levels: "ternary",
      source: "x",
    });
    const cfgFile = join(out, "config.json");
    const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
    writeFileSync(cfgFile, JSON.stringify({ ...cfg, intermediate_size: 160 }));
    await expect(loadQuantizedCheckpoint(out)).rejects.toMatchObject({
      code: "ERR_MODEL_CONFIG",
      message: expect.stringMatching(
        /mlp\.gate_proj" is 64 -> 172 in the checkpoint but config\.json implies 64 -> 160/,
      ),
    });
    writeFileSync(cfgFile, JSON.stringify(cfg));
    const st = join(out, "model.safetensors");
    const bytes = readFileSync(st);
    writeFileSync(st, bytes.subarray(0, Math.floor(bytes.length * (0.2 + 0.7 * Math.random()))));
    await expect(loadQuantizedCheckpoint(out)).rejects.toMatchObject({ code: "ERR_MODEL_FORMAT" });
  });
});
