// Runs the GPU test of the fused add+RMSNorm epilogue (matmul-add-rmsnorm.gpu.test.ts) on the host,
// against the host-memory stand-in of the addon (its matmul, add+RMSNorm and graph emulations): this
// checks the test itself and the argument order from src/matmul.ts to the addon where no GPU is
// present; the CUDA epilogue is checked only on a GPU.
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative } from "./support/fake-native.js";
import { withFakeOps } from "./support/fake-ops.js";

setNativeAddonForTesting(withFakeOps(createFakeNative()));
await import("./matmul-add-rmsnorm.gpu.test.js");
