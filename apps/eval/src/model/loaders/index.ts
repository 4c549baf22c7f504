import { existsSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import type { LlamaModel } from "../llama.js";
import { ModelLoadError } from "./errors.js";
import { isTriRunConfig, loadQuantizedCheckpoint } from "../../checkpoint.js";
import { loadHfFolder, readConfigJson } from "./hf.js";
import { type LoadOptions, loadLlama2c } from "./llama2c.js";

export type ModelFormat = "llama2c" | "hf" | "trirun";

/** llama2.c for a .bin file, a Hugging Face folder for a folder with config.json, TriRun for a checkpoint. */
export function detectModelFormat(path: string): ModelFormat {
  if (!existsSync(path))
    throw new ModelLoadError("ERR_MODEL_NOT_FOUND", `${path}: no such model file or folder`);
  if (statSync(path).isDirectory()) {
    if (!existsSync(join(path, "config.json"))) {
      throw new ModelLoadError("ERR_MODEL_FORMAT", `${path}: a model folder needs a config.json`);
    }
    return isTriRunConfig(readConfigJson(path)) ? "trirun" : "hf";
  }
  const ext = extname(path).toLowerCase();
  if (ext === ".bin") return "llama2c";
  if (ext === ".safetensors") return "trirun";
  throw new ModelLoadError(
    "ERR_MODEL_FORMAT",
    `${path}: unknown model file type "${ext}" (expected a llama2.c .bin, a Hugging Face folder or a TriRun checkpoint)`,
  );
}

export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LlamaModel> {
  const format = detectModelFormat(path);
  if (format === "llama2c") return loadLlama2c(path, opts);
  if (format === "hf") return loadHfFolder(path, opts);
  return (await loadQuantizedCheckpoint(path, { backend: opts.backend })).model;
}
