import { defineConfig } from "vitest/config";

// One run over every workspace, so that `pnpm test` ends with one summary.
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*"],
  },
});
