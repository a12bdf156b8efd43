#!/usr/bin/env bash
# Installs QEMU (qemu-system-x86) and qemu-img (qemu-utils) with apt-get when missing.
# Both come from the same Debian release: the machine image carries a backported
# qemu-utils 10 that conflicts with the release's qemu-system-x86 7.2, so qemu-utils is
# taken from the release too (a downgrade), else installing QEMU would remove qemu-img.
# Prints a warning and returns 1 when it cannot install them.
set -uo pipefail
if command -v qemu-system-x86_64 > /dev/null && command -v qemu-img > /dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "WARNING: qemu-system-x86_64/qemu-img missing and cannot apt-get install them (need root on Debian)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq > /dev/null 2>&1 || true
install="apt-get install -y -qq --no-install-recommends"
codename=$(. /etc/os-release 2> /dev/null && echo "${VERSION_CODENAME:-}")
if $install qemu-system-x86 qemu-utils > /dev/null 2>&1 \
    || { [ -n "$codename" ] && $install --allow-downgrades qemu-system-x86 "qemu-utils/$codename" > /dev/null 2>&1; }; then
    if command -v qemu-system-x86_64 > /dev/null && command -v qemu-img > /dev/null; then
        exit 0
    fi
fi
echo "WARNING: installing qemu-system-x86 and qemu-utils failed" >&2
exit 1
