#!/usr/bin/env bash
# The whole test suite: set up the machine (idempotent), build, lint, then run every test
# with node's test runner. Extra arguments name test files or folders to run instead of all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx --no-install biome check src test bench scripts
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(dist/)
node --test --test-concurrency=2 "${files[@]}"
