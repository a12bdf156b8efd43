//! Backups and restores on a real node: `vzdump` of a stopped and of a running guest
//! (snapshot mode: the guest runs on), the archive listed as backup content, restores to a
//! new guest and over a stopped one, byte-identical disks (`qemu-img compare`), retention,
//! refusals naming the parameter with nothing changed, and the privileges.

use ferrox_e2e::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn write(image: &Path, pattern: u8) {
    let command = format!("write -P {pattern:#x} 2M 512k");
    assert!(
        qemu_io(image, "qcow2", &command),
        "writing {}",
        image.display()
    );
}

fn same(a: &Path, b: &Path) -> bool {
    Command::new("qemu-img")
        .args(["compare", "-U"])
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

fn backups(d: &Daemon, auth: &Auth) -> Vec<Value> {
    let r = d.request(
        "GET",
        "/nodes/pve1/storage/local/content",
        auth,
        &[("content", "backup")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.body["data"].as_array().unwrap().clone()
}

#[test]
fn backups_restore_byte_identical_guests() {
    if !tools_available(&["qemu-img", "qemu-io", "qemu-system-x86_64"]) {
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
            ("scsi0", "local:1"),
            ("virtio1", "local:1"),
            ("net0", "virtio,bridge=vmbr0"),
        ],
    );
    let images = d.path().join("storage/local/images");
    let disk0 = images.join("100/vm-100-disk-0.qcow2");
    let disk1 = images.join("100/vm-100-disk-1.qcow2");
    write(&disk0, 0x11);
    write(&disk1, 0x22);

    // a stopped guest
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/vzdump",
        &[("vmid", "100"), ("storage", "local"), ("compress", "zstd")],
    );
    let list = backups(&d, &root);
    assert_eq!(list.len(), 1, "{list:?}");
    let first = list[0]["volid"].as_str().unwrap().to_string();
    assert!(first.starts_with("local:backup/vzdump-qemu-100-") && first.ends_with(".tar.zst"));
    assert_eq!(list[0]["content"], "backup");
    assert_eq!(list[0]["vmid"], 100);
    let dump = d.path().join("storage/local/dump");
    let leftovers: Vec<_> = std::fs::read_dir(&dump)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tar.zst"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // an unfinished archive (a killed backup) is no backup
    std::fs::write(
        dump.join("vzdump-qemu-100-2020_01_01-00_00_00.tar.zst.tmp"),
        b"partial",
    )
    .unwrap();
    assert_eq!(backups(&d, &root).len(), 1);

    // a running guest, snapshot mode: it runs on
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    let pid = guest_pid(&d.path().join("run"), 100).expect("running");
    d.task_ok(&root, "POST", "/nodes/pve1/vzdump", &[("vmid", "100")]);
    assert_eq!(guest_pid(&d.path().join("run"), 100), Some(pid));
    let list = backups(&d, &root);
    assert_eq!(list.len(), 2);
    let second = list
        .iter()
        .map(|b| b["volid"].as_str().unwrap().to_string())
        .find(|v| *v != first)
        .unwrap();
    let cfg = d
        .request("GET", "/nodes/pve1/qemu/100/config", &root, &[])
        .body["data"]
        .clone();
    assert!(
        cfg.get("lock").is_none(),
        "unlocked after the backup: {cfg}"
    );

    // refusals name the parameter and change nothing
    let before = config_snapshot(&d.etc());
    for (path, form, field, text) in [
        (
            "/nodes/pve1/vzdump",
            vec![("vmid", "100"), ("compress", "gzip")],
            "compress",
            "zstd",
        ),
        (
            "/nodes/pve1/vzdump",
            vec![("vmid", "555")],
            "vmid",
            "not on node",
        ),
        (
            "/nodes/pve1/vzdump",
            vec![("vmid", "100"), ("prune-backups", "keep-often=1")],
            "prune-backups",
            "unknown option",
        ),
        (
            "/nodes/pve1/qemu",
            vec![("vmid", "100"), ("archive", second.as_str())],
            "vmid",
            "already exists",
        ),
        (
            "/nodes/pve1/qemu",
            vec![
                ("vmid", "100"),
                ("archive", second.as_str()),
                ("force", "1"),
            ],
            "vmid",
            "running",
        ),
        (
            "/nodes/pve1/qemu",
            vec![
                ("vmid", "102"),
                (
                    "archive",
                    "local:backup/vzdump-qemu-100-2020_01_02-00_00_00.tar.zst",
                ),
            ],
            "archive",
            "does not exist",
        ),
        (
            "/nodes/pve1/qemu",
            vec![
                ("vmid", "102"),
                ("archive", "local:100/vm-100-disk-0.qcow2"),
            ],
            "archive",
            "not a backup",
        ),
    ] {
        let r = d.request("POST", path, &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        let msg = r.body["errors"][field].as_str().unwrap_or("");
        assert!(msg.contains(text), "{form:?}: {}", r.raw);
    }
    assert_eq!(config_snapshot(&d.etc()), before);

    // restore to a new guest, new MACs: the disks are the source's, byte for byte
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "101"),
            ("archive", second.as_str()),
            ("unique", "1"),
        ],
    );
    let c101 = d
        .request("GET", "/nodes/pve1/qemu/101/config", &root, &[])
        .body["data"]
        .clone();
    assert_eq!(c101["scsi0"], "local:101/vm-101-disk-0.qcow2,size=1G");
    assert_eq!(c101["virtio1"], "local:101/vm-101-disk-1.qcow2,size=1G");
    assert_ne!(c101["net0"], cfg["net0"]);
    assert!(same(&disk0, &images.join("101/vm-101-disk-0.qcow2")));
    assert!(same(&disk1, &images.join("101/vm-101-disk-1.qcow2")));

    // restore over the stopped guest: its data comes back, its old images go
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/100/status/stop", &[]);
    write(&disk0, 0x99);
    assert!(!same(&disk0, &images.join("101/vm-101-disk-0.qcow2")));
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("archive", first.as_str()), ("force", "1")],
    );
    let c100 = d
        .request("GET", "/nodes/pve1/qemu/100/config", &root, &[])
        .body["data"]
        .clone();
    assert_eq!(c100["net0"], cfg["net0"], "without unique the MAC stays");
    let restored = images.join(format!(
        "100/{}",
        c100["scsi0"]
            .as_str()
            .unwrap()
            .split(['/', ','])
            .nth(1)
            .unwrap()
    ));
    assert!(same(&restored, &images.join("101/vm-101-disk-0.qcow2")));
    let files: Vec<String> = std::fs::read_dir(images.join("100"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "the replaced images are gone: {files:?}");

    // privileges: VM.Backup on the guest and Datastore.AllocateSpace on the storage
    d.add_user(
        &root,
        "audit@pve",
        "auditpass1",
        &[("/vms/100", "PVEAuditor")],
    );
    let audit = d.login_as("audit@pve", "auditpass1");
    let r = d.request("POST", "/nodes/pve1/vzdump", &audit, &[("vmid", "100")]);
    assert_eq!(r.status, 403, "{r:?}");
    d.add_user(
        &root,
        "bk@pve",
        "backuppass1",
        &[("/vms/100", "PVEVMAdmin")],
    );
    let bk = d.login_as("bk@pve", "backuppass1");
    let r = d.request("POST", "/nodes/pve1/vzdump", &bk, &[("vmid", "100")]);
    assert_eq!(r.status, 403, "no Datastore.AllocateSpace: {r:?}");
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu",
        &bk,
        &[("vmid", "100"), ("archive", first.as_str()), ("force", "1")],
    );
    assert_eq!(
        r.status, 403,
        "reading the archive needs Datastore.AllocateSpace: {r:?}"
    );
    // The restored card joins vmbr0: SDN.Use on it (Proxmox VE's check_restore_permissions).
    for (path, role) in [
        ("/storage/local", "PVEDatastoreUser"),
        ("/sdn/zones/localnetwork/vmbr0", "PVESDNUser"),
    ] {
        let r = d.request(
            "POST",
            "/nodes/pve1/qemu",
            &bk,
            &[("vmid", "100"), ("archive", first.as_str()), ("force", "1")],
        );
        assert_eq!(r.status, 403, "before {role} on {path}: {r:?}");
        if path.starts_with("/sdn") {
            assert!(r.reason.contains("/sdn/zones/localnetwork/vmbr0"), "{r:?}");
        }
        let r = d.request(
            "PUT",
            "/access/acl",
            &root,
            &[("path", path), ("roles", role), ("users", "bk@pve")],
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    d.task_ok(
        &bk,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("archive", first.as_str()), ("force", "1")],
    );

    // retention: keep the newest two
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/vzdump",
        &[("vmid", "100"), ("prune-backups", "keep-last=2")],
    );
    let list = backups(&d, &root);
    let mine: Vec<&Value> = list.iter().filter(|b| b["vmid"] == 100).collect();
    assert_eq!(mine.len(), 2, "{list:?}");
    assert!(
        !mine.iter().any(|b| b["volid"] == first.as_str()),
        "the oldest went"
    );
}

