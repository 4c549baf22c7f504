/**
 * Whole-checkpoint conversion, one tensor in memory at a time: Hugging Face safetensors (file,
 * folder or shards) -> TriRun checkpoint (`pack`), and TriRun -> dequantized fp16 (`unpack`).
 * Output shards mirror the input shards; config.json gets (or loses) a quantization_config.
 */
import { copyFile, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import picomatch from "picomatch";
import {
  dequantizeLayer,
  encodeTriRunMetadata,
  type GroupSize,
  METADATA_KEYS,
  packBitNetLinear,
  packLinear,
  paddedDims,
  quantizationConfig,
  scaleRows,
  TriRunCheckpoint,
  type TriRunModuleInfo,
  tensorNamesOf,
} from "../checkpoint.js";
import { BITNET_VALUES_PER_BYTE, type BitNetQuantization, bitNetQuantization } from "../bitnet.js";
import { CheckpointError } from "../errors.js";
import { bf16BitsToNumber, f16BitsToNumber } from "../fp16.js";
import {
  type FloatDType,
  type PackedWeights,
  QUANT_METHODS,
  type QuantMethod,
  type WeightMatrix,
} from "../quantize.js";
import {
  buildShardIndex,
  bytesToTensorData,
  type SafetensorsDType,
  type TensorData,
  type SafetensorsCheckpoint,
  type SafetensorsReader,
  SAFETENSORS_DTYPES,
  type TensorSpec,
  elementCount,
} from "../safetensors.js";
import { locateCheckpoint, openCheckpoint, SafetensorsFileWriter, SHARD_INDEX_FILE } from "./files.js";
import { PackPool, PARALLEL_MIN_WEIGHTS } from "./pack-pool.js";
import { readConfig } from "./trirun.js";

/** Modules packed by default: attention q/k/v/o and MLP gate/up/down projections (Llama naming). */
export const DEFAULT_INCLUDE: readonly string[] = ["*.self_attn.{q,k,v,o}_proj", "*.mlp.{gate,up,down}_proj"];

const QUANTIZABLE: ReadonlySet<string> = new Set<FloatDType>(["F16", "BF16", "F32", "F64"]);

export interface ConvertProgress {
  /** Tensors handled so far (including this one) and in total. */
  done: number;
  total: number;
  tensor: string;
  action: "pack" | "copy" | "unpack" | "drop";
}

export interface PackCheckpointOptions {
  /**
   * The quantizer. "bitnet" also imports the packed U8 layers of a BitNet b1.58 checkpoint as
   * they are (config.json's `quantization_config` says how their `weight_scale` applies).
   */
  method: QuantMethod;
  groupsize: GroupSize;
  /**
   * Globs over module names (`<module>.weight` minus `.weight`); default {@link DEFAULT_INCLUDE}.
   * One glob may be given as a string.
   */
  include?: string | readonly string[];
  exclude?: string | readonly string[];
  /** Plan only: nothing is read beyond headers, nothing written. */
  dryRun?: boolean;
  /**
   * Replace what is already in the output folder: the files this conversion writes, and any other
   * checkpoint there (its `.safetensors` files and shard index), so that no stale shard is read
   * with the new ones. Without it, a conversion that would replace a file fails before writing.
   */
  overwrite?: boolean;
  /**
   * Worker threads that quantize each large layer in parallel (default 1: the calling thread).
   * The output is the same bytes for any count.
   */
  threads?: number;
  onProgress?: (progress: ConvertProgress) => void;
}

export interface PlannedTensor {
  /** Input tensor name. */
  name: string;
  action: "pack" | "copy";
  dtype: string;
  shape: readonly number[];
  bytesBefore: number;
  bytesAfter: number;
  /** For packed tensors: the module's shapes. */
  module?: TriRunModuleInfo;
  /** "bitnet": imported from packed BitNet b1.58 weights (with `<module>.weight_scale`), not quantized. */
  from?: "bitnet";
}

export interface ConvertSummary {
  input: string;
  output: string;
  dryRun: boolean;
  tensors: PlannedTensor[];
  tensorsPacked: number;
  tensorsKept: number;
  /** Tensor data bytes before and after (headers excluded). */
  bytesBefore: number;
  bytesAfter: number;
  /** Weights quantized and packed, and seconds spent (0 for a dry run). */
  weights: number;
  seconds: number;
  /** Files written (empty for a dry run). */
  files: string[];
  /** Advice about the input, e.g. a BitNet checkpoint converted with another method. */
  notes: string[];
}

interface ShardPlan {
  reader: SafetensorsReader;
  outName: string;
  tensors: PlannedTensor[];
}

function moduleMatcher(include: readonly string[], exclude: readonly string[]): (module: string) => boolean {
  const inc = picomatch([...include], { dot: true });
  const exc = exclude.length > 0 ? picomatch([...exclude], { dot: true }) : () => false;
  return (module) => inc(module) && !exc(module);
}

/** A glob option as a list: one string is one glob (not its characters). */
function globList(value: unknown, option: string, fallback: readonly string[]): readonly string[] {
  if (value === undefined) return fallback;
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list) || list.some((g) => typeof g !== "string" || g.length === 0)) {
    throw new TypeError(
      `options.${option} must be a glob or an array of non-empty globs, got ${JSON.stringify(value)}`,
    );
  }
  return list as readonly string[];
}

