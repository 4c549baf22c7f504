// Builds the addon and bundles the GPU check into <repo>/.device/, a folder
// that runs on any Linux x86-64 machine with an NVIDIA driver, given only a
// Node.js binary (no node_modules, no network):
//
//   .device/check.mjs            the check program (esbuild bundle, ESM)
//   .device/trirun_native.node   the addon (cudart linked statically; cuBLAS opened at run time)
//   .device/node.xz              a Node.js binary (../shared/device/prepare-node.sh, once)
//   .device/tests/*.mjs          the workspace's GPU test files (*.gpu.test.ts), bundled
//   .device/README.txt           how to run it
//
// TRIRUN_CUDA_ARCHS (e.g. "90") is honoured by the build; --skip-build reuses
// the current build.
import { execFileSync, spawnSync } from "node:child_process";
import {
  cpSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const repo = join(pkg, "..", "..");
const out = join(repo, ".device");
const skipBuild = process.argv.includes("--skip-build");

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: pkg, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with status ${r.status}`);
}

if (!skipBuild) run(process.execPath, [join(pkg, "scripts", "build-native.mjs")]);

const prebuilds = join(pkg, "prebuilds", "linux-x64");
const addons = existsSync(prebuilds) ? readdirSync(prebuilds).filter((f) => f.endsWith(".node")) : [];
if (addons.length === 0) {
  console.error("device-bundle: no addon in prebuilds/linux-x64 (the native build needs nvcc)");
  process.exit(1);
}
mkdirSync(out, { recursive: true });
const addon = join(prebuilds, addons[0]);
copyFileSync(addon, join(out, "trirun_native.node"));

// The architectures the addon was actually built for (build-native.mjs stamps them).
const archStamp = join(pkg, "build-cuda", "archs.txt");
const cudaArchs = existsSync(archStamp) ? readFileSync(archStamp, "utf8").trim() : "unknown";

let commit = "unknown";
try {
  commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repo, encoding: "utf8" }).trim();
  const dirty = execFileSync("git", ["status", "--porcelain", "--", "packages/kernel-native"], {
    cwd: repo,
    encoding: "utf8",
  });
  if (dirty.trim()) commit += "+dirty";
} catch {
  // not a git checkout
}

const esbuild = await import("esbuild");
await esbuild.build({
  entryPoints: [join(pkg, "src", "device", "check-main.ts")],
  outfile: join(out, "check.mjs"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "inline",
  logLevel: "warning",
  // CommonJS dependencies inside an ESM bundle need a require().
  banner: {
    js: "import { createRequire as __trirunCreateRequire } from 'node:module'; const require = __trirunCreateRequire(import.meta.url);",
  },
  define: {
    __TRIRUN_BUILD__: JSON.stringify({
      commit,
      builtAt: new Date().toISOString(),
      cudaArchs,
    }),
  },
});

// GPU test files of the workspace (*.gpu.test.ts), each bundled with a small
// vitest stand-in so they run on the GPU machine without node_modules. They
// import other workspaces through their built dist: run `pnpm build` first.
const testsOut = join(out, "tests");
rmSync(testsOut, { recursive: true, force: true });
const testFiles = [];
for (const group of ["packages", "apps"]) {
  const groupDir = join(repo, group);
  if (!existsSync(groupDir)) continue;
  for (const ws of readdirSync(groupDir)) {
    const testDir = join(groupDir, ws, "test");
    if (!existsSync(testDir)) continue;
    for (const f of readdirSync(testDir).filter((f) => f.endsWith(".gpu.test.ts")))
      testFiles.push([ws, join(testDir, f)]);
  }
}
const bundledTests = [];
for (const [ws, file] of testFiles) {
  const name = `${ws}__${basename(file).replace(/\.ts$/, ".mjs")}`;
  try {
    await esbuild.build({
      entryPoints: [file],
      outfile: join(testsOut, name),
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "silent",
      // This package from source, so that the tests run against the addon glue just built.
      alias: {
        vitest: join(pkg, "src", "device", "mini-vitest.ts"),
        "@trirun/kernel-native": join(pkg, "src", "index.ts"),
      },
      banner: {
        js: "import { createRequire as __trirunCreateRequire } from 'node:module'; const require = __trirunCreateRequire(import.meta.url);",
      },
    });
    bundledTests.push(name);
  } catch (error) {
    console.warn(
      `device-bundle: skipped ${relative(repo, file)}: ${String(error.message ?? error).split("\n")[0]}`,
    );
  }
}
if (testFiles.length > 0)
  console.log(`device-bundle: GPU test files: ${bundledTests.join(", ") || "none bundled"}`);

// Programs to run on the GPU machine besides the check: the GPTQ benchmark (its CUDA case runs
// only where a device is present; `--gpu-only`) and the eval CLI (`speed`, `run --runtime cuda`).
const programs = [
  ["packages/gptq/bench/bench.mjs", "gptq-bench.mjs"],
  ["apps/eval/src/cli.ts", "eval-cli.mjs"],
];
for (const [entry, name] of programs) {
  if (!existsSync(join(repo, entry))) continue;
  try {
    await esbuild.build({
      entryPoints: [join(repo, entry)],
      outfile: join(out, name),
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "silent",
      alias: { "@trirun/kernel-native": join(pkg, "src", "index.ts") },
      banner: {
        js: "import { createRequire as __trirunCreateRequire } from 'node:module'; const require = __trirunCreateRequire(import.meta.url);",
      },
    });
    console.log(`device-bundle: .device/${name}`);
  } catch (error) {
    console.warn(`device-bundle: skipped ${entry}: ${String(error.message ?? error).split("\n")[0]}`);
  }
}

// The shared models, for GPU tests that run real models (found there through TRIRUN_SHARED_MODELS).
const sharedModels = join(repo, "..", "shared", "models");
if (existsSync(sharedModels)) {
  for (const name of ["stories260K.bin", "stories260K-samples-8192x256.u16", "stories-student-3M"]) {
    const src = join(sharedModels, name);
    if (existsSync(src)) cpSync(src, join(out, "models", name), { recursive: true });
  }
  console.log("device-bundle: .device/models/ (shared models; set TRIRUN_SHARED_MODELS=.device/models)");
}

const nodeXz = join(out, "node.xz");
const prepare = join(repo, "..", "shared", "device", "prepare-node.sh");
if (!existsSync(nodeXz)) {
  if (existsSync(prepare)) {
    console.log(`device-bundle: fetching a Node.js binary with ${relative(repo, prepare)}`);
    run("bash", [prepare, out]);
  } else {
    console.warn(`device-bundle: ${nodeXz} is missing; put a Node.js (>= 20) binary there as node.xz`);
  }
}

writeFileSync(
  join(out, "README.txt"),
  `TriRun device check, commit ${commit}, built ${new Date().toISOString()}
CUDA architectures: ${cudaArchs} (+PTX of the last)

From the repository root on the GPU machine:
  xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node
  TRIRUN_NATIVE_PATH=.device/trirun_native.node /tmp/node .device/check.mjs --out $OUT
Parts: --only api,correctness,speed,sanitize,tests (default api,correctness,speed,tests); --quick; --seed N; --reps N
Sanitizer: compute-sanitizer --tool memcheck /tmp/node .device/check.mjs --only sanitize --out $OUT
           compute-sanitizer --tool racecheck /tmp/node .device/check.mjs --only sanitize --out $OUT
Exit status: 0 passed, 1 a check failed, 2 no usable CUDA device. Report: $OUT/report.json
`,
);
const size = (f) => `${(statSync(join(out, f)).size / 2 ** 20).toFixed(1)} MiB`;
console.log(
  `device-bundle: ${relative(repo, out)}/ check.mjs ${size("check.mjs")}, trirun_native.node ${size("trirun_native.node")}` +
    (existsSync(nodeXz) ? `, node.xz ${size("node.xz")}` : ""),
);
