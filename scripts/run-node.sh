#!/usr/bin/env bash
# The main job: install what is missing (QEMU, qemu-img), build Ferrox, start a single
# node on port 8006, create and start a demo guest, and print the URL, the certificate
# fingerprint and the login. The node keeps running in the foreground; Ctrl-C stops it.
#
#   FERROX_DATA_DIR       data directory (default ./ferrox-data)
#   FERROX_LISTEN         address:port (default 0.0.0.0:8006)
#   FERROX_ROOT_PASSWORD  root@pam's password on first start (default: generated, printed)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo > /dev/null; then
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi
scripts/install-qemu.sh || { echo "QEMU is needed to run guests" >&2; exit 1; }
scripts/install-build-deps.sh || { echo "libpam0g-dev is needed to build Ferrox" >&2; exit 1; }
cargo build --release --quiet -p ferrox-cli
scripts/build-web.sh || echo "WARNING: the web UI could not be built: the API works without it" >&2
ferrox=$PWD/target/release/ferrox
data=${FERROX_DATA_DIR:-$PWD/ferrox-data}
listen=${FERROX_LISTEN:-0.0.0.0:8006}
port=${listen##*:}
mkdir -p -m 700 "$data"
# The password reaches the daemon in a file readable by root alone, never on a command
# line (which every local user sees in ps).
password_file="$data/root-password"
if [ -n "${FERROX_ROOT_PASSWORD:-}" ]; then
    password=$FERROX_ROOT_PASSWORD
    (umask 077; printf '%s\n' "$password" > "$password_file")
elif [ -f "$password_file" ]; then
    password=$(head -n 1 "$password_file")
else
    password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
    (umask 077; printf '%s\n' "$password" > "$password_file")
fi
log="$data/daemon.log"
"$ferrox" node serve --data-dir "$data" --listen "$listen" --root-password-file "$password_file" > "$log" 2>&1 &
daemon=$!
# The watchdog process outlives a crashed daemon on purpose; a clean exit stops it too.
trap 'kill $daemon 2> /dev/null || true; pkill -f "node watchdog .*$data/run" 2> /dev/null || true' INT TERM EXIT
for _ in $(seq 200); do
    grep -q ssl_fingerprint "$log" && break
    kill -0 "$daemon" 2> /dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
fingerprint=$(awk '/^ssl_fingerprint/ {print $2}' "$log")
node=$(awk -F"'" '/listening on/ {print $2}' "$log")
export FERROX_HOST="127.0.0.1:$port" FERROX_FINGERPRINT="$fingerprint" FERROX_PASSWORD="$password"
if ! "$ferrox" vm config 100 > /dev/null 2>&1; then
    if scripts/build-linux-guest.sh "$PWD/target/linux-guest"; then
        # A real Linux (Debian's kernel, a busybox userland) on the serial console, its
        # NIC on vmbr0 as 192.168.100.2 (echo service on tcp/7). TCG: these machines'
        # KVM boots firmware, not Linux (shared/spec/qemu-on-these-machines.md).
        guest=$PWD/target/linux-guest
        "$ferrox" api create "/nodes/$node/qemu" --vmid 100 --name demo --memory 256 \
            --kvm 0 --serial0 socket --vga serial0 --net0 virtio,bridge=vmbr0 --scsi0 local:1 \
            --args "-kernel $guest/vmlinuz -initrd $guest/initrd.gz -append \"console=ttyS0 quiet fxip=192.168.100.2/24 fxname=demo\"" > /dev/null
    else
        echo "WARNING: the Linux demo guest could not be built: a firmware-only guest instead" >&2
        "$ferrox" vm create 100 --name demo --memory 128 --scsi0 local:1 --net0 virtio,bridge=vmbr0 > /dev/null
    fi
fi
"$ferrox" vm start 100 > /dev/null 2>&1 || true
"$ferrox" vm list
ip=$(hostname -I 2> /dev/null | awk '{print $1}')
cat <<INFO

Ferrox node '$node' is running ($(awk '/^accelerator/ {print $2}' "$log") accelerator).
  Web UI:       https://${ip:-127.0.0.1}:$port/   (and https://127.0.0.1:$port/)
  API:          https://${ip:-127.0.0.1}:$port/api2/json
  Fingerprint:  $fingerprint
  Login:        root@pam / $password
  CLI:          FERROX_HOST=127.0.0.1:$port FERROX_FINGERPRINT=$fingerprint FERROX_PASSWORD=... $ferrox vm list
  Data:         $data   (daemon log: $log)
Press Ctrl-C to stop the node (guests keep running; they are found again on the next start).
INFO
wait "$daemon"
