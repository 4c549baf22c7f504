// Runs the CUDA graph GPU test (graph.gpu.test.ts) on the host stand-in of the addon, whose
// captureGraph records launches and replays them with the real addon's rules (no uploads, downloads,
// synchronize or explicit streams inside a capture). This checks the TypeScript API and the test
// itself where no GPU is present; the CUDA graph machinery is checked only on a GPU.
import { setNativeAddonForTesting } from "../src/native.js";
import { createFakeNative } from "./support/fake-native.js";
import { withFakeOps } from "./support/fake-ops.js";

setNativeAddonForTesting(withFakeOps(createFakeNative()));
await import("./graph.gpu.test.js");
