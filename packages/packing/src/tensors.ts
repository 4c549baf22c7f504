/** Converting tensors read from a checkpoint into float arrays for computation. */
import { decodeBf16, decodeF16 } from "./fp16.js";
import type { Tensor } from "./safetensors.js";

/**
 * A floating-point tensor as a Float32Array (fp16 and bf16 exactly, fp64 rounded; F32 data is
 * returned as is, not copied). TypeError for non-float dtypes.
 */
export function tensorToFloat32(tensor: Tensor, name = "tensor"): Float32Array {
  switch (tensor.dtype) {
    case "F32":
      return tensor.data as Float32Array;
    case "F16":
      return decodeF16(tensor.data as Uint16Array);
    case "BF16":
      return decodeBf16(tensor.data as Uint16Array);
    case "F64":
      return Float32Array.from(tensor.data as Float64Array);
    default:
      throw new TypeError(
        `${name}: dtype ${tensor.dtype} is not a floating-point type (expected F16, BF16, F32 or F64)`,
      );
  }
}
