//! Guest snapshots through the API on a real node: qcow2 disk snapshots of a stopped
//! guest (config sections, parent chain, rollback of disk data and config, delete), bad
//! requests refused with nothing changed, who may do what, and a running guest's RAM
//! snapshot that a rollback resumes from (checked in the guest's memory).

use ferrox_e2e::*;
use serde_json::Value;
use std::process::Command;

fn snapshots(d: &Daemon, auth: &Auth, vmid: u32) -> Vec<Value> {
    let r = d.request(
        "GET",
        &format!("/nodes/pve1/qemu/{vmid}/snapshot"),
        auth,
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.body["data"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row '{name}' in {rows:?}"))
}

#[test]
fn snapshots_of_a_stopped_guest_roll_back_disks_and_config() {
    if !tools_available(&["qemu-img", "qemu-io"]) {
        return;
    }
    let d = start_daemon("tcg");
    let root = d.login();
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "100"),
            ("memory", "64"),
            ("cores", "1"),
            ("scsi0", "local:1"),
        ],
    );
    let image = d
        .path()
        .join("storage/local/images/100/vm-100-disk-0.qcow2");
    assert!(qemu_io(&image, "qcow2", "write -P 0x11 0 64k"));
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/snapshot",
        &[("snapname", "first"), ("description", "before\nthe change")],
    );
    let rows = snapshots(&d, &root, 100);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(row(&rows, "first")["description"], "before\nthe change");
    assert_eq!(row(&rows, "first")["vmstate"], 0);
    assert!(row(&rows, "first")["snaptime"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(row(&rows, "current")["parent"], "first");
    assert_eq!(row(&rows, "current")["running"], 0);
    let snap = d
        .request(
            "GET",
            "/nodes/pve1/qemu/100/snapshot/first/config",
            &root,
            &[],
        )
        .body["data"]
        .clone();
    assert_eq!(snap["cores"], "1");
    assert!(snap.get("lock").is_none() && snap.get("snapstate").is_none());
    let file = std::fs::read_to_string(d.etc().join("nodes/pve1/qemu-server/100.conf")).unwrap();
    assert!(
        file.contains("\n[first]\n#before\n#the change\n"),
        "the description is comment lines of the section, as Proxmox VE writes it:\n{file}"
    );

    // change the guest, snapshot again: the chain grows
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/100/config",
        &root,
        &[("cores", "2")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(qemu_io(&image, "qcow2", "write -P 0x22 0 64k"));
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/snapshot",
        &[("snapname", "second")],
    );
    let rows = snapshots(&d, &root, 100);
    assert_eq!(row(&rows, "second")["parent"], "first");
    assert_eq!(row(&rows, "current")["parent"], "second");

    // bad requests: refused naming the parameter, nothing changed
    let before = config_snapshot(&d.etc());
    for (name, fragment) in [
        ("current", "reserved"),
        ("1st", "not a snapshot name"),
        ("a/b", "not a snapshot name"),
        ("first", "already used"),
    ] {
        let r = d.request(
            "POST",
            "/nodes/pve1/qemu/100/snapshot",
            &root,
            &[("snapname", name)],
        );
        assert_eq!(r.status, 400, "{name}: {r:?}");
        let text = r.body["errors"]["snapname"].as_str().unwrap_or("");
        assert!(text.contains(fragment), "{name}: {r:?}");
    }
    let r = d.request("DELETE", "/nodes/pve1/qemu/100/snapshot/first", &root, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["snapname"]
        .as_str()
        .unwrap()
        .contains("has children (second)"));
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/snapshot/nope/rollback",
        &root,
        &[],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["snapname"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    // a disk that is not a storage volume cannot have snapshots
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/100/config",
        &root,
        &[("scsi1", "/dev/null")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let with_path = config_snapshot(&d.etc());
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/snapshot",
        &root,
        &[("snapname", "third")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["scsi1"]
        .as_str()
        .unwrap()
        .contains("/dev/null"));
    assert_eq!(config_snapshot(&d.etc()), with_path);
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/100/config",
        &root,
        &[("delete", "scsi1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(config_snapshot(&d.etc()), before);

    // who may do what
    d.add_user(
        &root,
        "audit@pve",
        "auditpass1",
        &[("/vms/100", "PVEAuditor")],
    );
    let audit = d.login_as("audit@pve", "auditpass1");
    let before = config_snapshot(&d.etc());
    assert_eq!(snapshots(&d, &audit, 100).len(), 3, "VM.Audit lists");
    for (method, path) in [
        ("POST", "/nodes/pve1/qemu/100/snapshot"),
        ("POST", "/nodes/pve1/qemu/100/snapshot/first/rollback"),
        ("DELETE", "/nodes/pve1/qemu/100/snapshot/second"),
        ("PUT", "/nodes/pve1/qemu/100/snapshot/first/config"),
    ] {
        let form: &[(&str, &str)] = if path.ends_with("/snapshot") {
            &[("snapname", "x1")]
        } else {
            &[]
        };
        let r = d.request(method, path, &audit, form);
        assert_eq!(r.status, 403, "{method} {path}: {r:?}");
    }
    assert_eq!(config_snapshot(&d.etc()), before);
    let r = d.request(
        "POST",
        "/access/roles",
        &root,
        &[
            ("roleid", "Rollbacker"),
            ("privs", "VM.Audit,VM.Snapshot.Rollback"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.add_user(&root, "rb@pve", "rollback1", &[("/vms/100", "Rollbacker")]);
    let rb = d.login_as("rb@pve", "rollback1");
    let before = config_snapshot(&d.etc());
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/snapshot/first/rollback",
        &rb,
        &[("start", "1")],
    );
    assert_eq!(r.status, 403, "starting needs VM.PowerMgmt: {r:?}");
    assert_eq!(config_snapshot(&d.etc()), before);

    // rollback: config and disk data of 'first' are back
    d.task_ok(
        &rb,
        "POST",
        "/nodes/pve1/qemu/100/snapshot/first/rollback",
        &[],
    );
    let cfg = d.vm_config(&root, 100);
    assert_eq!(cfg["cores"], "1");
    assert_eq!(cfg["parent"], "first");
    assert!(cfg.get("lock").is_none());
    assert!(
        qemu_io(&image, "qcow2", "read -P 0x11 0 64k"),
        "the disk is back at 'first'"
    );

    // description update, then delete both (child first)
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/100/snapshot/first/config",
        &root,
        &[("description", "kept")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        row(&snapshots(&d, &root, 100), "first")["description"],
        "kept"
    );
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/100/snapshot/second", &[]);
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/100/snapshot/first", &[]);
    let rows = snapshots(&d, &root, 100);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(row(&rows, "current").get("parent").is_none());
    let list = Command::new("qemu-img")
        .args(["snapshot", "-l"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).trim().is_empty(),
        "no internal snapshot is left: {}",
        String::from_utf8_lossy(&list.stdout)
    );
    assert!(qemu_io(&image, "qcow2", "read -P 0x11 0 64k"), "data kept");
}

#[test]
fn a_snapshot_with_ram_resumes_the_guest_where_it_was() {
    if !tools_available(&["qemu-img", "qemu-io"]) || !qemu_available() {
        return;
    }
    let payload_dir = tempfile::tempdir().unwrap();
    let Some(echo) = build_payload(payload_dir.path(), "echo", ECHO_PAYLOAD) else {
        eprintln!("SKIPPED: building the echo guest needs binutils (as, ld)");
        return;
    };
    let d = start_daemon("tcg");
    let root = d.login();
    let run = d.path().join("run");
    let args = format!("-kernel {}", echo.display());
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "101"),
            ("memory", "64"),
            ("scsi0", "local:1"),
            ("serial0", "socket"),
            ("args", &args),
            ("start", "1"),
        ],
    );
    let first_pid = guest_pid(&run, 101).expect("running");
    // The guest's RAM holds what it was told last: 'Z' at the snapshot.
    type_byte(&run, 101, b'Z');
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/snapshot",
        &[("snapname", "ram"), ("vmstate", "1")],
    );
    assert_eq!(guest_pid(&run, 101), Some(first_pid), "the guest ran on");
    type_byte(&run, 101, b'Q');
    let rows = snapshots(&d, &root, 101);
    assert_eq!(row(&rows, "ram")["vmstate"], 1);
    let snap = d
        .request(
            "GET",
            "/nodes/pve1/qemu/101/snapshot/ram/config",
            &root,
            &[],
        )
        .body["data"]
        .clone();
    assert_eq!(snap["vmstate"], "local:101/vm-101-state-ram.raw");
    let state = d
        .path()
        .join("storage/local/images/101/vm-101-state-ram.raw");
    // Zero pages take a few bytes each in the stream: an idle 64 MiB guest is small.
    assert!(
        std::fs::metadata(&state).unwrap().len() > 64 << 10,
        "RAM was saved"
    );

    // a disk-only snapshot cannot be rolled back to while the guest runs
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/snapshot",
        &[("snapname", "disk")],
    );
    let unchanged = config_snapshot(&d.etc());
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/101/snapshot/disk/rollback",
        &root,
        &[],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["snapname"]
        .as_str()
        .unwrap()
        .contains("no RAM state"));
    assert_eq!(config_snapshot(&d.etc()), unchanged);
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/101/snapshot/disk", &[]);

    // rollback: a new QEMU whose guest remembers 'Z' (a fresh boot would hold 0)
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/snapshot/ram/rollback",
        &[],
    );
    let new_pid = guest_pid(&run, 101).expect("resumed and running");
    assert_ne!(new_pid, first_pid, "a new QEMU loaded the state");
    assert_eq!(
        last_received(&run, 101),
        b'Z',
        "the RAM of the snapshot is back"
    );
    let st = d
        .request("GET", "/nodes/pve1/qemu/101/status/current", &root, &[])
        .body["data"]
        .clone();
    assert_eq!(st["qmpstatus"], "running");
    type_byte(&run, 101, b'A');

    // deleting the snapshot of a running guest goes through its QEMU; the state goes too
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/101/snapshot/ram", &[]);
    assert!(!state.exists(), "the RAM state volume is removed");
    assert_eq!(snapshots(&d, &root, 101).len(), 1);
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/101/status/stop", &[]);
    let image = d
        .path()
        .join("storage/local/images/101/vm-101-disk-0.qcow2");
    let list = Command::new("qemu-img")
        .args(["snapshot", "-l"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
}
