// The device check's own packer (src/device/layout.ts) against the reference vectors.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { packScales, packWeights, weightPermutation } from "../src/device/layout.js";

const fixtures = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "..",
  "shared",
  "fixtures",
  "trirun-layout",
);
const haveFixtures = existsSync(join(fixtures, "meta.json"));
if (!haveFixtures) console.log(`reference vectors not found at ${fixtures}: skipping the layout tests`);

interface Case {
  name: string;
  k: number;
  n: number;
  groupsize: number;
}

function read(name: string): Uint8Array {
  const b = readFileSync(join(fixtures, name));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

describe("weightPermutation", () => {
  it("is a permutation of 0..1023", () => {
    const p = weightPermutation();
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 1024 }, (_, i) => i));
  });
});

describe.skipIf(!haveFixtures)("packing matches the reference vectors byte for byte", () => {
  const cases: Case[] = haveFixtures ? JSON.parse(readFileSync(join(fixtures, "meta.json"), "utf8")) : [];
  for (const c of cases) {
    it(c.name, () => {
      const codes = read(`${c.name}.q`);
      const natural = new Uint16Array(read(`${c.name}.s`).slice().buffer);
      const groups = c.groupsize === -1 ? 1 : c.k / c.groupsize;
      const B = packWeights(codes, c.k, c.n);
      const S = packScales(natural, groups, c.n);
      expect(Buffer.from(B.buffer).equals(Buffer.from(read(`${c.name}.B`)))).toBe(true);
      expect(Buffer.from(S.buffer).equals(Buffer.from(read(`${c.name}.S`)))).toBe(true);
    });
  }
});
