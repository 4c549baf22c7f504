import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Float16Array } from "@petamoriken/float16";
import { afterAll, describe, expect, it } from "vitest";
import {
  encodeBf16,
  type FloatDType,
  type QuantMethod,
  quantizePacked,
  type WeightMatrix,
} from "../src/index.js";
import { packCheckpoint, writeSafetensorsFile } from "../src/node/index.js";
import { PackPool, PARALLEL_MIN_WEIGHTS } from "../src/node/pack-pool.js";
import { tempDir } from "./helpers.js";

const root = tempDir("trirun-pack-pool-");

function randomWeight(dtype: FloatDType, outFeatures: number, inFeatures: number): WeightMatrix {
  const values = Array.from({ length: outFeatures * inFeatures }, () => (Math.random() - 0.5) * 0.1);
  const data =
    dtype === "F16"
      ? new Uint16Array(new Float16Array(values).buffer)
      : dtype === "BF16"
        ? encodeBf16(values)
        : dtype === "F32"
          ? Float32Array.from(values)
          : Float64Array.from(values);
  return { data, dtype, outFeatures, inFeatures };
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.prototype.every.call(a, (v: number, i: number) => v === b[i]);

describe("PackPool (quantize and pack on worker threads)", () => {
  const pool = PackPool.create(3);
  afterAll(() => pool.close());

  // Column counts of whole 64-column chunks that split unevenly over the workers' ranges.
  const cases: [FloatDType, QuantMethod, 128 | -1, number, number][] = [
    ["F16", "absmean", 128, 64 * 21, 1024],
    ["BF16", "mse", 128, 64 * 5, 4096],
    ["F32", "absmax", -1, 64 * 33, 512],
    ["F64", "mse", -1, 64 * 17, 1024],
  ];
  for (const [dtype, method, groupsize, n, k] of cases) {
    it(`gives quantizePacked's bytes: ${dtype} ${method} g=${groupsize}, ${n} x ${k}`, async () => {
      expect(n * k).toBeGreaterThanOrEqual(PARALLEL_MIN_WEIGHTS);
      const weight = randomWeight(dtype, n, k);
      const want = quantizePacked(weight, { method, groupsize });
      const got = await pool.pack(weight, { method, groupsize });
      expect([got.k, got.n, got.groupsize]).toEqual([want.k, want.n, want.groupsize]);
      expect(same(got.B, want.B)).toBe(true);
      expect(same(got.s, want.s)).toBe(true);
    });
  }

  it("reports a bad value with the layer's own name and indices", async () => {
    const weight = randomWeight("F32", 64 * 20, 1024);
    (weight.data as Float32Array)[1100 * 1024 + 7] = Number.NaN; // column 1100 lies in a later worker's range
    await expect(pool.pack(weight, { method: "absmean", groupsize: 128, name: "w" })).rejects.toThrow(
      /tensor "w".*1100.*7|1100, 7/,
    );
  });

  it("rejects a thread count that is not a positive integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2000]) expect(() => PackPool.create(bad)).toThrow(RangeError);
  });
});

describe("packCheckpoint with threads", () => {
  it("writes the same files with 1 and 3 threads", async () => {
    const input = join(root, "in.safetensors");
    const layers = [
      { name: "model.layers.0.self_attn.q_proj.weight", ...randomWeight("F16", 1024, 1024) },
      { name: "model.layers.0.mlp.up_proj.weight", ...randomWeight("BF16", 2816, 1024) },
      { name: "model.layers.0.mlp.down_proj.weight", ...randomWeight("F32", 1024, 2816 - 256) },
      { name: "model.layers.0.self_attn.o_proj.weight", ...randomWeight("F16", 1000, 1024) }, // padded: n % 256 != 0
    ];
    await writeSafetensorsFile(
      input,
      layers.map((l) => ({
        name: l.name,
        dtype: l.dtype,
        shape: [l.outFeatures, l.inFeatures],
        data: l.data,
      })),
    );
    for (const method of ["absmean", "mse"] as const) {
      const files: Buffer[] = [];
      for (const threads of [1, 3]) {
        const out = join(root, `out-${method}-${threads}`);
        const summary = await packCheckpoint(input, out, { method, groupsize: 128, threads });
        expect(summary.tensorsPacked).toBe(layers.length);
        files.push(readFileSync(join(out, "model.safetensors")));
      }
      expect(files[0].equals(files[1])).toBe(true);
    }
  });

  it("rejects a bad thread count before reading anything", async () => {
    await expect(
      packCheckpoint(join(root, "missing"), join(root, "x"), {
        method: "absmean",
        groupsize: 128,
        threads: 0,
      }),
    ).rejects.toThrow(/threads must be an integer/);
  });
});