/** Pack options checked and normalised before anything is read or written. */
function checkPackOptions(options: PackCheckpointOptions): {
  include: readonly string[];
  exclude: readonly string[];
  threads: number;
} {
  if (!QUANT_METHODS.includes(options.method)) {
    throw new TypeError(
      `options.method must be one of ${QUANT_METHODS.join(", ")}, got ${JSON.stringify(options.method)}`,
    );
  }
  if (options.groupsize !== 128 && options.groupsize !== -1) {
    throw new TypeError(
      `options.groupsize must be 128 or -1 (one group per output column), got ${JSON.stringify(options.groupsize)}`,
    );
  }
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new RangeError(`options.threads must be an integer from 1 to 1024, got ${String(options.threads)}`);
  }
  return {
    include: globList(options.include, "include", DEFAULT_INCLUDE),
    exclude: globList(options.exclude, "exclude", []),
    threads,
  };
}

/** An input that is already a TriRun checkpoint would lose its modules: refuse it. */
function refuseTriRunInput(ckpt: SafetensorsCheckpoint): void {
  for (const reader of ckpt.shards) {
    if (reader.metadata[METADATA_KEYS.format] !== undefined) {
      throw new CheckpointError(
        "ERR_TRIRUN_BAD_METADATA",
        reader.file,
        "is already a TriRun checkpoint (trirun-unpack / unpackCheckpoint turns it back into fp16 weights)",
      );
    }
  }
}

const WEIGHT_SCALE_SUFFIX = ".weight_scale";

/**
 * The packed BitNet layers among the selected modules (U8 weights). Without method "bitnet", or
 * without a BitNet config saying how `weight_scale` applies, they are an error rather than copied.
 */
