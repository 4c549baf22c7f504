// Error classes of the package. Argument problems are TypeError (type/dtype)
// or RangeError (shape/value); these cover device state and CUDA failures.

/** A failed CUDA runtime or cuBLAS call; `code` is the CUDA error name, e.g. "cudaErrorMemoryAllocation". */
export class CudaError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = "CudaError";
    this.code = code;
  }
}

/** Thrown by every GPU call when the addon is missing or no usable CUDA device exists. */
export class NoCudaDeviceError extends Error {
  readonly code = "ERR_NO_CUDA_DEVICE";
  /** Why the device is unavailable (the same text as unavailableReason()). */
  readonly reason: string;
  constructor(reason: string) {
    super(`no CUDA device is present: ${reason}`);
    this.name = "NoCudaDeviceError";
    this.reason = reason;
  }
}

/** A tensor, stream or event used after dispose(). */
export class DisposedError extends Error {
  readonly code = "ERR_DISPOSED";
  constructor(what: string) {
    super(`${what} has been disposed`);
    this.name = "DisposedError";
  }
}
