/**
 * The TriRun checkpoint format (browser-safe part): per quantized linear module, `<module>.B`
 * (I32, `(k/16, n)`) and `<module>.s` (F16, `(k/g, n)`) replace `<module>.weight`, as the reference
 * `trirun.Layer` state dict names them; every other tensor is kept as is. The safetensors metadata
 * records the format, its version, the group size and, per module, the original and padded shapes.
 *
 * Padding: the reference kernel needs `k % 128 == 0` and `n % 256 == 0`. A module whose features
 * are not multiples is padded with zero weights (code 1) in the extra rows/columns; padded columns
 * get scale 0. Loaders strip the padding with `inFeatures`/`outFeatures` from the metadata
 * (inputs are zero-padded to k, outputs cut to outFeatures).
 */
import {
  BITNET_VALUES_PER_BYTE,
  type BitNetLinearClass,
  bitNetLayerScale,
  unpackBitNetCodes,
} from "./bitnet.js";
import { CheckpointError } from "./errors.js";
import { numberToF16Bits } from "./fp16.js";
import { packScales, packWeights, unpackScales, unpackWeights } from "./layout.js";
import {
  dequantizeToF16,
  type QuantMethod,
  quantize,
  quantizePacked,
  type WeightMatrix,
} from "./quantize.js";
import {
  type SafetensorsCheckpoint,
  serializeSafetensors,
  type TensorInfo,
  type TensorToWrite,
} from "./safetensors.js";

export const TRIRUN_FORMAT = "trirun";
export const TRIRUN_FORMAT_VERSION = 1;
/** Multiples of `k` (in) and `n` (out) the reference kernel needs. */
export const KERNEL_K_MULTIPLE = 128;
export const KERNEL_N_MULTIPLE = 256;

/** Metadata keys written into every shard. `format` stays "pt" so that PyTorch loaders accept the file. */
export const METADATA_KEYS = {
  format: "trirun.format",
  version: "trirun.version",
  groupsize: "trirun.groupsize",
  method: "trirun.method",
  modules: "trirun.modules",
} as const;

export type GroupSize = 128 | -1;

/** Shapes of one quantized module. */
export interface TriRunModuleInfo {
  /** Module name, e.g. `model.layers.0.self_attn.q_proj` (tensors `<module>.B`, `<module>.s`). */
  module: string;
  /** Original features, before padding. */
  inFeatures: number;
  outFeatures: number;
  /** Padded kernel dimensions: k = in rounded up to 128, n = out rounded up to 256. */
  k: number;
  n: number;
  /** 128, or -1 for one scale per output column. */
  groupsize: GroupSize;
}

/** One quantized module with its packed tensors. */
export interface TriRunLayer extends TriRunModuleInfo {
  /** `(k/16, n)` int32 packed codes (`<module>.B`). */
  B: Int32Array;
  /** `(k/g, n)` permuted fp16 scale bits (`<module>.s`). */
  s: Uint16Array;
}

export interface TriRunMetadata {
  version: number;
  groupsize: GroupSize;
  /** The quantizer that produced the checkpoint, when recorded. */
  method: string | undefined;
  modules: TriRunModuleInfo[];
}

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

/** Padded kernel dimensions of a module. */
export function paddedDims(inFeatures: number, outFeatures: number): { k: number; n: number } {
  return { k: roundUp(inFeatures, KERNEL_K_MULTIPLE), n: roundUp(outFeatures, KERNEL_N_MULTIPLE) };
}

export function tensorNamesOf(module: string): { B: string; s: string; weight: string } {
  return { B: `${module}.B`, s: `${module}.s`, weight: `${module}.weight` };
}

/** Number of scale rows of a module: k/128, or 1 for one group per column. */
export function scaleRows(info: Pick<TriRunModuleInfo, "k" | "groupsize">): number {
  return info.groupsize === -1 ? 1 : info.k / info.groupsize;
}

function checkGroupSize(groupsize: number): asserts groupsize is GroupSize {
  if (groupsize !== 128 && groupsize !== -1)
    throw new RangeError(`groupsize must be 128 or -1, got ${groupsize}`);
}

export interface PackLinearOptions {
  method: QuantMethod;
  groupsize: GroupSize;
}

/**
 * Quantizes a PyTorch-style `(out, in)` weight and packs it for the kernel, padding to the
 * kernel's multiples when needed.
 */
