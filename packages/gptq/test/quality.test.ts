import { quantize as packingQuantize } from "@trirun/packing";
import { describe, expect, it } from "vitest";
import { GPTQ } from "../src/index.js";
import { correlatedActivations } from "./helpers/data.js";
import { INT2, TERNARY, dequantize, outputError, packingRtn, rtn } from "./helpers/quant.js";
import { testRng } from "./helpers/rng.js";

describe("quality on a layer with correlated inputs", () => {
  it("GPTQ's output error is clearly below the best round-to-nearest quantizer", async () => {
    const rng = testRng();
    const n = 256;
    const out = 128;
    const calibTokens = 2048;
    const evalTokens = 512;
    const { x, mixing } = correlatedActivations(rng, calibTokens, n);
    // Held-out activations from the same distribution: the error is measured where GPTQ did not fit.
    const { x: xe } = correlatedActivations(rng, evalTokens, n, mixing);
    const w = rng.normals(out * n, 0.02);
    const gptq = new GPTQ(n, { backend: "cpu" });
    for (let t = 0; t < calibTokens; t += 512) await gptq.addBatch(x.subarray(t * n, (t + 512) * n), 512);
    for (const levels of ["int2", "ternary"] as const) {
      for (const groupsize of [128, -1]) {
        const g = groupsize === -1 ? n : groupsize;
        const set = levels === "int2" ? INT2 : TERNARY;
        // Best of the test's own RTN quantizers and every fitting one of @trirun/packing.
        const candidates = [
          rtn(w, n, out, g, set, "absmax"),
          rtn(w, n, out, g, set, "mse"),
          ...packingRtn(packingQuantize, w, n, out, groupsize, set),
        ];
        const rtnError = Math.min(...candidates.map((q) => outputError(xe, evalTokens, w, q, n, out)));
        const r = await gptq.quantize(w, { groupsize, levels });
        const gptqError = outputError(xe, evalTokens, w, dequantize(r.codes, r.scales, n, out, g), n, out);
        console.log(
          `${levels} g=${groupsize}: GPTQ ${gptqError.toFixed(2)} vs best RTN ${rtnError.toFixed(2)}`,
        );
        // Fresh data each run: over 41 runs the ratio was 0.67 at the mean, 0.80 at most, and the worst of a
        // run's four 0.70 +- 0.046, so 0.9 is 4 standard deviations away (0.85 was 3.2: one CI run in
        // ~1,600 would fail). A GPTQ no better than round-to-nearest gives 1.
        expect(gptqError, `${levels} groupsize ${groupsize}`).toBeLessThan(0.9 * rtnError);
      }
    }
  });
});
