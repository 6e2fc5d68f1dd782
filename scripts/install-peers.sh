#!/usr/bin/env bash
# Installs the real peers the test suite runs against, where they are
# missing: moto (a local AWS) and the AWS CLI. Idempotent: a peer already on
# PATH is left alone. Terraform, kubectl and Helm join this list with the jobs
# that need them.
set -euo pipefail

need_pip=()
command -v moto_server >/dev/null 2>&1 || need_pip+=("moto[server]")
command -v aws >/dev/null 2>&1 || need_pip+=("awscli")
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing ${need_pip[*]} with pip"
  python3 -m pip install --quiet "${need_pip[@]}"
  hash -r
fi
for tool in moto_server aws; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is still missing after pip install (is pip's bin directory on PATH?)" >&2; exit 1; }
done
echo "peers: moto_server $(command -v moto_server), $(aws --version 2>&1)"
