// Runs the fused-norm GPU test (matmul-norm.gpu.test.ts) on the host stand-in of the addon (the norm
// and an fp32 TriRun product in TypeScript). This checks the TypeScript API, the validation and the
// test itself where no GPU is present; the kernel only on a GPU.
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative } from "./support/fake-native.js";
import { withFakeOps } from "./support/fake-ops.js";

setNativeAddonForTesting(withFakeOps(createFakeNative()));
await import("./matmul-norm.gpu.test.js");
