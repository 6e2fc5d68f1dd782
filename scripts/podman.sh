#!/usr/bin/env bash
# podman with the project's settings (scripts/container/containers.conf)
# and its own image store, outside the clone and kept between runs
# ($TENDRIL_PODMAN_ROOT, default ~/.cache/tendril-podman; a cold image build
# uses about 5 GB there). Every podman call of the scripts and tests goes
# through here:  bash scripts/podman.sh images
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${TENDRIL_PODMAN_ROOT:-$HOME/.cache/tendril-podman}"
mkdir -p "$root/storage" "$root/run"
# Written whole and renamed: podman calls may run at once.
conf=$(mktemp "$root/storage.conf.XXXXXX")
cat > "$conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$root/storage"
runroot = "$root/run"
CONF
mv -f "$conf" "$root/storage.conf"
export CONTAINERS_CONF="$here/container/containers.conf"
export CONTAINERS_STORAGE_CONF="$root/storage.conf"
exec podman "$@"
