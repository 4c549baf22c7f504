import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLOCK_REASONS,
  parseNvidiaSmiTime,
  parseTelemetryCsv,
  summarizeTelemetry,
  summarizeWindows,
  type TelemetrySample,
  telemetryBullets,
} from "../src/telemetry.js";
import { startTelemetry } from "../src/telemetry-recorder.js";

const pad = (v: number, n = 2) => String(v).padStart(n, "0");
/** nvidia-smi's timestamp format, local time (an independent formatter for the parser under test). */
function smiTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function randomSample(timeMs: number, rnd: () => number): TelemetrySample {
  const maybe = (v: number) => (rnd() < 0.2 ? null : v);
  return {
    timeMs,
    smClockMHz: Math.round(300 + rnd() * 1700),
    maxSmClockMHz: maybe(1980),
    powerW: maybe(Math.round(rnd() * 70000) / 100),
    powerLimitW: maybe(700),
    temperatureC: maybe(Math.round(30 + rnd() * 50)),
    reasons: Math.floor(rnd() * 256),
  };
}

function csvLine(s: TelemetrySample): string {
  const v = (x: number | null) => (x === null ? "[N/A]" : String(x));
  return [
    smiTime(s.timeMs),
    String(s.smClockMHz),
    v(s.maxSmClockMHz),
    v(s.powerW),
    v(s.powerLimitW),
    v(s.temperatureC),
    `0x${s.reasons.toString(16).padStart(16, "0")}`,
  ].join(", ");
}

describe("nvidia-smi samples", () => {
  it("parses its timestamps back to the same instant", () => {
    for (let i = 0; i < 200; i++) {
      const ms = Math.floor(Date.UTC(2020, 0, 1) + Math.random() * 2e11);
      expect(parseNvidiaSmiTime(smiTime(ms))).toBe(ms);
    }
    expect(parseNvidiaSmiTime("2026/12/04 20:35:02")).toBe(new Date(2026, 11, 4, 20, 35, 2).getTime());
    for (const bad of ["", "2026-12-04 20:35:02", "yesterday", "2026/12/04"]) {
      expect(parseNvidiaSmiTime(bad)).toBeUndefined();
    }
  });

  it("parses random samples, [N/A] fields included, and skips lines that are not samples", () => {
    const rnd = Math.random;
    const start = Date.now() - 100_000;
    const samples = Array.from({ length: 300 }, (_, i) => randomSample(start + i * 250, rnd));
    const junk = [
      "timestamp, clocks.current.sm [MHz], clocks.max.sm [MHz]",
      "No devices were found",
      "2026/12/04 20:35:02.544, 1980, 1980",
      `${smiTime(start)}, [N/A], 1980, 100, 700, 40, 0x0000000000000000`,
      `${smiTime(start)}, 1980, 1980, 100, 700, 40, none`,
      "",
    ];
    const lines = samples.map(csvLine);
    const mixed = [...lines];
    for (const j of junk) mixed.splice(Math.floor(Math.random() * mixed.length), 0, j);
    expect(parseTelemetryCsv(mixed.join("\n"))).toEqual(samples);
    expect(parseTelemetryCsv(`${lines.join("\r\n")}\r\n`)).toEqual(samples);
  });

  it("summarises against an independent computation, over a window too", () => {
    const rnd = Math.random;
    const start = 1_700_000_000_000;
    const samples = Array.from({ length: 1 + Math.floor(rnd() * 400) }, (_, i) =>
      randomSample(start + i * 100, rnd),
    );
    const check = (subset: TelemetrySample[], window?: { startMs: number; endMs: number }) => {
      const summary = summarizeTelemetry(samples, window);
      if (subset.length === 0) {
        expect(summary).toBeNull();
        return;
      }
      const sorted = subset.map((s) => s.smClockMHz).sort((a, b) => a - b);
      const n = sorted.length;
      const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
      expect(summary?.samples).toBe(n);
      expect(summary?.smClockMHz).toEqual({ min: sorted[0], median, max: sorted[n - 1] });
      const capped = subset.filter(
        (s) => s.reasons & (CLOCK_REASONS.swPowerCap | CLOCK_REASONS.hwPowerBrakeSlowdown),
      );
      expect(summary?.powerCappedFraction).toBeCloseTo(capped.length / n, 12);
      const hot = subset.filter((s) => s.reasons & (0x8 | 0x20 | 0x40));
      expect(summary?.thermalFraction).toBeCloseTo(hot.length / n, 12);
      const powers = subset.map((s) => s.powerW).filter((p): p is number => p !== null);
      if (powers.length === 0) expect(summary?.powerW).toBeNull();
      else expect(summary?.powerW?.max).toBe(Math.max(...powers));
    };
    check(samples);
    const a = start + Math.floor(rnd() * samples.length) * 100;
    const b = a + Math.floor(rnd() * 5000);
    check(
      samples.filter((s) => s.timeMs >= a && s.timeMs <= b),
      { startMs: a, endMs: b },
    );
    check([], { startMs: start - 10_000, endMs: start - 1 });
  });

  it("gives each window the samples inside it and borrows none", () => {
    const rnd = Math.random;
    const t0 = 1_700_000_000_000;
    const samples = [0, 1000, 2000].map((t) => randomSample(t0 + t, rnd));
    const [short, none, both] = summarizeWindows(samples, [
      { startedAtMs: t0 + 900, endedAtMs: t0 + 1100 },
      { startedAtMs: t0 + 1300, endedAtMs: t0 + 1400 },
      { startedAtMs: t0 + 1000, endedAtMs: t0 + 2000 },
    ]);
    expect(short?.samples).toBe(1);
    expect(short?.smClockMHz.median).toBe(samples[1].smClockMHz);
    expect(none).toBeNull();
    expect(both?.samples).toBe(2);
  });

  it("counts a sample as limited only with a power or thermal reason and a clock below 90% of the maximum", () => {
    const base = { maxSmClockMHz: 1980, powerW: 500, powerLimitW: 700, temperatureC: 60 };
    const samples: TelemetrySample[] = [
      { ...base, timeMs: 1, smClockMHz: 1950, reasons: CLOCK_REASONS.swPowerCap }, // capped bit at 98%: not limited
      { ...base, timeMs: 2, smClockMHz: 1450, reasons: CLOCK_REASONS.swPowerCap },
      { ...base, timeMs: 3, smClockMHz: 1300, reasons: CLOCK_REASONS.hwThermalSlowdown },
      { ...base, timeMs: 4, smClockMHz: 345, reasons: CLOCK_REASONS.gpuIdle }, // idle: low clock, no limit
    ];
    const summary = summarizeTelemetry(samples);
    expect(summary?.limitedFraction).toBe(0.5);
    expect(summary?.powerCappedFraction).toBe(0.5);
    expect(summary?.thermalFraction).toBe(0.25);
  });

  it("writes markdown bullets that name the clocks and the rows measured at a limit", () => {
    const rnd = Math.random;
    const samples = Array.from({ length: 20 }, (_, i) => randomSample(i * 100, rnd));
    const run = summarizeTelemetry(samples);
    if (run === null) throw new Error("no summary");
    const capped = { ...run, limitedFraction: 0.9 };
    const free = { ...run, limitedFraction: 0.1, powerCappedFraction: 1 };
    const bullets = telemetryBullets({ ...run, source: "nvidia-smi", intervalMs: 100 }, undefined, [
      { model: "llama2-7b", m: 512, gpu: capped },
      { model: "llama2-7b", m: 1, gpu: free },
      { model: "llama2-7b", m: 256, gpu: capped },
      { model: "trilm-3.9b", m: 1024, gpu: { ...free, limitedFraction: 0.75 } },
      { model: "trilm-3.9b", m: 1, gpu: null },
    ]);
    expect(bullets[0]).toContain(`SM clock ${run.smClockMHz.min}-${run.smClockMHz.max} MHz`);
    expect(bullets[1]).toContain("llama2-7b m = 256, 512; trilm-3.9b m = 1024.");
    expect(bullets[2]).toBe(
      "- 1 of 5 rows took less than a sampling interval and caught no sample (a shorter --telemetry-interval samples them).",
    );
    expect(telemetryBullets(null, "nvidia-smi not found", [])).toEqual([
      "- GPU clocks and power: not recorded (nvidia-smi not found).",
    ]);
  });
});

