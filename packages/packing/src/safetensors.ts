/**
 * safetensors reading and writing, browser-safe (no Node imports): the reader works over any
 * {@link ByteSource} (a Node file handle in `@trirun/packing/node`, a Blob or an in-memory buffer
 * here) and reads tensors on demand. Headers are validated as strictly as the format's reference
 * implementation does, so that a hostile file gets a {@link CheckpointError}, never a crash or a
 * huge allocation.
 */
import { CheckpointError } from "./errors.js";

export const SAFETENSORS_DTYPES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

/** Typed array of each dtype: F16/BF16 as Uint16Array bits, BOOL and F8 variants as Uint8Array. */
export interface TensorDataByDType {
  BOOL: Uint8Array;
  U8: Uint8Array;
  I8: Int8Array;
  F8_E5M2: Uint8Array;
  F8_E4M3: Uint8Array;
  F8_E8M0: Uint8Array;
  I16: Int16Array;
  U16: Uint16Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I32: Int32Array;
  U32: Uint32Array;
  F32: Float32Array;
  I64: BigInt64Array;
  U64: BigUint64Array;
  F64: Float64Array;
}

export type TensorData = TensorDataByDType[SafetensorsDType];

/** A tensor in memory. */
export interface Tensor<D extends SafetensorsDType = SafetensorsDType> {
  dtype: D;
  shape: readonly number[];
  data: TensorDataByDType[D];
}

/** Where a tensor lives in its file. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** Byte offset in the file (header included). */
  byteOffset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  /** Tensors in the order of their data in the file. */
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  /** Bytes before the data: 8 + the JSON header length. */
  dataStart: number;
  fileSize: number;
}

/** Largest accepted JSON header, as in the reference implementation (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

const TYPED_ARRAYS = {
  BOOL: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  F8_E5M2: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E8M0: Uint8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
  F64: Float64Array,
} as const;

export function isSafetensorsDType(value: unknown): value is SafetensorsDType {
  return typeof value === "string" && Object.hasOwn(SAFETENSORS_DTYPES, value);
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Number of elements of a shape (1 for a scalar). */
export function elementCount(shape: readonly number[]): number {
  let count = 1;
  for (const d of shape) count *= d;
  return count;
}

/** Reads the 8-byte header length and checks it against the bound and the file size. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_TRUNCATED",
      file,
      `file has ${fileSize} bytes, fewer than the 8-byte header length`,
    );
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_HEADER_TOO_LARGE",
      file,
      `header length ${length} exceeds the limit of ${MAX_HEADER_BYTES} bytes`,
    );
  }
  const n = Number(length);
  if (8 + n > fileSize) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_TRUNCATED",
      file,
      `header length ${n} runs past the end of the file (${fileSize} bytes)`,
    );
  }
  return n;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Parses and validates the JSON header: known dtypes, integer shapes, byte ranges that match
 * shape x dtype size, offsets inside the file, and data ranges that tile the data section exactly
 * (no overlaps, no gaps, nothing after the last tensor).
 */
