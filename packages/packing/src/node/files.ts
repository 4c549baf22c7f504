/**
 * Node-only safetensors file I/O: positioned reads through a file handle (a tensor is read only when
 * asked for), sharded checkpoints, and a streaming writer that holds one tensor at a time.
 */
import { type FileHandle, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { CheckpointError } from "../errors.js";
import {
  type ByteSource,
  buildHeader,
  parseShardIndex,
  SafetensorsCheckpoint,
  SafetensorsReader,
  type ShardIndex,
  specByteLength,
  type TensorData,
  type TensorSpec,
  type TensorToWrite,
  tensorBytes,
} from "../safetensors.js";

/** Largest single read call (Node caps one read below 2 GiB). */
const MAX_READ = 1 << 30;

function ioError(file: string, what: string, cause: unknown): CheckpointError {
  const err = cause as NodeJS.ErrnoException;
  const code = err?.code === "ENOENT" ? "ERR_CHECKPOINT_NOT_FOUND" : "ERR_SAFETENSORS_IO";
  const reason =
    err?.code === "ENOENT" ? "no such file or folder" : (err?.code ?? err?.message ?? String(cause));
  return new CheckpointError(code, file, `${what} failed (${reason})`, undefined, { cause });
}

/** A {@link ByteSource} over a file: positioned reads, nothing loaded up front. */
export async function fileSource(path: string): Promise<ByteSource> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    throw ioError(path, "open", cause);
  }
  let size: number;
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new CheckpointError("ERR_SAFETENSORS_IO", path, "not a regular file");
    size = info.size;
  } catch (cause) {
    await handle.close();
    throw cause instanceof CheckpointError ? cause : ioError(path, "stat", cause);
  }
  return {
    size,
    async read(offset, length) {
      const buffer = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(
          buffer,
          done,
          Math.min(MAX_READ, length - done),
          offset + done,
        );
        if (bytesRead === 0) {
          throw new CheckpointError(
            "ERR_SAFETENSORS_TRUNCATED",
            path,
            `file ended at byte ${offset + done} while reading bytes [${offset}, ${offset + length})`,
          );
        }
        done += bytesRead;
      }
      return buffer;
    },
    close: () => handle.close(),
  };
}

/** Opens one safetensors file and validates its header; tensors are read on demand. */
export async function openSafetensorsFile(path: string): Promise<SafetensorsReader> {
  const source = await fileSource(path);
  try {
    return await SafetensorsReader.open(source, path);
  } catch (err) {
    await source.close?.();
    throw err;
  }
}

export const SHARD_INDEX_FILE = "model.safetensors.index.json";

/** Where a checkpoint's files are: the safetensors files and the index, if sharded. */
export interface CheckpointLocation {
  /** The folder holding the checkpoint (config.json and friends live here). */
  dir: string;
  files: string[];
  indexFile: string | undefined;
}

/**
 * Resolves a checkpoint path: a `.safetensors` file, a `model.safetensors.index.json`, or a
 * folder holding either (an index wins; else `model.safetensors`; else every `*.safetensors`).
 */
export async function locateCheckpoint(path: string): Promise<CheckpointLocation> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (cause) {
    throw ioError(path, "stat", cause);
  }
  if (info.isFile()) {
    if (path.endsWith(".json")) return { dir: dirname(path), files: [], indexFile: path };
    return { dir: dirname(path), files: [path], indexFile: undefined };
  }
  let entries: string[];
  try {
    entries = (await readdir(path)).sort();
  } catch (cause) {
    throw ioError(path, "listing the folder", cause);
  }
  if (entries.includes(SHARD_INDEX_FILE))
    return { dir: path, files: [], indexFile: join(path, SHARD_INDEX_FILE) };
  if (entries.includes("model.safetensors")) {
    return { dir: path, files: [join(path, "model.safetensors")], indexFile: undefined };
  }
  const files = entries.filter((e) => e.endsWith(".safetensors")).map((e) => join(path, e));
  if (files.length === 0) {
    throw new CheckpointError(
      "ERR_CHECKPOINT_NOT_FOUND",
      path,
      "no *.safetensors file or shard index in this folder",
    );
  }
  return { dir: path, files, indexFile: undefined };
}

