#!/usr/bin/env node
/** trirun-unpack: TriRun checkpoint -> dequantized fp16 safetensors checkpoint. */
import { Command } from "commander";
import { unpackCheckpoint } from "../node/convert.js";
import { quietOnClosedPipe, runCli, runConversion, withOutputOptions } from "./common.js";

const program = withOutputOptions(
  new Command("trirun-unpack")
    .description(
      "Write the dequantized fp16 checkpoint of a TriRun checkpoint: each <module>.B/<module>.s pair becomes " +
        "<module>.weight (padding removed); other tensors are copied.",
    )
    .argument("<input>", "TriRun checkpoint file or folder")
    .argument("<output>", "output folder"),
  "trirun-unpack",
  "list what would be written; write nothing",
).action(async (input: string, output: string, opts) => {
  await runCli("trirun-unpack", async () => {
    await runConversion(
      opts,
      "unpacked",
      (onProgress) =>
        unpackCheckpoint(input, output, {
          dryRun: opts.dryRun === true,
          overwrite: opts.force === true,
          onProgress,
        }),
      (t) => {
        const m = t.module!;
        return `unpack ${m.module}.B/.s -> ${m.module}.weight F16 [${t.shape.join(", ")}]: ${t.bytesBefore} -> ${t.bytesAfter} bytes`;
      },
    );
  });
});

quietOnClosedPipe();
program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`trirun-unpack: error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
