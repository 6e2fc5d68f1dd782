#!/usr/bin/env bash
# Runs the example CONNECTION_TEST with `tendril exec` against moto, a local
# AWS on 127.0.0.1, so it works on a laptop with no cloud account. The result
# lands in tendril-out/example-connection-test/result.json.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v moto_server >/dev/null 2>&1 || need+=("moto[server]")
command -v aws >/dev/null 2>&1 || need+=("awscli")
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]} with pip (moto, a local AWS; the AWS CLI the job runs)"
  python3 -m pip install --quiet "${need[@]}"
  hash -r
fi
echo "==> building tendril (cargo build --locked; the first build takes a few minutes)"
cargo build --quiet --locked

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scratch=$(mktemp -d)
(cd "$scratch" && exec moto_server -H 127.0.0.1 -p "$port" >"$scratch/moto.log" 2>&1) &
moto=$!
trap 'kill "$moto" 2>/dev/null || true; wait "$moto" 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.2
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true TENDRIL_AWS_REGIONS=us-east-1,eu-west-1
target="${CARGO_TARGET_DIR:-target}"
echo "==> CONNECTION_TEST of examples/connection-test.json against moto on 127.0.0.1:$port"
"$target/debug/tendril" exec examples/connection-test.json --out tendril-out/example-connection-test