function bitNetPackedModules(
  ckpt: SafetensorsCheckpoint,
  options: PackCheckpointOptions,
  selected: (module: string) => boolean,
  bitnet: BitNetQuantization | undefined,
  configPath: string,
): Set<string> {
  const modules = new Set<string>();
  for (const reader of ckpt.shards) {
    for (const t of reader.header.tensors) {
      if (!t.name.endsWith(".weight") || t.dtype !== "U8") continue;
      const module = t.name.slice(0, -".weight".length);
      if (!selected(module)) continue;
      const fail = (message: string) =>
        new CheckpointError("ERR_TRIRUN_BAD_LAYER", reader.file, message, t.name);
      if (options.method !== "bitnet") {
        throw fail(
          bitnet === undefined
            ? `is U8, not a float weight; ${options.method} quantizes F16/BF16/F32/F64 weights (exclude the module to copy it)`
            : `holds packed BitNet b1.58 weights; import them with method "bitnet" (--method bitnet)`,
        );
      }
      if (bitnet === undefined || bitnet.mode !== "offline") {
        throw fail(
          `looks like packed BitNet weights, but ${configPath} has no offline BitNet quantization_config ` +
            `(quant_method "bitnet", quantization_mode "offline") saying how weight_scale applies`,
        );
      }
      if (t.shape.length !== 2 || elementCount(t.shape) === 0)
        throw fail(
          `a packed BitNet weight must be a non-empty (out/4, in) matrix, got [${t.shape.join(", ")}]`,
        );
      const scaleName = module + WEIGHT_SCALE_SUFFIX;
      if (!ckpt.has(scaleName)) throw fail(`packed BitNet weight without its tensor "${scaleName}"`);
      const scale = ckpt.info(scaleName);
      if (!QUANTIZABLE.has(scale.dtype) || elementCount(scale.shape) !== 1) {
        throw new CheckpointError(
          "ERR_TRIRUN_BAD_LAYER",
          ckpt.shardOf(scaleName).file,
          `must be one float value (per-tensor scale), got ${scale.dtype} [${scale.shape.join(", ")}]`,
          scaleName,
        );
      }
      modules.add(module);
    }
  }
  return modules;
}

function planShards(
  ckpt: SafetensorsCheckpoint,
  options: PackCheckpointOptions,
  globs: { include: readonly string[]; exclude: readonly string[] },
  singleName: string,
  bitnet: BitNetQuantization | undefined,
  configPath: string,
): ShardPlan[] {
  const selected = moduleMatcher(globs.include, globs.exclude);
  const bitNetPacked = bitNetPackedModules(ckpt, options, selected, bitnet, configPath);
  return ckpt.shards.map((reader) => ({
    reader,
    outName: ckpt.shards.length === 1 && ckpt.index === undefined ? singleName : basename(reader.file),
    tensors: reader.header.tensors.flatMap((t): PlannedTensor[] => {
      // An imported layer's weight_scale is folded into its TriRun scales.
      if (
        t.name.endsWith(WEIGHT_SCALE_SUFFIX) &&
        bitNetPacked.has(t.name.slice(0, -WEIGHT_SCALE_SUFFIX.length))
      )
        return [];
      const module = t.name.endsWith(".weight") ? t.name.slice(0, -".weight".length) : undefined;
      const packedBitNet = module !== undefined && bitNetPacked.has(module);
      if (
        module !== undefined &&
        !packedBitNet &&
        t.shape.length === 2 &&
        !QUANTIZABLE.has(t.dtype) &&
        selected(module)
      ) {
        // Copying it would leave a selected layer unquantized without a word.
        throw new CheckpointError(
          "ERR_TRIRUN_BAD_LAYER",
          reader.file,
          `is ${t.dtype}, not a weight type the quantizers read (F16/BF16/F32/F64); exclude the module to copy it as it is`,
          t.name,
        );
      }
      if (
        module !== undefined &&
        (packedBitNet ||
          (t.shape.length === 2 && QUANTIZABLE.has(t.dtype) && selected(module) && elementCount(t.shape) > 0))
      ) {
        const [rows, inFeatures] = t.shape as [number, number];
        const outFeatures = packedBitNet ? BITNET_VALUES_PER_BYTE * rows : rows;
        const { k, n } = paddedDims(inFeatures, outFeatures);
        const info: TriRunModuleInfo = {
          module,
          inFeatures,
          outFeatures,
          k,
          n,
          groupsize: options.groupsize,
        };
        const bytesAfter = (k / 16) * n * 4 + scaleRows(info) * n * 2;
        const bytesBefore =
          t.byteLength + (packedBitNet ? ckpt.info(module + WEIGHT_SCALE_SUFFIX).byteLength : 0);
        const planned: PlannedTensor = {
          name: t.name,
          action: "pack",
          dtype: t.dtype,
          shape: t.shape,
          bytesBefore,
          bytesAfter,
          module: info,
        };
        if (packedBitNet) planned.from = "bitnet";
        return [planned];
      }
      return [
        {
          name: t.name,
          action: "copy",
          dtype: t.dtype,
          shape: t.shape,
          bytesBefore: t.byteLength,
          bytesAfter: t.byteLength,
        },
      ];
    }),
  }));
}

