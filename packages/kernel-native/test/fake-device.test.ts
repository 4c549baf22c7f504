// The TypeScript layer and the device check's logic, end to end against a
// host-memory stand-in for the addon (test/support/fake-native.ts).
import { afterEach, describe, expect, it } from "vitest";
import { runApiChecks } from "../src/device/api.js";
import { configSpecs, runSweep, type SweepCase, summarize } from "../src/device/correctness.js";
import { Rng, randomActivations } from "../src/device/numeric.js";
import { Blocker, type SpeedRow, sumsByM, timeLaunches } from "../src/device/speed.js";
import { available, DeviceTensor, devices, DisposedError, trirunMatmul } from "../src/index.js";
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative, type FakeFaults } from "./support/fake-native.js";

const seed = (Math.random() * 2 ** 32) >>> 0;
const quiet = () => {};

function useFake(faults?: FakeFaults) {
  const fake = createFakeNative(faults);
  setNativeAddonForTesting(fake);
  return fake;
}

afterEach(() => setNativeAddonForTesting(undefined));

const SMALL: SweepCase[] = [
  { k: 128, n: 256, groupsize: -1, ms: [1, 17], configs: configSpecs(132, false) },
  { k: 256, n: 256, groupsize: 128, ms: [3, 65], configs: configSpecs(132, true) },
];

describe("against the host-memory device", () => {
  it("is available and lists the device", () => {
    useFake();
    expect(available()).toBe(true);
    expect(devices()[0]).toMatchObject({ index: 0, computeCapability: "9.0", smCount: 132 });
  });

  it(`passes the API checks (seed ${seed})`, () => {
    const fake = useFake();
    const results = runApiChecks(new Rng(seed), quiet);
    expect(results.filter((r) => !r.pass)).toEqual([]);
    expect(fake.allocatedBytes()).toBe(0); // every check disposes what it allocates
  });

  it(`passes the correctness sweep with a correct kernel (seed ${seed})`, () => {
    useFake();
    const rows = runSweep(SMALL, new Rng(seed), { useCublas: true, log: quiet });
    const s = summarize(rows);
    expect(s.failed).toBe(0);
    expect(s.runs).toBeGreaterThan(10);
    // fp16 output rounding only: well inside the tolerance, and clearly nonzero.
    expect(s.worstRelError).toBeLessThan(6e-4);
    expect(s.worstRelError).toBeGreaterThan(1e-5);
    expect(s.worstReferenceRelError).toBeLessThan(1e-6);
    for (const tile of ["small 512x128", "small 256x256", "general 128x128", "general 64x256"]) {
      expect(s.tiles).toContain(`${tile} g=128`);
      expect(s.tiles).toContain(`${tile} g=k`);
    }
    expect(s.mBlocks).toEqual(["general 1x16", "general 2x16", "general 4x16", "small 1x8", "small 4x8"]);
  });

  it("fails the sweep on an unwritten element, a write past C, or an error above 1e-3", () => {
    const cases: [
      FakeFaults,
      (r: { unwritten?: number; guardsIntact?: boolean; relError?: number }) => boolean,
    ][] = [
      [{ skipLastElement: true }, (r) => r.unwritten === 1],
      [{ writePastEnd: true }, (r) => r.guardsIntact === false],
      [{ relativeError: 2e-3 }, (r) => (r.relError ?? 0) > 1e-3],
    ];
    for (const [faults, symptom] of cases) {
      useFake(faults);
      const rows = runSweep([SMALL[0]], new Rng(seed), { useCublas: false, log: quiet });
      expect(rows.length).toBeGreaterThan(0);
      expect(
        rows.every((r) => !r.pass && symptom(r)),
        JSON.stringify(faults),
      ).toBe(true);
    }
  });

  it("trirunMatmul returns the configuration and rejects disposed inputs", () => {
    useFake();
    const rng = new Rng(seed);
    const A = DeviceTensor.fromArray(randomActivations(rng, 2 * 128), [2, 128]);
    const B = DeviceTensor.zeros("i32", [8, 256]);
    const s = DeviceTensor.zeros("f16", [1, 256]);
    const C = DeviceTensor.empty("f16", [2, 256]);
    expect(trirunMatmul(A, B, s, C, { threadK: 64, threadN: 256 })).toMatchObject({
      threadK: 64,
      threadN: 256,
      groupsize: 128,
      kernel: "general",
    });
    expect(trirunMatmul(A, B, s, C)).toMatchObject({
      kernel: "small",
      mBlocks: 1,
      blockRows: 8,
      threadK: 512,
      threadN: 128,
    });
    B.dispose();
    expect(() => trirunMatmul(A, B, s, C)).toThrow(DisposedError);
    for (const t of [A, s, C]) t.dispose();
  });

  it("copyRowsFrom checks its arguments", () => {
    useFake();
    const src = DeviceTensor.zeros("f16", [4, 8]);
    const dst = DeviceTensor.zeros("f16", [4, 6]);
    expect(() => dst.copyRowsFrom(src, 4, 7, { srcStride: 8, dstStride: 6 })).toThrow(
      /^opts.dstStride: 6 is less than columns = 7/,
    );
    expect(() => dst.copyRowsFrom(src, 5, 6, { srcStride: 8, dstStride: 6 })).toThrow(
      /^rows: 5 rows of stride 6 exceed/,
    );
    expect(() => dst.copyRowsFrom(DeviceTensor.zeros("f32", [32]), 1, 1)).toThrow(TypeError);
    dst.copyRowsFrom(src, 4, 6, { srcStride: 8, dstStride: 6 });
    for (const t of [src, dst]) t.dispose();
  });

  it("times launches with events and sums speedups per m", () => {
    useFake();
    const blocker = new Blocker(1024);
    let calls = 0;
    const t = timeLaunches(() => calls++, 60, 5, blocker);
    blocker.dispose();
    expect(calls).toBe(65);
    expect(t.reps).toBe(60);
    expect(t.medianUs).toBeGreaterThanOrEqual(0);
    const row = (k: number, m: number, tr: number, cu: number) =>
      ({ k, n: 8192, m, groupsize: 128, trirun: { medianUs: tr }, cublas: { medianUs: cu } }) as SpeedRow;
    const sums = sumsByM([row(8192, 1, 10, 40), row(21760, 1, 30, 100), row(8192, 2, 10, 20)], 128);
    expect(sums).toEqual([
      { m: 1, trirunUs: 40, cublasUs: 140, shapes: 2, speedup: 3.5 },
      { m: 2, trirunUs: 10, cublasUs: 20, shapes: 1, speedup: 2 },
    ]);
  });
});

