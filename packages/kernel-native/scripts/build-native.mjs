// Builds the native addon: nvcc compiles the CUDA sources into position-
// independent objects (build-cuda/), then prebuildify runs node-gyp, which
// links them with the Node-API glue and the static CUDA runtime into
// prebuilds/<platform>-<arch>/*.node.
//
//   TRIRUN_CUDA_ARCHS="90"   build for fewer architectures (faster local loop)
//   --force                  rebuild even when outputs are newer than sources
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const force = process.argv.includes("--force");
const kernelDir = join(root, "src", "kernel");
const addonDir = join(root, "src", "addon");
const outDir = join(root, "build-cuda");
const archs = (process.env.TRIRUN_CUDA_ARCHS ?? "80,86,89,90").split(",").map((s) => s.trim());

function newest(dir) {
  return Math.max(...readdirSync(dir).map((f) => statSync(join(dir, f)).mtimeMs));
}
function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} exited with status ${r.status}`);
}

const nvcc = process.env.NVCC ?? "nvcc";
if (spawnSync(nvcc, ["--version"]).status !== 0) {
  const prebuilt = join(root, "prebuilds");
  if (existsSync(prebuilt)) {
    console.warn("@trirun/kernel-native: nvcc not found; keeping the existing prebuilds/.");
    process.exit(0);
  }
  console.error(
    "@trirun/kernel-native: nvcc not found on PATH and no prebuilds/ present. Install the CUDA toolkit " +
      "(nvcc >= 12.0) or set NVCC=/path/to/nvcc. The TypeScript part still builds; available() returns false.",
  );
  process.exit(process.env.CI ? 1 : 0);
}

const prebuildDir = join(root, "prebuilds");
const sourcesTime = Math.max(
  newest(kernelDir),
  newest(addonDir),
  statSync(join(root, "binding.gyp")).mtimeMs,
);
// The architectures of the last build: a build for other ones is never "up to date".
const archStamp = join(outDir, "archs.txt");
const sameArchs = existsSync(archStamp) && readFileSync(archStamp, "utf8").trim() === archs.join(",");
if (!force && sameArchs && existsSync(prebuildDir)) {
  const built = readdirSync(prebuildDir, { recursive: true })
    .map((f) => join(prebuildDir, String(f)))
    .filter((f) => f.endsWith(".node"));
  // The stamp holds the newest source time seen when the last successful build started: an edit made
  // while a build was running leaves an addon newer than the edited file, but not this stamp.
  const stamp = join(outDir, "sources-time.txt");
  const stamped = existsSync(stamp) && Number(readFileSync(stamp, "utf8")) === sourcesTime;
  if (stamped && built.length > 0 && Math.min(...built.map((f) => statSync(f).mtimeMs)) > sourcesTime) {
    console.log("@trirun/kernel-native: native addon is up to date");
    process.exit(0);
  }
}

mkdirSync(outDir, { recursive: true });
// sm_90 machine code is built as sm_90a (the wgmma instructions of the Hopper
// kernel exist only there; it runs on every compute capability 9.0 GPU), and
// TRIRUN_HAVE_SM90A tells the dispatcher it may pick that kernel. The PTX kept
// for later GPUs is plain compute_XX, without the Hopper kernel's body.
const sass = (a) => (a === "90" ? "90a" : a);
const gencode = archs.flatMap((a) => ["-gencode", `arch=compute_${sass(a)},code=sm_${sass(a)}`]);
const ptxArch = archs.at(-1).replace(/a$/, "");
gencode.push("-gencode", `arch=compute_${ptxArch},code=compute_${ptxArch}`);
if (archs.some((a) => sass(a) === "90a")) gencode.push("-DTRIRUN_HAVE_SM90A");
const sources = readdirSync(kernelDir).filter((f) => f.endsWith(".cu"));
// binding.gyp links every object in build-cuda/: drop those whose source is gone.
for (const obj of readdirSync(outDir).filter((f) => f.endsWith(".o"))) {
  if (!sources.includes(obj.replace(/\.o$/, ".cu"))) rmSync(join(outDir, obj));
}
const kernelTime = newest(kernelDir); // a header change rebuilds every object
for (const src of sources) {
  const obj = join(outDir, src.replace(/\.cu$/, ".o"));
  if (!force && sameArchs && existsSync(obj) && statSync(obj).mtimeMs > kernelTime) {
    console.log(`@trirun/kernel-native: ${src} is up to date`);
    continue;
  }
  run(nvcc, [
    "-O3",
    "-std=c++17",
    "-Xcompiler",
    "-fPIC",
    "-Xptxas",
    "-warn-spills",
    ...gencode,
    "-c",
    join(kernelDir, src),
    "-o",
    obj,
  ]);
}
writeFileSync(archStamp, `${archs.join(",")}\n`);
// Build against the running Node's own headers when they are installed beside
// it (Node-API is ABI-stable, so the result serves every Node version) instead
// of letting node-gyp download headers.
const env = { ...process.env };
const prefix = dirname(dirname(process.execPath));
if (!env.npm_config_nodedir && existsSync(join(prefix, "include", "node", "node_api.h"))) {
  env.npm_config_nodedir = prefix;
}
const prebuildify = join(root, "node_modules", ".bin", "prebuildify");
run(prebuildify, ["--napi", "--strip", `--target=node@${process.versions.node}`], { env });
writeFileSync(join(outDir, "sources-time.txt"), `${sourcesTime}\n`);
