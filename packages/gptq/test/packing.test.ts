import { packScales, packWeights, unpackScales, unpackWeights } from "@trirun/packing";
import { describe, expect, it } from "vitest";
import { GPTQ } from "../src/index.js";
import { correlatedActivations } from "./helpers/data.js";
import { testRng } from "./helpers/rng.js";

describe("output feeds @trirun/packing", () => {
  it.each([128, -1])("packs and unpacks codes and scales unchanged (groupsize %i)", async (groupsize) => {
    const rng = testRng();
    const k = 256; // inFeatures
    const n = 256; // outFeatures
    const { x } = correlatedActivations(rng, 512, k);
    const gptq = new GPTQ(k, { backend: "cpu" });
    await gptq.addBatch(x, 512);
    const r = await gptq.quantize(rng.normals(n * k, 0.02), { groupsize });
    const B = packWeights(r.codes, k, n);
    expect(B.length).toBe((k / 16) * n);
    expect(unpackWeights(B, k, n)).toEqual(r.codes);
    const s = packScales(r.scales, k, n, groupsize);
    expect(unpackScales(s, k, n, groupsize)).toEqual(r.scales);
  });
});
