import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    // TRIRUN_MARGIN_AUDIT=<log>: log how near each assertion comes to its bound (scripts/margin-audit).
    setupFiles: process.env.TRIRUN_MARGIN_AUDIT ? ["../../scripts/margin-audit/setup.ts"] : [],
  },
});
