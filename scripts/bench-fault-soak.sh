#!/usr/bin/env bash
# Fault soak (figures go to docs/benchmarks.md): three nodes in network namespaces, ten
# HA guests under affinity rules, N minutes (default 30) of random faults one at a time.
# Needs root and `ip netns`. The seed (second argument) replays a fault sequence.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_fault_soak "${1:-30}" ${2:+"$2"}
