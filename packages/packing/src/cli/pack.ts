#!/usr/bin/env node
/** trirun-pack: Hugging Face safetensors checkpoint -> TriRun checkpoint. */
import { availableParallelism } from "node:os";
import { Command, InvalidArgumentError, Option } from "commander";
import { QUANT_METHODS } from "../quantize.js";
import { DEFAULT_INCLUDE, packCheckpoint } from "../node/convert.js";
import { quietOnClosedPipe, runCli, runConversion, withOutputOptions } from "./common.js";

function parseThreads(value: string): number {
  const threads = Number(value);
  if (!/^\d+$/.test(value) || threads < 1 || threads > 1024) {
    throw new InvalidArgumentError("must be an integer from 1 to 1024");
  }
  return threads;
}

/**
 * Default thread count: for mse (~25-30 M weights/s on one core) the cores Node may use, at most 8;
 * the other quantizers run at 100-200 M weights/s on one core, where reading the file and copying
 * slices to workers cost as much as they save (measured on 2 cores: NOTES.md).
 */
function defaultThreads(method: string): number {
  return method === "mse" ? Math.min(8, availableParallelism()) : 1;
}

function parseGroupSize(value: string): 128 | -1 {
  if (value === "128") return 128;
  if (value === "-1") return -1;
  throw new InvalidArgumentError("must be 128 or -1 (one group per output column)");
}

const program = withOutputOptions(
  new Command("trirun-pack")
    .description(
      "Quantize the linear layers of a Hugging Face (Llama-style) safetensors checkpoint to 2-bit TriRun " +
        "format. INPUT is a .safetensors file, a folder, or a sharded folder; OUTPUT is a folder.",
    )
    .argument("<input>", "checkpoint file or folder")
    .argument("<output>", "output folder")
    .addOption(
      new Option(
        "-m, --method <method>",
        "round-to-nearest quantizer; bitnet: BitNet b1.58's per-tensor absmean, and packed BitNet checkpoints imported as they are",
      )
        .choices([...QUANT_METHODS])
        .default("absmean"),
    )
    .addOption(
      new Option("-g, --groupsize <g>", "scale group size along in-features: 128 or -1")
        .argParser(parseGroupSize)
        .default(128),
    )
    .option("-i, --include <glob...>", "module-name globs to pack", [...DEFAULT_INCLUDE])
    .option("-x, --exclude <glob...>", "module-name globs to leave unquantized", [])
    .addOption(
      new Option(
        "-t, --threads <n>",
        "worker threads quantizing each large layer; same output for any count (default: cores up to 8 for mse, else 1)",
      ).argParser(parseThreads),
    ),
  "trirun-pack",
  "list what would be packed; write nothing",
).action(async (input: string, output: string, opts) => {
  await runCli("trirun-pack", async () => {
    const summary = await runConversion(
      opts,
      "packed",
      (onProgress) =>
        packCheckpoint(input, output, {
          method: opts.method,
          groupsize: opts.groupsize,
          include: opts.include,
          exclude: opts.exclude,
          dryRun: opts.dryRun === true,
          overwrite: opts.force === true,
          threads: opts.threads ?? defaultThreads(opts.method),
          onProgress,
        }),
      (t) => {
        const m = t.module!;
        const pad = m.k !== m.inFeatures || m.n !== m.outFeatures ? ` padded to k=${m.k} n=${m.n}` : "";
        const verb = t.from === "bitnet" ? "import" : "pack";
        return `${verb} ${t.name} ${t.dtype} [${t.shape.join(", ")}]${pad}: ${t.bytesBefore} -> ${t.bytesAfter} bytes`;
      },
    );
    if (summary === undefined) return;
    for (const note of summary.notes) process.stderr.write(`trirun-pack: note: ${note}\n`);
    if (summary.tensorsPacked === 0)
      process.stderr.write("trirun-pack: warning: no tensor matched the include patterns\n");
  });
});

quietOnClosedPipe();
program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`trirun-pack: error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
