import { vi } from "vitest";
import { buildProgram } from "../../src/cli.js";

/**
 * Runs `trirun-eval ...args` in this process (embedded: errors throw) and returns what it wrote to
 * standard output.
 */
export async function runCli(args: string[]): Promise<string> {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await buildProgram({ embedded: true }).parseAsync(["node", "trirun-eval", ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}
