/**
 * GPU clocks, power and throttle reasons, sampled by `nvidia-smi` while a
 * benchmark runs. Why: from m ~ 128 on an H200 runs TriRun and cuBLAS alike at
 * its 700 W power cap, with SM clocks near 1.4 GHz instead of 1.98 (NOTES.md),
 * so a speed figure means little without the clock it ran at.
 *
 * This module parses and summarises samples (no Node APIs: `render` and the
 * results schema use it); telemetry-recorder.ts runs nvidia-smi.
 */
import { z } from "zod";
import { summarize } from "./stats.js";

/** One nvidia-smi sample. Null where the driver reports no value ("[N/A]"). */
export interface TelemetrySample {
  /** Wall-clock time of the sample, milliseconds since the epoch (the machine's local clock). */
  readonly timeMs: number;
  readonly smClockMHz: number;
  readonly maxSmClockMHz: number | null;
  readonly powerW: number | null;
  readonly powerLimitW: number | null;
  readonly temperatureC: number | null;
  /** Bit mask of clocks_event_reasons (older drivers: clocks_throttle_reasons). */
  readonly reasons: number;
}

/** The bits of nvidia-smi's clock event (throttle) reasons that say why clocks are below their maximum. */
export const CLOCK_REASONS = {
  gpuIdle: 0x1,
  applicationsClocksSetting: 0x2,
  swPowerCap: 0x4,
  hwSlowdown: 0x8,
  syncBoost: 0x10,
  swThermalSlowdown: 0x20,
  hwThermalSlowdown: 0x40,
  hwPowerBrakeSlowdown: 0x80,
} as const;
const THERMAL = CLOCK_REASONS.swThermalSlowdown | CLOCK_REASONS.hwThermalSlowdown | CLOCK_REASONS.hwSlowdown;
const POWER = CLOCK_REASONS.swPowerCap | CLOCK_REASONS.hwPowerBrakeSlowdown;

/** The query, in the order parseTelemetryCsv expects, without its last field (the clock reasons)... */
export const TELEMETRY_FIELDS = [
  "timestamp",
  "clocks.sm",
  "clocks.max.sm",
  "power.draw",
  "power.limit",
  "temperature.gpu",
] as const;
/** ...whose name changed across drivers: the newer first. */
export const TELEMETRY_REASON_FIELDS = [
  "clocks_event_reasons.active",
  "clocks_throttle_reasons.active",
] as const;

const finite = z.number().refine(Number.isFinite, "must be a finite number");
const range = z.object({ min: finite, median: finite, max: finite });

/** What the results file keeps: the run's summary and, per row, the samples taken while it was measured. */
export const telemetrySummarySchema = z.object({
  samples: z.number().int().nonnegative(),
  smClockMHz: range,
  /** The highest SM clock the GPU allows (clocks.max.sm), if reported. */
  maxSmClockMHz: finite.nullable(),
  powerW: range.nullable(),
  powerLimitW: finite.nullable(),
  maxTemperatureC: finite.nullable(),
  /** Fraction of samples with a power cap or power brake among the clock reasons. */
  powerCappedFraction: finite,
  /** Fraction of samples slowed down for temperature (software or hardware). */
  thermalFraction: finite,
  /**
   * Fraction of samples whose SM clock was below 90% of the GPU's maximum with a power or thermal
   * reason: what "measured at a limit" means (the power-cap bit alone also shows at 98% clocks).
   */
  limitedFraction: finite,
});
export type TelemetrySummary = z.infer<typeof telemetrySummarySchema>;

export const runTelemetrySchema = telemetrySummarySchema.extend({
  source: z.string(),
  intervalMs: z.number().int().positive(),
});
export type RunTelemetry = z.infer<typeof runTelemetrySchema>;

const NVIDIA_SMI_TIME = /^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/;

/** nvidia-smi's "YYYY/MM/DD HH:MM:SS.mmm" (local time) as milliseconds since the epoch, or undefined. */
export function parseNvidiaSmiTime(text: string): number | undefined {
  const match = NVIDIA_SMI_TIME.exec(text.trim());
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s, ms] = match;
  const time = new Date(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(s),
    Number((ms ?? "0").padEnd(3, "0")),
  ).getTime();
  return Number.isFinite(time) ? time : undefined;
}

function valueOrNull(text: string | undefined): number | null {
  if (text === undefined) return null;
  const value = Number.parseFloat(text);
  return Number.isFinite(value) ? value : null;
}

/**
 * Parses `--format=csv,noheader,nounits` output of the query above. Lines that
 * are not samples (a header, an error, a line cut short when the process was
 * stopped) are skipped rather than failing the run.
 */
export function parseTelemetryCsv(text: string): TelemetrySample[] {
  const samples: TelemetrySample[] = [];
  for (const line of text.split(/\r?\n/)) {
    const fields = line.split(",").map((f) => f.trim());
    if (fields.length !== TELEMETRY_FIELDS.length + 1) continue;
    const timeMs = parseNvidiaSmiTime(fields[0]);
    const smClockMHz = valueOrNull(fields[1]);
    const reasonsText = fields[6];
    if (timeMs === undefined || smClockMHz === null || !/^0x[0-9a-fA-F]+$/.test(reasonsText)) continue;
    samples.push({
      timeMs,
      smClockMHz,
      maxSmClockMHz: valueOrNull(fields[2]),
      powerW: valueOrNull(fields[3]),
      powerLimitW: valueOrNull(fields[4]),
      temperatureC: valueOrNull(fields[5]),
      reasons: Number.parseInt(reasonsText.slice(2), 16),
    });
  }
  return samples;
}

