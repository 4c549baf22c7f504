/** Shared checks and copies of `TriRunLinear.concat` / `Float16Linear.concat` (fused projections). */
import type { DeviceTensor } from "@trirun/kernel-native";
import type { CpuCore } from "./cpu-core.js";
import type { CudaCore } from "./cuda-core.js";

/**
 * Checks that `parts` can be fused (at least one, all of the right class, on CUDA, live, same input
 * width, no bias column, no padded output columns unless their real columns are whole chunks of
 * `paddedChunk`) and returns their CUDA cores.
 */
export function concatParts<T extends { inFeatures: number; outFeatures: number; disposed: boolean }>(
  parts: readonly T[],
  kind: string,
  isKind: (p: unknown) => boolean,
  coreOf: (p: T) => CpuCore | CudaCore,
  paddedChunk?: number,
): CudaCore[] {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new TypeError(`parts: expected a non-empty array of ${kind} layers`);
  }
  const cores: CudaCore[] = [];
  for (const [i, p] of parts.entries()) {
    if (!isKind(p)) throw new TypeError(`parts[${i}]: expected a ${kind}`);
    if (p.disposed) throw new TypeError(`parts[${i}]: the layer has been disposed`);
    const core = coreOf(p);
    if (core.kind !== "cuda") throw new TypeError(`parts[${i}]: concat needs layers on the "cuda" backend`);
    if (core.onesColumn >= 0) throw new TypeError(`parts[${i}]: layers with a bias cannot be fused`);
    if (p.inFeatures !== parts[0].inFeatures || core.width !== (cores[0] ?? core).width) {
      throw new RangeError(
        `parts[${i}]: ${p.inFeatures} input features (${core.width} on the device), parts[0] has ${parts[0].inFeatures} (${(cores[0] ?? core).width}): fused layers must read the same input`,
      );
    }
    if (core.n !== p.outFeatures && (paddedChunk === undefined || p.outFeatures % paddedChunk !== 0)) {
      throw new RangeError(
        `parts[${i}]: ${p.outFeatures} output features are padded to ${core.n} on the device; fused layers need no padding${paddedChunk === undefined ? "" : ` or a multiple of ${paddedChunk} real ones`}`,
      );
    }
    if (core.device !== (cores[0] ?? core).device) {
      throw new RangeError(
        `parts[${i}]: on device ${core.device}, parts[0] on device ${(cores[0] ?? core).device}: fused layers must share a device`,
      );
    }
    cores.push(core);
  }
  return cores;
}

/**
 * Copies the first `width` columns of the `(rows, srcStride)` device matrix `src` (all of them by
 * default) into columns `[column, column + width)` of `dst` `(rows, n)`.
 */
export function copyColumns(
  dst: DeviceTensor,
  src: DeviceTensor,
  rows: number,
  n: number,
  column: number,
  width: number,
  srcStride = width,
): void {
  const target = dst.view([dst.numel - column], column);
  try {
    target.copyRowsFrom(src, rows, width, { dstStride: n, srcStride });
  } finally {
    target.dispose();
  }
}