export function packLinear(module: string, weight: WeightMatrix, options: PackLinearOptions): TriRunLayer {
  checkGroupSize(options.groupsize);
  const { inFeatures, outFeatures } = weight;
  const { k, n } = paddedDims(inFeatures, outFeatures);
  const name = tensorNamesOf(module).weight;
  const { groupsize } = options;
  if (k === inFeatures && n === outFeatures) {
    const packed = quantizePacked(weight, { method: options.method, groupsize, name });
    return { module, inFeatures, outFeatures, k, n, groupsize, B: packed.B, s: packed.s };
  }
  const q = quantize(weight, { method: options.method, groupsize, name });
  return packCodes(module, q.codes, q.scales, inFeatures, outFeatures, groupsize);
}

/**
 * Packs natural codes `(in, out)` and fp16 scales `(ceil(in/g), out)` (as the quantizers and GPTQ
 * produce them) into a padded TriRun layer.
 */
export function packCodes(
  module: string,
  codes: Uint8Array,
  scales: Uint16Array,
  inFeatures: number,
  outFeatures: number,
  groupsize: GroupSize,
): TriRunLayer {
  checkGroupSize(groupsize);
  if (typeof module !== "string" || module.length === 0)
    throw new TypeError("module name must be a non-empty string");
  for (const [v, label] of [
    [inFeatures, "inFeatures"],
    [outFeatures, "outFeatures"],
  ] as const) {
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new RangeError(`${label} must be a positive integer, got ${v}`);
  }
  const { k, n } = paddedDims(inFeatures, outFeatures);
  const rows = groupsize === -1 ? 1 : k / 128;
  if (codes.length !== inFeatures * outFeatures) {
    throw new RangeError(
      `codes must have inFeatures * outFeatures = ${inFeatures * outFeatures} elements, got ${codes.length}`,
    );
  }
  if (scales.length !== rows * outFeatures) {
    throw new RangeError(
      `scales must have ${rows} x ${outFeatures} = ${rows * outFeatures} elements, got ${scales.length}`,
    );
  }
  let paddedCodes = codes;
  let paddedScales = scales;
  if (k !== inFeatures || n !== outFeatures) {
    paddedCodes = new Uint8Array(k * n).fill(1);
    for (let r = 0; r < inFeatures; r++)
      paddedCodes.set(codes.subarray(r * outFeatures, (r + 1) * outFeatures), r * n);
    paddedScales = new Uint16Array(rows * n);
    for (let r = 0; r < rows; r++)
      paddedScales.set(scales.subarray(r * outFeatures, (r + 1) * outFeatures), r * n);
  }
  return {
    module,
    inFeatures,
    outFeatures,
    k,
    n,
    groupsize,
    B: packWeights(paddedCodes, k, n),
    s: packScales(paddedScales, k, n, groupsize),
  };
}

export interface BitNetLinearSource {
  /** transformers' packed `weight`: U8 `(out/4, in)`, four ternary values per byte. */
  packed: Uint8Array;
  /** Rows of `packed` (out / 4). */
  rows: number;
  inFeatures: number;
  /** The layer's `weight_scale` value. */
  weightScale: number;
  linearClass: BitNetLinearClass;
}

/**
 * Imports one linear layer of a packed ("offline") BitNet b1.58 checkpoint as a TriRun layer, with
 * its ternary levels unchanged and its per-tensor scale (see {@link bitNetLayerScale}) in every
 * group, padding to the kernel's multiples when needed.
 */
export function packBitNetLinear(
  module: string,
  source: BitNetLinearSource,
  groupsize: GroupSize,
): TriRunLayer {
  checkGroupSize(groupsize);
  const { packed, rows, inFeatures, weightScale, linearClass } = source;
  const codes = unpackBitNetCodes(packed, rows, inFeatures);
  const outFeatures = BITNET_VALUES_PER_BYTE * rows;
  const scaleBits = numberToF16Bits(bitNetLayerScale(weightScale, linearClass, `${module}.weight_scale`));
  const scaleRowCount = groupsize === -1 ? 1 : Math.ceil(inFeatures / KERNEL_K_MULTIPLE);
  const scales = new Uint16Array(scaleRowCount * outFeatures).fill(scaleBits);
  return packCodes(module, codes, scales, inFeatures, outFeatures, groupsize);
}

