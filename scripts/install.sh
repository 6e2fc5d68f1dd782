#!/usr/bin/env bash
# Installs Tendril as a self-hosted worker on a Linux VM with systemd, from
# a release: the binary for this machine's architecture (checked against the
# release's SHA256SUMS), the systemd unit, and an environment file (mode
# 0600) that is never overwritten. Then it says what to do next.
#
#   curl -fsSL https://github.com/bobikenobi12/tendril/releases/latest/download/install.sh | sudo bash
#   curl -fsSL .../install.sh | sudo bash -s -- --version 1.4.0
#
# Options:
#   --version V   the release to install (default: the latest)
#   --base B      where the release's files are: a URL, or a local directory
#                 (default: the GitHub release of --version)
#   --root DIR    install under DIR instead of / (a scratch root: no user is
#                 created and no service manager is asked)
set -euo pipefail

# Everything runs from main, called on the script's last line: a download
# cut short (curl | bash) runs nothing.
main() {
  repository="bobikenobi12/tendril"
  version=""
  base=""
  root="/"
  while [ $# -gt 0 ]; do
    case "$1" in
      --version) version="${2:?--version needs a version}"; shift 2 ;;
      --base) base="${2:?--base needs a URL or a directory}"; shift 2 ;;
      --root) root="${2:?--root needs a directory}"; shift 2 ;;
      -h|--help) echo "usage: install.sh [--version V] [--base URL|DIR] [--root DIR] (see the top of the script)"; exit 0 ;;
      *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
  say() { echo "install.sh: $*" >&2; }
  fail() { say "$*"; exit 1; }

  case "$(uname -m)" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=aarch64 ;;
    *) fail "no Tendril release for $(uname -m): releases are built for x86_64 and aarch64 Linux" ;;
  esac
  [ "$(uname -s)" = Linux ] || fail "Tendril runs on Linux; this is $(uname -s)"
  if [ -z "$base" ]; then
    case "$version" in
      "") base="https://github.com/$repository/releases/latest/download" ;;
      *) base="https://github.com/$repository/releases/download/v${version#v}" ;;
    esac
  fi
  # The checksums come from the same place as the binary: over plain http a
  # man in the middle could replace both, and what is installed runs as root.
  case "$base" in
    https://*) ;;
    http://*) fail "--base must be https:// (or a directory): $base" ;;
    *) [ -d "$base" ] || fail "--base $base is no https:// URL and no directory" ;;
  esac
  if [ "$root" = / ] && [ "$(id -u)" -ne 0 ]; then
    fail "run it as root (sudo bash ...): it installs into /usr/local/bin and /etc, and creates a user"
  fi

  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  fetch() {
    if [ -d "$base" ]; then
      cp "$base/$1" "$scratch/$1" 2>/dev/null || fail "$base has no $1"
    else
      command -v curl >/dev/null 2>&1 || fail "curl is needed to download the release"
      curl -fsSL --proto '=https' --proto-redir '=https' --retry 3 -o "$scratch/$1" "$base/$1" \
        || fail "cannot download $base/$1"
    fi
  }
  # A file a release may lack (an older one): fetched when there.
  fetch_optional() {
    if [ -d "$base" ]; then
      cp "$base/$1" "$scratch/$1" 2>/dev/null
    else
      curl -fsSL --proto '=https' --proto-redir '=https' --retry 3 -o "$scratch/$1" "$base/$1" 2>/dev/null
    fi
  }
  binary="tendril-$arch-linux"
  say "downloading $binary from $base"
  for file in "$binary" tendril.service tendril.env.example SHA256SUMS; do
    fetch "$file"
  done
  # Every file is checked against the release's SHA256SUMS: a file it does not
  # list, or whose checksum differs, stops the installation.
  (cd "$scratch" && for file in "$binary" tendril.service tendril.env.example; do
    grep -E "^[0-9a-f]{64}  $file\$" SHA256SUMS > "$file.sum" || fail "SHA256SUMS does not list $file"
    sha256sum --check --quiet "$file.sum" || fail "$file does not match its checksum in SHA256SUMS"
  done)
  # Signed releases: with cosign on PATH, SHA256SUMS is checked against the
  # release workflow's keyless signature too.
  if command -v cosign >/dev/null 2>&1 && fetch_optional SHA256SUMS.sigstore.json; then
    cosign verify-blob --bundle "$scratch/SHA256SUMS.sigstore.json" \
      --certificate-identity-regexp "^https://github.com/$repository/\\.github/workflows/release\\.yml@" \
      --certificate-oidc-issuer https://token.actions.githubusercontent.com "$scratch/SHA256SUMS" >/dev/null 2>&1 \
      || fail "SHA256SUMS does not carry the release workflow's signature (cosign verify-blob)"
    say "SHA256SUMS is signed by $repository's release workflow"
  fi

  # The binary: put beside the old one (and run there: /tmp may be noexec),
  # then renamed over it (a running worker keeps its own until it is
  # restarted).
  install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
  install -m 0755 "$scratch/$binary" "$root/usr/local/bin/.tendril.new"
  if ! printed=$("$root/usr/local/bin/.tendril.new" version 2>"$scratch/stderr"); then
    rm -f "$root/usr/local/bin/.tendril.new"
    fail "the downloaded binary does not run here ($(head -c 300 "$scratch/stderr")): it needs glibc 2.34 or later (Debian 12, Ubuntu 22.04, RHEL 9, Amazon Linux 2023)"
  fi
  installed=${printed%%$'\n'*}
  say "verified $installed"
  mv -f "$root/usr/local/bin/.tendril.new" "$root/usr/local/bin/tendril"
  install -m 0644 "$scratch/tendril.service" "$root/etc/systemd/system/tendril.service"
  # The settings: mode 0600 (systemd reads them as root), never overwritten.
  install -d -m 0755 "$root/etc/tendril"
  env_file="$root/etc/tendril/tendril.env"
  if [ -e "$env_file" ]; then
    say "kept the existing $env_file"
  else
    install -m 0600 "$scratch/tendril.env.example" "$env_file"
    say "wrote $env_file (mode 0600): fill it in"
  fi

  if [ "$root" = / ]; then
    if ! id tendril >/dev/null 2>&1; then
      useradd --system --home-dir /var/lib/tendril --shell /usr/sbin/nologin tendril
      say "created the system user tendril"
    fi
    if command -v systemctl >/dev/null 2>&1; then
      systemctl daemon-reload
      if systemctl is-active --quiet tendril; then
        say "tendril is running the old version: 'systemctl restart tendril' moves it to the new one (it drains first)"
      fi
    fi
  else
    say "installed under $root: no user was created and systemd was not asked"
  fi

  cat <<NEXT
Tendril is installed: $installed, /usr/local/bin/tendril.
Next:
  1. Register the worker with Trellis, with the platform's registration secret,
     and put the two lines it prints (GRAPE_WORKER_ID=, GRAPE_WORKER_TOKEN=) in
     /etc/tendril/tendril.env:
       TRELLIS_URL=https://trellis.example.com TENDRIL_REGISTRATION_SECRET_FILE=/path/to/secret \\
         tendril register --name "\$(hostname)"
  2. Set TRELLIS_URL (and the state bucket, if any) in /etc/tendril/tendril.env.
  3. Check what the worker needs, with its settings:
       sudo bash -c 'set -a; . /etc/tendril/tendril.env; TENDRIL_WORK_DIR=/var/lib/tendril TENDRIL_STATE_DIR=/var/lib/tendril/state tendril doctor'
  4. Start it, now and at every boot:
       systemctl enable --now tendril
NEXT
}

main "$@"
