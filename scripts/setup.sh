#!/usr/bin/env bash
# Installs what polyarch and its tests need on a Debian 12 machine, as root, then builds.
# Idempotent: a second run only checks (dpkg -s, file tests, /proc) and takes seconds.
#
# What it sets up:
#   - Debian packages (only the missing ones; `apt-get update` at most once per run); arch-test
#     is what mmdebstrap needs for a foreign-architecture rootfs (test/build-debian)
#   - foreign dpkg architectures, so `apt-get download busybox-static:<arch>` works
#   - busybox-static debs for every test architecture, unpacked under $POLYARCH_TEST_CACHE
#     (default /var/cache/polyarch-test): $POLYARCH_TEST_CACHE/busybox/<debian-arch>/bin/busybox
#   - binfmt_misc mounted and Debian's QEMU handlers (flags OPF) registered
#   - node_modules (npm ci) and the TypeScript build (dist/)
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${POLYARCH_TEST_CACHE:-/var/cache/polyarch-test}
packages=(runc passt chromium qemu-user-static git openssh-client openssh-server docker-registry skopeo umoci podman busybox-static mmdebstrap arch-test openssl apache2-utils attr pigz zstd)
# Debian architecture names; the amd64 deb is downloaded too so every arch is handled alike.
busybox_arches=(amd64 arm64 armhf ppc64el s390x)
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup: $*"; }
die() {
  echo "setup: ERROR: $*" >&2
  exit 1
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (run scripts/setup.sh as root once)"
}

apt_updated=0
apt_update() {
  [ "$apt_updated" -eq 0 ] || return 0
  need_root "apt-get update"
  say "apt-get update"
  # Third-party sources without network access make update exit non-zero while Debian's
  # mirror still answers; what we actually need is checked by the install/download after.
  apt-get update -qq || say "apt-get update reported errors (continuing; Debian's mirror may still work)"
  apt_updated=1
}

# 1. Debian packages, only the missing ones.
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  say "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Foreign architectures for the multi-arch busybox debs.
native=$(dpkg --print-architecture)
foreign=$(dpkg --print-foreign-architectures)
for a in "${busybox_arches[@]}"; do
  [ "$a" = "$native" ] && continue
  if ! grep -qx "$a" <<<"$foreign"; then
    need_root "dpkg --add-architecture"
    say "dpkg --add-architecture $a"
    dpkg --add-architecture "$a"
    apt_updated=0 # new architectures need fresh package lists
    added_arch=1
  fi
done
[ -z "${added_arch:-}" ] || apt_update

# 3. busybox-static for every arch, downloaded and unpacked once.
for a in "${busybox_arches[@]}"; do
  dest="$cache/busybox/$a"
  [ -x "$dest/bin/busybox" ] && continue
  mkdir -p "$cache/debs" "$cache/busybox"
  if ! compgen -G "$cache/debs/busybox-static_*_$a.deb" >/dev/null; then
    say "downloading busybox-static:$a"
    if ! (cd "$cache/debs" && apt-get download -qq "busybox-static:$a" 2>/dev/null); then
      apt_update
      (cd "$cache/debs" && apt-get download -qq "busybox-static:$a") || die "apt-get download busybox-static:$a failed"
    fi
  fi
  deb=$(compgen -G "$cache/debs/busybox-static_*_$a.deb" | sort | tail -n 1)
  # Unpack into a temporary dir and rename, so an interrupted run never leaves half a tree.
  rm -rf "$dest.tmp"
  dpkg -x "$deb" "$dest.tmp"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
done

# 4. binfmt_misc with Debian's QEMU handlers (flags OPF: F keeps the emulator open, so it
#    also works inside containers whose rootfs has no /usr/libexec/qemu-binfmt).
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  need_root "mounting binfmt_misc"
  say "mounting binfmt_misc"
  mount -t binfmt_misc binfmt_misc "$binfmt"
fi
registered=()
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  line=$(grep -v '^[#;]' "$conf" | head -n 1)
  [ -n "$line" ] || continue
  name=$(cut -d: -f2 <<<"$line")
  [ -e "$binfmt/$name" ] && continue
  need_root "registering binfmt handlers"
  printf '%s' "$line" >"$binfmt/register" || die "registering $name from $conf failed"
  registered+=("$name")
done
[ ${#registered[@]} -eq 0 ] || say "registered binfmt handlers: ${registered[*]}"

# 5. Node dependencies and the build.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# tsc's incremental build skips unchanged sources even when their output was deleted: forget
# the build info if any output is missing, so dist/ always matches the sources.
if [ -f dist/.tsbuildinfo ]; then
  while IFS= read -r ts; do
    [ -f "dist/${ts%.ts}.js" ] || {
      rm -f dist/.tsbuildinfo
      break
    }
  done < <(find src test bench scripts -name '*.ts' ! -name '*.d.ts' 2>/dev/null)
fi
node_modules/.bin/tsc -p tsconfig.json
