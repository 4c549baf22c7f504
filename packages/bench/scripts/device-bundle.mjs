// Bundles the `trirun-bench` CLI into one ESM file that runs with a bare Node.js
// binary (no node_modules), for GPU machines. The chart libraries stay out of the
// bundle: run with `--json`/`--out` there and `trirun-bench render` elsewhere.
//
//   node scripts/device-bundle.mjs [--out <file>]   (default: <repo>/.device/bench.mjs)
//
// On the GPU machine the kernel addon is found through TRIRUN_NATIVE_PATH (see
// @trirun/kernel-native's device bundle, which puts it in .device/ as well).
import { execFileSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const repo = join(pkg, "..", "..");
const outIndex = process.argv.indexOf("--out");
const outfile = outIndex > 0 ? resolve(process.argv[outIndex + 1]) : join(repo, ".device", "bench.mjs");

let commit = "unknown";
try {
  commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repo, encoding: "utf8" }).trim();
  const dirty = execFileSync(
    "git",
    ["status", "--porcelain", "--", "packages/kernel-native", "packages/bench"],
    {
      cwd: repo,
      encoding: "utf8",
    },
  );
  if (dirty.trim()) commit += "+dirty";
} catch {
  // not a git checkout
}

mkdirSync(dirname(outfile), { recursive: true });
const esbuild = await import("esbuild");
await esbuild.build({
  entryPoints: [join(pkg, "src", "bin.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  logLevel: "warning",
  // CommonJS dependencies inside an ESM bundle need a require().
  banner: {
    js:
      "import { createRequire as __benchCreateRequire } from 'node:module'; const require = __benchCreateRequire(import.meta.url);" +
      // The commit the bundle was built from, recorded in results unless --commit says otherwise.
      `process.env.TRIRUN_COMMIT ??= ${JSON.stringify(commit)};`,
  },
});
console.log(
  `device-bundle: ${relative(repo, outfile)} ${(statSync(outfile).size / 2 ** 20).toFixed(1)} MiB (commit ${commit})`,
);
