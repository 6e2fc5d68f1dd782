#!/usr/bin/env bash
# The benchmarks (README, "Benchmarks") of the release binary that ships:
#   bash scripts/bench.sh [size|throughput|idle|first-claim ...]   the figures
#   bash scripts/bench.sh idle-order                   makes benches/worker/idle-functions.order
#
# `cargo bench` alone measures the benchmark's own build of tendril, whose
# dependencies are built with the tests' features: other code, with other
# symbol names. So this script builds the release binary as the Dockerfile
# does, keeps a copy aside (the benchmark's build replaces it) and has the
# benchmark run that copy (TENDRIL_BENCH_BINARY).
#
# idle-order runs that binary idle under Valgrind's callgrind (Debian:
# apt-get install valgrind) to list the functions it runs. It is linked once
# more with its symbols by a flag to that link alone: stripping through the
# profile (CARGO_PROFILE_RELEASE_STRIP) would rename every crate's symbols.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
if [[ " $* " == *" idle-order "* ]]; then
  echo "bench: linking the release binary with its symbols" >&2
  cargo rustc --release --locked --bin tendril -- -C strip=none
else
  echo "bench: building the release binary" >&2
  cargo build --release --locked --bin tendril
fi
kept=$(mktemp -d)
trap 'rm -rf "$kept"' EXIT
cp "$target/release/tendril" "$kept/tendril"
TENDRIL_BENCH_BINARY="$kept/tendril" cargo bench --locked --bench worker -- "$@"
