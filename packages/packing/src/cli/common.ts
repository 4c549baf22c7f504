/** Shared pieces of the trirun-pack / trirun-unpack command lines. */
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import type { ConvertProgress, ConvertSummary, PlannedTensor } from "../node/convert.js";

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 2)} ${units[unit]}`;
}

/** A progress bar on stderr when it is a terminal (nothing otherwise), fed by convert's callback. */
export function progressBar(enabled: boolean): { update: (p: ConvertProgress) => void; stop: () => void } {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    format: "{bar} {value}/{total} tensors | {action} {tensor}",
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = false;
  return {
    update: (p) => {
      if (!started) {
        bar.start(p.total, 0, { tensor: "", action: "" });
        started = true;
      }
      bar.update(p.done, { tensor: p.tensor, action: p.action });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

export function summaryLines(summary: ConvertSummary, verb: string): string[] {
  const ratio = summary.bytesAfter > 0 ? summary.bytesBefore / summary.bytesAfter : 0;
  const imported = summary.tensors.filter((t) => t.from === "bitnet").length;
  const lines = [
    `${summary.dryRun ? "would have " : ""}${verb} ${summary.tensorsPacked} tensors${imported > 0 ? ` (${imported} imported from packed BitNet weights)` : ""}, kept ${summary.tensorsKept}; tensor bytes ${formatBytes(summary.bytesBefore)} -> ${formatBytes(summary.bytesAfter)} (${ratio.toFixed(2)}x)`,
  ];
  if (!summary.dryRun) {
    const rate = summary.seconds > 0 ? summary.weights / summary.seconds / 1e6 : 0;
    lines.push(
      `${(summary.weights / 1e6).toFixed(2)} M weights in ${summary.seconds.toFixed(2)} s (${rate.toFixed(1)} M weights/s overall)`,
    );
    lines.push(`wrote ${summary.files.join(", ")}`);
  }
  return lines;
}

/**
 * A reader that stops early (`trirun-pack ... --dry-run | head`) closes the pipe: stop writing
 * quietly instead of failing with an unhandled EPIPE error.
 */
export function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
}

/** Runs a CLI body: any error becomes one line on stderr and exit status 1. */
export async function runCli(name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${name}: error: ${message.split("\n")[0]}\n`);
    process.exitCode = 1;
  }
}

/**
 * The options both commands share (--dry-run, --force, --quiet, --json) and their one-line usage
 * errors, prefixed like the commands' own errors.
 */
export function withOutputOptions(cmd: Command, name: string, dryRunHelp: string): Command {
  return cmd
    .option("-n, --dry-run", dryRunHelp)
    .option(
      "-f, --force",
      "replace what the output folder holds: the files this run writes, and any other checkpoint there (its .safetensors files and shard index)",
    )
    .option("-q, --quiet", "no progress bar")
    .option("--json", "print the summary as JSON")
    .configureOutput({
      outputError: (text, write) => write(`${name}: ${text.replace(/^error: /, "error: ")}`),
    });
}

/** What both commands' actions share: the options that matter to printing the result. */
export interface ConversionOutput {
  quiet?: boolean;
  json?: boolean;
}

/**
 * Runs a conversion with a progress bar, then prints its summary: JSON with --json, else (on a dry
 * run, one line per module: `describe`) the summary lines. Returns the summary for what follows.
 */
export async function runConversion(
  opts: ConversionOutput,
  verb: string,
  convert: (onProgress: (p: ConvertProgress) => void) => Promise<ConvertSummary>,
  describe: (t: PlannedTensor) => string,
): Promise<ConvertSummary | undefined> {
  const bar = progressBar(!opts.quiet && !opts.json);
  let summary: ConvertSummary;
  try {
    summary = await convert(bar.update);
  } finally {
    bar.stop();
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return undefined;
  }
  if (summary.dryRun) {
    for (const t of summary.tensors) if (t.action === "pack") process.stdout.write(`${describe(t)}\n`);
  }
  for (const line of summaryLines(summary, verb)) process.stdout.write(`${line}\n`);
  return summary;
}
