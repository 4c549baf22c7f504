import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { DataError } from "./errors.js";

/** Text to token ids and back, as far as the evaluation needs it. */
export interface TextTokenizer {
  /** Ids for `text`; with specials, the tokenizer's own start tokens (e.g. BOS) are added. */
  encode(text: string, opts?: { specials?: boolean }): number[];
  decode(ids: number[]): string;
}

/** Loads `tokenizer.json` (+ optional `tokenizer_config.json`) from a model folder; undefined when absent. */
export function loadTokenizer(dir: string): TextTokenizer | undefined {
  const file = join(dir, "tokenizer.json");
  if (!existsSync(file)) return undefined;
  const readJson = (path: string): Record<string, unknown> => {
    try {
      return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new DataError("ERR_DATA_TOKENIZER", `${path}: not valid JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
  };
  const configFile = join(dir, "tokenizer_config.json");
  const config = existsSync(configFile) ? readJson(configFile) : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(readJson(file), config);
  } catch (err) {
    throw new DataError("ERR_DATA_TOKENIZER", `${file}: unsupported tokenizer (${(err as Error).message})`, {
      cause: err,
    });
  }
  return {
    encode: (text, opts = {}) => {
      const ids = Array.from(
        tokenizer.encode(text, { add_special_tokens: opts.specials ?? true }).ids,
        Number,
      );
      const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0);
      if (bad >= 0) {
        throw new DataError(
          "ERR_DATA_TOKENIZER",
          `${file}: token ${bad} of the text has no id (unknown token)`,
        );
      }
      return ids;
    },
    decode: (ids) => tokenizer.decode(ids),
  };
}