/** The one value of a layer's `weight_scale` tensor. */
async function readWeightScale(ckpt: SafetensorsCheckpoint, name: string): Promise<number> {
  const t = await ckpt.readTensor(name);
  const v = t.data[0] as number;
  if (t.dtype === "F16") return f16BitsToNumber(v);
  if (t.dtype === "BF16") return bf16BitsToNumber(v);
  return v;
}

function outputSpecs(plan: ShardPlan): TensorSpec[] {
  return plan.tensors.flatMap((t): TensorSpec[] => {
    if (t.action === "copy") return [{ name: t.name, dtype: t.dtype as TensorSpec["dtype"], shape: t.shape }];
    const m = t.module!;
    const names = tensorNamesOf(m.module);
    return [
      { name: names.B, dtype: "I32", shape: [m.k / 16, m.n] },
      { name: names.s, dtype: "F16", shape: [scaleRows(m), m.n] },
    ];
  });
}

/** Suffix of the files a conversion writes before they all exist (see StagedOutput). */
const STAGING = ".incoming";

/**
 * The output folder of a conversion. Every file goes first under a staging name (`<name>.incoming`)
 * and moves into place only once all are written (`commit`), which then also removes the other
 * checkpoint's files that `overwrite` replaces: a failure leaves the folder as it was (a folder the
 * conversion created goes again), never a mix of old and new shards or no checkpoint at all.
 */
class StagedOutput {
  readonly #staged: string[] = [];

  constructor(
    readonly dir: string,
    readonly created: boolean,
    /** Another checkpoint's files (shards, index) that this one replaces (overwrite). */
    readonly replaced: readonly string[],
  ) {}

  /** Where to write `name` for now. */
  stage(name: string): string {
    this.#staged.push(name);
    return join(this.dir, name + STAGING);
  }

  /** Moves every staged file into place, then removes the replaced checkpoint's other files. */
  async commit(): Promise<string[]> {
    for (const name of this.#staged) await rename(join(this.dir, name + STAGING), join(this.dir, name));
    for (const name of this.replaced) {
      if (!this.#staged.includes(name)) await rm(join(this.dir, name), { force: true });
    }
    return this.#staged.map((name) => join(this.dir, name));
  }

  /** Undoes what was staged (the folder goes if this conversion created it). */
  async abort(): Promise<void> {
    if (this.created) await rm(this.dir, { recursive: true, force: true });
    else for (const name of this.#staged) await rm(join(this.dir, name + STAGING), { force: true });
  }

  /** Runs the writing part: committed when it succeeds, undone when it fails. */
  async run(body: () => Promise<void>): Promise<string[]> {
    try {
      await body();
      return await this.commit();
    } catch (err) {
      await this.abort().catch(() => undefined);
      throw err;
    }
  }
}

async function prepareOutput(
  input: string,
  output: string,
  names: readonly string[],
  overwrite: boolean,
): Promise<StagedOutput> {
  if (resolve(input) === resolve(output)) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_IO",
      output,
      "output folder must differ from the input folder",
    );
  }
  const existing = await stat(output).then(
    (info) => info,
    () => undefined,
  );
  if (existing !== undefined && !existing.isDirectory()) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_IO",
      output,
      "the output must be a folder, and this is a file",
    );
  }
  if (existing === undefined) {
    try {
      await mkdir(output, { recursive: true });
    } catch (cause) {
      const reason = (cause as NodeJS.ErrnoException).code ?? String(cause);
      throw new CheckpointError(
        "ERR_SAFETENSORS_IO",
        output,
        `creating the output folder failed (${reason})`,
        undefined,
        {
          cause,
        },
      );
    }
    return new StagedOutput(output, true, []);
  }
  const entries = await readdir(output);
  if (!overwrite) {
    const taken = names.filter((name) => entries.includes(name));
    if (taken.length > 0)
      throw new CheckpointError(
        "ERR_SAFETENSORS_IO",
        join(output, taken[0]),
        `already exists${taken.length > 1 ? ` (and ${taken.length - 1} more file(s) this conversion writes)` : ""}; use overwrite / --force to replace`,
      );
    // Another checkpoint's shards beside ours would be read with them (an index wins, else every
    // *.safetensors file): refuse rather than write a mixed folder.
    const stale = entries.filter((e) => e === SHARD_INDEX_FILE || e.endsWith(".safetensors"));
    if (stale.length > 0)
      throw new CheckpointError(
        "ERR_SAFETENSORS_IO",
        join(output, stale[0]),
        "another checkpoint is in the output folder; use an empty folder, or overwrite / --force to replace it",
      );
    return new StagedOutput(output, false, []);
  }
  // Replace: the other checkpoint's files go once ours are in place (commit), so that no stale shard
  // or index is read with ours.
  return new StagedOutput(
    output,
    false,
    entries.filter((e) => e === SHARD_INDEX_FILE || e.endsWith(".safetensors")),
  );
}

