import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { XMLValidator } from "fast-xml-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliDependencies, type CliIo, EXIT_NO_GPU, main } from "../src/cli.js";
import { loadKernel } from "../src/kernel-api.js";
import { readResultsFile, resultsToJson } from "../src/results.js";
import { SimulatedGpu } from "./simulated-gpu.js";
import { syntheticResults } from "./synthetic.js";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");

function capture(): CliIo & { out: string; err: string } {
  const io = {
    out: "",
    err: "",
    stdout(text: string) {
      io.out += text;
    },
    stderr(text: string) {
      io.err += text;
    },
    stderrIsTTY: false,
  };
  return io;
}

const chartDeps = { loadChart: () => import("../src/chart.js") };
const noGpu: CliDependencies = {
  loadKernel: async () => ({ ok: false, reason: "simulated: no driver" }),
  ...chartDeps,
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "trirun-bench-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("trirun-bench --help", () => {
  it("prints usage and exits 0, also for each command", async () => {
    for (const argv of [["--help"], ["run", "--help"], ["render", "--help"], ["shapes", "--help"]]) {
      const io = capture();
      expect(await main(argv, io, noGpu)).toBe(0);
      expect(io.out).toContain("Usage: trirun-bench");
    }
    const io = capture();
    await main(["run", "--help"], io, noGpu);
    for (const flag of ["--hot", "--shape", "--batch", "--groupsize", "--json", "--csv", "--out"]) {
      expect(io.out).toContain(flag);
    }
  });

  it("works from the built executable when it has been built", () => {
    const bin = join(packageDir, "dist", "bin.js");
    if (!existsSync(bin)) {
      console.warn(
        "skipping the executable check: dist/bin.js is not built (pnpm --filter @trirun/bench build)",
      );
      return;
    }
    const result = spawnSync(process.execPath, [bin, "--help"], { encoding: "utf8" });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("Usage: trirun-bench");
  });
});

describe("without a GPU", () => {
  it("exits non-zero with a clear message", async () => {
    const io = capture();
    expect(await main(["--models", "llama2-7b"], io, noGpu)).toBe(EXIT_NO_GPU);
    expect(io.err).toContain("no CUDA GPU available: simulated: no driver");
    expect(io.err).toContain("trirun-bench render");
  });

  it("exits non-zero with the real kernel loader on a machine without one", async () => {
    const kernel = await loadKernel();
    if (kernel.ok) {
      console.warn("skipping the no-GPU check: this machine has a usable CUDA device");
      return;
    }
    const io = capture();
    expect(await main(["--models", "trilm-3.9b", "--batch", "1"], io)).toBe(EXIT_NO_GPU);
    expect(io.err).toMatch(/no CUDA GPU available: .+/);
  });

  it("rejects bad arguments before looking for a GPU", async () => {
    for (const [argv, message] of [
      [["--shape", "100,256"], /multiple of 128/],
      [["--batch", "0"], /\[1, 65536\]/],
      [["--groupsize", "64"], /128 or -1/],
      [["--models", "gpt-5"], /unknown model set/],
      [["--samples", "x"], /positive integer/],
      [["--fp16-layout", "xx"], /invalid/],
    ] as const) {
      const io = capture();
      expect(await main(argv, io, noGpu), argv.join(" ")).toBe(1);
      expect(io.err).toMatch(message);
    }
  });

  it("lists the shapes", async () => {
    const io = capture();
    expect(await main(["shapes", "--sms", "132"], io, noGpu)).toBe(0);
    expect(io.out).toContain("ideal: ideal (135168, 33792)");
    expect(io.out).toContain(
      "llama2-70b: qkv (8192, 24576), o (8192, 8192), gate_up (8192, 43520), down (21760, 8192)",
    );
  });
});

describe("render", () => {
  it("writes chart and markdown from a results file", async () => {
    const results = syntheticResults({ batchSizes: [1, 8, 64] });
    const file = join(dir, "results.json");
    await writeFile(file, resultsToJson(results));
    const io = capture();
    const out = join(dir, "rendered");
    expect(await main(["render", file, "--out", out], io, noGpu)).toBe(0);
    expect(XMLValidator.validate(await readFile(join(out, "speedup.svg"), "utf8"))).toBe(true);
    expect((await readFile(join(out, "speedup.png"))).subarray(1, 4).toString()).toBe("PNG");
    expect(await readFile(join(out, "benchmarks.md"), "utf8")).toContain(results.meta.device.name);
    expect(io.out).toContain("m=64");
    expect(await readFile(join(out, "benchmarks.md"), "utf8")).toContain("### Per layer");
    const short = join(dir, "rendered-short");
    expect(await main(["render", file, "--out", short, "--no-per-layer-markdown"], capture(), noGpu)).toBe(0);
    const markdown = await readFile(join(short, "benchmarks.md"), "utf8");
    expect(markdown).not.toContain("### Per layer");
    expect(markdown).toContain("### Speedup over FP16");
  });

  it("fails clearly on a missing or invalid file", async () => {
    const io = capture();
    expect(await main(["render", join(dir, "nope.json")], io, noGpu)).toBe(1);
    expect(io.err).toMatch(/nope\.json: cannot read results file/);
    const bad = join(dir, "bad.json");
    await writeFile(bad, '{"format": "trirun-bench/1", "rows": []}');
    const io2 = capture();
    expect(await main(["render", bad], io2, noGpu)).toBe(1);
    expect(io2.err).toMatch(/bad\.json: not a trirun-bench\/1 results file: meta/);
  });
});

