// The addon's error paths that run without a GPU: failures must surface as JS
// exceptions (CudaError with the CUDA error name, TypeError, RangeError), never abort.
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { CudaError, nativeInfo } from "../src/index.js";
import type { NativeAddon } from "../src/native.js";

const info = nativeInfo();
const addon = info.path ? (createRequire(import.meta.url)(info.path) as NativeAddon) : undefined;

describe.skipIf(addon === undefined || info.deviceCount > 0)("native boundary without a driver", () => {
  it("turns a failing CUDA call into a CudaError carrying the CUDA error name", () => {
    addon!.setErrorClass(CudaError);
    let thrown: unknown;
    try {
      new addon!.DeviceBuffer(1024);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(CudaError);
    expect((thrown as CudaError).code).toMatch(/^cudaError/);
    expect((thrown as CudaError).message).toMatch(/^cudaGetDevice: /);
  });

  it("rejects bad arguments with TypeError/RangeError before touching CUDA", () => {
    expect(() => new addon!.DeviceBuffer(-1)).toThrow(RangeError);
    expect(() => new addon!.DeviceBuffer(Number.NaN)).toThrow(RangeError);
    expect(() => new addon!.DeviceBuffer("1" as unknown as number)).toThrow(TypeError);
    expect(() => addon!.copyHostToDevice({} as never, 0, new Uint8Array(1), null)).toThrow(
      /^tensor: expected a device buffer/,
    );
    expect(() => addon!.setErrorClass(42 as never)).toThrow(TypeError);
  });

  it("reports a missing cuBLAS clearly", () => {
    let thrown: unknown;
    try {
      addon!.cublasInfo();
    } catch (error) {
      thrown = error;
    }
    if (thrown === undefined) return; // a machine with cuBLAS installed
    expect((thrown as { code?: string }).code).toBe("ERR_CUBLAS_UNAVAILABLE");
    expect((thrown as Error).message).toMatch(/cuBLAS could not be opened .*Tried:\n\s+libcublas\.so\.13/s);
  });

  it("probe() reports the failure instead of throwing", () => {
    const probe = addon!.probe();
    expect(probe.count).toBe(0);
    expect(probe.errorName).toMatch(/^cudaError/);
    expect(probe.runtimeVersion).toBeGreaterThanOrEqual(12000);
  });
});