/** Side files (tokenizer, generation config...) that `copySideFiles` would copy. */
async function sideFiles(inputDir: string, skip: (name: string) => boolean): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(inputDir, { withFileTypes: true })) {
    if (
      !entry.isFile() ||
      skip(entry.name) ||
      entry.name.endsWith(".safetensors") ||
      entry.name.endsWith(".partial") ||
      entry.name.endsWith(STAGING)
    )
      continue;
    names.push(entry.name);
  }
  return names;
}

/** Copies the checkpoint folder's side files (tokenizer, generation config...) except those rewritten. */
async function copySideFiles(
  inputDir: string,
  output: StagedOutput,
  names: readonly string[],
): Promise<void> {
  for (const name of names) await copyFile(join(inputDir, name), output.stage(name));
}

/**
 * The staged output folder of a conversion that writes `shards` (and the shard index when `sharded`),
 * config.json when the input has one, and the input folder's side files when `copySides`; returns the
 * side files to copy with it.
 */
async function openOutput(
  inputDir: string,
  output: string,
  shards: { sharded: boolean; names: readonly string[] },
  hasConfig: boolean,
  copySides: boolean,
  overwrite: boolean,
): Promise<{ staged: StagedOutput; side: string[] }> {
  const side = copySides
    ? await sideFiles(inputDir, (n) => n === "config.json" || n === SHARD_INDEX_FILE)
    : [];
  const names = [
    ...shards.names,
    ...(shards.sharded ? [SHARD_INDEX_FILE] : []),
    ...(hasConfig ? ["config.json"] : []),
    ...side,
  ];
  return { staged: await prepareOutput(inputDir, output, names, overwrite), side };
}

/** Errors of one tensor's conversion (quantizer ranges, worker failures) name the file it came from. */
function inFile(file: string, err: unknown): unknown {
  if (err instanceof CheckpointError || !(err instanceof Error)) return err;
  return new CheckpointError("ERR_TRIRUN_BAD_LAYER", file, err.message, undefined, { cause: err });
}

/** A conversion's summary before any writing: what is planned, with its byte and weight counts. */
function plannedSummary(
  input: string,
  output: string,
  dryRun: boolean,
  tensors: PlannedTensor[],
  modules: readonly TriRunModuleInfo[],
): ConvertSummary {
  return {
    input,
    output,
    dryRun,
    tensors,
    tensorsPacked: modules.length,
    tensorsKept: tensors.length - modules.length,
    bytesBefore: tensors.reduce((a, t) => a + t.bytesBefore, 0),
    bytesAfter: tensors.reduce((a, t) => a + t.bytesAfter, 0),
    weights: modules.reduce((a, m) => a + m.inFeatures * m.outFeatures, 0),
    seconds: 0,
    files: [],
    notes: [],
  };
}

