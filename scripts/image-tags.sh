#!/usr/bin/env bash
# The tags of a release's image variant, one per line:
#
#   bash scripts/image-tags.sh VERSION VARIANT NEWEST
#
# The all-clouds image (VARIANT `all`) is `<version>`, and `latest` when
# NEWEST is true (scripts/release-is-newest.sh: the newest stable release); a
# cloud's variant is `<version>-<cloud>`, and `latest-<cloud>` (UPDATE_WORKER
# keeps a worker on the variant it runs).
set -euo pipefail
usage="usage: image-tags.sh VERSION VARIANT NEWEST"
version="${1:?$usage}"
variant="${2:?$usage}"
newest="${3:?$usage}"
case "$variant" in
  all) suffix="" ;;
  aws|gcp|azure) suffix="-$variant" ;;
  *) echo "image-tags.sh: no image variant '$variant' (all, aws, gcp or azure)" >&2; exit 2 ;;
esac
echo "$version$suffix"
case "$newest" in
  true) echo "latest$suffix" ;;
  false) ;;
  *) echo "image-tags.sh: NEWEST is true or false, not '$newest'" >&2; exit 2 ;;
esac
