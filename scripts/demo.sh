#!/usr/bin/env bash
# The main job: one Dockerfile (examples/hello) built for five CPU architectures into the
# local store — foreign ones under QEMU, the "prepare" stage once on the build platform —
# then every variant run, each reporting what it is. No registry is used.
#
#   bash scripts/demo.sh                 # state in $POLYARCH_ROOT (default /var/lib/polyarch)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
platforms=linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x

echo "== base image: busybox from Debian's busybox-static, imported per platform (no Docker Hub here)"
node dist/scripts/busybox-rootfs.js | while IFS=$'\t' read -r platform dir; do
  ./bin/polyarch import --platform "$platform" "$dir" busybox >/dev/null
done
./bin/polyarch images busybox

echo "== build examples/hello for $platforms"
./bin/polyarch build --progress plain --platform "$platforms" -t polyarch-hello examples/hello
./bin/polyarch images polyarch-hello

echo "== run every variant"
./bin/polyarch run --rm --platform "$platforms" polyarch-hello
