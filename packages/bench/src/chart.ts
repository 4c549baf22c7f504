/**
 * The speedup chart: Vega-Lite compiles the spec, Vega renders it to SVG without a
 * browser, resvg rasterises the SVG to PNG. Kept apart from the measuring code so
 * that a GPU machine can write JSON and the chart is rendered elsewhere.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import type { TopLevelSpec } from "vega-lite";
import { summarizeModels, toMarkdown } from "./report.js";
import type { BenchResults } from "./results.js";

/** The speedup a 2-bit weight could reach over a 16-bit one when both stream at the same rate. */
export const IDEAL_SPEEDUP = 8;

interface ChartPoint {
  model: string;
  group: string;
  m: number;
  speedup: number;
}

/** The Vega-Lite spec: speedup over FP16 vs batch size (log2), one line per model set, one panel per group size. */
export function speedupChartSpec(results: BenchResults): TopLevelSpec {
  const points: ChartPoint[] = summarizeModels(results)
    .filter((s) => s.speedup !== null)
    .map((s) => ({
      model: results.modelSets.find((set) => set.id === s.model)?.title ?? s.model,
      group: s.groupsize === -1 ? "per column" : `group size ${s.groupsize}`,
      m: s.m,
      speedup: s.speedup as number,
    }));
  const groups = [...new Set(points.map((p) => p.group))];
  const batchSizes = results.meta.batchSizes;
  const maxSpeedup = Math.max(IDEAL_SPEEDUP, ...points.map((p) => p.speedup));
  const title = `TriRun vs cuBLAS FP16 on ${results.meta.device.name} (${results.meta.mode} weights)`;
  // A little room beyond the first and last batch size keeps their tick labels apart and inside.
  const xScale = {
    type: "log" as const,
    base: 2,
    domain: [Math.min(...batchSizes) / 1.3, Math.max(...batchSizes) * 1.3],
  };
  const yScale = { domain: [0, Math.ceil(maxSpeedup)] };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: title, fontSize: 14 },
    background: "white",
    config: { font: "DejaVu Sans", axis: { labelFontSize: 11, titleFontSize: 12 } },
    hconcat: groups.map((group) => ({
      title: { text: group, fontSize: 12 },
      width: 480,
      height: 300,
      layer: [
        {
          data: {
            values: [
              { y: IDEAL_SPEEDUP, label: `ideal ${IDEAL_SPEEDUP}x` },
              { y: 1, label: "FP16 (1x)" },
            ],
          },
          mark: { type: "rule", strokeDash: [6, 4], color: "#555" },
          encoding: { y: { field: "y", type: "quantitative", scale: yScale } },
        },
        {
          data: {
            values: [
              { y: IDEAL_SPEEDUP, label: `ideal ${IDEAL_SPEEDUP}x` },
              { y: 1, label: "FP16 (1x)" },
            ],
          },
          mark: { type: "text", align: "right", dy: -7, color: "#555", fontSize: 11 },
          encoding: {
            y: { field: "y", type: "quantitative", scale: yScale },
            x: { datum: Math.max(...batchSizes), type: "quantitative", scale: xScale },
            text: { field: "label" },
          },
        },
        {
          data: { values: points.filter((p) => p.group === group) },
          mark: { type: "line", point: true, strokeWidth: 2 },
          encoding: {
            x: {
              field: "m",
              type: "quantitative",
              title: "batch size m (tokens)",
              scale: xScale,
              axis: { values: batchSizes, labelAngle: 0, format: "d", labelOverlap: false },
            },
            y: {
              field: "speedup",
              type: "quantitative",
              title: "speedup over FP16 (summed over layers)",
              scale: yScale,
            },
            color: {
              field: "model",
              type: "nominal",
              title: "model",
              sort: results.modelSets.map((s) => s.title),
              legend: { labelLimit: 400 },
            },
          },
        },
      ],
    })),
  } as TopLevelSpec;
}

/**
 * Renders the chart as an SVG string. Vega and Vega-Lite are ES modules (Vega with a top-level
 * await), which `require` cannot load: they are imported here, when a chart is drawn, so that the
 * CommonJS build of this entry loads too.
 */
export async function renderChartSvg(results: BenchResults): Promise<string> {
  const [vega, { compile }] = await Promise.all([import("vega"), import("vega-lite")]);
  const compiled = compile(speedupChartSpec(results)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterises an SVG to PNG at `scale` times its size. */
export function svgToPng(svg: string, scale = 2): Buffer {
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  });
  return resvg.render().asPng();
}

export interface RenderedFiles {
  readonly svg: string;
  readonly png: string;
  readonly markdown: string;
}

/** Writes `speedup.svg`, `speedup.png` and `benchmarks.md` (embedding the PNG) to `outDir`. */
export async function renderReport(
  results: BenchResults,
  outDir: string,
  options: { perLayer?: boolean } = {},
): Promise<RenderedFiles> {
  await mkdir(outDir, { recursive: true });
  const svg = await renderChartSvg(results);
  const files = {
    svg: join(outDir, "speedup.svg"),
    png: join(outDir, "speedup.png"),
    markdown: join(outDir, "benchmarks.md"),
  };
  await writeFile(files.svg, svg);
  await writeFile(files.png, svgToPng(svg));
  await writeFile(
    files.markdown,
    toMarkdown(results, { chartPath: "speedup.png", perLayer: options.perLayer }),
  );
  return files;
}
