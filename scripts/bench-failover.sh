#!/usr/bin/env bash
# Failover benchmark (figures go to docs/benchmarks.md): power loss and isolation, each
# N runs (default 10) with the default HA timings. Isolation needs root and ip netns.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_failover "${1:-10}"
