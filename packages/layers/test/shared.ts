import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The shared resources folder, `../../../shared` from this package (absent on some machines). */
export const sharedDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../shared");
export const layoutFixturesDir = resolve(sharedDir, "fixtures/trirun-layout");
export const hasLayoutFixtures = existsSync(resolve(layoutFixturesDir, "meta.json"));
export const studentModelDir = resolve(sharedDir, "models/stories-student-3M");
export const hasStudentModel = existsSync(resolve(studentModelDir, "model.safetensors"));

export interface LayoutCase {
  name: string;
  k: number;
  n: number;
  groupsize: number;
  codes: Uint8Array;
  scales: Uint16Array;
  B: Int32Array;
  S: Uint16Array;
}

function readTyped<T>(path: string, make: (buffer: ArrayBuffer) => T): T {
  const bytes = readFileSync(path);
  return make(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** The reference layout vectors (little-endian files; this machine is little-endian). */
export function loadLayoutCases(): LayoutCase[] {
  const meta = JSON.parse(readFileSync(resolve(layoutFixturesDir, "meta.json"), "utf8")) as {
    name: string;
    k: number;
    n: number;
    groupsize: number;
  }[];
  return meta.map((m) => {
    const file = (ext: string) => resolve(layoutFixturesDir, `${m.name}.${ext}`);
    return {
      ...m,
      codes: readTyped(file("q"), (b) => new Uint8Array(b)),
      scales: readTyped(file("s"), (b) => new Uint16Array(b)),
      B: readTyped(file("B"), (b) => new Int32Array(b)),
      S: readTyped(file("S"), (b) => new Uint16Array(b)),
    };
  });
}