/** Opens a (possibly sharded) checkpoint lazily; see {@link locateCheckpoint} for accepted paths. */
export async function openCheckpoint(path: string): Promise<SafetensorsCheckpoint> {
  const location = await locateCheckpoint(path);
  let index: ShardIndex | undefined;
  let files = location.files;
  if (location.indexFile !== undefined) {
    let text: string;
    try {
      text = await readFile(location.indexFile, "utf8");
    } catch (cause) {
      throw ioError(location.indexFile, "read", cause);
    }
    index = parseShardIndex(text, location.indexFile);
    files = [...new Set(index.weightMap.values())].sort().map((f) => join(dirname(location.indexFile!), f));
  }
  const readers: SafetensorsReader[] = [];
  try {
    for (const file of files) readers.push(await openSafetensorsFile(file));
    return new SafetensorsCheckpoint(readers, index, location.indexFile);
  } catch (err) {
    await Promise.all(readers.map((r) => r.close()));
    throw err;
  }
}

/**
 * Writes a safetensors file one tensor at a time, in the order given at creation, so that only the
 * tensor being written is in memory. Writes to `<path>.partial` and renames on {@link close}.
 */
export class SafetensorsFileWriter {
  readonly path: string;
  readonly #partial: string;
  readonly #handle: FileHandle;
  readonly #specs: readonly TensorSpec[];
  #next = 0;
  #position: number;
  #closed = false;

  private constructor(path: string, handle: FileHandle, specs: readonly TensorSpec[], headerLength: number) {
    this.path = path;
    this.#partial = `${path}.partial`;
    this.#handle = handle;
    this.#specs = specs;
    this.#position = headerLength;
  }

  static async create(
    path: string,
    specs: readonly TensorSpec[],
    metadata?: Record<string, string>,
  ): Promise<SafetensorsFileWriter> {
    const header = buildHeader(specs, metadata);
    let handle: FileHandle;
    try {
      handle = await open(`${path}.partial`, "w");
    } catch (cause) {
      throw ioError(path, "create", cause);
    }
    const writer = new SafetensorsFileWriter(path, handle, [...specs], header.length);
    await writer.#write(header, 0);
    return writer;
  }

  async #write(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < bytes.length) {
        const { bytesWritten } = await this.#handle.write(
          bytes,
          done,
          Math.min(MAX_READ, bytes.length - done),
          position + done,
        );
        done += bytesWritten;
      }
    } catch (cause) {
      throw ioError(this.path, "write", cause);
    }
  }

  /** Name of the tensor expected next, or undefined when all are written. */
  get expected(): string | undefined {
    return this.#specs[this.#next]?.name;
  }

  /** Writes the next tensor; its name, dtype, shape and byte length must match the declared spec. */
  async write(name: string, data: TensorData | Uint8Array): Promise<void> {
    const spec = this.#specs[this.#next];
    if (this.#closed || spec === undefined)
      throw new RangeError(`${this.path}: no more tensors expected, got "${name}"`);
    if (spec.name !== name)
      throw new RangeError(`${this.path}: expected tensor "${spec.name}" next, got "${name}"`);
    const bytes = tensorBytes({ ...spec, data } as TensorToWrite);
    await this.#write(bytes, this.#position);
    this.#position += bytes.length;
    this.#next++;
  }

  /** Finishes the file (every declared tensor must have been written). Returns its size in bytes. */
  async close(): Promise<number> {
    if (this.#next !== this.#specs.length) {
      await this.abort();
      throw new RangeError(`${this.path}: closed after ${this.#next} of ${this.#specs.length} tensors`);
    }
    this.#closed = true;
    try {
      await this.#handle.close();
      await rename(this.#partial, this.path);
    } catch (cause) {
      throw ioError(this.path, "finishing the file", cause);
    }
    return this.#position;
  }

  /** Drops the partial file. */
  async abort(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#handle.close().catch(() => undefined);
    }
    await rm(this.#partial, { force: true });
  }
}

/** Writes a whole safetensors file from tensors in memory. Returns its size in bytes. */
export async function writeSafetensorsFile(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<number> {
  for (const t of tensors) specByteLength(t);
  const writer = await SafetensorsFileWriter.create(path, tensors, metadata);
  try {
    for (const t of tensors) await writer.write(t.name, t.data);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return writer.close();
}
