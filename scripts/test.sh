#!/usr/bin/env bash
# The whole test suite: set up the machine (idempotent), build, lint, then run the tests with
# node's test runner inside the test environment (test/env/harness.ts: registries, busybox).
#
#   bash scripts/test.sh                         # every *.test.js under dist/
#   bash scripts/test.sh test/env.test.ts src/oci # chosen files or folders (.ts or dist/ .js)
#
# Only *.test.js files are run: node 20's `node --test DIR` would also run every helper
# module under a test/ folder (test/env/*.js) as a test file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint the source folders that exist (biome fails on a missing one, e.g. bench/ before it lands).
lint=()
for d in src test bench scripts; do [ -d "$d" ] && lint+=("$d"); done
node_modules/.bin/biome check "${lint[@]}"

# Map each argument to compiled test files: x.ts → dist/x.js, a folder → its *.test.js.
files=()
[ $# -gt 0 ] || set -- dist
for arg in "$@"; do
  arg=${arg%/}
  case "$arg" in
  dist | dist/*) path=$arg ;;
  *.ts) path=dist/${arg%.ts}.js ;;
  *) path=dist/$arg ;;
  esac
  if [ -d "$path" ]; then
    # Skip compiled tests whose source is gone (dist/ keeps outputs of deleted files).
    while IFS= read -r js; do
      src=${js#dist/}
      [ -f "${src%.js}.ts" ] && files+=("$js")
    done < <(find "$path" -name '*.test.js' -type f | sort)
  elif [ -f "$path" ]; then
    files+=("$path")
  else
    echo "test.sh: no tests at $arg (looked for $path)" >&2
    exit 2
  fi
done
[ ${#files[@]} -gt 0 ] || {
  echo "test.sh: no *.test.js files found in $*" >&2
  exit 2
}
exec node dist/test/env/harness.js -- node --test --test-concurrency=2 "${files[@]}"