function rangeOf(values: readonly number[]): { min: number; median: number; max: number } | null {
  if (values.length === 0) return null;
  const { min, median, max } = summarize(values);
  return { min, median, max };
}

function present(values: readonly (number | null)[]): number[] {
  return values.filter((v): v is number => v !== null);
}

/**
 * Summarises the samples taken within [startMs, endMs] (all samples without a
 * window); null when there are none.
 */
export function summarizeTelemetry(
  samples: readonly TelemetrySample[],
  window?: { readonly startMs: number; readonly endMs: number },
): TelemetrySummary | null {
  const inWindow = window
    ? samples.filter((s) => s.timeMs >= window.startMs && s.timeMs <= window.endMs)
    : samples;
  const clocks = rangeOf(inWindow.map((s) => s.smClockMHz));
  if (clocks === null) return null;
  const maxClocks = present(inWindow.map((s) => s.maxSmClockMHz));
  const limits = present(inWindow.map((s) => s.powerLimitW));
  const temperatures = present(inWindow.map((s) => s.temperatureC));
  const count = (mask: number) => inWindow.filter((s) => (s.reasons & mask) !== 0).length / inWindow.length;
  const maxClock = maxClocks.length > 0 ? Math.max(...maxClocks) : null;
  const limited = inWindow.filter(
    (s) => (s.reasons & (POWER | THERMAL)) !== 0 && (maxClock === null || s.smClockMHz < 0.9 * maxClock),
  ).length;
  return {
    samples: inWindow.length,
    smClockMHz: clocks,
    maxSmClockMHz: maxClock,
    powerW: rangeOf(present(inWindow.map((s) => s.powerW))),
    powerLimitW: limits.length > 0 ? Math.min(...limits) : null,
    maxTemperatureC: temperatures.length > 0 ? Math.max(...temperatures) : null,
    powerCappedFraction: count(POWER),
    thermalFraction: count(THERMAL),
    limitedFraction: limited / inWindow.length,
  };
}

/** A measuring window: the wall-clock span in which some rows were measured. */
export interface MeasuringWindow {
  readonly startedAtMs: number;
  readonly endedAtMs: number;
}

/**
 * The summary of the samples taken inside each window; null for a window
 * shorter than the sampling interval that caught none (a nearby sample may
 * belong to another row's load, so none is borrowed).
 */
export function summarizeWindows(
  samples: readonly TelemetrySample[],
  windows: readonly MeasuringWindow[],
): (TelemetrySummary | null)[] {
  return windows.map((w) => summarizeTelemetry(samples, { startMs: w.startedAtMs, endMs: w.endedAtMs }));
}

/**
 * Markdown bullets about the GPU during a run: its clock range and power, and
 * the (set, m) points measured mostly (> half their samples) at a power or
 * thermal limit. `rows` are the results' rows with their per-row summaries.
 */
export function telemetryBullets(
  telemetry: RunTelemetry | null | undefined,
  note: string | undefined,
  rows: readonly { readonly model: string; readonly m: number; readonly gpu?: TelemetrySummary | null }[],
): string[] {
  if (!telemetry)
    return [`- GPU clocks and power: not recorded (${note ?? "no telemetry in this results file"}).`];
  const c = telemetry.smClockMHz;
  const parts = [
    `SM clock ${c.min.toFixed(0)}-${c.max.toFixed(0)} MHz, median ${c.median.toFixed(0)}` +
      (telemetry.maxSmClockMHz === null ? "" : ` (the GPU's maximum ${telemetry.maxSmClockMHz.toFixed(0)})`),
  ];
  if (telemetry.powerW) {
    parts.push(
      `power ${telemetry.powerW.min.toFixed(0)}-${telemetry.powerW.max.toFixed(0)} W` +
        (telemetry.powerLimitW === null ? "" : ` (limit ${telemetry.powerLimitW.toFixed(0)} W)`),
    );
  }
  if (telemetry.maxTemperatureC !== null) parts.push(`up to ${telemetry.maxTemperatureC.toFixed(0)} C`);
  parts.push(
    `below 90% of the maximum clock for power or temperature in ${(telemetry.limitedFraction * 100).toFixed(0)}% ` +
      `of samples (power-cap reason in ${(telemetry.powerCappedFraction * 100).toFixed(0)}%, thermal in ` +
      `${(telemetry.thermalFraction * 100).toFixed(0)}%)`,
  );
  const out = [
    `- GPU during the run (${telemetry.source}, ${telemetry.samples} samples): ${parts.join("; ")}.`,
  ];
  const limited = new Map<string, Set<number>>();
  const unsampled = rows.filter((row) => !row.gpu).length;
  for (const row of rows) {
    const gpu = row.gpu;
    if (!gpu || gpu.limitedFraction <= 0.5) continue;
    const set = limited.get(row.model) ?? new Set<number>();
    set.add(row.m);
    limited.set(row.model, set);
  }
  if (limited.size > 0) {
    const lists = [...limited].map(
      ([model, ms]) => `${model} m = ${[...ms].sort((a, b) => a - b).join(", ")}`,
    );
    out.push(
      `- Measured mostly at the GPU's power or thermal limit (SM clock below 90% of its maximum in more than ` +
        `half of the row's samples; compare such points across runs with care): ${lists.join("; ")}.`,
    );
  }
  if (unsampled > 0) {
    out.push(
      `- ${unsampled} of ${rows.length} rows took less than a sampling interval and caught no sample ` +
        `(a shorter --telemetry-interval samples them).`,
    );
  }
  return out;
}
