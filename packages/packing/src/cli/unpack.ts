#!/usr/bin/env node
/** trirun-unpack: TriRun checkpoint -> dequantized fp16 safetensors checkpoint. */
import { Command } from "commander";
import { unpackCheckpoint } from "../node/convert.js";
import { progressBar, runCli, summaryLines } from "./common.js";

const program = new Command("trirun-unpack")
  .description(
    "Write the dequantized fp16 checkpoint of a TriRun checkpoint: each <module>.B/<module>.s pair becomes " +
      "<module>.weight (padding removed); other tensors are copied.",
  )
  .argument("<input>", "TriRun checkpoint file or folder")
  .argument("<output>", "output folder")
  .option("-n, --dry-run", "list what would be written; write nothing")
  .option("-f, --force", "overwrite files in the output folder")
  .option("-q, --quiet", "no progress bar")
  .option("--json", "print the summary as JSON")
  // One line on bad usage, prefixed like our own errors.
  .configureOutput({
    outputError: (text, write) => write(`trirun-unpack: ${text.replace(/^error: /, "error: ")}`),
  })
  .action(async (input: string, output: string, opts) => {
    await runCli("trirun-unpack", async () => {
      const bar = progressBar(!opts.quiet && !opts.json);
      let summary: Awaited<ReturnType<typeof unpackCheckpoint>>;
      try {
        summary = await unpackCheckpoint(input, output, {
          dryRun: opts.dryRun === true,
          overwrite: opts.force === true,
          onProgress: bar.update,
        });
      } finally {
        bar.stop();
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        return;
      }
      for (const line of summaryLines(summary, "unpacked")) process.stdout.write(`${line}\n`);
    });
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`trirun-unpack: error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
