// Install hook: use a prebuilt binary when one matches, build from source when
// nvcc is available, and otherwise install anyway with a clear message (the
// module then loads with available() === false).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

// Inside the source monorepo the turbo `build` task compiles the addon.
if (existsSync(join(root, "..", "..", "pnpm-workspace.yaml"))) process.exit(0);

try {
  const { createRequire } = await import("node:module");
  const require = createRequire(import.meta.url);
  require("node-gyp-build").path(root);
  process.exit(0); // a prebuild or an earlier local build matches this platform
} catch {
  // fall through
}

const nvcc = spawnSync("nvcc", ["--version"], { encoding: "utf8" });
if (nvcc.status !== 0) {
  console.warn(
    "@trirun/kernel-native: no prebuilt binary for this platform and no `nvcc` on PATH; " +
      "installed without the native addon. available() will return false. " +
      "Install the CUDA toolkit (nvcc >= 12) and reinstall to build it.",
  );
  process.exit(0);
}
try {
  execFileSync(process.execPath, [join(root, "scripts", "build-native.mjs")], {
    stdio: "inherit",
    cwd: root,
  });
} catch {
  console.warn(
    "@trirun/kernel-native: building the native addon failed (see above); available() will return false.",
  );
}