describe("run on a simulated GPU", () => {
  it("writes only JSON to standard output with --json -", async () => {
    const gpu = new SimulatedGpu({ seed: 11, hostLaunchUs: 0 });
    const deps: CliDependencies = { loadKernel: async () => ({ ok: true, api: gpu.api() }), ...chartDeps };
    const io = capture();
    const code = await main(
      ["--shape", "512,256", "--batch", "2", "--groupsize", "128", "--samples", "2", "--json", "-"],
      io,
      deps,
    );
    expect(code).toBe(0);
    const results = JSON.parse(io.out);
    expect(results.rows).toHaveLength(1);
    expect(results.rows[0]).toMatchObject({ k: 512, n: 256, m: 2, groupsize: 128 });
    expect(io.err).toContain("speedup, g128");
  });

  it("measures, prints tables and writes JSON, CSV, markdown and the chart", async () => {
    const gpu = new SimulatedGpu({ seed: 1 + Math.floor(Math.random() * 1e6), hostLaunchUs: 0 });
    // A stand-in for nvidia-smi: a sample every quarter millisecond of wall clock from start to stop (so
    // every row's window, whole milliseconds, holds one), at a power-capped clock.
    let telemetryGpu: string | undefined;
    const deps: CliDependencies = {
      loadKernel: async () => ({ ok: true, api: gpu.api() }),
      ...chartDeps,
      startTelemetry: (options) => {
        telemetryGpu = options?.gpu;
        const t0 = Date.now();
        return {
          ok: true,
          recorder: {
            source: "stand-in",
            intervalMs: 100,
            stop: async () =>
              Array.from({ length: 4 * (Date.now() - t0) + 1 }, (_, i) => ({
                timeMs: t0 + i / 4,
                smClockMHz: 1300 + Math.floor(Math.random() * 400),
                maxSmClockMHz: 1980,
                powerW: 690,
                powerLimitW: 700,
                temperatureC: 60,
                reasons: 0x4,
              })),
          },
        };
      },
    };
    const io = capture();
    const out = join(dir, "run");
    const json = join(dir, "run.json");
    const code = await main(
      [
        "--shape",
        "1024,2048",
        "--batch",
        "1,16",
        "--samples",
        "3",
        "--min-sample-us",
        "20",
        "--json",
        json,
        "--out",
        out,
      ],
      io,
      deps,
    );
    expect(io.err).not.toMatch(/trirun-bench:/);
    expect(code).toBe(0);
    expect(io.err).toContain("device: Simulated GPU");
    expect(io.err).toMatch(/\[1\/2\] custom 1024x2048 m=1: g128 \d+\.\d\dx, per column \d+\.\d\dx/);
    expect(io.out).toContain("1024 x 2048");
    const results = await readResultsFile(json);
    expect(results.rows.map((r) => [r.m, r.groupsize])).toEqual([
      [1, 128],
      [1, -1],
      [16, 128],
      [16, -1],
    ]);
    expect(results.meta.command).toContain("--shape 1024,2048");
    for (const name of ["results.json", "results.csv", "benchmarks.md", "speedup.svg", "speedup.png"]) {
      expect(existsSync(join(out, name)), name).toBe(true);
    }
    // Telemetry: the run's summary, each row's own, and the markdown's account of both.
    expect(telemetryGpu).toBe("0000:00:00.0");
    expect(results.meta.telemetry?.source).toBe("stand-in");
    expect(results.meta.telemetry?.powerCappedFraction).toBe(1);
    expect(results.meta.telemetry?.limitedFraction).toBe(1);
    for (const row of results.rows) {
      expect(row.gpu?.samples).toBeGreaterThan(0);
      expect(row.gpu?.smClockMHz.min).toBeGreaterThanOrEqual(1300);
    }
    const markdown = await readFile(join(out, "benchmarks.md"), "utf8");
    expect(markdown).toContain("- GPU during the run (stand-in, ");
    expect(markdown).toContain("power or thermal limit");
    expect(markdown).toContain("custom m = 1, 16");
  });

  it("records why there are no clocks with --no-telemetry", async () => {
    const gpu = new SimulatedGpu({ seed: 5, hostLaunchUs: 0 });
    const deps: CliDependencies = {
      loadKernel: async () => ({ ok: true, api: gpu.api() }),
      ...chartDeps,
      startTelemetry: () => {
        throw new Error("must not start");
      },
    };
    const io = capture();
    const json = join(dir, "no-telemetry.json");
    const args = ["--shape", "512,256", "--batch", "2", "--samples", "2", "--no-telemetry", "--json", json];
    expect(await main(args, io, deps)).toBe(0);
    expect(io.err).toContain("GPU clocks and power not recorded: turned off (--no-telemetry)");
    const results = await readResultsFile(json);
    expect(results.meta.telemetry).toBeNull();
    expect(results.meta.telemetryNote).toBe("turned off (--no-telemetry)");
    const io2 = capture();
    expect(await main(["run", "--telemetry-interval", "50", "--shape", "512,256"], io2, deps)).toBe(1);
    expect(io2.err).toContain("--telemetry-interval: at least 100 ms, got 50");
  });
});
