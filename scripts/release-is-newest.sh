#!/usr/bin/env bash
# Whether a release version is the newest stable release of the repository's
# tags (`v<major>.<minor>.<patch>`): prints true or false. Only the newest
# stable release is tagged `latest`, made GitHub's latest release (what
# install.sh installs by default) and announced to Trellis, whose Update
# button moves the fleet to the newest announced version: a prerelease or a
# maintenance release of an older line (v1.3.5 after v1.4.0) must do none of
# that.
#
#   bash scripts/release-is-newest.sh VERSION      (in a clone with the tags)
set -euo pipefail
version="${1:?usage: release-is-newest.sh VERSION}"
case "$version" in
  *-*) echo false; exit 0 ;;
esac
newest=$( { git tag -l 'v*'; echo "v$version"; } | grep -E '^v[0-9]+\.[0-9]+\.[0-9]+$' | sed 's/^v//' | sort -V | tail -n 1)
if [ "$newest" = "$version" ]; then echo true; else echo false; fi
