#!/usr/bin/env bash
# The main job on a fresh machine: install, build, then run the eval pipeline
# (quantize a real model with GPTQ, pack it, run it through TriRun layers and
# report its quality against the unquantized model). Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -x .tools/node_modules/.bin/pnpm ]; then export PATH="$PWD/.tools/node_modules/.bin:$PATH"; fi
pnpm run main "$@"