/** Tensors to write for one input tensor, in order. */
type Outputs = [name: string, data: TensorData | Uint8Array][];

/** Attaches a no-op handler so that a promise awaited later is not reported as unhandled meanwhile. */
function later<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/**
 * Writes one output shard. Pipelined with at most two input tensors in memory: the next tensor's
 * bytes are read (by the thread pool) while the current one is converted, and its outputs are
 * written while the next one is converted.
 */
async function writeShard(
  path: string,
  plan: ShardPlan,
  specs: TensorSpec[],
  metadata: Record<string, string>,
  produce: (t: PlannedTensor, bytes: Uint8Array) => Promise<Outputs> | Outputs,
): Promise<string> {
  const writer = await SafetensorsFileWriter.create(path, specs, metadata);
  const read = (i: number) => later(plan.reader.readBytes(plan.tensors[i].name));
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    let nextRead = plan.tensors.length > 0 ? read(0) : undefined;
    for (let i = 0; i < plan.tensors.length; i++) {
      const bytes = await nextRead!;
      nextRead = i + 1 < plan.tensors.length ? read(i + 1) : undefined;
      const outputs = await produce(plan.tensors[i], bytes);
      await pendingWrite;
      pendingWrite = later(
        (async () => {
          for (const [name, data] of outputs) await writer.write(name, data);
        })(),
      );
    }
    await pendingWrite;
    await writer.close();
  } catch (err) {
    await pendingWrite.catch(() => undefined);
    await writer.abort();
    throw err;
  }
  return path;
}

/**
 * Converts a Hugging Face checkpoint (a `.safetensors` file, a folder, or a sharded folder) into a
 * TriRun checkpoint in `output` (a folder), one tensor at a time.
 */