#[test]
fn backup_jobs_run_once_on_the_node_of_each_guest() {
    if !tools_available(&["qemu-img", "qemu-io", "qemu-system-x86_64"]) {
        return;
    }
    let nodes = local_cluster(2, "jobs", "tcg", &[]);
    let root = nodes[0].login();
    for (i, d) in nodes.iter().enumerate() {
        let vmid = (200 + i).to_string();
        d.task_ok(
            &root,
            "POST",
            &format!("/nodes/{}/qemu", d.name),
            &[
                ("vmid", vmid.as_str()),
                ("memory", "64"),
                ("scsi0", "local:1"),
            ],
        );
    }
    let not_backed_up = || {
        let r = nodes[0].request("GET", "/cluster/backup-info/not-backed-up", &root, &[]);
        assert_eq!(r.status, 200, "{r:?}");
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["vmid"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(not_backed_up(), vec![200, 201]);

    // refusals name the parameter
    for (form, field) in [
        (vec![("schedule", "25:00"), ("all", "1")], "schedule"),
        (vec![("schedule", "daily"), ("vmid", "12x")], "vmid"),
        (
            vec![("all", "1"), ("prune-backups", "keep-often=1")],
            "prune-backups",
        ),
        (vec![("id", "a/b"), ("all", "1")], "id"),
    ] {
        let r = nodes[0].request("POST", "/cluster/backup", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    let r = nodes[0].request(
        "POST",
        "/cluster/backup",
        &root,
        &[
            ("id", "every-minute"),
            ("schedule", "*:*"),
            ("vmid", "200,201"),
            ("storage", "local"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Each node reads its replica of jobs.cfg: n2 has it a moment later.
    wait_for(
        "n2 sees the job",
        std::time::Duration::from_secs(10),
        || {
            nodes[1]
                .request("GET", "/cluster/backup/every-minute", &root, &[])
                .status
                == 200
        },
    );
    let r = nodes[1].request("GET", "/cluster/backup/every-minute", &root, &[]);
    assert_eq!(r.body["data"]["schedule"], "*:*", "{r:?}");
    assert!(r.body["data"]["next-run"].as_i64().unwrap() > 0);
    assert_eq!(not_backed_up(), Vec::<u64>::new(), "both are covered now");

    // the next minute: each node backs up its own guest, once
    let state_file = nodes[0].etc().join("jobs/vzdump-every-minute.json");
    wait_for(
        "both guests backed up by the job",
        std::time::Duration::from_secs(100),
        || {
            std::fs::read_to_string(&state_file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|s| s["done"]["200"].is_i64() && s["done"]["201"].is_i64())
        },
    );
    let r = nodes[0].request("DELETE", "/cluster/backup/every-minute", &root, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap_or_else(|_| "{}".into()))
            .unwrap_or_default();
    let _ = state;
    for (i, d) in nodes.iter().enumerate() {
        let vmid = 200 + i as u64;
        let tasks = d.request(
            "GET",
            &format!("/nodes/{}/tasks", d.name),
            &root,
            &[("limit", "50")],
        );
        let ran = tasks.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["type"] == "vzdump" && t["status"] == "OK");
        assert!(
            ran,
            "{} ran a backup of its guest {vmid}: {}",
            d.name, tasks.raw
        );
        let list = d
            .request(
                "GET",
                &format!("/nodes/{}/storage/local/content", d.name),
                &root,
                &[("content", "backup"), ("vmid", &vmid.to_string())],
            )
            .body["data"]
            .clone();
        assert!(!list.as_array().unwrap().is_empty(), "{list}");
    }
}

fn enc(volid: &str) -> String {
    form_urlencoded::byte_serialize(volid.as_bytes()).collect()
}

#[test]
fn backup_volumes_carry_notes_and_protection_and_are_removed_as_proxmox_ve() {
    if !tools_available(&["qemu-img", "qemu-io", "qemu-system-x86_64"]) {
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
            ("name", "web"),
            ("memory", "64"),
            ("scsi0", "local:1"),
        ],
    );
    // a bad notes template is refused naming it
    let r = d.request(
        "POST",
        "/nodes/pve1/vzdump",
        &root,
        &[("vmid", "100"), ("notes-template", "bad \\t")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["notes-template"].is_string(), "{}", r.raw);
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/vzdump",
        &[
            ("vmid", "100"),
            ("mode", "stop"),
            ("notes-template", "{{guestname}} on {{node}}\\n#{{vmid}}"),
            ("protected", "1"),
        ],
    );
    let list = backups(&d, &root);
    assert_eq!(list.len(), 1, "{list:?}");
    let volid = list[0]["volid"].as_str().unwrap().to_string();
    assert_eq!(list[0]["notes"], "web on pve1\n#100", "{list:?}");
    assert_eq!(list[0]["protected"], 1);
    let path = format!("/nodes/pve1/storage/local/content/{}", enc(&volid));
    let info = d.request("GET", &path, &root, &[]);
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.body["data"]["format"], "tar.zst");
    assert_eq!(info.body["data"]["protected"], 1);
    assert!(info.body["data"]["size"].as_u64().unwrap() > 0);
    assert!(info.body["data"]["path"]
        .as_str()
        .unwrap()
        .ends_with(volid.trim_start_matches("local:backup/")));
    // the volume name alone works too, as in Proxmox VE
    let by_name = format!(
        "/nodes/pve1/storage/local/content/{}",
        enc(volid.trim_start_matches("local:"))
    );
    assert_eq!(d.request("GET", &by_name, &root, &[]).status, 200);

    // a protected backup is not removed
    let r = d.request("DELETE", &path, &root, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["volume"]
        .as_str()
        .unwrap()
        .contains("protected"));

    // who may: Datastore.AllocateSpace on the storage and VM.Backup on the guest for its
    // backups; Datastore.Audit alone is not enough
    d.add_user(
        &root,
        "backup@pve",
        "backup123",
        &[
            ("/storage/local", "PVEDatastoreUser"),
            ("/vms/100", "PVEVMUser"),
        ],
    );
    d.add_user(&root, "audit@pve", "audit123", &[("/", "PVEAuditor")]);
    let operator = d.login_as("backup@pve", "backup123");
    let auditor = d.login_as("audit@pve", "audit123");
    assert_eq!(d.request("GET", &path, &auditor, &[]).status, 403);
    let r = d.request("PUT", &path, &auditor, &[("protected", "0")]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = d.request(
        "PUT",
        &path,
        &operator,
        &[("protected", "0"), ("notes", "")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let row = &backups(&d, &root)[0];
    assert_eq!(row["protected"], 0);
    assert!(row.get("notes").is_none(), "{row}");
    assert_eq!(d.request("DELETE", &path, &auditor, &[]).status, 403);
    let r = d.request("DELETE", &path, &operator, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let status = d.wait_task(&operator, r.body["data"].as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");
    assert!(backups(&d, &root).is_empty());
    assert_eq!(d.request("GET", &path, &root, &[]).status, 500);

    // an image a guest uses stays; only Datastore.Allocate may remove images at all
    let disk = format!(
        "/nodes/pve1/storage/local/content/{}",
        enc("local:100/vm-100-disk-0.qcow2")
    );
    assert_eq!(d.request("DELETE", &disk, &operator, &[]).status, 403);
    let r = d.request("DELETE", &disk, &root, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["volume"]
        .as_str()
        .unwrap()
        .contains("in use by VM 100 (scsi0)"));
    assert!(d
        .path()
        .join("storage/local/images/100/vm-100-disk-0.qcow2")
        .exists());
    // a volume of another storage in the path is refused naming it
    let r = d.request(
        "GET",
        &format!(
            "/nodes/pve1/storage/local/content/{}",
            enc("other:iso/x.iso")
        ),
        &root,
        &[],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["volume"].is_string());
}