describe("startTelemetry", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "trirun-bench-telemetry-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A stand-in for nvidia-smi: knows only the older reason field, loops with --loop-ms until killed. */
  async function fakeSmi(body = ""): Promise<string> {
    const file = join(dir, `fake-smi-${Math.random().toString(36).slice(2)}.mjs`);
    await writeFile(
      file,
      `#!${process.execPath}
const args = process.argv.slice(2);
${body}
const query = args.find((a) => a.startsWith("--query-gpu="));
if (!query || query.includes("clocks_event_reasons")) {
  process.stderr.write('Field "clocks_event_reasons.active" is not a valid field to query.\\n');
  process.exit(2);
}
if (!args.includes("-i")) process.exit(3);
const pad = (v, n = 2) => String(v).padStart(n, "0");
const line = () => {
  const d = new Date();
  const t = d.getFullYear() + "/" + pad(d.getMonth() + 1) + "/" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
    pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  process.stdout.write(t + ", " + (1400 + Math.floor(Math.random() * 500)) + ", 1980, 650.5, 700.00, 60, 0x0000000000000004\\n");
};
line();
const loop = args.find((a) => a.startsWith("--loop-ms="));
if (loop) setInterval(line, Number(loop.split("=")[1]));
`,
    );
    await chmod(file, 0o755);
    return file;
  }

  it("samples through a stand-in nvidia-smi, falling back to the older field name", async () => {
    const command = await fakeSmi();
    const started = startTelemetry({ command, intervalMs: 100, gpu: "0000:19:00.0" });
    if (!started.ok) throw new Error(started.reason);
    const t0 = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 600));
    const samples = await started.recorder.stop();
    const t1 = Date.now();
    expect(samples.length).toBeGreaterThanOrEqual(3);
    for (const s of samples) {
      expect(s.timeMs).toBeGreaterThanOrEqual(t0 - 1000);
      expect(s.timeMs).toBeLessThanOrEqual(t1 + 1000);
      expect(s.reasons & CLOCK_REASONS.swPowerCap).not.toBe(0);
      expect(s.smClockMHz).toBeGreaterThanOrEqual(1400);
    }
    expect(await started.recorder.stop()).toBe(samples); // stopping again changes nothing
  });

  it("says why when there is no nvidia-smi or it fails, and validates its options", async () => {
    const missing = startTelemetry({ command: join(dir, "no-such-smi") });
    expect(missing).toEqual({ ok: false, reason: `${join(dir, "no-such-smi")} not found` });
    const failing = await fakeSmi('process.stderr.write("No devices were found\\n"); process.exit(6);');
    const failed = startTelemetry({ command: failing });
    expect(failed.ok).toBe(false);
    if (!failed.ok) expect(failed.reason).toBe(`${failing} exited with status 6: No devices were found`);
    expect(() => startTelemetry({ intervalMs: 50 })).toThrow(RangeError);
    expect(() => startTelemetry({ gpu: "0; rm -rf /" })).toThrow(RangeError);
  });
});
