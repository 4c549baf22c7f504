import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { encodeBf16, encodeF16, tensorToFloat32 } from "../src/index.js";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(packageDir, "src");

/** Relative imports of a source file, resolved to source paths. */
function imports(file: string): { local: string[]; external: string[] } {
  const text = readFileSync(file, "utf8");
  const specs = [...text.matchAll(/^(?:import|export)[^;]*?from\s+"([^"]+)"/gms)].map((m) => m[1]);
  return {
    local: specs
      .filter((s) => s.startsWith("."))
      .map((s) => resolve(dirname(file), s.replace(/\.js$/, ".ts"))),
    external: specs.filter((s) => !s.startsWith(".")),
  };
}

describe("entry points", () => {
  it("the main entry reaches no Node built-in (browser-safe)", () => {
    const seen = new Set<string>();
    const queue = [join(srcDir, "index.ts")];
    const external = new Set<string>();
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const deps = imports(file);
      for (const e of deps.external) external.add(e);
      queue.push(...deps.local);
    }
    expect(seen.size).toBeGreaterThan(5);
    expect(
      [...seen].some((f) => f.includes(`${join("src", "node")}`) || f.includes(join("src", "cli"))),
    ).toBe(false);
    expect([...external].sort()).toEqual(["@petamoriken/float16"]);
    // And the Node entry does use the file system (so the check above can fail).
    const nodeImports = readdirSync(join(srcDir, "node")).flatMap(
      (f) => imports(join(srcDir, "node", f)).external,
    );
    expect(nodeImports.some((e) => e.startsWith("node:"))).toBe(true);
  });
});

describe("tensorToFloat32", () => {
  it("decodes float dtypes and rejects the others", () => {
    const values = [1.5, -2, 0.25];
    expect(Array.from(tensorToFloat32({ dtype: "F16", shape: [3], data: encodeF16(values) }))).toEqual(
      values,
    );
    expect(Array.from(tensorToFloat32({ dtype: "BF16", shape: [3], data: encodeBf16(values) }))).toEqual(
      values,
    );
    expect(
      Array.from(tensorToFloat32({ dtype: "F64", shape: [3], data: Float64Array.from(values) })),
    ).toEqual(values);
    expect(() => tensorToFloat32({ dtype: "I32", shape: [1], data: new Int32Array(1) }, "x.w")).toThrow(
      /x.w: dtype I32/,
    );
  });
});
