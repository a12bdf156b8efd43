#!/usr/bin/env bash
# Proxmox VE's own rebalancing search side by side with Ferrox's `pve-*` search, in one
# run on the same generated clusters: the search's median time and each process's peak
# RSS. Proxmox VE's crate (proxmox-resource-scheduling) is not on crates.io: give a
# checkout of proxmox/proxmox-rs. Its source is copied into target/pve-compare (never
# into the repository) and built there with scripts/pve-crate-compare/main.rs.
#
# usage: scripts/bench-pve-crate.sh PROXMOX_RS_CHECKOUT [NODESxGUESTS_PER_NODE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: scripts/bench-pve-crate.sh PROXMOX_RS_CHECKOUT [NODESxGUESTS_PER_NODE ...]}
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20x20 100x32 100x100 300x30)
[ -d "$src/proxmox-resource-scheduling/src" ] || { echo "$src has no proxmox-resource-scheduling" >&2; exit 1; }
command -v /usr/bin/time > /dev/null || apt-get install -y -qq time > /dev/null
repo=$PWD
work=target/pve-compare
rm -rf "$work"
mkdir -p "$work/src"
cp -r "$src/proxmox-resource-scheduling" "$work/"
# The crate takes these keys from proxmox-rs's workspace manifest.
sed -i -e '/^\(authors\|license\|repository\|exclude\)\.workspace = true$/d' \
    -e 's/^edition\.workspace = true$/edition = "2024"/' \
    -e 's/^anyhow\.workspace = true$/anyhow = "1"/' \
    -e 's/^serde = { workspace = true, features = \[ "derive" \] }$/serde = { version = "1", features = ["derive"] }/' \
    "$work/proxmox-resource-scheduling/Cargo.toml"
sed -i '/^\[dev-dependencies\]/,$d' "$work/proxmox-resource-scheduling/Cargo.toml"
cp scripts/pve-crate-compare/main.rs "$work/src/main.rs"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "pve-crate-compare"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
proxmox-resource-scheduling = { path = "proxmox-resource-scheduling" }
ferrox-crs = { path = "$repo/crates/ferrox-crs" }
ferrox-types = { path = "$repo/crates/ferrox-types" }

[profile.release]
debug = false
TOML
(cd "$work" && cargo build --release -q --target-dir target)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "proxmox-rs: $(git -C "$src" log -1 --format='%h %cs' 2> /dev/null || echo unknown)"
for size in "${sizes[@]}"; do
    nodes=${size%x*}
    per=${size#*x}
    for method in bruteforce topsis; do
        for side in pve ferrox; do
            out=$( { /usr/bin/time -f 'rss %M KiB' "$work/target/release/pve-crate-compare" "$side" "$method" "$nodes" "$per"; } 2>&1 )
            echo "$size $out" | tr '\n' ' '
            echo
        done
    done
done
