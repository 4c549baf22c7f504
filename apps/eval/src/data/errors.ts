export type DataErrorCode = "ERR_DATA_NOT_FOUND" | "ERR_DATA_FORMAT" | "ERR_DATA_TOKENIZER";

/** An evaluation input (token file, text file, task file) that cannot be used; the message names the file. */
export class DataError extends Error {
  constructor(
    readonly code: DataErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "DataError";
  }
}
