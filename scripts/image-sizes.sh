#!/usr/bin/env bash
# The size of an image built by scripts/build-image.sh, layer by layer, as
# stored and as pulled (gzipped, as a registry serves it):
#
#   bash scripts/image-sizes.sh [aws|gcp|azure|all ...]     (default: aws all)
set -euo pipefail
cd "$(dirname "$0")/.."
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(aws all)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mib() { awk -v bytes="$1" 'BEGIN { printf "%.0f MB", bytes / 1000000 }'; }
for variant in "${variants[@]}"; do
  image="localhost/tendril:ci-$variant"
  rm -rf "${scratch:?}"/*
  bash scripts/podman.sh save --format docker-dir -o "$scratch/image" "$image" >/dev/null
  echo "$image"
  # The history's non-empty steps are the layers, oldest first; the manifest
  # lists the layer files in the same order.
  mapfile -t steps < <(bash scripts/podman.sh history --no-trunc --format '{{.Size}}|{{.CreatedBy}}' "$image" \
    | tac | awk -F'|' '$1 != "0B" { print $2 }')
  mapfile -t layers < <(python3 -c 'import json, sys; [print(l["digest"].split(":")[1]) for l in json.load(open(sys.argv[1]))["layers"]]' \
    "$scratch/image/manifest.json")
  total=0 total_gz=0
  for index in "${!layers[@]}"; do
    file="$scratch/image/${layers[$index]}"
    size=$(stat -c %s "$file")
    gz=$(gzip -c "$file" | wc -c)
    total=$((total + size)) total_gz=$((total_gz + gz))
    step="${steps[$index]:-?}"
    step="${step#/bin/sh -c #(nop) }"
    printf '  %-9s %-9s %.90s\n' "$(mib "$size")" "$(mib "$gz")" "$step"
  done
  printf '  %-9s %-9s %s\n' "$(mib "$total")" "$(mib "$total_gz")" "in all (stored, gzipped)"
done
