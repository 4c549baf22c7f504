import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The shared resources folder, `../../../shared` from this package (absent on some machines). */
export const sharedDir = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../shared");
export const layoutFixturesDir = resolve(sharedDir, "fixtures/trirun-layout");
export const studentModelDir = resolve(sharedDir, "models/stories-student-3M");
export const hasLayoutFixtures = existsSync(resolve(layoutFixturesDir, "meta.json"));
export const hasStudentModel = existsSync(resolve(studentModelDir, "model.safetensors"));
