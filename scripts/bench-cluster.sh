#!/usr/bin/env bash
# Cluster benchmarks (figures go to docs/benchmarks.md): config-write commit latency and
# throughput on three local nodes, live-migration downtime for idle and busy guests.
# Then the store's linearizability check (60 s, 6 clients, nemesis).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
cargo build --release --quiet -p ferrox-store --examples
./target/release/examples/bench_cluster "${1:-10}"
./target/release/examples/linearizability "${2:-60}" 6 1
