#!/usr/bin/env bash
# The main job for now: build Ferrox and run the HA simulator on the bundled example
# scenario (a node loses its network, is fenced, its guest is recovered elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo > /dev/null; then
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
cargo build --release --quiet -p ferrox-cli
./target/release/ferrox sim run examples/ha-failover
