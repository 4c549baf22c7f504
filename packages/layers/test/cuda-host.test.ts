/**
 * Runs the CUDA backend's GPU tests (cuda.gpu.test.ts) against @trirun/kernel-native's host-memory
 * stand-in of its addon (test support: fake-native.ts, fp32 TriRun/GEMM emulation; fake-ops.ts), bundled
 * to a CommonJS file and loaded through TRIRUN_NATIVE_PATH. It checks what this package controls on
 * the device path (padding, the bias column, scratch buffers, streams, concat, disposal) where no GPU is
 * present; the kernels themselves are checked only on a GPU. Vitest runs each test file in its own
 * process, so the stand-in does not leak into other files. Skips, with a note, without the stand-in or
 * esbuild (reached through vitest -> vite).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";

const here = dirname(fileURLToPath(import.meta.url));
const support = resolve(here, "../../kernel-native/test/support");
const fakeFiles = [join(support, "fake-native.ts"), join(support, "fake-ops.ts")];

function findEsbuild(): { buildSync(opts: Record<string, unknown>): unknown } | undefined {
  try {
    const fromHere = createRequire(import.meta.url);
    const vite = createRequire(fromHere.resolve("vitest")).resolve("vite");
    return createRequire(vite)("esbuild");
  } catch {
    return undefined;
  }
}

const esbuild = findEsbuild();
if (!fakeFiles.every(existsSync) || esbuild === undefined) {
  console.log(
    "@trirun/layers host-emulated CUDA tests skipped: the kernel-native stand-in or esbuild was not found",
  );
} else {
  const dir = mkdtempSync(join(tmpdir(), "trirun-layers-fake-addon-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const entry = join(dir, "entry.ts");
  writeFileSync(
    entry,
    [
      `import { createFakeNative } from ${JSON.stringify(fakeFiles[0])};`,
      `import { withFakeOps } from ${JSON.stringify(fakeFiles[1])};`,
      "module.exports = withFakeOps(createFakeNative());",
    ].join("\n"),
  );
  const outfile = join(dir, "fake-addon.cjs");
  esbuild.buildSync({
    entryPoints: [entry],
    bundle: true,
    format: "cjs",
    platform: "node",
    outfile,
    logLevel: "silent",
  });
  process.env.TRIRUN_NATIVE_PATH = outfile;
  await import("./cuda.gpu.test.js");
}