export function parseHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch (cause) {
    throw new CheckpointError("ERR_SAFETENSORS_BAD_JSON", file, "header is not valid UTF-8", undefined, {
      cause,
    });
  }
  if (!text.startsWith("{")) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_BAD_HEADER",
      file,
      "header must be a JSON object starting with '{'",
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_BAD_JSON",
      file,
      `header is not valid JSON (${(cause as Error).message})`,
      undefined,
      {
        cause,
      },
    );
  }
  if (!isPlainObject(parsed))
    throw new CheckpointError("ERR_SAFETENSORS_BAD_HEADER", file, "header must be a JSON object");
  const dataStart = 8 + json.length;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      if (!isPlainObject(entry)) {
        throw new CheckpointError(
          "ERR_SAFETENSORS_BAD_HEADER",
          file,
          "__metadata__ must be an object of strings",
        );
      }
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== "string") {
          throw new CheckpointError(
            "ERR_SAFETENSORS_BAD_HEADER",
            file,
            `__metadata__ value of "${key}" must be a string`,
          );
        }
        metadata[key] = value;
      }
      continue;
    }
    const bad = (code: "ERR_SAFETENSORS_BAD_HEADER" | "ERR_SAFETENSORS_UNKNOWN_DTYPE", message: string) =>
      new CheckpointError(code, file, message, name);
    if (!isPlainObject(entry)) throw bad("ERR_SAFETENSORS_BAD_HEADER", "entry must be an object");
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafetensorsDType(dtype)) {
      throw bad(
        "ERR_SAFETENSORS_UNKNOWN_DTYPE",
        `unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(SAFETENSORS_DTYPES).join(", ")})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(
        "ERR_SAFETENSORS_BAD_HEADER",
        `shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
      );
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw bad(
        "ERR_SAFETENSORS_BAD_HEADER",
        `data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      throw new CheckpointError(
        "ERR_SAFETENSORS_BAD_OFFSETS",
        file,
        `data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes)`,
        name,
      );
    }
    // BigInt so that a hostile shape cannot overflow the product.
    const expected =
      shape.reduce((acc: bigint, d: number) => acc * BigInt(d), 1n) * BigInt(SAFETENSORS_DTYPES[dtype]);
    if (expected !== BigInt(end - begin)) {
      throw new CheckpointError(
        "ERR_SAFETENSORS_SHAPE_MISMATCH",
        file,
        `shape [${shape.join(", ")}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
        name,
      );
    }
    tensors.push({
      name,
      dtype,
      shape: Object.freeze([...shape]),
      byteOffset: dataStart + begin,
      byteLength: end - begin,
    });
  }
  tensors.sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let cursor = dataStart;
  for (const t of tensors) {
    if (t.byteOffset !== cursor) {
      const kind =
        t.byteOffset < cursor
          ? "overlaps the previous tensor"
          : `leaves a gap after byte ${cursor - dataStart}`;
      throw new CheckpointError(
        "ERR_SAFETENSORS_BAD_OFFSETS",
        file,
        `data at [${t.byteOffset - dataStart}, ${t.byteOffset - dataStart + t.byteLength}] ${kind}`,
        t.name,
      );
    }
    cursor += t.byteLength;
  }
  if (cursor !== fileSize) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_BAD_OFFSETS",
      file,
      `tensors cover ${cursor - dataStart} data bytes but the file holds ${dataSize}`,
    );
  }
  return { tensors, metadata, dataStart, fileSize };
}

/** Views (or, when misaligned, copies) raw little-endian bytes as the dtype's typed array. */
export function bytesToTensorData<D extends SafetensorsDType>(
  dtype: D,
  bytes: Uint8Array,
): TensorDataByDType[D] {
  if (!littleEndian) throw new Error("safetensors decoding needs a little-endian host");
  const Ctor = TYPED_ARRAYS[dtype];
  const size = SAFETENSORS_DTYPES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`bytes must be a multiple of ${size} for ${dtype}, got ${bytes.byteLength}`);
  }
  let source = bytes;
  if (bytes.byteOffset % size !== 0) source = bytes.slice();
  return new Ctor(
    source.buffer as ArrayBuffer,
    source.byteOffset,
    source.byteLength / size,
  ) as TensorDataByDType[D];
}

/** A readable sequence of bytes: a file, a Blob, a buffer. */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes from `offset`, in a fresh buffer the caller may keep. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** A {@link ByteSource} over bytes already in memory. */
export function bufferSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    async read(offset, length) {
      if (offset < 0 || offset + length > bytes.byteLength)
        throw new RangeError(`read [${offset}, ${offset + length}) is outside the buffer`);
      return bytes.slice(offset, offset + length);
    },
  };
}

