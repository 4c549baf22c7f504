// Entry point of the bundled device check (.device/check.mjs): see check.ts.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NATIVE_PATH_ENV } from "../native.js";
import { parseCheckArgs, runCheck } from "./check.js";

// The bundle ships the addon beside itself; TRIRUN_NATIVE_PATH overrides it.
const here = dirname(fileURLToPath(import.meta.url));
process.env[NATIVE_PATH_ENV] ??= join(here, "trirun_native.node");
try {
  const options = parseCheckArgs(process.argv.slice(2));
  process.exitCode = options === undefined ? 0 : await runCheck(options, { testsDir: join(here, "tests") });
} catch (error) {
  process.stderr.write(
    `trirun device check failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = error instanceof RangeError ? 64 : 1;
}
