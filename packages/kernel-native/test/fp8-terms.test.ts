import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The fp8 plan for m <= 16 (NOTES.md, session 26), on the CPU: tools/fp8-terms-check.cu builds trirun.cu's
// fp8_word for the host and checks it against the reference vectors, the activations' three fp8 terms
// against every scaled fp16 value, and the whole plan, fragment by fragment, against fp64 on fresh random
// activations with outlier channels.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const fixtures = join(packageRoot, "..", "..", "..", "shared", "fixtures", "trirun-layout");
const nvcc = process.env.NVCC ?? "nvcc";
const haveNvcc = spawnSync(nvcc, ["--version"]).status === 0;
const haveFixtures = existsSync(join(fixtures, "meta.json"));
if (!haveNvcc) console.warn("fp8 plan check skipped: nvcc not found (set NVCC or put nvcc on PATH)");
if (!haveFixtures) console.warn(`fp8 plan check skipped: reference vectors not found at ${fixtures}`);

describe.skipIf(!haveNvcc || !haveFixtures)("the fp8 plan for m <= 16 (built for the CPU)", () => {
  const dir = mkdtempSync(join(tmpdir(), "trirun-fp8-"));
  const binary = join(dir, "fp8-terms-check");
  // Asynchronous, as the dispatcher check: a long compile must not block the worker's event loop.
  beforeAll(async () => {
    await promisify(execFile)(
      nvcc,
      [
        "-std=c++17",
        "-O2",
        "-DTRIRUN_DISPATCH_RECORD",
        "-DTRIRUN_HAVE_SM90A",
        `-I${join(packageRoot, "src", "kernel")}`,
        join(packageRoot, "tools", "fp8-terms-check.cu"),
        "-o",
        binary,
      ],
      { maxBuffer: 64 * 2 ** 20 },
    );
  }, 300_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("decodes the reference vectors, splits activations exactly enough, and matches fp64 as the fp16 path does", () => {
    const r = spawnSync(binary, [fixtures], { encoding: "utf8" });
    expect(r.stdout).toMatch(/decode k512_n768_g128: 393216 weights, 0 wrong/);
    expect(r.stdout).toMatch(/terms e4m3\+e4m3\+e5m2: exact for \|x\| >= 2\^-?\d+/);
    expect(r.stdout).toMatch(/fp8-terms-check: 0 failures/);
    expect(r.status).toBe(0);
  }, 120_000);
});
