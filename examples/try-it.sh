#!/usr/bin/env bash
# Plans and deploys the example vine with `tendril exec`, on this machine
# alone: Terraform state goes to a local directory (the embedded default when
# no SUPABASE_S3_ENDPOINT is set), and the DEPLOY applies exactly the plan the
# PLAN wrote. Results land in tendril-out/example-plan/ and
# tendril-out/example-deploy/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v terraform >/dev/null || { echo "terraform is needed: see https://developer.hashicorp.com/terraform/install" >&2; exit 1; }
echo "==> building tendril (cargo build --locked; the first build compiles the AWS SDK and takes a few minutes)"
cargo build --quiet --locked
tendril="${CARGO_TARGET_DIR:-target}/debug/tendril"
export TENDRIL_TEMPLATES_DIR=examples/templates TENDRIL_STATE_DIR="${TENDRIL_STATE_DIR:-$PWD/tendril-out/state}"
echo "==> PLAN of the example vine (examples/plan.json), Terraform state in $TENDRIL_STATE_DIR"
"$tendril" exec examples/plan.json --out tendril-out/example-plan
echo "==> DEPLOY applying exactly that plan (examples/deploy.json --plan-from tendril-out/example-plan)"
"$tendril" exec examples/deploy.json --out tendril-out/example-deploy --plan-from tendril-out/example-plan
echo "==> done: results in tendril-out/example-plan/ and tendril-out/example-deploy/ (result.json, job.log)"
