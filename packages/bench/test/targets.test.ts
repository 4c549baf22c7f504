import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import { type BenchResults, resultsToJson } from "../src/results.js";
import { FIXED_MODEL_SETS } from "../src/shapes.js";
import { SPEED_TARGETS } from "../src/report.js";
import { checkTargets, formatTargetsTable, targetsToMarkdown } from "../src/targets.js";
import { syntheticResults } from "./synthetic.js";

const BATCHES = [1, 16, 24, 32, 64, 128, 256, 1024];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trirun-bench-targets-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A simulated run of the 7B and TriLM sets whose TriRun times are rescaled so that the summed g128
 * speedup of each (set, m) is a fresh random value around the target there (0.5x to 1.5x of it, or
 * around 1x where no target applies); returns the results and the speedups asked for.
 */
function resultsWithSpeedups(): { results: BenchResults; wanted: Map<string, number> } {
  const results = syntheticResults({
    modelSets: FIXED_MODEL_SETS.filter((s) => s.id === "llama2-7b" || s.id === "trilm-3.9b"),
    batchSizes: BATCHES,
  });
  const wanted = new Map<string, number>();
  for (const model of ["llama2-7b", "trilm-3.9b"]) {
    for (const m of BATCHES) {
      const rows = results.rows.filter((r) => r.model === model && r.m === m && r.groupsize === 128);
      const fp16 = rows.reduce((a, r) => a + (r.fp16?.medianUs ?? 0), 0);
      const trirun = rows.reduce((a, r) => a + (r.trirun?.medianUs ?? 0), 0);
      const target = SPEED_TARGETS.find((t) => t.model === model && m >= t.mFrom && m <= t.mTo);
      const speedup = (target?.minSpeedup ?? 1) * (0.5 + Math.random());
      wanted.set(`${model}@${m}`, speedup);
      const factor = fp16 / speedup / trirun;
      for (const r of rows) if (r.trirun) r.trirun.medianUs *= factor;
    }
  }
  return { results, wanted };
}

describe("checkTargets", () => {
  it("judges every measured point of a target's range by the summed speedup, and lists the cells not run", () => {
    const { results, wanted } = resultsWithSpeedups();
    const report = checkTargets(results);
    // m = 24 lies in no target's range; every other measured batch size of both sets is checked.
    expect(report.checks.map((c) => `${c.model}@${c.m}`).sort()).toEqual(
      ["llama2-7b", "trilm-3.9b"]
        .flatMap((model) => BATCHES.filter((m) => m !== 24).map((m) => `${model}@${m}`))
        .sort(),
    );
    for (const c of report.checks) {
      const speedup = wanted.get(`${c.model}@${c.m}`) as number;
      expect(c.speedup).toBeCloseTo(speedup, 9);
      expect(c.met).toBe(speedup >= c.target.minSpeedup);
      // Meeting the target exactly takes the needed time: FP16's summed time over the target.
      expect(c.neededUs * c.target.minSpeedup).toBeCloseTo(c.trirunUs * c.speedup, 6);
      expect(c.m).toBeGreaterThanOrEqual(c.target.mFrom);
      expect(c.m).toBeLessThanOrEqual(c.target.mTo);
    }
    const byM = (model: string, m: number) => report.checks.find((c) => c.model === model && c.m === m);
    expect(byM("llama2-7b", 16)?.target.minSpeedup).toBe(6.0);
    expect(byM("trilm-3.9b", 128)?.target.minSpeedup).toBe(1.3);
    expect(byM("llama2-7b", 1024)?.target.minSpeedup).toBe(1.0);
    // The 70B reference set was not run: all five of its cells are unmeasured; the others all measured.
    expect(report.unmeasured.map((t) => t.model)).toEqual(Array(5).fill("llama2-70b"));
    expect(report.device).toBe(results.meta.device.name);
  });

  it("takes a later file's points over an earlier one's, says how each was timed, and refuses two devices", () => {
    const first = resultsWithSpeedups();
    const second = resultsWithSpeedups();
    // The second file: sustained timings of m >= 256 only.
    const late = {
      ...second.results,
      meta: { ...second.results.meta, sustainUs: 1_500_000 },
      rows: second.results.rows.filter((r) => r.m >= 256),
    };
    const report = checkTargets([first.results, late]);
    expect(report.checks).toHaveLength(checkTargets(first.results).checks.length);
    for (const c of report.checks) {
      const from = c.m >= 256 ? second.wanted : first.wanted;
      expect(c.speedup).toBeCloseTo(from.get(`${c.model}@${c.m}`) as number, 9);
      expect(c.timing).toBe(c.m >= 256 ? "sustained 1500 ms" : "interleaved");
    }
    // In the targets' order: the 7B set first, each by m.
    const keys = report.checks.map((c) => `${c.model}@${c.m}`);
    expect(keys[0]).toBe("llama2-7b@1");
    expect(keys.at(-1)).toBe(`trilm-3.9b@${BATCHES.at(-1)}`);
    const elsewhere = { ...late, meta: { ...late.meta, device: { ...late.meta.device, name: "Other GPU" } } };
    expect(() => checkTargets([first.results, elsewhere])).toThrow(/different devices/);
    const hot = { ...late, meta: { ...late.meta, mode: "hot" as const } };
    expect(() => checkTargets([first.results, hot])).toThrow(
      /weight mode or FP16 layout \(cold \/ nk, hot \/ nk\)/,
    );
    expect(() => checkTargets([])).toThrow(/no results/);
  });

  it("checks per-column timings only when asked, and none of a group size not run", () => {
    const { results } = resultsWithSpeedups();
    expect(checkTargets(results, { groupsize: -1 }).checks.length).toBeGreaterThan(0);
    const none = checkTargets(results, { groupsize: 64 });
    expect(none.checks).toEqual([]);
    expect(none.unmeasured).toHaveLength(SPEED_TARGETS.length);
  });

  it("prints a table and a markdown table with the count of points met", () => {
    const { results } = resultsWithSpeedups();
    const report = checkTargets(results);
    const met = report.checks.filter((c) => c.met).length;
    const summary = `${met} of ${report.checks.length} measured points meet their target`;
    const text = formatTargetsTable(report);
    expect(text).toContain(summary);
    expect(text).toContain("not measured: llama2-70b m=1-16, llama2-70b m=32");
    const md = targetsToMarkdown(report);
    expect(md.split("\n")[0]).toBe("| model | m | speedup | target | met | TriRun us | needed us | timing |");
    expect(md).toContain(summary);
    expect(md.split("\n").filter((l) => l.startsWith("| llama2-7b |"))).toHaveLength(BATCHES.length - 1);
  });
});

