/**
 * Backend selection: CUDA when `@trirun/kernel-native` finds a usable device, the CPU reference otherwise.
 */
import { available, unavailableReason } from "@trirun/kernel-native";
import type { Backend } from "./types.js";

/** "cuda" when `@trirun/kernel-native` reports a usable CUDA device, else "cpu". */
export function defaultBackend(): Backend {
  return available() ? "cuda" : "cpu";
}

/** Validates a requested backend (default: {@link defaultBackend}) and checks that CUDA is usable. */
export function resolveBackend(requested: Backend | undefined, argName = "opts.backend"): Backend {
  if (requested === undefined) return defaultBackend();
  if (requested !== "cpu" && requested !== "cuda") {
    throw new TypeError(`${argName} must be "cpu" or "cuda", got ${JSON.stringify(requested)}`);
  }
  if (requested === "cuda" && !available()) {
    throw new Error(
      `${argName} is "cuda" but no CUDA device is usable: ${unavailableReason() ?? "unknown reason"}`,
    );
  }
  return requested;
}
