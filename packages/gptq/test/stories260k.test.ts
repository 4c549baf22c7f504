import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { quantize as packingQuantize } from "@trirun/packing";
import { describe, expect, it } from "vitest";
import { GPTQ } from "../src/index.js";
import { type LayerInputs, forwardSequence, loadLlama2c } from "./helpers/llama2c.js";
import { INT2, dequantize, outputError, packingRtn, rtn } from "./helpers/quant.js";
import { testRng } from "./helpers/rng.js";

// ../shared beside the repository (three levels up from the package directory).
const modelsDir = fileURLToPath(new URL("../../../../shared/models/", import.meta.url));
const modelPath = `${modelsDir}stories260K.bin`;
const samplesPath = `${modelsDir}stories260K-samples-8192x256.u16`;
const present = existsSync(modelPath) && existsSync(samplesPath);
if (!present) console.warn(`skipping the stories260K test: ${modelPath} or its samples are missing`);

const SEQ = 256;

function toF32(chunks: Float64Array[]): Float32Array {
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const out = new Float32Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

describe.skipIf(!present)(
  "stories260K: every linear layer, calibrated on the model's own activations",
  () => {
    it("GPTQ beats the best round-to-nearest quantizer on every layer", async () => {
      const rng = testRng();
      const model = loadLlama2c(modelPath);
      expect(model.config).toMatchObject({
        dim: 64,
        hiddenDim: 172,
        layers: 5,
        heads: 8,
        kvHeads: 4,
        vocab: 512,
      });
      const raw = readFileSync(samplesPath);
      const samples = new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const sequences = samples.length / SEQ;
      // Fresh sequences each run: 10 for calibration, 2 held out for the error.
      const picks = Array.from({ length: 12 }, () => rng.int(sequences));
      const runs = picks.map((s) => forwardSequence(model, samples.subarray(s * SEQ, (s + 1) * SEQ)));
      // The samples were drawn from this model at temperature 1, so a right forward pass predicts them
      // far better than chance (ln 512 = 6.24 nats): about 2.8 here, while dropping RoPE gives 7.6 and a
      // wrong GQA head mapping 9.2.
      const meanNll = runs.reduce((s, r) => s + r.nll, 0) / runs.length;
      expect(meanNll, "mean next-token NLL of the model's own samples").toBeLessThan(4);
      const calib = runs.slice(0, 10).map((r) => r.inputs);
      const held = runs.slice(10).map((r) => r.inputs);
      const { dim, hiddenDim } = model.config;
      const kvDim = dim / 2;
      const pick = (set: LayerInputs[][], l: number, key: keyof LayerInputs) =>
        toF32(set.map((s) => s[l][key]));

      const report: string[] = [];
      for (let l = 0; l < model.layers.length; l++) {
        const layer = model.layers[l];
        const groups: [keyof LayerInputs, number, [string, Float32Array, number][]][] = [
          [
            "attn",
            dim,
            [
              ["wq", layer.wq, dim],
              ["wk", layer.wk, kvDim],
              ["wv", layer.wv, kvDim],
            ],
          ],
          ["wo", dim, [["wo", layer.wo, dim]]],
          [
            "ffn",
            dim,
            [
              ["w1", layer.w1, hiddenDim],
              ["w3", layer.w3, hiddenDim],
            ],
          ],
          ["w2", hiddenDim, [["w2", layer.w2, dim]]],
        ];
        for (const [key, n, linears] of groups) {
          const x = pick(calib, l, key);
          const xe = pick(held, l, key);
          const evalTokens = xe.length / n;
          const gptq = new GPTQ(n, { backend: "cpu" });
          await gptq.addBatch(x, x.length / n);
          for (const [name, w, out] of linears) {
            const r = await gptq.quantize(w, { groupsize: -1, levels: "int2" });
            const errGptq = outputError(xe, evalTokens, w, dequantize(r.codes, r.scales, n, out, n), n, out);
            const candidates = [
              rtn(w, n, out, n, INT2, "absmax"),
              rtn(w, n, out, n, INT2, "mse"),
              ...packingRtn(packingQuantize, w, n, out, -1, INT2),
            ];
            const errRtn = Math.min(...candidates.map((q) => outputError(xe, evalTokens, w, q, n, out)));
            report.push(`layer ${l} ${name}: GPTQ ${errGptq.toFixed(3)} RTN ${errRtn.toFixed(3)}`);
            expect(errGptq, `layer ${l} ${name}`).toBeLessThan(errRtn);
          }
        }
      }
      console.log(report.join("\n"));
    });
  },
);