/** Natural codes `(in, out)` and scales `(rows, out)` of a layer, padding removed. */
export function unpackLayer(layer: TriRunLayer): {
  codes: Uint8Array;
  scales: Uint16Array;
  groupLength: number;
} {
  checkLayer(layer);
  const { k, n, inFeatures, outFeatures } = layer;
  const rows = scaleRows(layer);
  const codes = unpackWeights(layer.B, k, n);
  const scales = unpackScales(layer.s, k, n, layer.groupsize);
  const outCodes = new Uint8Array(inFeatures * outFeatures);
  for (let r = 0; r < inFeatures; r++)
    outCodes.set(codes.subarray(r * n, r * n + outFeatures), r * outFeatures);
  const outScales = new Uint16Array(rows * outFeatures);
  for (let r = 0; r < rows; r++) outScales.set(scales.subarray(r * n, r * n + outFeatures), r * outFeatures);
  return { codes: outCodes, scales: outScales, groupLength: layer.groupsize === -1 ? inFeatures : 128 };
}

/** The layer's weight as PyTorch-style `(out, in)` fp16 bits, padding removed. */
export function dequantizeLayer(layer: TriRunLayer): Uint16Array {
  const { codes, scales, groupLength } = unpackLayer(layer);
  return dequantizeToF16(codes, scales, layer.inFeatures, layer.outFeatures, groupLength);
}

/** Checks a module's shape record (RangeError naming the module). */
export function checkModuleInfo(info: TriRunModuleInfo): void {
  const { module, inFeatures, outFeatures, k, n, groupsize } = info;
  const bad = (what: string) => new RangeError(`module "${module}": ${what}`);
  if (typeof module !== "string" || module.length === 0)
    throw new TypeError("module name must be a non-empty string");
  for (const [v, label] of [
    [inFeatures, "inFeatures"],
    [outFeatures, "outFeatures"],
    [k, "k"],
    [n, "n"],
  ] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw bad(`${label} must be a positive integer, got ${v}`);
  }
  const padded = paddedDims(inFeatures, outFeatures);
  if (k !== padded.k || n !== padded.n) {
    throw bad(
      `k, n must be in/out features rounded up to 128/256 (${padded.k}, ${padded.n}), got (${k}, ${n})`,
    );
  }
  if (groupsize !== 128 && groupsize !== -1) throw bad(`groupsize must be 128 or -1, got ${groupsize}`);
}

function checkLayer(layer: TriRunLayer): void {
  checkModuleInfo(layer);
  if (!(layer.B instanceof Int32Array) || layer.B.length !== (layer.k / 16) * layer.n) {
    throw new RangeError(
      `module "${layer.module}": B must be an Int32Array of (k/16) * n = ${(layer.k / 16) * layer.n} words`,
    );
  }
  const rows = scaleRows(layer);
  if (!(layer.s instanceof Uint16Array) || layer.s.length !== rows * layer.n) {
    throw new RangeError(
      `module "${layer.module}": s must be a Uint16Array of ${rows} * n = ${rows * layer.n} fp16 values`,
    );
  }
}

/** Safetensors metadata for a TriRun checkpoint (all values strings, as the format requires). */
export function encodeTriRunMetadata(meta: Omit<TriRunMetadata, "version">): Record<string, string> {
  checkGroupSize(meta.groupsize);
  const modules: Record<
    string,
    { in_features: number; out_features: number; k: number; n: number; groupsize: number }
  > = Object.create(null); // so that a module named "__proto__" is an ordinary key
  for (const m of meta.modules) {
    checkModuleInfo(m);
    if (Object.hasOwn(modules, m.module)) throw new RangeError(`module "${m.module}" is listed twice`);
    modules[m.module] = {
      in_features: m.inFeatures,
      out_features: m.outFeatures,
      k: m.k,
      n: m.n,
      groupsize: m.groupsize,
    };
  }
  const out: Record<string, string> = {
    format: "pt",
    [METADATA_KEYS.format]: TRIRUN_FORMAT,
    [METADATA_KEYS.version]: String(TRIRUN_FORMAT_VERSION),
    [METADATA_KEYS.groupsize]: String(meta.groupsize),
    [METADATA_KEYS.modules]: JSON.stringify(modules),
  };
  if (meta.method !== undefined) out[METADATA_KEYS.method] = meta.method;
  return out;
}

