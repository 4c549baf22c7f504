/**
 * How `trirun-eval speed`'s switches reach runSpeed (the measurement itself is replaced: it needs a GPU).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpeedSettings } from "../src/speed/run-speed.js";

const seen: SpeedSettings[] = [];
vi.mock("../src/speed/run-speed.js", async (importActual) => {
  const actual = await importActual<typeof import("../src/speed/run-speed.js")>();
  return {
    ...actual,
    runSpeed: (s: SpeedSettings) => {
      seen.push(s);
      throw new Error("measurement left out");
    },
  };
});
const { buildProgram } = await import("../src/cli.js");

async function settingsOf(args: string[]): Promise<SpeedSettings> {
  vi.spyOn(process.stdout, "write").mockImplementation(() => true);
  vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  seen.length = 0;
  await expect(
    buildProgram({ embedded: true }).parseAsync([
      "node",
      "trirun-eval",
      "speed",
      "--shape",
      "bitnet-2b",
      ...args,
    ]),
  ).rejects.toThrow(/measurement left out/);
  expect(seen).toHaveLength(1);
  return seen[0];
}

describe("trirun-eval speed switches", () => {
  afterEach(() => vi.restoreAllMocks());

  it("fuses BitNet's row ops unless --no-fuse-row-ops (--fuse-row-ops still accepted)", async () => {
    expect((await settingsOf([])).fuseRowOps).toBe(true);
    expect((await settingsOf(["--fuse-row-ops"])).fuseRowOps).toBe(true);
    expect((await settingsOf(["--no-fuse-row-ops"])).fuseRowOps).toBe(false);
  });

  it("graphs and fused projections on unless switched off; int8 activations as 8 bits", async () => {
    const defaults = await settingsOf([]);
    expect(defaults).toMatchObject({ graphs: true, fuse: true, breakdown: false });
    expect(defaults.activationBits).toBeUndefined();
    expect(
      await settingsOf(["--no-graphs", "--no-fuse", "--activations", "int8", "--breakdown"]),
    ).toMatchObject({
      graphs: false,
      fuse: false,
      activationBits: 8,
      breakdown: true,
    });
  });
});
