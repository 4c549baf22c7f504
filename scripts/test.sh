#!/usr/bin/env bash
# All tests on a fresh machine: install, build, then every workspace's tests in
# one vitest run. GPU tests skip with a message when no CUDA device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -x .tools/node_modules/.bin/pnpm ]; then export PATH="$PWD/.tools/node_modules/.bin:$PATH"; fi
pnpm test