describe("the device check program", () => {
  it("runs its parts, writes a report and returns 0 when all pass; 1 on a failure", async () => {
    const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { parseCheckArgs, runCheck } = await import("../src/device/check.js");
    const out = mkdtempSync(join(tmpdir(), "trirun-check-"));
    try {
      const options = parseCheckArgs([
        "--out",
        out,
        "--only",
        "api,correctness,sanitize",
        "--seed",
        String(seed),
      ])!;
      expect(options.parts).toEqual(["api", "correctness", "sanitize"]);
      let printed = "";
      const plan = { correctnessPlan: [SMALL[0]], sanitizePlan: [SMALL[1]], log: quiet };
      useFake();
      const print = (text: string) => {
        printed += text;
      };
      expect(await runCheck(options, { ...plan, print })).toBe(0);
      const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
      expect(report).toMatchObject({ ok: true, available: true, failures: [] });
      expect(report.correctness.summary.failed).toBe(0);
      expect(report.sanitize.rows.every((r: { reference: string }) => r.reference === "cpu-f64")).toBe(true);
      expect(printed).toMatch(/RESULT: all checks passed/);

      useFake({ skipLastElement: true });
      expect(await runCheck(options, { ...plan, print: quiet })).toBe(1);
      const failed = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
      expect(failed.ok).toBe(false);
      expect(failed.failures.join("\n")).toMatch(/^correctness: \d+ of \d+ runs failed/m);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it("rejects unknown parts", async () => {
    const { parseCheckArgs } = await import("../src/device/check.js");
    expect(() => parseCheckArgs(["--only", "bogus"])).toThrow(/--only: unknown part "bogus"/);
  });
});
