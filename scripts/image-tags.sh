#!/usr/bin/env bash
# The tags of a release's image variant, one per line:
#
#   bash scripts/image-tags.sh VERSION VARIANT
#
# The all-clouds image (VARIANT `all`) is `<version>` and `latest`; a cloud's
# variant is `<version>-<cloud>` and `latest-<cloud>` (UPDATE_WORKER keeps a
# worker on the variant it runs). A prerelease (a version with a `-`) gets
# no `latest`.
set -euo pipefail
version="${1:?usage: image-tags.sh VERSION VARIANT}"
variant="${2:?usage: image-tags.sh VERSION VARIANT}"
case "$variant" in
  all) suffix="" ;;
  aws|gcp|azure) suffix="-$variant" ;;
  *) echo "image-tags.sh: no image variant '$variant' (all, aws, gcp or azure)" >&2; exit 2 ;;
esac
echo "$version$suffix"
case "$version" in
  *-*) ;;
  *) echo "latest$suffix" ;;
esac
