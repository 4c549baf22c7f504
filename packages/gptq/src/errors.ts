/** Error codes of {@link GPTQError}. */
export type GPTQErrorCode = "ERR_GPTQ_NOT_POSITIVE_DEFINITE" | "ERR_GPTQ_NO_CALIBRATION" | "ERR_GPTQ_BACKEND";

/** A failure of the algorithm or of a backend (bad arguments throw TypeError / RangeError instead). */
export class GPTQError extends Error {
  constructor(
    readonly code: GPTQErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "GPTQError";
  }
}
