"""proxmoxer 2.3 against a running Ferrox node, unmodified: password, API token and
two-factor (TOTP) logins, create / configure / start / stop / destroy a guest, waiting on
every task.

Environment: FERROX_HOST (host:port), FERROX_PASSWORD (root@pam), FERROX_NODE.
"""
import base64
import hashlib
import hmac
import os
import struct
import sys
import tempfile
import time

from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

host, port = os.environ["FERROX_HOST"].split(":")
node = os.environ.get("FERROX_NODE", "pve1")
vmid = 4100


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def wait(api, upid):
    status = Tasks.blocking_status(api, upid, timeout=120, polling_interval=0.2)
    check(status is not None and status["status"] == "stopped", f"task {upid} stopped")
    check(status["exitstatus"] in ("OK",) or status["exitstatus"].startswith("WARNINGS"),
          f"task {status['type']} exit status {status['exitstatus']}")
    return status


# Password login.
prox = ProxmoxAPI(host, port=int(port), user="root@pam", password=os.environ["FERROX_PASSWORD"],
                  verify_ssl=False, timeout=30)
check(prox.version.get()["version"].startswith("9."), "GET /version")
check(any(n["node"] == node for n in prox.nodes.get()), "GET /nodes lists the node")

# Token created over the API, then used.
tok = prox.access.users("root@pam").token("proxmoxer").post(privsep=0, comment="ci")
check(tok["full-tokenid"] == "root@pam!proxmoxer", "token created")
api = ProxmoxAPI(host, port=int(port), user="root@pam", token_name="proxmoxer",
                 token_value=tok["value"], verify_ssl=False, timeout=30)
check(api.nodes(node).status.get()["memory"]["total"] > 0, "token auth: node status")

# Two-factor login (TOTP), the way proxmoxer 2.3 does it: NeedTFA, then "totp:<code>".
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def totp(secret, at=None):
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(base64.b32decode(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000)


prox.access.users.post(userid="tfauser@pve", password="tfasecret1")
tfauser = ProxmoxAPI(host, port=int(port), user="tfauser@pve", password="tfasecret1",
                     verify_ssl=False, timeout=30)
url = f"otpauth://totp/Ferrox:tfauser@pve?secret={SECRET}&issuer=Ferrox"
tfauser.access.tfa("tfauser@pve").post(type="totp", totp=url, value=totp(SECRET),
                                       password="tfasecret1")
check(len(prox.access.tfa("tfauser@pve").get()) == 1, "TOTP added")
try:
    ProxmoxAPI(host, port=int(port), user="tfauser@pve", password="tfasecret1",
               verify_ssl=False, timeout=30)
    check(False, "a login without the second factor is refused")
except Exception as e:  # proxmoxer's AuthenticationError
    check("TFA" in str(e) or "authenticate" in str(e), f"a login without the second factor is refused: {e}")
with_otp = ProxmoxAPI(host, port=int(port), user="tfauser@pve", password="tfasecret1",
                      otp=totp(SECRET), verify_ssl=False, timeout=30)
check(with_otp.version.get()["version"].startswith("9."), "login with password and TOTP code")

# Lifecycle.
upid = api.nodes(node).qemu.post(vmid=vmid, name="proxmoxer", memory=64, cores=1,
                                 scsi0="local:1", net0="virtio,bridge=vmbr0")
check(Tasks.decode_upid(upid)["type"] == "qmcreate", "create returns a qmcreate UPID")
wait(api, upid)
api.nodes(node).qemu(vmid).config.put(cores=2, description="made by proxmoxer")
cfg = api.nodes(node).qemu(vmid).config.get()
check(cfg["cores"] in ("2", 2) and cfg["description"] == "made by proxmoxer", "config set and read")
check(cfg["scsi0"].startswith(f"local:{vmid}/vm-{vmid}-disk-0.qcow2"), "disk allocated")
try:
    api.nodes(node).qemu(vmid).config.put(memory="lots")
    check(False, "invalid memory refused")
except ResourceException as e:
    check(e.status_code == 400 and "memory" in (e.errors or {}), f"invalid memory refused: {e}")

wait(prox, prox.nodes(node).qemu(vmid).status.start.post())
check(api.nodes(node).qemu(vmid).status.current.get()["status"] == "running", "running")
try:
    api.nodes(node).qemu(vmid).delete()
    check(False, "deleting a running guest refused")
except ResourceException as e:
    check(e.status_code == 400 and "running" in str(e), f"deleting a running guest refused: {e}")
log = Tasks.decode_log(api.nodes(node).tasks(upid).log.get())
check("TASK OK" in log, "task log readable")
wait(api, api.nodes(node).qemu(vmid).status.stop.post())
check(api.nodes(node).qemu(vmid).status.current.get()["status"] == "stopped", "stopped")
wait(api, api.nodes(node).qemu(vmid).delete())
check(all(v["vmid"] != vmid for v in api.nodes(node).qemu.get()), "destroyed")
try:
    api.nodes(node).qemu(vmid).config.get()
    check(False, "config of a destroyed guest")
except ResourceException as e:
    check(e.status_code == 500 and "does not exist" in str(e), f"destroyed guest: {e}")
# ISO upload as proxmoxer sends it: a file object (io.IOBase) in the form becomes a
# multipart upload.
with tempfile.TemporaryDirectory() as tmp:
    name = "proxmoxer-upload.iso"
    with open(os.path.join(tmp, name), "wb") as f:
        f.write(bytes(range(256)) * 4096)
    with open(os.path.join(tmp, name), "rb") as iso:
        wait(api, api.nodes(node).storage("local").upload.post(content="iso", filename=iso))
isos = [c["volid"] for c in api.nodes(node).storage("local").content.get(content="iso")]
check(f"local:iso/{name}" in isos, f"ISO image uploaded with proxmoxer: {isos}")
prox.access.users("root@pam").token("proxmoxer").delete()
print("proxmoxer: all checks passed")