/** Reads TriRun metadata; undefined when the file is not a TriRun checkpoint. */
export function decodeTriRunMetadata(
  metadata: Readonly<Record<string, string>>,
  file: string,
): TriRunMetadata | undefined {
  if (metadata[METADATA_KEYS.format] !== TRIRUN_FORMAT) return undefined;
  const fail = (message: string) => new CheckpointError("ERR_TRIRUN_BAD_METADATA", file, message);
  const version = Number(metadata[METADATA_KEYS.version]);
  if (version !== TRIRUN_FORMAT_VERSION) {
    throw fail(
      `unsupported ${METADATA_KEYS.version} ${JSON.stringify(metadata[METADATA_KEYS.version])} (this reader knows ${TRIRUN_FORMAT_VERSION})`,
    );
  }
  const groupsize = Number(metadata[METADATA_KEYS.groupsize]);
  if (groupsize !== 128 && groupsize !== -1) throw fail(`${METADATA_KEYS.groupsize} must be 128 or -1`);
  let table: unknown;
  try {
    table = JSON.parse(metadata[METADATA_KEYS.modules] ?? "");
  } catch {
    throw fail(`${METADATA_KEYS.modules} is not valid JSON`);
  }
  if (typeof table !== "object" || table === null || Array.isArray(table))
    throw fail(`${METADATA_KEYS.modules} must be a JSON object`);
  const modules: TriRunModuleInfo[] = [];
  for (const [module, entry] of Object.entries(table)) {
    const e = entry as Record<string, unknown>;
    const info = {
      module,
      inFeatures: e?.in_features,
      outFeatures: e?.out_features,
      k: e?.k,
      n: e?.n,
      groupsize: e?.groupsize,
    } as TriRunModuleInfo;
    try {
      checkModuleInfo(info);
    } catch (err) {
      throw fail(`${METADATA_KEYS.modules}: ${(err as Error).message}`);
    }
    modules.push(info);
  }
  return { version, groupsize, method: metadata[METADATA_KEYS.method], modules };
}

/** The `quantization_config` entry for config.json. */
export function quantizationConfig(meta: Omit<TriRunMetadata, "version">): Record<string, unknown> {
  return {
    quant_method: TRIRUN_FORMAT,
    format_version: TRIRUN_FORMAT_VERSION,
    bits: 2,
    levels: [-1, 0, 1, 2],
    group_size: meta.groupsize,
    method: meta.method ?? null,
    modules: meta.modules.map((m) => m.module),
    padded_modules: Object.fromEntries(
      meta.modules
        .filter((m) => m.k !== m.inFeatures || m.n !== m.outFeatures)
        .map((m) => [m.module, { in_features: m.inFeatures, out_features: m.outFeatures, k: m.k, n: m.n }]),
    ),
    tensors: { weights: "<module>.B (int32, k/16 x n)", scales: "<module>.s (float16, k/g x n)" },
  };
}

function checkTensor(info: TensorInfo, dtype: string, shape: number[], file: string, module: string): void {
  if (
    info.dtype !== dtype ||
    info.shape.length !== shape.length ||
    info.shape.some((d, i) => d !== shape[i])
  ) {
    throw new CheckpointError(
      "ERR_TRIRUN_BAD_LAYER",
      file,
      `module "${module}" needs ${dtype} [${shape.join(", ")}], found ${info.dtype} [${info.shape.join(", ")}]`,
      info.name,
    );
  }
}

/**
 * A TriRun checkpoint over any (possibly sharded) safetensors checkpoint: the module table from
 * the metadata, packed layers read on demand, every other tensor passed through.
 */
export class TriRunCheckpoint {
  readonly files: SafetensorsCheckpoint;
  readonly metadata: TriRunMetadata;
  readonly #modules: Map<string, TriRunModuleInfo>;

  private constructor(files: SafetensorsCheckpoint, metadata: TriRunMetadata) {
    this.files = files;
    this.metadata = metadata;
    this.#modules = new Map(metadata.modules.map((m) => [m.module, m]));
  }

