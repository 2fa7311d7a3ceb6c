#!/usr/bin/env bash
# Installs what polyarch and its tests need on a Debian machine, as root, then builds.
# Idempotent: a second run only checks, and takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx --no-install tsc -p tsconfig.json
