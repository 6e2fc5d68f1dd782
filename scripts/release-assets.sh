#!/usr/bin/env bash
# Lays out a release's files in DIST, as the release workflow publishes them
# and scripts/install.sh reads them:
#
#   bash scripts/release-assets.sh DIST [ARCH=BINARY ...]
#
# copies each release binary as tendril-<ARCH>-linux (ARCH x86_64 or
# aarch64), adds install.sh and the systemd unit and environment example,
# and writes SHA256SUMS over every file. Names carry no version, so that
# .../releases/latest/download/<name> always finds the newest.
set -euo pipefail
cd "$(dirname "$0")/.."
dist="${1:?usage: release-assets.sh DIST [ARCH=BINARY ...]}"
shift
mkdir -p "$dist"
for pair in "$@"; do
  arch="${pair%%=*}" binary="${pair#*=}"
  case "$arch" in x86_64|aarch64) ;; *) echo "release-assets.sh: no architecture '$arch' (x86_64 or aarch64)" >&2; exit 2 ;; esac
  [ -f "$binary" ] || { echo "release-assets.sh: no binary at $binary" >&2; exit 2; }
  install -m 0755 "$binary" "$dist/tendril-$arch-linux"
done
install -m 0755 scripts/install.sh "$dist/install.sh"
install -m 0644 deploy/systemd/tendril.service deploy/systemd/tendril.env.example "$dist/"
sums=$(mktemp)
(cd "$dist" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs sha256sum) > "$sums"
mv -f "$sums" "$dist/SHA256SUMS"
chmod 0644 "$dist/SHA256SUMS"
echo "release-assets.sh: $(wc -l < "$dist/SHA256SUMS") files in $dist, with SHA256SUMS" >&2
