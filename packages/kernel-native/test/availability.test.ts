import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as kernel from "../src/index.js";

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

function builtAddons(): string[] {
  const found: string[] = [];
  const prebuilds = join(packageRoot, "prebuilds");
  if (existsSync(prebuilds)) {
    for (const f of readdirSync(prebuilds, { recursive: true })) {
      if (String(f).endsWith(".node")) found.push(join(prebuilds, String(f)));
    }
  }
  const local = join(packageRoot, "build", "Release", "trirun_native.node");
  if (existsSync(local)) found.push(local);
  return found;
}

describe("module and addon", () => {
  it("the native build artifact exists and links the kernel", () => {
    const addons = builtAddons();
    expect(addons.length).toBeGreaterThan(0);
    let nmOutput: string;
    try {
      nmOutput = execFileSync("nm", ["-D", "--defined-only", addons[0]], { encoding: "utf8" });
    } catch {
      console.log("nm not available: skipping the symbol check");
      return;
    }
    for (const symbol of ["trirun_matmul", "trirun_workspace_bytes", "trirun_error_string"]) {
      expect(nmOutput).toMatch(new RegExp(` T ${symbol}$`, "m"));
    }
    // Node loads addons lazily, so a kernel entry point missing from the objects would only fail when
    // called on a GPU machine: every trirun_ symbol must be defined in the addon itself.
    const undefinedSymbols = execFileSync("nm", ["-D", "--undefined-only", addons[0]], { encoding: "utf8" });
    expect(undefinedSymbols.match(/\btrirun_\w+/g) ?? []).toEqual([]);
  });

  it("loads the addon and reports availability with a reason", () => {
    const info = kernel.nativeInfo();
    expect(info.loaded).toBe(true);
    if (kernel.available()) {
      expect(kernel.unavailableReason()).toBeUndefined();
    } else {
      expect(kernel.unavailableReason()).toMatch(/\S/);
      expect(info.reason).toBe(kernel.unavailableReason());
    }
  });
});

describe.skipIf(kernel.available())("without a CUDA device", () => {
  it("says why, in words a user can act on", () => {
    const reason = kernel.unavailableReason()!;
    // This CPU machine has no driver: cudaErrorInsufficientDriver with driver version 0.
    expect(reason).toMatch(/no NVIDIA driver\/GPU found|no CUDA-capable GPU|driver/);
  });

  it("every GPU call throws a NoCudaDeviceError that says no CUDA device is present", () => {
    const calls: [string, () => unknown][] = [
      ["devices", () => kernel.devices()],
      ["memoryInfo", () => kernel.memoryInfo()],
      ["synchronize", () => kernel.synchronize()],
      ["currentDevice", () => kernel.currentDevice()],
      ["setDevice", () => kernel.setDevice(0)],
      ["deviceInfo", () => kernel.deviceInfo(0)],
      ["DeviceTensor.empty", () => kernel.DeviceTensor.empty("f16", [2, 2])],
      ["DeviceTensor.zeros", () => kernel.DeviceTensor.zeros("f32", [2])],
      ["DeviceTensor.fromArray", () => kernel.DeviceTensor.fromArray(new Uint16Array(4), [2, 2])],
      ["Stream", () => new kernel.Stream()],
      ["Event", () => new kernel.Event()],
      ["cublasLibraryPath", () => kernel.cublasLibraryPath()],
      [
        "trirunMatmul",
        () =>
          kernel.trirunMatmul(undefined as never, undefined as never, undefined as never, undefined as never),
      ],
      ["gemmF16", () => kernel.gemmF16(undefined as never, undefined as never, undefined as never)],
      ["gemmF32", () => kernel.gemmF32(undefined as never, undefined as never, undefined as never)],
    ];
    for (const [name, call] of calls) {
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      expect(thrown, name).toBeInstanceOf(kernel.NoCudaDeviceError);
      const error = thrown as kernel.NoCudaDeviceError;
      expect(error.message, name).toBe(`no CUDA device is present: ${kernel.unavailableReason()}`);
      expect(error.code).toBe("ERR_NO_CUDA_DEVICE");
    }
  });
});

describe("loader override", () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it("a TRIRUN_NATIVE_PATH that cannot be loaded leaves the module usable with a reason", async () => {
    vi.stubEnv("TRIRUN_NATIVE_PATH", join(packageRoot, "does-not-exist.node"));
    vi.resetModules();
    const fresh = await import("../src/index.js");
    expect(fresh.available()).toBe(false);
    expect(fresh.unavailableReason()).toMatch(
      /^native addon not built or not loadable: TRIRUN_NATIVE_PATH=.*does-not-exist\.node/,
    );
    expect(() => fresh.DeviceTensor.empty("f16", [1])).toThrow(
      /^no CUDA device is present: native addon not built/,
    );
  });

  it("TRIRUN_NATIVE_PATH loads a given build", async () => {
    const [addon] = builtAddons();
    vi.stubEnv("TRIRUN_NATIVE_PATH", addon);
    vi.resetModules();
    const fresh = await import("../src/index.js");
    expect(fresh.nativeInfo()).toMatchObject({ loaded: true, path: addon });
  });
});

describe("CudaError", () => {
  it("carries the CUDA error name as code", () => {
    const e = new kernel.CudaError("cudaMalloc of 10 bytes failed", "cudaErrorMemoryAllocation");
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe("CudaError");
    expect(e.code).toBe("cudaErrorMemoryAllocation");
  });
});
