/**
 * Runs `nvidia-smi` in the background while a benchmark measures, and returns
 * its samples (telemetry.ts parses and summarises them).
 *
 * nvidia-smi writes its samples straight into a file (no pipe: the measuring
 * loop is synchronous and would not drain one), each with its own timestamp;
 * rows are matched to samples by wall-clock windows afterwards.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  parseTelemetryCsv,
  TELEMETRY_FIELDS,
  TELEMETRY_REASON_FIELDS,
  type TelemetrySample,
} from "./telemetry.js";

export interface TelemetryOptions {
  /** The GPU, as nvidia-smi's -i takes it: its PCI bus id (best: CUDA may number GPUs differently) or index. Default "0". */
  readonly gpu?: string;
  /** Sampling interval. Default 200 ms. */
  readonly intervalMs?: number;
  /** The nvidia-smi executable. Default "nvidia-smi" (looked up on PATH). */
  readonly command?: string;
}

/** A running nvidia-smi; `stop` ends it and returns what it sampled. */
export interface TelemetryRecorder {
  readonly source: string;
  readonly intervalMs: number;
  stop(): Promise<TelemetrySample[]>;
}

export type TelemetryStart =
  | { readonly ok: true; readonly recorder: TelemetryRecorder }
  | { readonly ok: false; readonly reason: string };

function firstLine(text: string): string {
  return text.trim().split(/\r?\n/)[0] ?? "";
}

/**
 * Starts sampling. Never throws for a machine without nvidia-smi or with a
 * driver that rejects the query: the result says why there is no telemetry.
 */
export function startTelemetry(options: TelemetryOptions = {}): TelemetryStart {
  const command = options.command ?? "nvidia-smi";
  const intervalMs = options.intervalMs ?? 200;
  const gpu = options.gpu ?? "0";
  if (!Number.isInteger(intervalMs) || intervalMs < 100) {
    throw new RangeError(`startTelemetry: intervalMs must be an integer >= 100, got ${String(intervalMs)}`);
  }
  if (!/^[0-9A-Za-z:.-]+$/.test(gpu)) {
    throw new RangeError(`startTelemetry: gpu must be an index or a PCI bus id, got ${JSON.stringify(gpu)}`);
  }
  // One sample first: it finds the field name this driver knows and fails fast without a driver.
  let query: string | undefined;
  let reason = "";
  for (const reasonField of TELEMETRY_REASON_FIELDS) {
    const candidate = [...TELEMETRY_FIELDS, reasonField].join(",");
    const probe = spawnSync(
      command,
      [`--query-gpu=${candidate}`, "--format=csv,noheader,nounits", "-i", gpu],
      { encoding: "utf8", timeout: 10_000 },
    );
    if (probe.error) {
      const code = (probe.error as NodeJS.ErrnoException).code;
      return {
        ok: false,
        reason: code === "ENOENT" ? `${command} not found` : `${command}: ${probe.error.message}`,
      };
    }
    if (probe.status === 0 && parseTelemetryCsv(probe.stdout).length > 0) {
      query = candidate;
      break;
    }
    reason = `${command} exited with status ${String(probe.status)}: ${firstLine(probe.stderr || probe.stdout)}`;
  }
  if (query === undefined) return { ok: false, reason };

  const dir = mkdtempSync(join(tmpdir(), "trirun-bench-telemetry-"));
  const file = join(dir, "samples.csv");
  const fd = openSync(file, "w");
  let child: ChildProcess;
  try {
    child = spawn(
      command,
      [`--query-gpu=${query}`, "--format=csv,noheader,nounits", "-i", gpu, `--loop-ms=${intervalMs}`],
      { stdio: ["ignore", fd, "ignore"] },
    );
  } catch (error) {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
    return { ok: false, reason: `${command}: ${error instanceof Error ? error.message : String(error)}` };
  }
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  // Never leave a looping nvidia-smi behind, even if the caller never stops it.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  let stopped: Promise<TelemetrySample[]> | undefined;
  const stop = async (): Promise<TelemetrySample[]> => {
    process.removeListener("exit", killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
      closeSync(fd);
    }
    try {
      return parseTelemetryCsv(readFileSync(file, "utf8"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return {
    ok: true,
    recorder: {
      source: `${command} --query-gpu (every ${intervalMs} ms)`,
      intervalMs,
      stop: () => {
        stopped ??= stop();
        return stopped;
      },
    },
  };
}
