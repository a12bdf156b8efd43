#!/usr/bin/env bash
# Guest networking benchmark (figures go to docs/benchmarks.md): guest-to-guest
# throughput and latency on one node and across nodes (VXLAN), the host namespaces'
# limit, pings lost during live migration, failover to the guest answering pings.
# Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh --test || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_network "${1:-3}"
