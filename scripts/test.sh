#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, conformance and CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo > /dev/null; then
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
if [ ! -d ../shared/conformance/pve-ha ]; then
    echo "../shared/conformance/pve-ha is missing: the checkout needs shared/ beside it" >&2
    exit 1
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
