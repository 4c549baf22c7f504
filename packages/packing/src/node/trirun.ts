/** Node-only TriRun checkpoint files: open a (sharded) checkpoint with its config, write one. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { TriRunCheckpoint, type TriRunCheckpointContents, triRunFileContents } from "../checkpoint.js";
import { CheckpointError } from "../errors.js";
import { locateCheckpoint, openCheckpoint, writeSafetensorsFile } from "./files.js";

/** Reads `config.json` from a checkpoint folder; undefined when there is none. */
export async function readConfig(dir: string): Promise<Record<string, unknown> | undefined> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CheckpointError(
      "ERR_SAFETENSORS_IO",
      path,
      `read failed (${(err as Error).message})`,
      undefined,
      { cause: err },
    );
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new CheckpointError(
      "ERR_TRIRUN_BAD_METADATA",
      path,
      `config.json is not a JSON object (${(err as Error).message})`,
    );
  }
}

/** A TriRun checkpoint opened from disk, with the folder's config.json when present. */
export interface OpenedTriRunCheckpoint {
  checkpoint: TriRunCheckpoint;
  config: Record<string, unknown> | undefined;
}

/**
 * Opens a TriRun checkpoint (a file, a folder or a shard index) lazily: headers and metadata are
 * validated now, tensors read on demand with `checkpoint.readLayer` / `checkpoint.files.readTensor`.
 */
export async function openTriRunCheckpoint(path: string): Promise<OpenedTriRunCheckpoint> {
  const location = await locateCheckpoint(path);
  const files = await openCheckpoint(path);
  try {
    return { checkpoint: TriRunCheckpoint.fromSafetensors(files), config: await readConfig(location.dir) };
  } catch (err) {
    await files.close();
    throw err;
  }
}

/** Writes a single-file TriRun checkpoint from layers and pass-through tensors in memory. Returns bytes written. */
export async function writeTriRunCheckpoint(
  path: string,
  contents: TriRunCheckpointContents,
): Promise<number> {
  const { tensors, metadata } = triRunFileContents(contents);
  return writeSafetensorsFile(path, tensors, metadata);
}
