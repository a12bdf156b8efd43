#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, conformance, CLI, daemon and
# QEMU tests, the web UI (unit tests, and browser tests in Debian's Chromium), and the
# third-party API clients (proxmoxer, Ansible).
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
# Real QEMU for the guest and client tests; those tests skip loudly when it is missing.
scripts/install-qemu.sh || echo "WARNING: QEMU tests will be skipped" >&2
# `ip netns` for the partition test (it skips loudly without root or iproute2).
if ! command -v ip > /dev/null && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 > /dev/null 2>&1 \
        || echo "WARNING: iproute2 missing: the partition test will be skipped" >&2
fi
# libpam0g-dev to build (the pam realm), slapd for the LDAP realm test (it skips loudly
# without it).
scripts/install-build-deps.sh --test || echo "WARNING: see above: the build or the LDAP test may fail" >&2
# The web UI: built (the daemons serve it), type-checked and unit-tested; Chromium for
# the browser tests (e2e/tests/web.rs skips loudly without it).
scripts/build-web.sh --test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
# proxmoxer and Ansible against a real node (installs them into target/pyclients).
scripts/client-tests.sh
