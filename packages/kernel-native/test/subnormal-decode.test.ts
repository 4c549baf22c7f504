import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The Hopper kernel's subnormal decode (trirun.cu: taken where all of a warp's scales are below 2^-4), checked
// on the CPU in exact arithmetic by tools/subnormal-decode-check.cpp: every fp16 scale below 2^-4, random packed
// words, both code shifts, against (code - 1) x s for the codes the default decode picks. The kernel itself is checked on a GPU
// (kernel-probe's check sweep, whose scales include blocks at or above 2^-4 that take the default decode).
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const cxx = process.env.CXX ?? "c++";
const haveCxx = spawnSync(cxx, ["--version"]).status === 0;
if (!haveCxx) console.warn("subnormal decode check skipped: no C++ compiler (set CXX)");

describe.skipIf(!haveCxx)("the Hopper kernel's subnormal decode (CPU model)", () => {
  it("gives every weight exactly, and takes only scales whose 2^20 multiple fits fp16", () => {
    const dir = mkdtempSync(join(tmpdir(), "trirun-subdec-"));
    try {
      const binary = join(dir, "subnormal-decode-check");
      execFileSync(cxx, [
        "-O2",
        "-std=c++17",
        join(packageRoot, "tools", "subnormal-decode-check.cpp"),
        "-o",
        binary,
      ]);
      const r = spawnSync(binary, [], { encoding: "utf8" });
      expect(r.stdout).toMatch(/subnormal-decode-check: \d+ weights, 22528 scales, 0 failures/);
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
