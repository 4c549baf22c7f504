#!/usr/bin/env node
// Checks what users would install: packs every published workspace package
// (pnpm pack, so `workspace:` ranges become real versions) and lints the
// tarballs with publint (package.json fields, exports, files present) and
// "Are the Types Wrong?" (types resolve for ESM, CommonJS and older
// TypeScript resolution alike). Needs a build first (`pnpm build`).
// Usage: node scripts/check-packages.mjs [package-dir ...]
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

function publishedPackages() {
  const dirs = [];
  for (const group of ["packages", "apps"]) {
    for (const entry of readdirSync(join(root, group), { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(group, entry.name);
      let manifest;
      try {
        manifest = JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8"));
      } catch {
        continue;
      }
      if (manifest.private !== true) dirs.push(dir);
    }
  }
  return dirs;
}

function run(command, args, cwd) {
  try {
    return { ok: true, output: execFileSync(command, args, { cwd, encoding: "utf8", stdio: "pipe" }) };
  } catch (error) {
    return { ok: false, output: `${error.stdout ?? ""}${error.stderr ?? ""}` || String(error) };
  }
}

const dirs = process.argv.length > 2 ? process.argv.slice(2) : publishedPackages();
const out = mkdtempSync(join(tmpdir(), "trirun-pack-"));
const failures = [];
try {
  for (const dir of dirs) {
    const packed = run("pnpm", ["pack", "--pack-destination", out], join(root, dir));
    if (!packed.ok) {
      failures.push(`${dir}: pnpm pack failed\n${packed.output}`);
      continue;
    }
    const tarball = readdirSync(out)
      .filter((name) => name.endsWith(".tgz"))
      .map((name) => join(out, name))
      .find((path) => packed.output.includes(path) || packed.output.includes(path.split("/").pop()));
    if (!tarball) {
      failures.push(`${dir}: pnpm pack wrote no tarball that its output names\n${packed.output}`);
      continue;
    }
    const publint = run(bin("publint"), ["run", tarball, "--strict"], root);
    const attw = run(bin("attw"), [tarball, "--format", "ascii", "--no-emoji", "--no-color"], root);
    const verdict = publint.ok && attw.ok ? "ok" : "FAILED";
    console.log(`check-packages: ${dir}: ${verdict}`);
    if (!publint.ok) failures.push(`${dir}: publint\n${publint.output}`);
    if (!attw.ok) failures.push(`${dir}: attw\n${attw.output}`);
    rmSync(tarball);
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
if (failures.length > 0) {
  console.error(failures.join("\n\n"));
  console.error(`check-packages: ${failures.length} problem(s) in ${dirs.length} package(s)`);
  process.exit(1);
}
console.log(`check-packages: ${dirs.length} package(s) pack cleanly (publint --strict, attw)`);