export async function packCheckpoint(
  input: string,
  output: string,
  options: PackCheckpointOptions,
): Promise<ConvertSummary> {
  const started = performance.now();
  const { include, exclude, threads } = checkPackOptions(options);
  const location = await locateCheckpoint(input);
  const config = await readConfig(location.dir);
  const configPath = join(location.dir, "config.json");
  let bitnet: BitNetQuantization | undefined;
  try {
    bitnet = bitNetQuantization(config);
  } catch (err) {
    throw new CheckpointError("ERR_TRIRUN_BAD_METADATA", configPath, (err as Error).message);
  }
  const ckpt = await openCheckpoint(input);
  let pool: PackPool | undefined;
  try {
    refuseTriRunInput(ckpt);
    const plans = planShards(ckpt, options, { include, exclude }, "model.safetensors", bitnet, configPath);
    const all = plans.flatMap((p) => p.tensors);
    const modules = all.flatMap((t) => (t.module ? [t.module] : []));
    const summary = plannedSummary(input, output, options.dryRun === true, all, modules);
    if (bitnet !== undefined && options.method !== "bitnet" && modules.length > 0) {
      summary.notes.push(
        `this is a BitNet b1.58 checkpoint (quantization_mode "${bitnet.mode}"); method "bitnet" applies the model's own quantization (one absmean scale per tensor)`,
      );
    }
    if (options.dryRun) return summary;

    const sharded = ckpt.index !== undefined;
    const { staged, side } = await openOutput(
      location.dir,
      output,
      { sharded, names: plans.map((p) => p.outName) },
      config !== undefined,
      location.files.length === 0 || (await stat(input)).isDirectory(),
      options.overwrite === true,
    );
    summary.files = await staged.run(async () => {
      const meta = { groupsize: options.groupsize, method: options.method, modules };
      const trirunMetadata = encodeTriRunMetadata(meta);
      let done = 0;
      const weightMap = new Map<string, string>();
      for (const plan of plans) {
        const specs = outputSpecs(plan);
        for (const s of specs) weightMap.set(s.name, plan.outName);
        const metadata = { ...plan.reader.metadata, ...trirunMetadata };
        await writeShard(
          staged.stage(plan.outName),
          plan,
          specs,
          metadata,
          async (t, bytes): Promise<Outputs> => {
            options.onProgress?.({ done: ++done, total: all.length, tensor: t.name, action: t.action });
            if (t.action === "copy") return [[t.name, bytes]];
            const m = t.module!;
            const names = tensorNamesOf(m.module);
            if (t.from === "bitnet") {
              const source = {
                packed: bytes,
                rows: t.shape[0],
                inFeatures: m.inFeatures,
                weightScale: await readWeightScale(ckpt, m.module + WEIGHT_SCALE_SUFFIX),
                linearClass: bitnet!.linearClass,
              };
              let layer: ReturnType<typeof packBitNetLinear>;
              try {
                layer = packBitNetLinear(m.module, source, options.groupsize);
              } catch (err) {
                throw inFile(plan.reader.file, err);
              }
              return [
                [names.B, layer.B],
                [names.s, layer.s],
              ];
            }
            const weight = {
              data: bytesToTensorData(t.dtype as SafetensorsDType, bytes),
              dtype: t.dtype,
              outFeatures: m.outFeatures,
              inFeatures: m.inFeatures,
            } as WeightMatrix;
            const quant = { method: options.method, groupsize: options.groupsize };
            // Padded layers (rare: dimensions off the kernel's multiples) stay on this thread, and so
            // does "bitnet" (one scale per tensor; the workers see column ranges). The workers start
            // with the first layer large enough for them (none for a small model).
            const parallel =
              threads > 1 &&
              options.method !== "bitnet" &&
              m.k === m.inFeatures &&
              m.n === m.outFeatures &&
              m.inFeatures * m.outFeatures >= PARALLEL_MIN_WEIGHTS;
            if (parallel) pool ??= PackPool.create(threads);
            let layer: Pick<PackedWeights, "B" | "s">;
            try {
              layer =
                parallel && pool !== undefined
                  ? await pool.pack(weight, { ...quant, name: t.name })
                  : packLinear(m.module, weight, quant);
            } catch (err) {
              throw inFile(plan.reader.file, err);
            }
            return [
              [names.B, layer.B],
              [names.s, layer.s],
            ];
          },
        );
      }
      if (sharded) {
        const total = plans.reduce((a, p) => a + p.tensors.reduce((b, t) => b + t.bytesAfter, 0), 0);
        await writeFile(staged.stage(SHARD_INDEX_FILE), buildShardIndex(weightMap, total));
      }
      if (config !== undefined) {
        await writeFile(
          staged.stage("config.json"),
          `${JSON.stringify({ ...config, quantization_config: quantizationConfig(meta) }, null, 2)}\n`,
        );
      }
      await copySideFiles(location.dir, staged, side);
    });
    summary.seconds = (performance.now() - started) / 1000;
    return summary;
  } finally {
    await pool?.close();
    await ckpt.close();
  }
}

export interface UnpackCheckpointOptions {
  overwrite?: boolean;
  dryRun?: boolean;
  onProgress?: (progress: ConvertProgress) => void;
}

/**
 * Writes the dequantized fp16 checkpoint of a TriRun checkpoint: each `<module>.B`/`.s` pair
 * becomes `<module>.weight` (F16, `(out, in)`, padding removed), everything else is copied.
 */
