/**
 * Runs the CUDA backend's GPU tests (cuda.gpu.test.ts) against @trirun/kernel-native's host-memory
 * stand-in of its addon (test support: fake-native.ts, fp32 TriRun/GEMM emulation; fake-ops.ts), bundled
 * to a CommonJS file and loaded through TRIRUN_NATIVE_PATH. It checks what this package controls on
 * the device path (padding, the bias column, scratch buffers, streams, concat, disposal) where no GPU is
 * present; the kernels themselves are checked only on a GPU. Vitest runs each test file in its own
 * process, so the stand-in does not leak into other files. Skips, with a note, without esbuild.
 */
import { afterAll } from "vitest";

// kernel-native's test support, imported by URL: it lies outside this package's TypeScript project.
const support = new URL("../../kernel-native/test/support/fake-addon-file.ts", import.meta.url).href;
const { fakeAddonBundler } = (await import(support)) as {
  fakeAddonBundler(): { bundle(): { file: string; dispose(): void }; skip?: undefined } | { skip: string };
};
const bundler = fakeAddonBundler();
if (bundler.skip !== undefined) {
  console.log(`@trirun/layers host-emulated CUDA tests skipped: ${bundler.skip}`);
} else {
  const fake = bundler.bundle();
  afterAll(fake.dispose);
  process.env.TRIRUN_NATIVE_PATH = fake.file;
  await import("./cuda.gpu.test.js");
}
