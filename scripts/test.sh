#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, conformance, CLI and QEMU tests.
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
# Real QEMU for the guest tests (skipped loudly when it cannot be installed). Both packages
# at once: the image's backported qemu-utils conflicts with Debian's qemu-system-x86, and
# installing the latter alone removes qemu-img.
if ! command -v qemu-system-x86_64 > /dev/null || ! command -v qemu-img > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        { apt-get update -qq > /dev/null \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils > /dev/null; } \
            || echo "WARNING: installing qemu-system-x86/qemu-utils failed: QEMU tests will be skipped" >&2
    else
        echo "WARNING: qemu-system-x86_64 missing and not root: QEMU tests will be skipped" >&2
    fi
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
