import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { packScales, packWeights, unpackScales, unpackWeights } from "../src/index.js";
import { hasLayoutFixtures, layoutFixturesDir } from "./shared.js";

interface FixtureCase {
  name: string;
  k: number;
  n: number;
  groupsize: number;
}

function read<T>(name: string, ctor: new (buffer: ArrayBuffer) => T): T {
  const bytes = readFileSync(resolve(layoutFixturesDir, name));
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new ctor(copy.buffer);
}

if (!hasLayoutFixtures) console.warn(`layout fixtures not found at ${layoutFixturesDir}: skipping`);

describe.skipIf(!hasLayoutFixtures)("reference layout vectors", () => {
  const cases: FixtureCase[] = hasLayoutFixtures
    ? JSON.parse(readFileSync(resolve(layoutFixturesDir, "meta.json"), "utf8"))
    : [];

  it("lists at least one case", () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const c of cases) {
    describe(c.name, () => {
      const codes = read(`${c.name}.q`, Uint8Array);
      const scales = read(`${c.name}.s`, Uint16Array);
      const packedB = read(`${c.name}.B`, Int32Array);
      const packedS = read(`${c.name}.S`, Uint16Array);
      const g = c.groupsize === -1 ? c.k : c.groupsize;

      it("has consistent file sizes", () => {
        expect(codes.length).toBe(c.k * c.n);
        expect(packedB.length).toBe((c.k / 16) * c.n);
        expect(scales.length).toBe((c.k / g) * c.n);
        expect(packedS.length).toBe(scales.length);
      });
      it("packWeights matches the reference words", () => {
        expect(Buffer.from(packWeights(codes, c.k, c.n).buffer).equals(Buffer.from(packedB.buffer))).toBe(
          true,
        );
      });
      it("unpackWeights recovers the codes", () => {
        expect(Buffer.from(unpackWeights(packedB, c.k, c.n)).equals(Buffer.from(codes))).toBe(true);
      });
      it("packScales matches the reference scales", () => {
        expect(Array.from(packScales(scales, c.k, c.n, c.groupsize))).toEqual(Array.from(packedS));
      });
      it("unpackScales recovers the natural scales", () => {
        expect(Array.from(unpackScales(packedS, c.k, c.n, c.groupsize))).toEqual(Array.from(scales));
      });
    });
  }
});
