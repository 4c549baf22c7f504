import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import { comparisonToMarkdown, compareResults, formatComparisonTable } from "../src/compare.js";
import { summarizeModels } from "../src/report.js";
import { type BenchResults, resultsToJson } from "../src/results.js";
import { syntheticResults } from "./synthetic.js";

let before: BenchResults;
let dir: string;

beforeAll(async () => {
  before = syntheticResults({ batchSizes: [1, 16, 256] });
  dir = await mkdtemp(join(tmpdir(), "trirun-bench-compare-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The same run with TriRun `factor` times as long at m = `m`. */
function slowedDown(results: BenchResults, m: number, factor: number): BenchResults {
  const copy: BenchResults = JSON.parse(JSON.stringify(results));
  for (const row of copy.rows) {
    if (row.m === m && row.trirun) row.trirun.medianUs *= factor;
  }
  return copy;
}

describe("compareResults", () => {
  it("shows no change between a run and itself", () => {
    const { rows, warnings } = compareResults(before, before);
    expect(warnings).toEqual([]);
    expect(rows).toHaveLength(summarizeModels(before).length);
    for (const row of rows) {
      expect(row.speedupAfter).toBe(row.speedupBefore);
      expect(row.trirunTimeRatio).toBe(1);
      expect(row.fp16TimeRatio).toBe(1);
    }
  });

  it("reports a kernel that got faster at one batch size", () => {
    const factor = 0.5 + Math.random() * 0.4;
    const after = slowedDown(before, 16, factor);
    const { rows } = compareResults(before, after);
    for (const row of rows) {
      if (row.m === 16) {
        expect(row.trirunTimeRatio).toBeCloseTo(factor, 9);
        expect(row.speedupAfter).toBeCloseTo((row.speedupBefore ?? 0) / factor, 9);
      } else {
        expect(row.trirunTimeRatio).toBe(1);
      }
    }
    const markdown = comparisonToMarkdown(compareResults(before, after));
    expect(markdown).toContain(`${((factor - 1) * 100).toFixed(1)}%`);
    expect(formatComparisonTable(compareResults(before, after))).toContain("+0.0%");
  });

  it("warns when the runs are not comparable", () => {
    const other: BenchResults = JSON.parse(JSON.stringify(before));
    other.meta.device.name = "Another GPU";
    other.meta.mode = "hot";
    other.meta.sustainUs = 400;
    other.rows = [];
    const { warnings, rows } = compareResults(before, other);
    expect(rows).toEqual([]);
    expect(warnings.join("\n")).toMatch(
      /different devices.*\n.*timing methods: interleaved vs sustained 0\.4 ms\n.*weight modes.*\n.*no \(model set/,
    );
  });

  it("runs as trirun-bench compare", async () => {
    const beforeFile = join(dir, "before.json");
    const afterFile = join(dir, "after.json");
    const markdownFile = join(dir, "compare.md");
    await writeFile(beforeFile, resultsToJson(before));
    await writeFile(afterFile, resultsToJson(slowedDown(before, 1, 2)));
    let out = "";
    let err = "";
    const io = {
      stdout: (t: string) => {
        out += t;
      },
      stderr: (t: string) => {
        err += t;
      },
    };
    const deps = {
      loadKernel: async () => ({ ok: false as const, reason: "none" }),
      loadChart: () => import("../src/chart.js"),
    };
    expect(await main(["compare", beforeFile, afterFile, "--markdown", markdownFile], io, deps)).toBe(0);
    expect(out).toContain("+100.0%");
    expect(err).toContain(markdownFile);
    expect(await readFile(markdownFile, "utf8")).toContain("| model | group | m |");
    // `--markdown -`: standard output carries only the markdown, and no file named "-" appears.
    out = "";
    err = "";
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect(await main(["compare", beforeFile, afterFile, "--markdown", "-"], io, deps)).toBe(0);
    } finally {
      process.chdir(cwd);
    }
    expect(out).toBe(await readFile(markdownFile, "utf8"));
    expect(existsSync(join(dir, "-"))).toBe(false);
  });
});