export async function unpackCheckpoint(
  input: string,
  output: string,
  options: UnpackCheckpointOptions = {},
): Promise<ConvertSummary> {
  const started = performance.now();
  const location = await locateCheckpoint(input);
  const files = await openCheckpoint(input);
  try {
    const trirun = TriRunCheckpoint.fromSafetensors(files);
    const byB = new Map(trirun.modules().map((m) => [tensorNamesOf(m.module).B, m]));
    const scalesOf = new Set(trirun.modules().map((m) => tensorNamesOf(m.module).s));
    const plans: ShardPlan[] = files.shards.map((reader) => ({
      reader,
      outName:
        files.shards.length === 1 && files.index === undefined ? "model.safetensors" : basename(reader.file),
      tensors: reader.header.tensors.flatMap((t): PlannedTensor[] => {
        const m = byB.get(t.name);
        if (m !== undefined) {
          const bytesAfter = m.inFeatures * m.outFeatures * SAFETENSORS_DTYPES.F16;
          const sBytes = files.info(tensorNamesOf(m.module).s).byteLength;
          return [
            {
              name: t.name,
              action: "pack",
              dtype: "F16",
              shape: [m.outFeatures, m.inFeatures],
              bytesBefore: t.byteLength + sBytes,
              bytesAfter,
              module: m,
            },
          ];
        }
        if (scalesOf.has(t.name)) return [];
        return [
          {
            name: t.name,
            action: "copy",
            dtype: t.dtype,
            shape: t.shape,
            bytesBefore: t.byteLength,
            bytesAfter: t.byteLength,
          },
        ];
      }),
    }));
    const all = plans.flatMap((p) => p.tensors);
    // A module's dequantized weight must not collide with a tensor copied as it is.
    const written = new Set<string>();
    for (const plan of plans) {
      for (const t of plan.tensors) {
        const name = t.module ? tensorNamesOf(t.module.module).weight : t.name;
        if (written.has(name)) {
          throw new CheckpointError(
            "ERR_TRIRUN_BAD_LAYER",
            plan.reader.file,
            "would be written twice: the checkpoint holds this tensor and a packed module (.B/.s) that unpacks to it",
            name,
          );
        }
        written.add(name);
      }
    }
    const summary = plannedSummary(input, output, options.dryRun === true, all, trirun.modules());
    if (options.dryRun) return summary;
    const sharded = files.index !== undefined;
    const config = await readConfig(location.dir);
    const { staged, side } = await openOutput(
      location.dir,
      output,
      { sharded, names: plans.map((p) => p.outName) },
      config !== undefined,
      (await stat(input)).isDirectory(),
      options.overwrite === true,
    );
    summary.files = await staged.run(async () => {
      let done = 0;
      const weightMap = new Map<string, string>();
      for (const plan of plans) {
        const specs: TensorSpec[] = plan.tensors.map((t) => ({
          name: t.module ? tensorNamesOf(t.module.module).weight : t.name,
          dtype: t.dtype as TensorSpec["dtype"],
          shape: t.shape,
        }));
        for (const s of specs) weightMap.set(s.name, plan.outName);
        const metadata = Object.fromEntries(
          Object.entries(plan.reader.metadata).filter(([key]) => !key.startsWith("trirun.")),
        );
        await writeShard(
          staged.stage(plan.outName),
          plan,
          specs,
          metadata,
          async (t, bytes): Promise<Outputs> => {
            options.onProgress?.({
              done: ++done,
              total: all.length,
              tensor: t.name,
              action: t.module ? "unpack" : "copy",
            });
            if (t.module === undefined) return [[t.name, bytes]];
            // `bytes` are the module's B; its scales are small and read here.
            const names = tensorNamesOf(t.module.module);
            const s = (await files.readTensor(names.s, "F16")).data;
            const layer = { ...t.module, B: bytesToTensorData("I32", bytes), s };
            return [[names.weight, dequantizeLayer(layer)]];
          },
        );
      }
      if (sharded) {
        await writeFile(staged.stage(SHARD_INDEX_FILE), buildShardIndex(weightMap, summary.bytesAfter));
      }
      if (config !== undefined) {
        const { quantization_config: _dropped, ...rest } = config;
        await writeFile(staged.stage("config.json"), `${JSON.stringify(rest, null, 2)}\n`);
      }
      await copySideFiles(location.dir, staged, side);
    });
    summary.seconds = (performance.now() - started) / 1000;
    return summary;
  } finally {
    await files.close();
  }
}
