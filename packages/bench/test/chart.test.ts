import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { PNG } from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IDEAL_SPEEDUP, renderChartSvg, renderReport, speedupChartSpec, svgToPng } from "../src/chart.js";
import { summarizeModels } from "../src/report.js";
import type { BenchResults } from "../src/results.js";
import { syntheticResults } from "./synthetic.js";

let results: BenchResults;
let dir: string;

beforeAll(async () => {
  results = syntheticResults();
  dir = await mkdtemp(join(tmpdir(), "trirun-bench-chart-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function pngSize(png: Buffer): { width: number; height: number } {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  expect(png.subarray(12, 16).toString("latin1")).toBe("IHDR");
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe("speedup chart", () => {
  it("plots every model's summed speedup on a log2 batch axis, with the ideal line", () => {
    const spec = speedupChartSpec(results) as unknown as {
      hconcat: {
        layer: {
          data: { values: Record<string, unknown>[] };
          encoding: Record<string, { scale?: unknown }>;
        }[];
      }[];
    };
    expect(spec.hconcat).toHaveLength(results.meta.groupsizes.length);
    const points = spec.hconcat.flatMap((panel) => panel.layer[2].data.values);
    const expected = summarizeModels(results);
    expect(points).toHaveLength(expected.length);
    for (const s of expected) {
      const title = results.modelSets.find((set) => set.id === s.model)?.title;
      expect(points).toContainEqual(expect.objectContaining({ model: title, m: s.m, speedup: s.speedup }));
    }
    expect(spec.hconcat[0].layer[2].encoding.x.scale).toMatchObject({ type: "log", base: 2 });
    expect(spec.hconcat[0].layer[0].data.values).toContainEqual(
      expect.objectContaining({ y: IDEAL_SPEEDUP }),
    );
  });

  it("renders valid SVG with the titles, legend and ideal label", async () => {
    const svg = await renderChartSvg(results);
    expect(XMLValidator.validate(svg)).toBe(true);
    const root = new XMLParser({ ignoreAttributes: false }).parse(svg).svg;
    expect(Number(root["@_width"])).toBeGreaterThan(500);
    for (const set of results.modelSets) expect(svg).toContain(set.title);
    expect(svg).toContain(`ideal ${IDEAL_SPEEDUP}x`);
    expect(svg).toContain(results.meta.device.name);
    // Batch-size tick labels of the log2 axis.
    for (const m of results.meta.batchSizes) expect(svg).toContain(`>${m}</text>`);
  });

  it("renders through the built CommonJS entry too (require), when it has been built", async () => {
    const cjs = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "chart.cjs");
    if (!existsSync(cjs)) {
      console.warn(
        "skipping the CommonJS chart check: dist/chart.cjs is not built (pnpm --filter @trirun/bench build)",
      );
      return;
    }
    const input = join(dir, "cjs-results.json");
    await writeFile(input, JSON.stringify(results));
    const script = [
      `const chart = require(${JSON.stringify(cjs)});`,
      `const results = JSON.parse(require("node:fs").readFileSync(${JSON.stringify(input)}, "utf8"));`,
      "chart.renderChartSvg(results).then((svg) => process.stdout.write(svg), (e) => { console.error(e); process.exit(2); });",
    ].join("");
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(XMLValidator.validate(r.stdout)).toBe(true);
    for (const set of results.modelSets) expect(r.stdout).toContain(set.title);
  });

  it("rasterises to a PNG of twice the SVG's size with drawn, coloured content", async () => {
    const svg = await renderChartSvg(results);
    const root = new XMLParser({ ignoreAttributes: false }).parse(svg).svg;
    const png = svgToPng(svg, 2);
    const { width, height } = pngSize(png);
    expect(width).toBe(Math.round(2 * Number(root["@_width"])));
    expect(height).toBe(Math.round(2 * Number(root["@_height"])));
    // Decode the file with an independent PNG reader.
    const decoded = PNG.sync.read(png);
    expect([decoded.width, decoded.height]).toEqual([width, height]);
    const pixels = decoded.data;
    let nonWhite = 0;
    let coloured = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
      if (r < 240 || g < 240 || b < 240) nonWhite++;
      if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
    }
    const total = pixels.length / 4;
    expect(nonWhite / total).toBeGreaterThan(0.01);
    expect(nonWhite / total).toBeLessThan(0.5);
    expect(coloured).toBeGreaterThan(100);
  });

  it("writes SVG, PNG and markdown into a folder", async () => {
    const files = await renderReport(results, join(dir, "out"));
    expect(XMLValidator.validate(await readFile(files.svg, "utf8"))).toBe(true);
    pngSize(await readFile(files.png));
    const markdown = await readFile(files.markdown, "utf8");
    expect(markdown).toContain("(speedup.png)");
    expect(markdown).toContain(results.meta.device.name);
  });
});
