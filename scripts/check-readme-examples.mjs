#!/usr/bin/env node
// Type-checks the TypeScript examples of the package READMEs against the built
// packages, as a user would see them. Every ```ts block of packages/*/README.md
// and apps/eval/README.md is written as a module into a temporary folder inside
// the package that owns the README, so that imports resolve as they would for
// a user: workspace dependencies through that package's node_modules, the
// package itself through its own "exports" (self-reference), both to the
// built dist/*.d.ts. The blocks are checked with tsconfig.base.json's strict
// settings (noEmit, top-level await allowed). A block that is deliberately a
// fragment (it uses variables defined elsewhere) is marked in the README with
// `<!-- fragment -->` on the line right before its fence and is skipped.
// Needs a build first (`pnpm build`).
// Usage: node scripts/check-readme-examples.mjs [README.md ...]
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ts = createRequire(join(root, "package.json"))("typescript");

const FRAGMENT_MARKER = "<!-- fragment -->";
const TS_LANGUAGES = new Set(["ts", "typescript"]);
const TMP_PREFIX = ".readme-examples-";
const tmpDirs = new Set();

function readmes() {
  const paths = [];
  for (const entry of readdirSync(join(root, "packages"), { withFileTypes: true })) {
    const path = join("packages", entry.name, "README.md");
    if (entry.isDirectory() && existsSync(join(root, path))) paths.push(path);
  }
  if (existsSync(join(root, "apps/eval/README.md"))) paths.push("apps/eval/README.md");
  return paths;
}

// Fenced code blocks (CommonMark: ``` or ~~~, closed by a fence of the same
// character at least as long). Lines are 1-based; `line` is the opening fence.
function codeBlocks(markdown) {
  const lines = markdown.split(/\r?\n/);
  const blocks = [];
  let open = null;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i];
    if (open === null) {
      const m = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/.exec(text);
      if (m) {
        open = {
          fence: m[1],
          language: m[2].toLowerCase(),
          line: i + 1,
          fragment: i > 0 && lines[i - 1].trim() === FRAGMENT_MARKER,
          body: [],
        };
      }
      continue;
    }
    const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(text);
    if (close && close[1][0] === open.fence[0] && close[1].length >= open.fence.length) {
      blocks.push(open);
      open = null;
    } else {
      open.body.push(text);
    }
  }
  if (open !== null) blocks.push({ ...open, unclosed: true });
  return blocks;
}

function compilerOptions() {
  const configPath = join(root, "tsconfig.base.json");
  const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
  if (error) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, "\n"));
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, root, undefined, configPath);
  return {
    ...parsed.options,
    noEmit: true,
    declaration: false,
    // Every block is a module of its own (top-level await, no clashes between blocks).
    moduleDetection: ts.ModuleDetectionKind.Force,
  };
}

function format(diagnostic) {
  return ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n    ");
}

// One program per package: its blocks as modules in a temporary folder inside it.
function checkPackage(packageDir, entries, options) {
  const tmp = mkdtempSync(join(root, packageDir, TMP_PREFIX));
  tmpDirs.add(tmp);
  try {
    const files = new Map();
    for (const entry of entries) {
      const file = join(tmp, `line-${entry.block.line}.ts`);
      writeFileSync(file, `${entry.block.body.join("\n")}\n`);
      files.set(file, entry);
      entry.errors = [];
    }
    const program = ts.createProgram({ rootNames: [...files.keys()], options });
    const elsewhere = []; // options, global or library diagnostics: not tied to one block
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const entry = diagnostic.file && files.get(resolve(diagnostic.file.fileName));
      if (!entry) {
        elsewhere.push(diagnostic);
        continue;
      }
      const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      const category = ts.DiagnosticCategory[diagnostic.category].toLowerCase();
      entry.errors.push(
        `${entry.readme}:${entry.block.line + 1 + line}:${character + 1} - ${category} TS${diagnostic.code}: ${format(diagnostic)}`,
      );
    }
    return elsewhere.map((d) => {
      const where = d.file ? `${relative(root, d.file.fileName)}: ` : "";
      return `${packageDir}: ${where}TS${d.code}: ${format(d)}`;
    });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    tmpDirs.delete(tmp);
  }
}

// An interrupt does not kill the process in the middle of a package's check:
// it is handled between packages (see `settle`), once `finally` has removed
// that package's folder; anything left is removed here too. A folder left by
// SIGKILL is git-ignored.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
    process.exit(128 + osConstants.signals[signal]);
  });
}

// The checks are synchronous: a short pause lets the event loop deliver a
// pending signal to the handlers above.
const settle = () => new Promise((done) => setTimeout(done, 5));

const targets =
  process.argv.length > 2 ? process.argv.slice(2).map((p) => relative(root, resolve(p))) : readmes();
const options = compilerOptions();
const byPackage = new Map();
const report = [];
for (const readme of targets) {
  const packageDir = dirname(readme);
  if (!existsSync(join(root, packageDir, "package.json"))) {
    console.error(`check-readme: ${readme}: no package.json next to it`);
    process.exit(1);
  }
  for (const block of codeBlocks(readFileSync(join(root, readme), "utf8"))) {
    if (!TS_LANGUAGES.has(block.language)) continue;
    const entry = { readme, block };
    report.push(entry);
    if (block.unclosed) entry.errors = [`${readme}:${block.line}: code block is never closed`];
    else if (!block.fragment) {
      if (!byPackage.has(packageDir)) byPackage.set(packageDir, []);
      byPackage.get(packageDir).push(entry);
    }
  }
}

const problems = [];
for (const [packageDir, entries] of byPackage) {
  const manifest = JSON.parse(readFileSync(join(root, packageDir, "package.json"), "utf8"));
  if (manifest.types && !existsSync(join(root, packageDir, manifest.types))) {
    problems.push(`${packageDir}: ${manifest.types} is missing; build first (pnpm build)`);
  }
  problems.push(...checkPackage(packageDir, entries, options));
  await settle();
}

let failed = 0;
let skipped = 0;
for (const entry of report) {
  const where = `${entry.readme}:${entry.block.line}`;
  if (entry.block.fragment && !entry.block.unclosed) {
    skipped++;
    console.log(`${where} skipped (fragment)`);
  } else if (entry.errors.length === 0) {
    console.log(`${where} ok`);
  } else {
    failed++;
    console.log(`${where} FAILED`);
    for (const error of entry.errors) console.log(`  ${error}`);
  }
}
for (const problem of problems) console.error(`check-readme: ${problem}`);
const checked = report.length - skipped;
console.log(
  `check-readme: ${checked - failed} of ${checked} example(s) type-check, ${failed} failed, ${skipped} fragment(s) skipped`,
);
if (failed > 0 || problems.length > 0) process.exit(1);
