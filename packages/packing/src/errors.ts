/** Error codes of checkpoint I/O and validation. */
export type CheckpointErrorCode =
  | "ERR_SAFETENSORS_TRUNCATED"
  | "ERR_SAFETENSORS_HEADER_TOO_LARGE"
  | "ERR_SAFETENSORS_BAD_JSON"
  | "ERR_SAFETENSORS_BAD_HEADER"
  | "ERR_SAFETENSORS_UNKNOWN_DTYPE"
  | "ERR_SAFETENSORS_SHAPE_MISMATCH"
  | "ERR_SAFETENSORS_BAD_OFFSETS"
  | "ERR_SAFETENSORS_TENSOR_NOT_FOUND"
  | "ERR_SAFETENSORS_BAD_INDEX"
  | "ERR_SAFETENSORS_IO"
  | "ERR_TRIRUN_BAD_METADATA"
  | "ERR_TRIRUN_BAD_LAYER"
  | "ERR_CHECKPOINT_NOT_FOUND";

/**
 * A checkpoint file that cannot be read or is malformed. The message names the file (and the
 * tensor when there is one); `code` says what kind of failure it is.
 */
export class CheckpointError extends Error {
  readonly code: CheckpointErrorCode;
  readonly file: string;
  readonly tensor: string | undefined;

  constructor(
    code: CheckpointErrorCode,
    file: string,
    message: string,
    tensor?: string,
    options?: ErrorOptions,
  ) {
    super(`${file}${tensor === undefined ? "" : `: tensor "${tensor}"`}: ${message}`, options);
    this.name = "CheckpointError";
    this.code = code;
    this.file = file;
    this.tensor = tensor;
  }
}
