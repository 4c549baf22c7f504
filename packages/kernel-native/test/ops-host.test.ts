// Runs the GPU test of the model ops (ops.gpu.test.ts) on the host: against
// the host-memory stand-in of the addon with an fp64 emulation of the ops
// (test/support/fake-ops.ts). This checks the test itself (references,
// tolerances, guard zones) and the argument order from src/ops.ts to the
// addon, where no GPU is present; the CUDA kernels are checked only on a GPU.
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative } from "./support/fake-native.js";
import { withFakeOps } from "./support/fake-ops.js";

setNativeAddonForTesting(withFakeOps(createFakeNative()));
await import("./ops.gpu.test.js");