  /** Validates the metadata of every shard (they must agree) and the shapes of every B and s. */
  static fromSafetensors(files: SafetensorsCheckpoint): TriRunCheckpoint {
    const first = files.shards[0];
    if (first === undefined)
      throw new CheckpointError("ERR_TRIRUN_BAD_METADATA", "(empty checkpoint)", "no safetensors files");
    const meta = decodeTriRunMetadata(first.metadata, first.file);
    if (meta === undefined) {
      throw new CheckpointError(
        "ERR_TRIRUN_BAD_METADATA",
        first.file,
        `not a TriRun checkpoint (metadata ${METADATA_KEYS.format} is not "${TRIRUN_FORMAT}")`,
      );
    }
    for (const shard of files.shards.slice(1)) {
      const m = decodeTriRunMetadata(shard.metadata, shard.file);
      if (m === undefined || JSON.stringify(m) !== JSON.stringify(meta)) {
        throw new CheckpointError(
          "ERR_TRIRUN_BAD_METADATA",
          shard.file,
          `TriRun metadata differs from ${first.file}`,
        );
      }
    }
    for (const m of meta.modules) {
      const names = tensorNamesOf(m.module);
      for (const [tensor, dtype, shape] of [
        [names.B, "I32", [m.k / 16, m.n]],
        [names.s, "F16", [scaleRows(m), m.n]],
      ] as const) {
        if (!files.has(tensor)) {
          throw new CheckpointError(
            "ERR_TRIRUN_BAD_LAYER",
            first.file,
            `module "${m.module}" is listed but has no tensor`,
            tensor,
          );
        }
        checkTensor(files.info(tensor), dtype, [...shape], files.shardOf(tensor).file, m.module);
      }
    }
    return new TriRunCheckpoint(files, meta);
  }

  modules(): TriRunModuleInfo[] {
    return [...this.#modules.values()];
  }

  module(name: string): TriRunModuleInfo | undefined {
    return this.#modules.get(name);
  }

  /** Tensors that are not the B/s of a quantized module (embeddings, norms, unquantized layers). */
  passthroughNames(): string[] {
    const packed = new Set(this.modules().flatMap((m) => Object.values(tensorNamesOf(m.module)).slice(0, 2)));
    return this.files.names().filter((n) => !packed.has(n));
  }

  /** Reads one module's packed tensors. */
  async readLayer(module: string): Promise<TriRunLayer> {
    const info = this.#modules.get(module);
    if (info === undefined) {
      throw new CheckpointError(
        "ERR_TRIRUN_BAD_LAYER",
        this.files.shards[0]?.file ?? "",
        `no quantized module "${module}"`,
      );
    }
    const names = tensorNamesOf(module);
    const B = (await this.files.readTensor(names.B, "I32")).data;
    const s = (await this.files.readTensor(names.s, "F16")).data;
    return { ...info, B, s };
  }

  close(): Promise<void> {
    return this.files.close();
  }
}

export interface TriRunCheckpointContents {
  layers: readonly TriRunLayer[];
  /** Tensors kept as they are (embeddings, norms, layers left unquantized). */
  tensors?: readonly TensorToWrite[];
  groupsize: GroupSize;
  method?: string;
}

/** The tensors (B and s per layer, then the pass-through ones) and metadata of a TriRun file. */
export function triRunFileContents(contents: TriRunCheckpointContents): {
  tensors: TensorToWrite[];
  metadata: Record<string, string>;
} {
  const metadata = encodeTriRunMetadata({
    groupsize: contents.groupsize,
    method: contents.method,
    modules: contents.layers.map(({ B: _B, s: _s, ...info }) => info),
  });
  const tensors: TensorToWrite[] = [];
  for (const layer of contents.layers) {
    checkLayer(layer);
    if (layer.groupsize !== contents.groupsize) {
      throw new RangeError(
        `module "${layer.module}": groupsize ${layer.groupsize} differs from the checkpoint's ${contents.groupsize}`,
      );
    }
    const names = tensorNamesOf(layer.module);
    tensors.push({ name: names.B, dtype: "I32", shape: [layer.k / 16, layer.n], data: layer.B });
    tensors.push({ name: names.s, dtype: "F16", shape: [scaleRows(layer), layer.n], data: layer.s });
  }
  tensors.push(...(contents.tensors ?? []));
  return { tensors, metadata };
}

/** A whole single-file TriRun checkpoint in memory (browsers, tests, small models). */
export function serializeTriRunCheckpoint(contents: TriRunCheckpointContents): Uint8Array {
  const { tensors, metadata } = triRunFileContents(contents);
  return serializeSafetensors(tensors, metadata);
}