/** The part of the DOM Blob interface that {@link blobSource} uses. */
export interface BlobLike {
  readonly size: number;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** A {@link ByteSource} over a Blob or File (browsers): reads only the slices asked for. */
export function blobSource(blob: BlobLike): ByteSource {
  return {
    size: blob.size,
    async read(offset, length) {
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** Reads one safetensors file lazily: the header at open, each tensor when asked for. */
export class SafetensorsReader {
  readonly file: string;
  readonly header: SafetensorsHeader;
  readonly #source: ByteSource;
  readonly #byName: Map<string, TensorInfo>;

  private constructor(file: string, source: ByteSource, header: SafetensorsHeader) {
    this.file = file;
    this.#source = source;
    this.header = header;
    this.#byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Reads and validates the header. `file` names the source in errors. */
  static async open(source: ByteSource, file: string): Promise<SafetensorsReader> {
    const size = source.size;
    const prefix = size >= 8 ? await source.read(0, 8) : new Uint8Array(0);
    const headerLength = parseHeaderLength(prefix, size, file);
    const json = await source.read(8, headerLength);
    return new SafetensorsReader(file, source, parseHeader(json, size, file));
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  /** Tensor names in file order. */
  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.#byName.get(name);
    if (info === undefined) {
      throw new CheckpointError(
        "ERR_SAFETENSORS_TENSOR_NOT_FOUND",
        this.file,
        "no such tensor in this file",
        name,
      );
    }
    return info;
  }

  /** The tensor's raw little-endian bytes. */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    try {
      return await this.#source.read(info.byteOffset, info.byteLength);
    } catch (cause) {
      if (cause instanceof CheckpointError) throw cause;
      throw new CheckpointError(
        "ERR_SAFETENSORS_IO",
        this.file,
        `read failed (${(cause as Error).message})`,
        name,
        { cause },
      );
    }
  }

  /** Reads a tensor. With `dtype`, checks it and narrows the type (TypeError naming the tensor otherwise). */
  async readTensor(name: string): Promise<Tensor>;
  async readTensor<D extends SafetensorsDType>(name: string, dtype: D): Promise<Tensor<D>>;
  async readTensor(name: string, dtype?: SafetensorsDType): Promise<Tensor> {
    const info = this.info(name);
    if (dtype !== undefined && info.dtype !== dtype) {
      throw new TypeError(`${this.file}: tensor "${name}" has dtype ${info.dtype}, expected ${dtype}`);
    }
    const bytes = await this.readBytes(name);
    return { dtype: info.dtype, shape: info.shape, data: bytesToTensorData(info.dtype, bytes) };
  }

  async close(): Promise<void> {
    await this.#source.close?.();
  }
}

/** A tensor to write: its data is a typed array matching the dtype (or raw bytes). */
export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: TensorData | Uint8Array;
}

export type TensorSpec = Pick<TensorToWrite, "name" | "dtype" | "shape">;

/** Checks a tensor's spec and returns its byte length. */
export function specByteLength(spec: TensorSpec): number {
  if (typeof spec.name !== "string" || spec.name.length === 0 || spec.name === "__metadata__") {
    throw new TypeError(
      `tensor name must be a non-empty string other than __metadata__, got ${JSON.stringify(spec.name)}`,
    );
  }
  if (!isSafetensorsDType(spec.dtype))
    throw new TypeError(`tensor "${spec.name}": unknown dtype ${String(spec.dtype)}`);
  if (!Array.isArray(spec.shape) || !spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(
      `tensor "${spec.name}": shape must be non-negative integers, got ${JSON.stringify(spec.shape)}`,
    );
  }
  return elementCount(spec.shape) * SAFETENSORS_DTYPES[spec.dtype];
}

/** The bytes of a tensor's data, checking that they match its spec. */
export function tensorBytes(tensor: TensorToWrite): Uint8Array {
  const expected = specByteLength(tensor);
  const { data } = tensor;
  if (!ArrayBuffer.isView(data)) throw new TypeError(`tensor "${tensor.name}": data must be a typed array`);
  if (!(data instanceof Uint8Array) && !(data instanceof TYPED_ARRAYS[tensor.dtype])) {
    throw new TypeError(
      `tensor "${tensor.name}": data must be a ${TYPED_ARRAYS[tensor.dtype].name} (or raw Uint8Array bytes) for ${tensor.dtype}`,
    );
  }
  if (data.byteLength !== expected) {
    throw new RangeError(
      `tensor "${tensor.name}": shape [${tensor.shape.join(", ")}] of ${tensor.dtype} needs ${expected} bytes, data has ${data.byteLength}`,
    );
  }
  if (!littleEndian) throw new Error("safetensors encoding needs a little-endian host");
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Builds the 8-byte length and the JSON header for tensors written in the given order, padded
 * with spaces to a multiple of 8 bytes (as the reference writer does, keeping data aligned).
 */
export function buildHeader(specs: readonly TensorSpec[], metadata: Record<string, string> = {}): Uint8Array {
  // No prototype: a tensor named "__proto__" must be an ordinary key.
  const header: Record<string, unknown> = Object.create(null);
  const meta = Object.entries(metadata);
  for (const [key, value] of meta) {
    if (typeof value !== "string") throw new TypeError(`metadata value of "${key}" must be a string`);
  }
  if (meta.length > 0) header.__metadata__ = Object.fromEntries(meta);
  let offset = 0;
  const seen = new Set<string>();
  for (const spec of specs) {
    const length = specByteLength(spec);
    if (seen.has(spec.name)) throw new RangeError(`tensor "${spec.name}" is listed twice`);
    seen.add(spec.name);
    header[spec.name] = {
      dtype: spec.dtype,
      shape: [...spec.shape],
      data_offsets: [offset, offset + length],
    };
    offset += length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** A whole safetensors file in memory (for small files and browsers). */
export function serializeSafetensors(
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Uint8Array {
  const header = buildHeader(tensors, metadata);
  const parts = tensors.map(tensorBytes);
  const out = new Uint8Array(header.length + parts.reduce((a, p) => a + p.length, 0));
  out.set(header, 0);
  let offset = header.length;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** A parsed `model.safetensors.index.json`. */
export interface ShardIndex {
  metadata: Record<string, unknown>;
  /** Tensor name -> shard file name (relative to the index). */
  weightMap: Map<string, string>;
}

/** Parses and validates a shard index: shard names must be plain file names (no paths). */
export function parseShardIndex(text: string, file: string): ShardIndex {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_BAD_INDEX",
      file,
      `not valid JSON (${(cause as Error).message})`,
      undefined,
      { cause },
    );
  }
  if (!isPlainObject(parsed) || !isPlainObject(parsed.weight_map)) {
    throw new CheckpointError(
      "ERR_SAFETENSORS_BAD_INDEX",
      file,
      "expected an object with a weight_map object",
    );
  }
  const weightMap = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(parsed.weight_map)) {
    if (typeof shard !== "string" || !/^[^/\\]+\.safetensors$/.test(shard) || shard.startsWith(".")) {
      throw new CheckpointError(
        "ERR_SAFETENSORS_BAD_INDEX",
        file,
        `shard of "${tensor}" must be a plain *.safetensors file name, got ${JSON.stringify(shard)}`,
      );
    }
    weightMap.set(tensor, shard);
  }
  if (weightMap.size === 0) {
    throw new CheckpointError("ERR_SAFETENSORS_BAD_INDEX", file, "its weight_map lists no tensors");
  }
  const metadata = isPlainObject(parsed.metadata) ? parsed.metadata : {};
  return { metadata, weightMap };
}

/** Builds a shard index for the given tensor -> shard map. */
export function buildShardIndex(weightMap: ReadonlyMap<string, string>, totalSize: number): string {
  const sorted = [...weightMap.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: Object.fromEntries(sorted) }, null, 2)}\n`;
}

/**
 * One logical checkpoint over one or more safetensors files (shards). Tensor names are unique
 * across shards; with an index, every indexed tensor must be in the shard the index names.
 */
export class SafetensorsCheckpoint {
  readonly shards: readonly SafetensorsReader[];
  readonly index: ShardIndex | undefined;
  readonly #byName = new Map<string, SafetensorsReader>();

  constructor(
    shards: readonly SafetensorsReader[],
    index?: ShardIndex,
    indexFile = "model.safetensors.index.json",
  ) {
    this.shards = shards;
    this.index = index;
    for (const shard of shards) {
      for (const name of shard.names()) {
        const other = this.#byName.get(name);
        if (other !== undefined) {
          throw new CheckpointError(
            "ERR_SAFETENSORS_BAD_INDEX",
            shard.file,
            `tensor is also in ${other.file}`,
            name,
          );
        }
        this.#byName.set(name, shard);
      }
    }
    if (index !== undefined) {
      for (const [name, shardName] of index.weightMap) {
        const shard = this.#byName.get(name);
        if (
          shard === undefined ||
          !(
            shard.file === shardName ||
            shard.file.endsWith(`/${shardName}`) ||
            shard.file.endsWith(`\\${shardName}`)
          )
        ) {
          throw new CheckpointError(
            "ERR_SAFETENSORS_BAD_INDEX",
            indexFile,
            `index puts tensor "${name}" in ${shardName}, but ${shard === undefined ? "no shard holds it" : `it is in ${shard.file}`}`,
          );
        }
      }
    }
  }

  /** All tensor names, shard by shard in file order. */
  names(): string[] {
    return this.shards.flatMap((s) => s.names());
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The shard holding a tensor. */
  shardOf(name: string): SafetensorsReader {
    const shard = this.#byName.get(name);
    if (shard === undefined) {
      throw new CheckpointError(
        "ERR_SAFETENSORS_TENSOR_NOT_FOUND",
        this.shards.map((s) => s.file).join(", ") || "(empty checkpoint)",
        "no such tensor",
        name,
      );
    }
    return shard;
  }

  info(name: string): TensorInfo {
    return this.shardOf(name).info(name);
  }

  /** Metadata of the first shard (shards written together carry the same metadata). */
  get metadata(): Readonly<Record<string, string>> {
    return this.shards[0]?.metadata ?? {};
  }

  readTensor(name: string): Promise<Tensor>;
  readTensor<D extends SafetensorsDType>(name: string, dtype: D): Promise<Tensor<D>>;
  readTensor(name: string, dtype?: SafetensorsDType): Promise<Tensor> {
    const shard = this.shardOf(name);
    return dtype === undefined ? shard.readTensor(name) : shard.readTensor(name, dtype);
  }

  readBytes(name: string): Promise<Uint8Array> {
    return this.shardOf(name).readBytes(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}
