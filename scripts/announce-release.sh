#!/usr/bin/env bash
# Tells Trellis of a Tendril release (POST /api/releases/worker): its
# Tendrils page then marks workers whose version differs as outdated, and
# its Update button moves them to this version's image tag.
#
#   TRELLIS_URL=https://trellis.example.com TRELLIS_RELEASE_SECRET_FILE=secret \
#     bash scripts/announce-release.sh VERSION
#
# Environment:
#   TRELLIS_URL                    Trellis (https; http only for loopback)
#   TRELLIS_RELEASE_SECRET         the release secret, or
#   TRELLIS_RELEASE_SECRET_FILE    a file holding it
#   RELEASE_NOTES                  optional
#   RELEASE_URL                    the GitHub release's page, optional
#   RELEASE_COMMIT                 the released commit's SHA, optional
#   RELEASE_BREAKING               true when workers must be updated with care
#                                  (default false)
#
# A version Trellis already knows (409) counts as announced. The secret is
# never printed nor put on a command line: curl reads it from a private file.
set -euo pipefail
say() { echo "announce-release: $*" >&2; }
version="${1:?usage: announce-release.sh VERSION}"
# The version as the release's binaries report it (a tag's, without its v).
bash "$(dirname "$0")/release-version.sh" "v$version" >/dev/null || {
  say "'$version' is no release version (<major>.<minor>.<patch>, optionally -<prerelease>)"
  exit 2
}
url="${TRELLIS_URL:?set TRELLIS_URL to the address of Trellis}"
url="${url%/}"
# The secret goes only over https, or plain http to this machine's own
# loopback (a test's Trellis): the host is read exactly, not by its prefix.
host=$(python3 -c 'import sys, urllib.parse; u = urllib.parse.urlsplit(sys.argv[1]); print(u.scheme, u.hostname or "", "userinfo" if u.username is not None else "")' "$url")
case "$host" in
  "https "*) ;;
  "http 127.0.0.1 "|"http localhost "|"http ::1 ") ;;
  *) say "TRELLIS_URL must be https:// (the release secret goes with it): $url"; exit 2 ;;
esac
case "$host" in *" userinfo") say "TRELLIS_URL must not carry a user name or password: $url"; exit 2 ;; esac
if [ -n "${TRELLIS_RELEASE_SECRET_FILE:-}" ]; then
  [ -r "$TRELLIS_RELEASE_SECRET_FILE" ] || { say "cannot read TRELLIS_RELEASE_SECRET_FILE ($TRELLIS_RELEASE_SECRET_FILE)"; exit 2; }
  secret=$(tr -d '\r\n' < "$TRELLIS_RELEASE_SECRET_FILE")
else
  secret="${TRELLIS_RELEASE_SECRET:-}"
fi
[ -n "$secret" ] || { say "set TRELLIS_RELEASE_SECRET or TRELLIS_RELEASE_SECRET_FILE"; exit 2; }
# A control character (a newline) would end the header early and start
# another: refused, without printing the secret.
if [[ "$secret" =~ [[:cntrl:]] ]]; then
  say "the release secret holds a control character (a newline?): check TRELLIS_RELEASE_SECRET"
  exit 2
fi
case "${RELEASE_BREAKING:-false}" in true|false) ;; *) say "RELEASE_BREAKING must be true or false"; exit 2 ;; esac

private=$(mktemp -d)
trap 'rm -rf "$private"' EXIT
chmod 0700 "$private"
printf 'Authorization: Bearer %s\n' "$secret" > "$private/header"
unset secret TRELLIS_RELEASE_SECRET
# The optional fields are sent only when set.
VERSION="$version" python3 -c '
import json, os
body = {"version": os.environ["VERSION"]}
for field, name in [("release_notes", "RELEASE_NOTES"), ("github_release_url", "RELEASE_URL"),
                    ("commit_sha", "RELEASE_COMMIT")]:
    if os.environ.get(name):
        body[field] = os.environ[name]
body["is_breaking"] = os.environ.get("RELEASE_BREAKING", "false") == "true"
print(json.dumps(body))' > "$private/body"

status=$(curl --silent --show-error --output "$private/answer" --write-out '%{http_code}' \
  --retry 3 --retry-connrefused --max-time 30 \
  --header @"$private/header" --header 'Content-Type: application/json' \
  --data-binary @"$private/body" "$url/api/releases/worker") || {
  say "cannot reach Trellis at $url"
  exit 1
}
answer=$(head -c 2000 "$private/answer")
case "$status" in
  200|201) say "announced Tendril $version to $url" ;;
  409) say "Tendril $version was already announced to $url: nothing to do" ;;
  401) say "Trellis refused the release secret (HTTP 401): check TRELLIS_RELEASE_SECRET, the secret Trellis expects for releases"; exit 1 ;;
  *) say "Trellis answered HTTP $status: $answer"; exit 1 ;;
esac
