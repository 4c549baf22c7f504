import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CSV_COLUMNS,
  formatConfig,
  formatRowsTable,
  formatSummaryTable,
  rowFigures,
  summarizeModels,
  targetFor,
  toCsv,
  toMarkdown,
} from "../src/report.js";
import {
  type BenchResults,
  parseResults,
  RESULTS_FORMAT,
  ResultsFileError,
  readResultsFile,
  resultsToJson,
} from "../src/results.js";
import { packedWeightBytes } from "../src/shapes.js";
import { syntheticResults } from "./synthetic.js";

let results: BenchResults;
let dir: string;

beforeAll(async () => {
  results = syntheticResults();
  dir = await mkdtemp(join(tmpdir(), "trirun-bench-report-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("JSON", () => {
  it("round-trips through a file", async () => {
    const file = join(dir, "results.json");
    await writeFile(file, resultsToJson(results));
    const back = await readResultsFile(file);
    expect(back).toEqual(results);
    expect(back.format).toBe(RESULTS_FORMAT);
  });

  it("rejects unreadable, truncated and malformed files with the file and field named", async () => {
    await expect(readResultsFile(join(dir, "missing.json"))).rejects.toMatchObject({
      code: "ERR_RESULTS_READ",
    });
    const truncatedFile = join(dir, "truncated.json");
    const json = resultsToJson(results);
    await writeFile(truncatedFile, json.slice(0, Math.floor(json.length / 2)));
    await expect(readResultsFile(truncatedFile)).rejects.toMatchObject({
      code: "ERR_RESULTS_JSON",
      message: expect.stringContaining(truncatedFile),
    });

    const broken = JSON.parse(json);
    broken.rows[1].trirun.medianUs = -3;
    const error = (() => {
      try {
        parseResults(broken, "broken.json");
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ResultsFileError);
    expect((error as ResultsFileError).code).toBe("ERR_RESULTS_SCHEMA");
    expect((error as Error).message).toMatch(/broken\.json.*rows\.1\.trirun\.medianUs/);
    expect(() => parseResults({ ...JSON.parse(json), format: "other/1" }, "x.json")).toThrow(/format/);
    expect(() => parseResults([], "x.json")).toThrow(ResultsFileError);
  });

  it("rejects files whose rows would make a wrong summed speedup look complete", () => {
    const json = JSON.parse(resultsToJson(results));
    const set = json.modelSets[0];
    type Row = { model: string; layer: string; m: number; groupsize: number };
    const rowsOf = (rows: Row[]) => rows.filter((r) => r.model === set.id);
    // One layer twice instead of another.
    const dup = structuredClone(json);
    const first = rowsOf(dup.rows)[0];
    const other = dup.rows.findIndex(
      (r: Row) =>
        r.model === set.id && r.layer !== first.layer && r.m === first.m && r.groupsize === first.groupsize,
    );
    dup.rows[other] = structuredClone(first);
    expect(() => parseResults(dup, "dup.json")).toThrow(/dup\.json.*rows\.\d+: a second row for/);
    // A layer that is not the set's, and a set's layer with other dimensions.
    const foreign = structuredClone(json);
    foreign.rows[0].layer = "made-up";
    expect(() => parseResults(foreign, "f.json")).toThrow(/rows\.0: layer "made-up" .* is not among/);
    const resized = structuredClone(json);
    resized.rows[0].k = 128;
    expect(() => parseResults(resized, "r.json")).toThrow(/rows\.0: layer .* here/);
    // Group sizes the kernel does not have.
    const group = structuredClone(json);
    group.rows[0].groupsize = 0;
    expect(() => parseResults(group, "g.json")).toThrow(/rows\.0\.groupsize: must be 128 or -1/);
  });

  it("counts a set as complete only when each of its layers has its row", () => {
    const copy = structuredClone(results) as BenchResults;
    const set = copy.modelSets[0];
    const m = copy.meta.batchSizes[0];
    const g = copy.meta.groupsizes[0];
    const rows = copy.rows.filter((r) => r.model === set.id && r.m === m && r.groupsize === g);
    expect(
      summarizeModels(copy).find((s) => s.model === set.id && s.m === m && s.groupsize === g)?.speedup,
    ).not.toBeNull();
    // Built in code (no parse): the second layer's row replaced by the first's.
    Object.assign(rows[1], { ...rows[0] });
    expect(
      summarizeModels(copy).find((s) => s.model === set.id && s.m === m && s.groupsize === g)?.speedup,
    ).toBeNull();
  });
});

describe("CSV", () => {
  it("has one line per row whose values equal the JSON figures", () => {
    const records: string[][] = parse(toCsv(results));
    expect(records[0]).toEqual([...CSV_COLUMNS]);
    expect(records).toHaveLength(results.rows.length + 1);
    const column = (name: (typeof CSV_COLUMNS)[number]) => CSV_COLUMNS.indexOf(name);
    results.rows.forEach((row, i) => {
      const record = records[i + 1];
      const figures = rowFigures(row, results.meta.roofline.gbps);
      expect(record[column("model")]).toBe(row.model);
      expect(Number(record[column("k")])).toBe(row.k);
      expect(Number(record[column("m")])).toBe(row.m);
      expect(Number(record[column("groupsize")])).toBe(row.groupsize);
      expect(Number(record[column("fp16_median_us")])).toBe(row.fp16?.medianUs);
      expect(Number(record[column("trirun_p90_us")])).toBe(row.trirun?.p90Us);
      expect(Number(record[column("speedup")])).toBe(figures.speedup);
      expect(Number(record[column("trirun_weight_gbps")])).toBe(figures.weightGBps);
      expect(JSON.parse(record[column("config")])).toEqual(row.config);
    });
  });
});

describe("figures", () => {
  it("computes TFLOP/s, weight GB/s and roofline fraction from the definitions", () => {
    for (const row of results.rows) {
      const f = rowFigures(row, results.meta.roofline.gbps);
      const seconds = (row.trirun?.medianUs ?? 0) * 1e-6;
      expect(f.tflops).toBeCloseTo((2 * row.m * row.k * row.n) / seconds / 1e12, 9);
      const bytes = (row.k * row.n * 2) / 8 + (row.groupsize === -1 ? 1 : row.k / 128) * row.n * 2;
      expect(f.weightGBps).toBeCloseTo(bytes / seconds / 1e9, 6);
      expect(f.rooflineFraction).toBeCloseTo(bytes / seconds / 1e9 / results.meta.roofline.gbps, 9);
      expect(f.fp16WeightGBps).toBeCloseTo((2 * row.k * row.n) / ((row.fp16?.medianUs ?? 0) * 1e-6) / 1e9, 6);
    }
  });

  it("sums times per model for the speedups the targets are judged by", () => {
    for (const s of summarizeModels(results)) {
      const rows = results.rows.filter(
        (r) => r.model === s.model && r.m === s.m && r.groupsize === s.groupsize,
      );
      const fp16 = rows.reduce((sum, r) => sum + (r.fp16?.medianUs ?? 0), 0);
      const trirun = rows.reduce((sum, r) => sum + (r.trirun?.medianUs ?? 0), 0);
      expect(s.speedup).toBeCloseTo(fp16 / trirun, 12);
      const bytes = rows.reduce((sum, r) => sum + packedWeightBytes(r.k, r.n, r.groupsize), 0);
      expect(s.weightGBps).toBeCloseTo(bytes / (trirun * 1e3), 6);
    }
  });

  it("abbreviates the dispatcher's configuration", () => {
    expect(
      formatConfig({
        threadK: 64,
        threadN: 256,
        mBlocks: 4,
        stages: 4,
        sms: 132,
        maxParallel: 16,
        threads: 256,
        groupsize: 128,
        workspaceBytes: 4096,
        split: true,
      }),
    ).toBe("64x256 mb4 st4 sms132 par16 thr256 split=true");
    expect(formatConfig(null)).toBe("");
  });

  it("knows the kernel's speed targets", () => {
    expect(targetFor("llama2-70b", 8)?.minSpeedup).toBe(7);
    expect(targetFor("llama2-7b", 32)?.minSpeedup).toBe(4);
    expect(targetFor("trilm-3.9b", 128)?.minSpeedup).toBe(1.3);
    expect(targetFor("llama2-70b", 4096)?.minSpeedup).toBe(1);
    expect(targetFor("llama2-70b", 48)).toBeUndefined();
    expect(targetFor("falcon-180b", 1)).toBeUndefined();
  });
});

describe("text output", () => {
  it("prints every row and every model's speedup in the terminal tables", () => {
    const table = formatRowsTable(results.rows, results.meta.roofline.gbps);
    for (const row of results.rows) expect(table).toContain(`${row.k} x ${row.n}`);
    const summary = formatSummaryTable(results);
    for (const s of summarizeModels(results)) {
      expect(summary).toContain(`${(s.speedup ?? 0).toFixed(2)}x`);
    }
    expect(summary).toContain("per column");
  });

  it("writes markdown tables with the run facts, speedups and targets", () => {
    const markdown = toMarkdown(results, { chartPath: "speedup.png" });
    expect(markdown).toContain(results.meta.device.name);
    expect(markdown).toContain(results.meta.command);
    expect(markdown).toContain("![Speedup over FP16 vs batch size](speedup.png)");
    const summaries = summarizeModels(results);
    for (const set of results.modelSets) {
      const line = markdown.split("\n").find((l) => l.startsWith(`| ${set.title} |`) && l.includes("x |"));
      expect(line, set.title).toBeDefined();
      const cells =
        line
          ?.split("|")
          .slice(2, -1)
          .map((c) => c.trim()) ?? [];
      const expected = results.meta.batchSizes.map((m) => {
        const s = summaries.find(
          (x) => x.model === set.id && x.m === m && x.groupsize === results.meta.groupsizes[0],
        );
        return `${(s?.speedup ?? 0).toFixed(2)}x`;
      });
      expect(cells).toEqual(expected);
    }
    // Target lines for the sets that have targets, judged at group size 128.
    for (const s of summaries.filter((x) => x.groupsize === 128 && targetFor(x.model, x.m))) {
      const target = targetFor(s.model, s.m);
      const met = (s.speedup ?? 0) >= (target?.minSpeedup ?? 0);
      expect(markdown).toContain(
        `| ${s.model} | ${s.m} | >= ${target?.minSpeedup.toFixed(1)}x | ${(s.speedup ?? 0).toFixed(2)}x | ${met ? "met" : "**not met**"} |`,
      );
    }
    // Every markdown table row has as many cells as its header.
    const lines = markdown.split("\n");
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].startsWith("| ---")) {
        const width = lines[i - 1].split("|").length;
        for (let j = i + 1; j < lines.length && lines[j].startsWith("|"); j++) {
          expect(lines[j].split("|").length).toBe(width);
        }
      }
    }
  });

  it("keeps a table row whole when a cell's text has a | or a line break", () => {
    const copy = structuredClone(results) as BenchResults;
    copy.rows[0].config = null;
    copy.rows[0].trirun = null;
    copy.rows[0].error = "kernel failed: a | b\nsecond line";
    copy.meta.device.name = "GPU | with pipe";
    const lines = toMarkdown(copy, {}).split("\n");
    const row = lines.find((l) => l.includes("kernel failed"));
    expect(row).toContain("kernel failed: a \\| b second line");
    // Unescaped pipes delimit the cells: as many as the header's.
    const cells = (l: string) => l.split(/(?<!\\)\|/).length;
    const at = lines.indexOf(row as string);
    let header = at;
    while (!lines[header].startsWith("| ---")) header--;
    expect(cells(row as string)).toBe(cells(lines[header - 1]));
  });
});
