/**
 * The host stand-in of the addon (fake-native.ts with fake-ops.ts) bundled into one CommonJS file, for
 * the tests of workspaces that use @trirun/kernel-native as a package: they point TRIRUN_NATIVE_PATH at
 * it before the package is first used. esbuild is reached through vitest -> vite (no dependency of its
 * own); where it is not found, the answer says so and the caller skips.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

interface Esbuild {
  buildSync(opts: Record<string, unknown>): unknown;
}

function findEsbuild(): Esbuild | undefined {
  try {
    const fromHere = createRequire(import.meta.url);
    const vite = createRequire(fromHere.resolve("vitest")).resolve("vite");
    return createRequire(vite)("esbuild") as Esbuild;
  } catch {
    return undefined;
  }
}

export type FakeAddonBundler =
  | { bundle(faults?: { devices?: number }): { file: string; dispose(): void }; skip?: undefined }
  | { skip: string };

/** A bundler of the stand-in, or why there is none. */
export function fakeAddonBundler(): FakeAddonBundler {
  const esbuild = findEsbuild();
  if (esbuild === undefined) return { skip: "esbuild not found through vitest" };
  const here = dirname(fileURLToPath(import.meta.url));
  return {
    /** `faults`: createFakeNative's (JSON-serialisable ones), e.g. `{ devices: 2 }`. */
    bundle(faults: { devices?: number } = {}) {
      const dir = mkdtempSync(join(tmpdir(), "trirun-fake-addon-"));
      const entry = join(dir, "entry.ts");
      writeFileSync(
        entry,
        [
          `import { createFakeNative } from ${JSON.stringify(join(here, "fake-native.ts"))};`,
          `import { withFakeOps } from ${JSON.stringify(join(here, "fake-ops.ts"))};`,
          `module.exports = withFakeOps(createFakeNative(${JSON.stringify(faults)}));`,
        ].join("\n"),
      );
      const file = join(dir, "fake-addon.cjs");
      esbuild.buildSync({
        entryPoints: [entry],
        bundle: true,
        format: "cjs",
        platform: "node",
        outfile: file,
        logLevel: "silent",
      });
      return { file, dispose: () => rmSync(dir, { recursive: true, force: true }) };
    },
  };
}
