"""prometheus-pve-exporter, unmodified from PyPI, scrapes a 3-node Ferrox cluster: the
node, guest, storage and HA metrics must be there with the right values.

Environment: FERROX_HOSTS (three host:port, comma-separated; nodes pve1..pve3, not yet
clustered), FERROX_PASSWORD (root@pam on each), PVE_EXPORTER (the exporter's command).
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

hosts = os.environ["FERROX_HOSTS"].split(",")
password = os.environ["FERROX_PASSWORD"]
exporter = os.environ["PVE_EXPORTER"]
vmid = 4200


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def api(hostport):
    host, port = hostport.split(":")
    return ProxmoxAPI(host, port=int(port), user="root@pam", password=password,
                      verify_ssl=False, timeout=60)


def wait(prox, upid):
    status = Tasks.blocking_status(prox, upid, timeout=180, polling_interval=0.2)
    check(status is not None and status["exitstatus"] == "OK", f"task {upid}")


# A cluster of three, formed through the API as `pvecm create` / `pvecm add` would.
first = api(hosts[0])
wait(first, first.cluster.config.post(clustername="exported"))
fingerprint = first.nodes.get()[0]["ssl_fingerprint"]
for other in hosts[1:]:
    api(other).cluster.config.join.post(hostname=hosts[0], fingerprint=fingerprint,
                                        password=password)
first = api(hosts[0])
deadline = time.time() + 60
while time.time() < deadline:
    nodes = [e for e in first.cluster.status.get() if e["type"] == "node"]
    if len(nodes) == 3 and all(e["online"] for e in nodes):
        break
    time.sleep(0.5)
check(len(nodes) == 3, "three nodes online")

# A guest on pve1, HA-managed and started; a stopped one on pve2.
wait(first, first.nodes("pve1").qemu.post(vmid=vmid, name="exported", memory=64, cores=1,
                                          onboot=1))
wait(first, first.nodes("pve2").qemu.post(vmid=vmid + 1, name="idle", memory=32))
first.cluster.ha.resources.post(sid=f"vm:{vmid}", state="started")
deadline = time.time() + 120
while time.time() < deadline:
    rows = first.cluster.resources.get(type="vm")
    guest = next((r for r in rows if r["vmid"] == vmid), {})
    if guest.get("status") == "running" and guest.get("hastate") == "started":
        break
    time.sleep(0.5)
check(guest.get("status") == "running", "the HA guest runs")

port = 29000 + os.getpid() % 1000
with tempfile.TemporaryDirectory() as tmp:
    config = os.path.join(tmp, "pve.yml")
    with open(config, "w") as f:
        f.write(f"default:\n  user: root@pam\n  password: {password}\n"
                f"  verify_ssl: false\n  port: {hosts[0].split(':')[1]}\n")
    proc = subprocess.Popen([exporter, "--config.file", config,
                             "--web.listen-address", f"127.0.0.1:{port}"])
    try:
        url = f"http://127.0.0.1:{port}/pve?target=127.0.0.1&cluster=1&node=1"
        text = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    text = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
check(text is not None, "the exporter answers")
if os.environ.get("PVE_EXPORTER_DUMP"):
    print(text)


def samples(metric):
    """{labels-dict-as-tuple: value} of one metric."""
    out = {}
    for m in re.finditer(r"^" + metric + r"\{([^}]*)\} (\S+)$", text, re.M):
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1))))
        out[labels] = float(m.group(2))
    return out


def value(metric, **labels):
    for key, v in samples(metric).items():
        if all((k, str(val)) in key for k, val in labels.items()):
            return v
    return None


for n in ("pve1", "pve2", "pve3"):
    check(value("pve_up", id=f"node/{n}") == 1.0, f"pve_up node/{n} = 1")
    check(value("pve_node_info", id=f"node/{n}", name=n) == 1.0, f"pve_node_info {n}")
    check((value("pve_memory_size_bytes", id=f"node/{n}") or 0) > 0,
          f"pve_memory_size_bytes node/{n} > 0")
    check(value("pve_storage_info", id=f"storage/{n}/local", storage="local",
                plugintype="dir") == 1.0, f"pve_storage_info storage/{n}/local")
    check((value("pve_disk_size_bytes", id=f"storage/{n}/local") or 0) > 0,
          f"pve_disk_size_bytes storage/{n}/local > 0")
check(value("pve_up", id="cluster/exported") == 1.0, "pve_up cluster (quorate)")
check(value("pve_cluster_info", id="cluster/exported", nodes="3") == 1.0,
      "pve_cluster_info nodes=3")
check(value("pve_up", id=f"qemu/{vmid}") == 1.0, "pve_up of the running guest")
check(value("pve_up", id=f"qemu/{vmid + 1}") == 0.0, "pve_up of the stopped guest")
check(value("pve_guest_info", id=f"qemu/{vmid}", name="exported", node="pve1",
            type="qemu", template="0") == 1.0, "pve_guest_info")
check(value("pve_memory_size_bytes", id=f"qemu/{vmid}") == 64 * 1024 * 1024,
      "pve_memory_size_bytes of the guest = 64 MiB")
check(value("pve_cpu_usage_limit", id=f"qemu/{vmid}") == 1.0, "pve_cpu_usage_limit = 1")
check(value("pve_ha_state", id=f"qemu/{vmid}", state="started") == 1.0,
      "pve_ha_state started = 1")
check(value("pve_ha_state", id=f"qemu/{vmid}", state="fence") == 0.0, "pve_ha_state fence = 0")
check(value("pve_ha_state", id="node/pve1", state="online") == 1.0,
      "pve_ha_state of node pve1 online")
check(value("pve_version_info", version="9.2.0") == 1.0, "pve_version_info")
check(value("pve_onboot_status", id=f"qemu/{vmid}", node="pve1") == 1.0, "pve_onboot_status")
check(value("pve_not_backed_up_total", id="cluster/exported") == 2.0,
      "pve_not_backed_up_total = 2 (no backup jobs)")
check(value("pve_subscription_status", id="node/pve1", status="notfound") == 1.0,
      "pve_subscription_status notfound")
print("prometheus-pve-exporter passed")
