#!/usr/bin/env bash
# Installs what the monorepo needs on a fresh machine with only Node.js (>= 20):
# pnpm at the version pinned in package.json, the workspace's dependencies
# from the lockfile, and a build of every package (including the nvcc compile
# of the CUDA kernels, when nvcc is on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(node -p "require('./package.json').packageManager.split('@')[1]")
if [ "$(pnpm --version 2>/dev/null || true)" != "$want" ]; then
  echo "bootstrap: installing pnpm $want"
  if ! npm install --global --silent "pnpm@$want" 2>/dev/null; then
    # no permission for a global install: keep pnpm inside the checkout
    npm install --silent --no-save --prefix .tools "pnpm@$want"
    export PATH="$PWD/.tools/node_modules/.bin:$PATH"
  fi
fi
if [ -x .tools/node_modules/.bin/pnpm ]; then export PATH="$PWD/.tools/node_modules/.bin:$PATH"; fi
pnpm install --frozen-lockfile
pnpm run build
