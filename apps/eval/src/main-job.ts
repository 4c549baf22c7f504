import type { Backend } from "@trirun/layers";

import { basename, isAbsolute, join, relative } from "node:path";
import { loadQuantizedCheckpoint, writeQuantizedCheckpoint } from "./checkpoint.js";
import { sampleSequences } from "./data/sampling.js";
import { compareModels } from "./metrics.js";
import { CpuLlamaRuntime } from "./model/cpu-runtime.js";
import { loadModel } from "./model/loaders/index.js";
import { checkCheckpointOutput, makeFolder, writeOutputFile } from "./output.js";
import {
  chooseGroupsize,
  describeCalibration,
  evaluatePair,
  prepareEvalData,
  quantizeModel,
  readCalibration,
} from "./pipeline.js";
import { type EvalReport, formatMarkdown, formatTerminal } from "./report.js";

export interface MainJobOptions {
  model: string;
  out: string;
  /** Calibration token file (u16 rows of 256); sampled from the model when absent. */
  calib?: string;
  calibSamples: number;
  sample: number;
  /** Backend of the linear layers (default: the layers' choice, CUDA when available). */
  backend?: Backend;
  quiet?: boolean;
}

const SEQ_LEN = 256;

/**
 * Paths in reports relative to the directory the user started from, so that they do not name the
 * machine: pnpm runs scripts inside the package and says where it was started in INIT_CWD
 * (`bash scripts/main.sh` from the repository root: apps/eval/out/report.md, not out/report.md).
 */
export function displayPath(path: string): string {
  const rel = relative(process.env.INIT_CWD || process.cwd(), path);
  return rel === "" ? "." : isAbsolute(rel) ? path : rel;
}

/**
 * The project's main job: GPTQ-quantize the model block by block, pack and write a TriRun checkpoint,
 * load it back through @trirun/layers and evaluate it against the unquantized model (with an RTN
 * baseline on the same grid), printing and writing the report.
 */
export async function runMainJob(o: MainJobOptions): Promise<EvalReport> {
  const levels = "int2" as const;
  const name = basename(o.model).replace(/\.[^.]+$/, "");
  // The main job rewrites its own checkpoint on every run (overwrite), but never the input model;
  // checked before the quantization.
  const checkpointOutput = { input: o.model, overwrite: true, flag: "--out" };
  const fp = await loadModel(o.model, { backend: o.backend });
  const groupsize = chooseGroupsize(fp);
  const file = join(o.out, `${name}-gptq-${levels}-g${groupsize}-trirun`);
  checkCheckpointOutput(file, checkpointOutput);
  const seqLen = Math.min(SEQ_LEN, fp.config.maxSeqLen);
  const fpRuntime = new CpuLlamaRuntime(fp);
  // The main job's calibration rows are the first min(256, positions) tokens of each row, as its
  // evaluation windows are (a file of longer rows is cut, not refused: `main` has no --calib-seq-len).
  const calib = o.calib
    ? readCalibration(o.calib, {
        seqLen: SEQ_LEN,
        vocabSize: fp.config.vocabSize,
        maxSeqLen: Number.MAX_SAFE_INTEGER,
        limit: o.calibSamples,
      }).sequences.map((row) => row.subarray(0, seqLen))
    : undefined;
  const calibration =
    calib ?? sampleSequences(fpRuntime, { count: o.calibSamples, length: seqLen, seed: 1_000_000 });
  const q = await quantizeModel(fp, {
    method: "gptq",
    groupsize,
    levels,
    calibration,
    backend: o.backend,
    quiet: o.quiet,
  });

  makeFolder(o.out, `--out ${o.out}`);
  await writeQuantizedCheckpoint(
    file,
    fp,
    q.layers,
    { method: "gptq", groupsize, levels, source: basename(o.model) },
    checkpointOutput,
  );
  const loaded = await loadQuantizedCheckpoint(file, { backend: o.backend });

  const data = prepareEvalData(fpRuntime, {
    windowLength: seqLen,
    sampleCount: o.sample,
    seed: 0,
    quiet: o.quiet,
  });
  const report = evaluatePair(fp, loaded.model, {
    modelName: basename(o.model),
    method: "gptq",
    groupsize,
    levels,
    data,
    quantizeSeconds: q.seconds,
    calibration: describeCalibration(
      o.calib ? displayPath(o.calib) : "sampled from the unquantized model",
      calibration,
    ),
    checkpoint: { path: displayPath(file), bytes: loaded.bytes },
    quiet: o.quiet,
  });

  // The in-memory quantized model and the one loaded back from disk must agree exactly.
  const roundTrip = compareModels(new CpuLlamaRuntime(q.model), new CpuLlamaRuntime(loaded.model), [
    data.windows[0],
  ]);
  report.notes.push(
    `checkpoint round trip: KL(in-memory || loaded) = ${roundTrip.quantized.klMean.toExponential(2)}, top-1 agreement ${(100 * roundTrip.quantized.top1Agreement).toFixed(1)}%`,
  );

  // RTN on the same 2-bit grid (mse scale search), for comparison with GPTQ.
  const rtn = await quantizeModel(fp, {
    method: "mse",
    groupsize,
    levels,
    calibration: [],
    backend: o.backend,
    quiet: true,
  });
  const rtnCmp = compareModels(fpRuntime, new CpuLlamaRuntime(rtn.model), data.windows);
  report.baselines = [
    {
      method: "rtn (mse)",
      perplexity: rtnCmp.quantized.perplexity,
      kl_mean: rtnCmp.quantized.klMean,
      kl_p99: rtnCmp.quantized.klP99,
      top1_agreement: rtnCmp.quantized.top1Agreement,
    },
  ];

  writeOutputFile(join(o.out, "report.json"), `${JSON.stringify(report, null, 2)}\n`, "--out");
  writeOutputFile(join(o.out, "report.md"), formatMarkdown(report), "--out");
  process.stdout.write(`${formatTerminal(report)}\n`);
  process.stdout.write(
    `reports: ${displayPath(join(o.out, "report.md"))}, ${displayPath(join(o.out, "report.json"))}\n`,
  );
  return report;
}
