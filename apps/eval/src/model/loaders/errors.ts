export type ModelLoadErrorCode =
  | "ERR_MODEL_NOT_FOUND"
  | "ERR_MODEL_TRUNCATED"
  | "ERR_MODEL_HEADER"
  | "ERR_MODEL_CONFIG"
  | "ERR_MODEL_TENSOR"
  | "ERR_MODEL_FORMAT"
  /** A TriRun checkpoint given with a model it was not made from. */
  | "ERR_CHECKPOINT_MISMATCH";

/** A model file or folder that cannot be loaded; `code` says why, the message names the file. */
export class ModelLoadError extends Error {
  constructor(
    readonly code: ModelLoadErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ModelLoadError";
  }
}
