#!/usr/bin/env bash
# Node benchmarks (figures go to docs/benchmarks.md): /cluster/resources latency with
# 1 000 and 10 000 guest configs, idle daemon memory, start call -> QMP running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins --examples
./target/release/examples/bench_node "$@"
