#!/usr/bin/env bash
# Node shutdown with each HA shutdown policy (figures go to docs/benchmarks.md): three
# daemons on loopback, three HA guests on n1, `POST /nodes/n1/status command=shutdown`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_shutdown
