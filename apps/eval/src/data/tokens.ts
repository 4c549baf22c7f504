import { readFileSync, statSync } from "node:fs";
import { extname } from "node:path";
import { DataError } from "./errors.js";
import type { TextTokenizer } from "./tokenizer.js";

export type TokenFileFormat = "u16" | "u32" | "json" | "text";

export interface TokenFileOptions {
  /** Overrides the format guessed from the extension (.u16, .u32, .json, .txt). */
  format?: TokenFileFormat;
  /** Tokens per row of a raw (u16/u32) file; required for those. */
  seqLen?: number;
  /** Needed for text files. */
  tokenizer?: TextTokenizer;
  /** Every id must be below this. */
  vocabSize?: number;
}

export function guessFormat(file: string): TokenFileFormat {
  const ext = extname(file).toLowerCase();
  if (ext === ".u16") return "u16";
  if (ext === ".u32") return "u32";
  if (ext === ".json") return "json";
  if (ext === ".txt" || ext === ".text" || ext === ".md") return "text";
  throw new DataError(
    "ERR_DATA_FORMAT",
    `${file}: cannot tell the format from the extension "${ext}"; pass --format u16|u32|json|text`,
  );
}

function readBytes(file: string): Buffer {
  try {
    statSync(file);
    return readFileSync(file);
  } catch (err) {
    throw new DataError("ERR_DATA_NOT_FOUND", `${file}: cannot read the token file`, { cause: err });
  }
}

function checkIds(rows: Int32Array[], file: string, vocabSize: number | undefined): void {
  if (vocabSize === undefined) return;
  rows.forEach((row, r) => {
    for (let i = 0; i < row.length; i++) {
      if (row[i] >= vocabSize) {
        throw new DataError(
          "ERR_DATA_FORMAT",
          `${file}: token ${row[i]} (sequence ${r}, position ${i}) is outside the model's vocabulary of ${vocabSize}`,
        );
      }
    }
  });
}

/**
 * Reads token sequences: raw little-endian u16/u32 ids in rows of seqLen, JSON (one array of ids or an
 * array of arrays), or text tokenized as one sequence.
 */
export function readTokenFile(file: string, opts: TokenFileOptions = {}): Int32Array[] {
  const format = opts.format ?? guessFormat(file);
  const bytes = readBytes(file);
  let rows: Int32Array[];
  if (format === "u16" || format === "u32") {
    const width = format === "u16" ? 2 : 4;
    const seqLen = opts.seqLen;
    if (seqLen === undefined || !Number.isInteger(seqLen) || seqLen < 2) {
      throw new RangeError(
        `seqLen (--seq-len): a raw ${format} file (${file}) needs an integer sequence length >= 2`,
      );
    }
    const rowBytes = seqLen * width;
    if (bytes.byteLength === 0 || bytes.byteLength % rowBytes !== 0) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${file}: ${bytes.byteLength} bytes is not a whole number of ${seqLen}-token ${format} rows (${rowBytes} bytes each)`,
      );
    }
    const count = bytes.byteLength / rowBytes;
    rows = [];
    for (let r = 0; r < count; r++) {
      const row = new Int32Array(seqLen);
      for (let i = 0; i < seqLen; i++) {
        const o = r * rowBytes + i * width;
        const id = width === 2 ? bytes.readUInt16LE(o) : bytes.readUInt32LE(o);
        if (id > 0x7fffffff) throw new DataError("ERR_DATA_FORMAT", `${file}: token id ${id} is too large`);
        row[i] = id;
      }
      rows.push(row);
    }
  } else if (format === "json") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString("utf8"));
    } catch (err) {
      throw new DataError("ERR_DATA_FORMAT", `${file}: not valid JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
    const list = Array.isArray(parsed) && parsed.every((x) => typeof x === "number") ? [parsed] : parsed;
    if (!Array.isArray(list) || list.length === 0) {
      throw new DataError(
        "ERR_DATA_FORMAT",
        `${file}: expected an array of token ids or an array of such arrays`,
      );
    }
    rows = list.map((seq, r) => {
      if (!Array.isArray(seq) || !seq.every((x) => Number.isInteger(x) && x >= 0 && x <= 0x7fffffff)) {
        throw new DataError(
          "ERR_DATA_FORMAT",
          `${file}: sequence ${r} is not an array of non-negative integer ids`,
        );
      }
      return Int32Array.from(seq as number[]);
    });
  } else {
    if (!opts.tokenizer) {
      throw new DataError(
        "ERR_DATA_TOKENIZER",
        `${file}: a text file needs the model's tokenizer (tokenizer.json in the model folder); this model has none, so give token ids (u16/u32/json)`,
      );
    }
    rows = [Int32Array.from(opts.tokenizer.encode(bytes.toString("utf8")))];
  }
  checkIds(rows, file, opts.vocabSize);
  return rows;
}

/** Cuts sequences into consecutive windows of at most `length` tokens (each with at least two tokens). */
export function toWindows(sequences: Int32Array[], length: number): Int32Array[] {
  if (!Number.isInteger(length) || length < 2)
    throw new RangeError(`window length must be >= 2, got ${length}`);
  const out: Int32Array[] = [];
  for (const seq of sequences) {
    for (let start = 0; start + 1 < seq.length; start += length) {
      out.push(seq.subarray(start, Math.min(start + length, seq.length)));
    }
  }
  return out;
}
