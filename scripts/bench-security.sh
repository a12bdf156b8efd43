#!/usr/bin/env bash
# Security benchmarks (figures go to docs/benchmarks.md): login rate under throttling per
# user and per address, normal requests during a flood of 1 000 half-open connections and
# during 200 wrong-password clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_security "$@"
