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
  bash scripts/podman.sh save --format docker-dir -o "$scratch/image" "$image" >/dev/null 2>&1
  echo "$image: layer, as stored and gzipped (as a registry serves it), and the step that made it"
  # The image's history lists every step; those that made a layer match the
  # manifest's layers, in order.
  python3 - "$scratch/image" <<'PY'
import json, os, re, sys, zlib
directory = sys.argv[1]
manifest = json.load(open(os.path.join(directory, "manifest.json")))
config = json.load(open(os.path.join(directory, manifest["config"]["digest"].split(":")[1])))
steps = [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]
mb = lambda n: f"{n / 1e6:.0f} MB"
total = total_gz = 0
for layer, step in zip(manifest["layers"], steps):
    path = os.path.join(directory, layer["digest"].split(":")[1])
    size = os.path.getsize(path)
    compressor, gz = zlib.compressobj(6, zlib.DEFLATED, 31), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            gz += len(compressor.compress(block))
    gz += len(compressor.flush())
    total, total_gz = total + size, total_gz + gz
    # `|2 A=1 B=2 /bin/sh -c <command>` is a RUN with its build arguments.
    step = re.sub(r"^(\|\d+ (\S+=\S* )*)?/bin/(ba)?sh( -euo pipefail)? -c (#\(nop\) )?", "RUN ", step)
    step = " ".join(step.replace("RUN COPY", "COPY").replace("RUN ADD", "ADD").split())
    print(f"  {mb(size):>8} {mb(gz):>8}  {step[:100]}")
print(f"  {mb(total):>8} {mb(total_gz):>8}  in all")
PY
done
