import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import {
  decodeF16,
  dequantizeLayer,
  dequantizeToF16,
  type FloatDType,
  quantize,
  roundToF16,
} from "../src/index.js";
import { openCheckpoint, openTriRunCheckpoint } from "../src/node/index.js";
import { writeBitNetModel, writeModelFiles } from "./bitnet-fixture.js";
import { tempDir } from "./helpers.js";
import { writeTinyModel } from "./model-fixture.js";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const packCli = join(packageDir, "dist/cli/pack.js");
const unpackCli = join(packageDir, "dist/cli/unpack.js");
const root = tempDir();

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Spawns a built CLI; returns exit status and output. */
function run(cli: string, args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    env: { ...process.env, FORCE_COLOR: "0" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  // The tests spawn the built binaries; rebuild when dist is missing or older than the sources.
  const built = existsSync(packCli) && existsSync(unpackCli) ? statSync(packCli).mtimeMs : 0;
  if (built < newestSource(join(packageDir, "src"))) {
    execFileSync(process.execPath, [join(packageDir, "../../node_modules/tsup/dist/cli-default.js")], {
      cwd: packageDir,
      stdio: "ignore",
    });
  }
}, 120_000);

describe("built package", () => {
  it("the built CommonJS and ESM entries load", () => {
    const script = [
      "const m = require('./dist/index.cjs');",
      "const n = require('./dist/node.cjs');",
      "if (typeof m.packWeights !== 'function' || typeof n.openCheckpoint !== 'function') process.exit(2);",
      "import('./dist/index.js').then((e) => process.exit(typeof e.packScales === 'function' ? 0 : 3));",
    ].join("");
    const r = spawnSync(process.execPath, ["-e", script], { cwd: packageDir, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});

describe("built package: worker threads", () => {
  it("the CommonJS and ESM builds find their pack worker and write the same bytes as one thread", () => {
    const dir = join(root, "threads-built");
    const script = (entry: string, load: string) =>
      [
        `${load}.then(async (m) => {`,
        "const n = 1024, k = 1024, fs = require('node:fs'), path = require('node:path');",
        `const dir = ${JSON.stringify(dir)}; fs.mkdirSync(dir, { recursive: true });`,
        "const data = new Float32Array(n * k).map(() => Math.random() - 0.5);",
        "const input = path.join(dir, 'in-' + process.pid + '.safetensors');",
        "await m.writeSafetensorsFile(input, [{ name: 'model.layers.0.mlp.up_proj.weight', dtype: 'F32', shape: [n, k], data }]);",
        "const outs = [];",
        "for (const threads of [1, 2]) { const out = path.join(dir, 'out-' + process.pid + '-' + threads);",
        "  await m.packCheckpoint(input, out, { method: 'mse', groupsize: 128, threads }); outs.push(fs.readFileSync(path.join(out, 'model.safetensors'))); }",
        "process.exit(outs[0].equals(outs[1]) ? 0 : 3); }).catch((e) => { console.error(e); process.exit(2); });",
        `// ${entry}`,
      ].join("\n");
    for (const [entry, load] of [
      ["cjs", "Promise.resolve(require('./dist/node.cjs'))"],
      ["esm", "import('./dist/node.js')"],
    ]) {
      const r = spawnSync(process.execPath, ["-e", script(entry, load)], {
        cwd: packageDir,
        encoding: "utf8",
      });
      expect(r.stderr, entry).toBe("");
      expect(r.status, entry).toBe(0);
    }
  }, 60_000);
});

describe("trirun-pack / trirun-unpack (built CLI)", () => {
  it("refuses a thread count that is not a positive integer, in one line", () => {
    for (const bad of ["0", "abc", "1.5"]) {
      const r = run(packCli, [join(root, "nowhere"), join(root, "nowhere-out"), "--threads", bad]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /^trirun-pack: error: option '-t, --threads <n>' argument '.*' is invalid\. must be an integer from 1 to 1024\n$/,
      );
    }
  });

  it("converts a generated checkpoint and back, printing a summary", async () => {
    const model = await writeTinyModel(join(root, "in"), { sharded: true });
    const out = join(root, "out");
    const packed = run(packCli, [
      model.dir,
      out,
      "--method",
      "mse",
      "--groupsize",
      "128",
      "--exclude",
      "*.down_proj",
    ]);
    expect(packed.stderr).toBe("");
    expect(packed.status).toBe(0);
    expect(packed.stdout).toMatch(/^packed 12 tensors, kept 11; tensor bytes .* -> .*\n/);
    expect(packed.stdout).toMatch(/M weights in .* s/);
    const { checkpoint } = await openTriRunCheckpoint(out);
    expect(checkpoint.metadata.method).toBe("mse");
    expect(checkpoint.modules().some((m) => m.module.endsWith("down_proj"))).toBe(false);
    expect(checkpoint.files.has("model.layers.0.mlp.down_proj.weight")).toBe(true);
    await checkpoint.close();

    const back = join(root, "back");
    const unpacked = run(unpackCli, [out, back]);
    expect(unpacked.status).toBe(0);
    expect(unpacked.stdout).toMatch(/^unpacked 12 tensors/);
    const restored = await openCheckpoint(back);
    const q = model.tensors.find((t) => t.name === "model.layers.1.self_attn.v_proj.weight")!;
    const expected = quantize(
      { data: q.data as Uint16Array, dtype: q.dtype as FloatDType, outFeatures: 128, inFeatures: 128 },
      { method: "mse", groupsize: 128 },
    );
    const got = await restored.readTensor(q.name, "F16");
    expect(Array.from(got.data)).toEqual(
      Array.from(dequantizeToF16(expected.codes, expected.scales, 128, 128, 128)),
    );
    await restored.close();
  });

  it("lists the plan on --dry-run and writes nothing", async () => {
    const model = await writeTinyModel(join(root, "dry"));
    const out = join(root, "dry-out");
    const r = run(packCli, [model.dir, out, "--dry-run"]);
    expect(r.status).toBe(0);
    expect(r.stdout.match(/^pack /gm)?.length).toBe(14);
    expect(r.stdout).toMatch(
      /pack model.layers.0.mlp.down_proj.weight F16 \[128, 320\] padded to k=384 n=256/,
    );
    expect(r.stdout).toMatch(/would have packed 14 tensors, kept 9/);
    expect(existsSync(out)).toBe(false);
    const json = run(packCli, [model.dir, out, "--dry-run", "--json"]);
    expect(json.status).toBe(0);
    const summary = JSON.parse(json.stdout);
    expect(summary.tensorsPacked).toBe(14);
    expect(summary.bytesAfter).toBeLessThan(summary.bytesBefore);
  });

  it("imports a packed BitNet checkpoint with --method bitnet, and says so without it", async () => {
    const model = writeBitNetModel(join(root, "bitnet"));
    await writeModelFiles(model);
    const out = join(root, "bitnet-out");
    const refused = run(packCli, [model.dir, out, "--quiet"]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^trirun-pack: error: .*q_proj\.weight.*\(--method bitnet\)\n$/);
    const dry = run(packCli, [model.dir, out, "--method", "bitnet", "--dry-run"]);
    expect(dry.stdout.match(/^import .* U8 /gm)?.length).toBe(14);
    const r = run(packCli, [model.dir, out, "--method", "bitnet", "--groupsize", "-1", "--quiet"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/packed 14 tensors \(14 imported from packed BitNet weights\), kept 8/);
    const { checkpoint } = await openTriRunCheckpoint(out);
    try {
      const ref = model.layers.get("model.layers.1.mlp.down_proj")!;
      const w = decodeF16(dequantizeLayer(await checkpoint.readLayer("model.layers.1.mlp.down_proj")));
      const scale = roundToF16(1 / ref.weightScale); // default linear class: BitLinear divides
      for (let i = 0; i < ref.out * ref.inF; i++) expect(w[i]).toBe(roundToF16(ref.levels[i] * scale));
    } finally {
      await checkpoint.close();
    }
  });

  it("fails with one line and a non-zero status on bad input", async () => {
    const cases: [string[], RegExp][] = [
      [[join(root, "nothing-here"), join(root, "x")], /nothing-here: stat failed \(no such file or folder\)/],
      [["a", "b", "--groupsize", "64"], /groupsize .* must be 128 or -1/],
      [["a", "b", "--method", "gptq"], /Allowed choices are absmean, absmax, mse, exact, bitnet/],
      [["a"], /missing required argument 'output'/],
    ];
    const truncated = join(root, "truncated.safetensors");
    writeFileSync(truncated, Buffer.from([200, 0, 0, 0, 0, 0, 0, 0, 123]));
    cases.push([
      [truncated, join(root, "y")],
      /truncated.safetensors: header length 200 runs past the end of the file/,
    ]);
    const model = await writeTinyModel(join(root, "not-grid"));
    cases.push([
      [model.dir, join(root, "z"), "--method", "exact"],
      /tensor ".*\.weight" at \[\d+, \d+\]: value .* is not on the grid/,
    ]);
    for (const [args, pattern] of cases) {
      const r = run(packCli, args);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr.trim().split("\n").length, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/^trirun-pack: error: /);
    }
    const notTriRun = run(unpackCli, [model.dir, join(root, "w")]);
    expect(notTriRun.status).toBe(1);
    expect(notTriRun.stderr).toMatch(/^trirun-unpack: error: .*not a TriRun checkpoint[^\n]*\n$/);
    // Failed runs leave no output folder behind.
    for (const out of ["y", "z", "w"]) expect(existsSync(join(root, out)), out).toBe(false);
  });

  it("lists the modules on trirun-unpack --dry-run and writes nothing", async () => {
    const model = await writeTinyModel(join(root, "udry"));
    const packed = join(root, "udry-packed");
    expect(run(packCli, [model.dir, packed, "--quiet"]).status).toBe(0);
    const out = join(root, "udry-out");
    const r = run(unpackCli, [packed, out, "--dry-run"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/^unpack /gm)?.length).toBe(14);
    expect(r.stdout).toMatch(
      /^unpack model.layers.0.mlp.down_proj.B\/.s -> model.layers.0.mlp.down_proj.weight F16 \[128, 320\]: \d+ -> 81920 bytes$/m,
    );
    expect(existsSync(out)).toBe(false);
  });

  it("stops quietly when the reader of its output goes away (| head)", async () => {
    const model = await writeTinyModel(join(root, "pipe"));
    // `true` exits without reading, so every write of the listing meets a closed pipe.
    const script = `"${process.execPath}" "${packCli}" "${model.dir}" "${join(root, "pipe-out")}" --dry-run | true`;
    const r = spawnSync("bash", ["-c", `${script}; echo "status \${PIPESTATUS[0]}"`], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("status 0\n");
  });
});
