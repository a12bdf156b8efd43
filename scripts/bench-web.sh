#!/usr/bin/env bash
# UI benchmarks (docs/benchmarks.md): a single node on 127.0.0.1:18106 with a running
# echo guest (serial console) and a stopped one, then web/tests/bench.mjs in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-web.sh --test > /dev/null
cargo build --release --quiet -p ferrox-cli
data=$(mktemp -d)
trap 'kill $daemon 2> /dev/null || true; pkill -f "node watchdog .*$data/run" 2> /dev/null || true; rm -rf "$data"' EXIT
target/release/ferrox node serve --data-dir "$data" --name n1 --listen 127.0.0.1:18106 --root-password bench-pw > "$data/log" 2>&1 &
daemon=$!
for _ in $(seq 100); do grep -q ssl_fingerprint "$data/log" && break; sleep 0.1; done
# The echo payload of the e2e tests, assembled here.
sed -n '/^pub const ECHO_PAYLOAD: &str = r#"/,/^"#;/p' e2e/src/lib.rs | sed '1d;$d' > "$data/echo.S"
as --32 -o "$data/echo.o" "$data/echo.S" && ld -m elf_i386 -Ttext 0x100000 -o "$data/echo.elf" "$data/echo.o"
export FERROX_HOST=127.0.0.1:18106 FERROX_PASSWORD=bench-pw
export FERROX_FINGERPRINT=$(awk '/^ssl_fingerprint/ {print $2}' "$data/log")
target/release/ferrox api create /nodes/n1/qemu --vmid 100 --memory 64 --serial0 socket --args "-kernel $data/echo.elf" --start 1 > /dev/null
target/release/ferrox api create /nodes/n1/qemu --vmid 101 --memory 64 --args "-kernel $data/echo.elf" > /dev/null
sleep 3
cd web && FERROX_URL=https://127.0.0.1:18106/ node tests/bench.mjs
printf 'bundle: %s bytes, %s gzipped (app.js + app.css)\n' \
    "$(cat dist/ui/app.js dist/ui/app.css | wc -c)" "$(cat dist/ui/app.js dist/ui/app.css | gzip -9 | wc -c)"
