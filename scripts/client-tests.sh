#!/usr/bin/env bash
# Third-party clients, unmodified, against real Ferrox nodes: proxmoxer 2.3 and Ansible
# (community.proxmox bundled with `ansible`, which needs Python >= 3.12: taken from pyenv)
# against one node, prometheus-pve-exporter against a cluster of three.
# Installs them into target/pyclients on first use. Needs QEMU (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh || true
if ! command -v qemu-system-x86_64 > /dev/null || ! command -v qemu-img > /dev/null; then
    echo "SKIPPED client tests: qemu-system-x86_64/qemu-img missing" >&2
    exit 0
fi
python=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
                 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 \
                 "$(command -v python3.12 || true)" "$(command -v python3.13 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
    echo "client tests need Python >= 3.12 (pyenv install 3.12): not found" >&2
    exit 1
fi
venv="$PWD/target/pyclients"
if [ ! -x "$venv/bin/ansible-playbook" ] || ! "$venv/bin/python" -c "import proxmoxer" 2> /dev/null \
        || [ ! -x "$venv/bin/pve_exporter" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check proxmoxer==2.3.0 requests ansible==14.5.0 \
        prometheus-pve-exporter==3.10.2
fi
cargo build -q -p ferrox-cli
data=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
log="$data/daemon.log"
FERROX_ROOT_PASSWORD=secret1 target/debug/ferrox node serve --data-dir "$data/node" \
    --listen "127.0.0.1:$port" --name pve1 --auth-failure-delay-ms 0 > "$log" 2>&1 &
daemon=$!
daemons=("$daemon")
cleanup() {
    for pid in "${daemons[@]}"; do kill "$pid" 2> /dev/null || true; done
    # A stopping daemon still writes its last files: wait for it before removing them.
    # A daemon still stopping its guests after 30 s is killed: removing its data dir
    # under it would leave it running for good.
    for pid in "${daemons[@]}"; do
        for _ in $(seq 300); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2> /dev/null || true
    done
    for pidfile in "$data"/*/run/*.pid; do
        [ -e "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2> /dev/null || true
    done
    # The node's watchdog process outlives the daemon on purpose (docs/fencing.md).
    pkill -f "node watchdog .*$data/" 2> /dev/null || true
    rm -rf "$data" 2> /dev/null || { sleep 1; rm -rf "$data"; }
}
trap cleanup EXIT
for _ in $(seq 100); do
    grep -q ssl_fingerprint "$log" && break
    sleep 0.1
done
export FERROX_HOST="127.0.0.1:$port" FERROX_PASSWORD=secret1 FERROX_NODE=pve1
echo "== proxmoxer"
"$venv/bin/python" tests/clients/proxmoxer_test.py
echo "== ansible"
export PROXMOX_HOST=127.0.0.1 PROXMOX_PORT=$port PROXMOX_USER=root@pam PROXMOX_PASSWORD=secret1 \
       PROXMOX_VALIDATE_CERTS=false ANSIBLE_PYTHON_INTERPRETER="$venv/bin/python" \
       ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
"$venv/bin/ansible-playbook" -i localhost, tests/clients/ansible_test.yml
echo "== prometheus-pve-exporter (three nodes)"
hosts=""
for i in 1 2 3; do
    p=$(( 20000 + RANDOM % 20000 ))
    FERROX_ROOT_PASSWORD=secret1 target/debug/ferrox node serve --data-dir "$data/n$i" \
        --listen "127.0.0.1:$p" --name "pve$i" --auth-failure-delay-ms 0 > "$data/n$i.log" 2>&1 &
    daemons+=("$!")
    for _ in $(seq 100); do
        grep -q ssl_fingerprint "$data/n$i.log" && break
        sleep 0.1
    done
    hosts="${hosts:+$hosts,}127.0.0.1:$p"
done
FERROX_HOSTS="$hosts" FERROX_PASSWORD=secret1 PVE_EXPORTER="$venv/bin/pve_exporter" \
    "$venv/bin/python" tests/clients/pve_exporter_test.py
echo "client tests passed"
