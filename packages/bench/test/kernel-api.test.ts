import * as kernelNative from "@trirun/kernel-native";
import { describe, expect, it } from "vitest";
import { asBenchKernelApi, type BenchKernelApi, loadKernel } from "../src/kernel-api.js";

// Compile-time check: the real kernel module provides everything the benchmark calls,
// with compatible signatures (typecheck fails here if the kernel API drifts).
const realApi: BenchKernelApi = kernelNative;

describe("kernel API", () => {
  it("accepts the real module, or names why no GPU is usable", async () => {
    const loaded = await loadKernel();
    if (loaded.ok) {
      expect(loaded.api.devices().length).toBeGreaterThan(0);
      return;
    }
    expect(kernelNative.available()).toBe(false);
    expect(loaded.reason.length).toBeGreaterThan(0);
    console.warn(`no usable CUDA device here (${loaded.reason}); GPU measurement is not exercised`);
    expect(realApi.available).toBe(kernelNative.available);
  });

  it("rejects modules that lack members, and unwraps CommonJS default exports", () => {
    expect(asBenchKernelApi(null)).toMatchObject({ ok: false });
    expect(asBenchKernelApi({ available: () => true })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/lacks unavailableReason, devices/),
    });
    const fake: Record<string, unknown> = Object.fromEntries(
      [
        "available",
        "unavailableReason",
        "devices",
        "memoryInfo",
        "synchronize",
        "trirunMatmul",
        "gemmF16",
        "Stream",
        "Event",
        "DeviceTensor",
      ].map((name) => [name, () => undefined]),
    );
    fake.available = () => false;
    fake.unavailableReason = () => "driver missing";
    expect(asBenchKernelApi({ default: fake })).toEqual({ ok: false, reason: "driver missing" });
    fake.available = () => true;
    fake.devices = () => [];
    expect(asBenchKernelApi(fake)).toEqual({ ok: false, reason: "no CUDA device found" });
  });
});
