// Runs the SiLU-multiply epilogue GPU test (epilogue.gpu.test.ts) on the host stand-in of the addon
// (an fp32 TriRun product and siluMulPairs in TypeScript). This checks the TypeScript API, the
// validation and the test itself where no GPU is present; the kernel's epilogue only on a GPU.
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative } from "./support/fake-native.js";
import { withFakeOps } from "./support/fake-ops.js";

setNativeAddonForTesting(withFakeOps(createFakeNative()));
await import("./epilogue.gpu.test.js");
