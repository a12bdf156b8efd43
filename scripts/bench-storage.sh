#!/usr/bin/env bash
# Storage benchmarks (figures go to docs/benchmarks.md): snapshots, clones, local-disk
# live migration of a 2 GiB disk, against qemu-img convert as the machine's limit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
scripts/install-qemu.sh
cargo build --release --quiet -p ferrox-cli --bins
cargo build --release --quiet -p ferrox-e2e --examples
./target/release/examples/bench_storage "${1:-5}" "${2:-}"
