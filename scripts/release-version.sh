#!/usr/bin/env bash
# The release version of a tag: `v1.4.0` is 1.4.0, `v1.5.0-rc.1` is
# 1.5.0-rc.1. The version is what the release's binaries report to Trellis
# (TENDRIL_VERSION) and the image's tag, so it must be a valid tag:
# MAJOR.MINOR.PATCH, then an optional prerelease of letters, digits, dots
# and dashes.
#
#   bash scripts/release-version.sh v1.4.0      prints 1.4.0
set -euo pipefail
tag="${1:?usage: release-version.sh TAG}"
if [[ ! "$tag" =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z][0-9A-Za-z.-]*)?$ ]]; then
  echo "release-version.sh: '$tag' is no release tag (v<major>.<minor>.<patch>, optionally -<prerelease>)" >&2
  exit 2
fi
echo "${tag#v}"
