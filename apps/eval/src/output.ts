import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";

/** An output path (--out, --json, --markdown) that cannot be written; the message names it and the flag. */
export class OutputError extends Error {
  readonly code = "ERR_OUTPUT";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "OutputError";
  }
}

/** The files a TriRun checkpoint folder written by this app holds. */
export const CHECKPOINT_FILES: readonly string[] = ["model.safetensors", "config.json"];

/** Another checkpoint's weights: read together with ours if left in the folder (an index wins). */
function isCheckpointFile(name: string): boolean {
  return name === "model.safetensors.index.json" || name.endsWith(".safetensors");
}

const real = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
};

/**
 * The nearest existing ancestor of `path` must be a writable folder: checked before any work so that
 * a bad target fails at once, not after minutes of quantization.
 */
function checkCreatable(path: string, what: string): void {
  let p = resolve(path);
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  if (!statSync(p).isDirectory()) throw new OutputError(`${what}: ${p} is a file, not a folder`);
  try {
    accessSync(p, constants.W_OK);
  } catch (cause) {
    throw new OutputError(`${what}: the folder ${p} is not writable`, { cause });
  }
}

/**
 * Creates a folder level by level: Node's recursive mkdirSync never returns on some virtual file
 * systems (/proc), where a plain mkdir fails at once.
 */
export function makeFolder(dir: string, what: string): void {
  const missing: string[] = [];
  let p = resolve(dir);
  while (!existsSync(p)) {
    missing.unshift(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code ?? String(cause);
      throw new OutputError(`${what}: cannot create the folder ${m} (${code})`, { cause });
    }
  }
  if (!statSync(resolve(dir)).isDirectory()) throw new OutputError(`${what}: ${dir} is a file, not a folder`);
}

/** Checks a report file target (--json, --markdown) before the work: not a folder, its folder creatable. */
export function checkOutputFile(file: string, flag: string): void {
  const what = `${flag} ${file}`;
  if (existsSync(file)) {
    if (statSync(file).isDirectory()) throw new OutputError(`${what}: is a folder; give a file name`);
    try {
      accessSync(file, constants.W_OK);
    } catch (cause) {
      throw new OutputError(`${what}: the file is not writable`, { cause });
    }
    return;
  }
  checkCreatable(dirname(resolve(file)), what);
}

/** Writes a report file, creating its folder; errors name the flag and the path. */
export function writeOutputFile(file: string, text: string, flag: string): void {
  const what = `${flag} ${file}`;
  makeFolder(dirname(resolve(file)), what);
  try {
    writeFileSync(file, text);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? String(cause);
    throw new OutputError(`${what}: cannot write the file (${code})`, { cause });
  }
}

export interface CheckpointOutputOptions {
  /** The model being quantized: the checkpoint must never replace it. */
  input?: string;
  /** Replace our files and remove another checkpoint's (--force). */
  overwrite?: boolean;
  /** The flag that named the folder, for messages (default "--out"). */
  flag?: string;
}

/**
 * Checks a checkpoint folder target and returns the other checkpoint's files that `overwrite` would
 * remove. Mirrors trirun-pack's prepareOutput (packages/packing/src/node/convert.ts): the output is
 * never the input; without `overwrite`, a folder that holds files this run writes, or another
 * checkpoint's weights (which the loader would read with ours), is refused. Nothing is changed here.
 */
export function checkCheckpointOutput(dir: string, opts: CheckpointOutputOptions = {}): string[] {
  const what = `${opts.flag ?? "--out"} ${dir}`;
  if (opts.input !== undefined) {
    const input = real(opts.input);
    const inputFolder = existsSync(input) && statSync(input).isDirectory() ? input : dirname(input);
    // A folder model is replaced by our config.json/model.safetensors; a .safetensors model file too.
    const clobbers = input === real(dir) || (inputFolder === real(dir) && !input.endsWith(".bin"));
    if (clobbers) {
      throw new OutputError(
        `${what}: the output folder must differ from the input model ${opts.input} (it would be overwritten)`,
      );
    }
  }
  if (!existsSync(dir)) {
    checkCreatable(dir, what);
    return [];
  }
  if (!statSync(dir).isDirectory()) throw new OutputError(`${what}: is a file; the checkpoint is a folder`);
  const entries = readdirSync(dir);
  const stale = entries.filter((e) => isCheckpointFile(e) && !CHECKPOINT_FILES.includes(e));
  if (opts.overwrite) return stale;
  const taken = CHECKPOINT_FILES.filter((name) => entries.includes(name));
  if (taken.length > 0) {
    throw new OutputError(
      `${what}: ${join(dir, taken[0])} already exists${taken.length > 1 ? ` (and ${taken.length - 1} more file this run writes)` : ""}; use --force to replace it`,
    );
  }
  if (stale.length > 0) {
    throw new OutputError(
      `${what}: another checkpoint is in the folder (${join(dir, stale[0])}); use an empty folder, or --force to replace it`,
    );
  }
  return [];
}

/**
 * Creates the checkpoint folder and returns the other checkpoint's files that `overwrite` replaces:
 * the caller removes them (removeReplaced) once its own files are written, so that a failed write
 * leaves the old checkpoint whole.
 */
export function prepareCheckpointOutput(dir: string, opts: CheckpointOutputOptions = {}): string[] {
  const stale = checkCheckpointOutput(dir, opts);
  makeFolder(dir, `${opts.flag ?? "--out"} ${dir}`);
  return stale;
}

/** Removes the replaced checkpoint's files (stale shards or an index would be read with ours). */
export function removeReplaced(dir: string, stale: readonly string[]): void {
  for (const name of stale) rmSync(join(dir, name), { force: true });
}
