#!/usr/bin/env bash
# Installs the system packages Ferrox builds against (libpam0g-dev: the pam realm links
# libpam) and, with --test, those the tests start (slapd for the LDAP realm test,
# influxdb for the metric server test, btrfs-progs for the btrfs storage tests,
# dnsmasq-base for SDN DHCP, busybox-static and cpio for the Linux test guest).
# Needs root on Debian; prints a warning and returns 1 when it cannot.
set -uo pipefail
packages=()
[ -e /usr/include/security/pam_appl.h ] || packages+=(libpam0g-dev)
if [ "${1:-}" = "--test" ]; then
    [ -x /usr/sbin/slapd ] || packages+=(slapd)
    [ -x /usr/bin/influxd ] || packages+=(influxdb)
    command -v mkfs.btrfs > /dev/null || packages+=(btrfs-progs)
    command -v dnsmasq > /dev/null || packages+=(dnsmasq-base)
    command -v cpio > /dev/null || packages+=(cpio)
    command -v file > /dev/null || packages+=(file)
    file -b /bin/busybox 2> /dev/null | grep -q static || packages+=(busybox-static)
fi
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "WARNING: missing ${packages[*]} and cannot apt-get install them (need root on Debian)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
install="apt-get install -y -qq --no-install-recommends"
if ! $install "${packages[@]}" > /dev/null 2>&1; then
    apt-get update -qq > /dev/null 2>&1 || true
    $install "${packages[@]}" > /dev/null 2>&1 || {
        echo "WARNING: installing ${packages[*]} failed" >&2
        exit 1
    }
fi