describe("trirun-bench targets", () => {
  const deps = {
    loadKernel: async () => ({ ok: false as const, reason: "none" }),
    loadChart: () => import("../src/chart.js"),
  };
  function capture() {
    const io = {
      out: "",
      err: "",
      stdout: (t: string) => {
        io.out += t;
      },
      stderr: (t: string) => {
        io.err += t;
      },
    };
    return io;
  }

  it("checks a results file; --markdown writes the markdown (- : standard output only)", async () => {
    const { results } = resultsWithSpeedups();
    const file = join(dir, "results.json");
    const markdownFile = join(dir, "targets.md");
    await writeFile(file, resultsToJson(results));
    const io = capture();
    expect(await main(["targets", file, "--markdown", markdownFile], io, deps)).toBe(0);
    expect(io.out).toMatch(/\d+ of 14 measured points meet their target/);
    expect(io.err).toContain(markdownFile);
    const md = await readFile(markdownFile, "utf8");
    expect(md).toContain("| model | m | speedup |");
    const only = capture();
    expect(await main(["targets", file, "--markdown", "-"], only, deps)).toBe(0);
    expect(only.out).toBe(md);
  });

  it("merges several files of one device, and refuses files of two", async () => {
    const { results } = resultsWithSpeedups();
    const early = join(dir, "early.json");
    const late = join(dir, "late.json");
    const foreign = join(dir, "foreign.json");
    await writeFile(early, resultsToJson(results));
    await writeFile(
      late,
      resultsToJson({
        ...results,
        meta: { ...results.meta, sustainUs: 2_000_000 },
        rows: results.rows.filter((r) => r.m >= 256),
      }),
    );
    await writeFile(
      foreign,
      resultsToJson({
        ...results,
        meta: { ...results.meta, device: { ...results.meta.device, name: "Other GPU" } },
      }),
    );
    const io = capture();
    expect(await main(["targets", early, late], io, deps)).toBe(0);
    expect(io.out).toContain("sustained 2000 ms");
    expect(io.out).toContain("interleaved");
    const bad = capture();
    expect(await main(["targets", early, foreign], bad, deps)).toBe(1);
    expect(bad.err).toMatch(/different devices/);
  });

  it("says what is missing when the file has none of the target sets", async () => {
    const results = syntheticResults({ batchSizes: [1, 16] });
    const other = { ...results, rows: results.rows.filter((r) => r.model === "custom") };
    const file = join(dir, "custom.json");
    await writeFile(file, resultsToJson(other));
    const io = capture();
    expect(await main(["targets", file], io, deps)).toBe(1);
    expect(io.err).toMatch(/no complete g128 timings of the target sets/);
    expect(await main(["targets", file, "--groupsize", "0"], capture(), deps)).toBe(1);
  });
});
