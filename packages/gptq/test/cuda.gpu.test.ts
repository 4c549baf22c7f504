import { describe, expect, it } from "vitest";
import { GPTQ, probeKernelNative } from "../src/index.js";
import { correlatedActivations } from "./helpers/data.js";
import { dequantize, outputError } from "./helpers/quant.js";
import { testRng } from "./helpers/rng.js";

// Self-contained: needs only a CUDA device and a built @trirun/kernel-native.
const { native, reason } = await probeKernelNative();
if (!native) console.warn(`skipping the CUDA backend tests: ${reason}`);

describe.skipIf(!native)("CUDA backend (cuBLAS SGEMM) against the CPU backend", () => {
  it("is picked by 'auto' when a device is present", async () => {
    expect(await new GPTQ(8).backendName()).toBe("cuda");
  });

  it("accumulates the same Hessian within fp32 rounding", async () => {
    const rng = testRng();
    const n = 384;
    const cpu = new GPTQ(n, { backend: "cpu" });
    const gpu = new GPTQ(n, { backend: "cuda" });
    for (const tokens of [1000, 1, 2500]) {
      const x = rng.normals(tokens * n, 2);
      await cpu.addBatch(x, tokens);
      await gpu.addBatch(x, tokens);
    }
    const hc = await cpu.hessian();
    const hg = await gpu.hessian();
    let scale = 0;
    for (const v of hc) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < hc.length; i++) expect(Math.abs(hc[i] - hg[i])).toBeLessThan(1e-5 * scale);
    await gpu.dispose();
  });

  it("quantizes to the same result within rounding", async () => {
    const rng = testRng();
    const n = 512;
    const out = 768;
    const tokens = 2048;
    const { x } = correlatedActivations(rng, tokens, n);
    const w = rng.normals(out * n, 0.02);
    const results = [];
    for (const backend of ["cpu", "cuda"] as const) {
      const gptq = new GPTQ(n, { backend });
      await gptq.addBatch(x, tokens);
      results.push(await gptq.quantize(w, { groupsize: 128, blockSize: 128 }));
      await gptq.dispose();
    }
    const [c, g] = results;
    expect(g.backend).toBe("cuda");
    let sameCodes = 0;
    for (let i = 0; i < c.codes.length; i++) if (c.codes[i] === g.codes[i]) sameCodes++;
    let sameScales = 0;
    for (let i = 0; i < c.scales.length; i++) if (c.scales[i] === g.scales[i]) sameScales++;
    expect(sameCodes / c.codes.length).toBeGreaterThan(0.99);
    expect(sameScales / c.scales.length).toBeGreaterThan(0.97);
    expect(Math.abs(c.loss - g.loss) / c.loss).toBeLessThan(2e-3);
    const ec = outputError(x, 256, w, dequantize(c.codes, c.scales, n, out, 128), n, out);
    const eg = outputError(x, 256, w, dequantize(g.codes, g.scales, n, out, 128), n, out);
    expect(Math.abs(ec - eg) / ec).toBeLessThan(5e-3);
  });
});

describe.skipIf(!!native)("CUDA backend without a device", () => {
  it("falls back to the CPU for 'auto' and refuses an explicit 'cuda' with the reason", async () => {
    expect(await new GPTQ(8).backendName()).toBe("cpu");
    await expect(new GPTQ(8, { backend: "cuda" }).backendName()).rejects.toThrow(
      /backend "cuda" was requested/,
    );
  });
});
