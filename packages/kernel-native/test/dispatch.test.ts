import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The dispatcher of trirun_matmul, on the CPU: tools/dispatch-check.cu builds trirun.cu with its launches
// recorded instead of run (no GPU, no kernel compiled) and checks every call of a wide sweep; the table of
// what the model shapes launch on sm_90 is kept in test/fixtures, so that a change of the rules shows up as
// a diff (regenerate: the built checker's `--table`).
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const nvcc = process.env.NVCC ?? "nvcc";
const haveNvcc = spawnSync(nvcc, ["--version"]).status === 0;
if (!haveNvcc) console.warn("dispatch check skipped: nvcc not found (set NVCC or put nvcc on PATH)");

describe.skipIf(!haveNvcc)("trirun_matmul's dispatcher (built for the CPU with recorded launches)", () => {
  const dir = mkdtempSync(join(tmpdir(), "trirun-dispatch-"));
  const binary = join(dir, "dispatch-check");
  // Asynchronous: a compile of a minute or more (a loaded CI machine) must not block this worker's event
  // loop, or vitest's calls between the worker and the main process time out ("Timeout calling
  // onTaskUpdate") and the run fails with an unhandled error.
  beforeAll(async () => {
    await promisify(execFile)(
      nvcc,
      [
        "-std=c++17",
        "-DTRIRUN_DISPATCH_RECORD",
        "-DTRIRUN_HAVE_SM90A",
        `-I${join(packageRoot, "src", "kernel")}`,
        join(packageRoot, "tools", "dispatch-check.cu"),
        "-o",
        binary,
      ],
      { maxBuffer: 64 * 2 ** 20 },
    );
  }, 300_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("covers every row once with launches that exist, on every device profile, shape and m; splits clustered columns soundly", () => {
    const r = spawnSync(binary, [], { encoding: "utf8" });
    expect(r.stdout).toMatch(
      /dispatch-check: \d+ calls over \d+ device profiles, \d+ cluster plans \(\d+ shapes clustered\), 0 failures/,
    );
    expect(r.status).toBe(0);
  });

  it("launches what the committed sm_90 table says for the model shapes", () => {
    const table = execFileSync(binary, ["--table"], { encoding: "utf8" });
    const committed = readFileSync(join(packageRoot, "test", "fixtures", "dispatch-table-sm90.txt"), "utf8");
    expect(table).toBe(committed);
  });
});
