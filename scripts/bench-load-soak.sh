#!/usr/bin/env bash
# False-fence benchmark (figures go to docs/benchmarks.md): three daemons with the default
# HA timings and three HA guests for N minutes (default 30) with both cores saturated.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_load_soak "${1:-30}"
