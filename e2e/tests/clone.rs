//! Templates, clones and disk moves through the API on a real node: full clones (of the
//! current state, of a snapshot, to another storage and format, of a running guest through
//! a mirror), templates with base images and linked clones on them, disk moves offline
//! and live; the disk data is checked in the images; refusals name the parameter and
//! change nothing; the privileges on the source, the new vmid and the storage.

use ferrox_e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Whether the first 64 KiB of an image hold `pattern` (read shared: QEMU may hold it).
fn holds(image: &Path, format: &str, pattern: u8) -> bool {
    qemu_io(image, format, &format!("read -P {pattern:#x} 0 64k"))
}

fn write(image: &Path, pattern: u8) {
    let command = format!("write -P {pattern:#x} 0 64k");
    assert!(
        qemu_io(image, "qcow2", &command),
        "writing {}",
        image.display()
    );
}

/// The file of a disk's volume id on the node's storages (`local` or `other`).
fn image_of(d: &Daemon, other: &Path, disk_value: &str) -> (PathBuf, String) {
    let volid = disk_value.split(',').next().unwrap();
    let (storage, name) = volid.split_once(':').unwrap();
    let own: Vec<&str> = name.split('/').collect();
    let own = own[own.len() - 2..].join("/");
    let base = match storage {
        "local" => d.path().join("storage/local"),
        "other" => other.to_path_buf(),
        s => panic!("unknown storage {s}"),
    };
    let format = volid.rsplit('.').next().unwrap().to_string();
    (base.join("images").join(own), format)
}

#[test]
fn templates_clones_and_disk_moves() {
    if !tools_available(&["qemu-img", "qemu-io", "qemu-system-x86_64"]) {
        return;
    }
    let d = start_daemon("tcg");
    let root = d.login();
    let other_dir = tempfile::tempdir().unwrap();
    let r = d.request(
        "POST",
        "/storage",
        &root,
        &[
            ("storage", "other"),
            ("type", "dir"),
            ("path", other_dir.path().to_str().unwrap()),
            ("content", "images"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "100"),
            ("name", "src"),
            ("memory", "64"),
            ("scsi0", "local:1"),
            ("net0", "virtio,bridge=vmbr0"),
            ("description", "the source"),
        ],
    );
    let source = d.vm_config(&root, 100);
    let (image, _) = image_of(&d, other_dir.path(), source["scsi0"].as_str().unwrap());
    write(&image, 0x11);
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/snapshot",
        &[("snapname", "s1")],
    );
    write(&image, 0x22);

    // full clone of the snapshot, to another storage, as raw
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &[
            ("newid", "101"),
            ("snapname", "s1"),
            ("storage", "other"),
            ("format", "raw"),
        ],
    );
    let c101 = d.vm_config(&root, 101);
    assert_eq!(c101["scsi0"], "other:101/vm-101-disk-0.raw,size=1G");
    assert_eq!(c101["name"], "Copy-of-VM-src");
    assert_eq!(c101["description"], "the source");
    assert!(c101.get("parent").is_none() && c101.get("lock").is_none());
    assert_ne!(c101["net0"], source["net0"], "a clone gets its own MAC");
    let (i101, f101) = image_of(&d, other_dir.path(), c101["scsi0"].as_str().unwrap());
    assert!(holds(&i101, &f101, 0x11), "the snapshot's data");

    // full clone of the current state
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &[("newid", "102"), ("name", "copy")],
    );
    let c102 = d.vm_config(&root, 102);
    assert_eq!(c102["scsi0"], "local:102/vm-102-disk-0.qcow2,size=1G");
    let (i102, f102) = image_of(&d, other_dir.path(), c102["scsi0"].as_str().unwrap());
    assert!(holds(&i102, &f102, 0x22), "the current data");

    // refusals name the parameter and change nothing
    let before = config_snapshot(&d.etc());
    for (form, field, fragment) in [
        (vec![("newid", "101")], "newid", "already exists"),
        (
            vec![("newid", "110"), ("snapname", "nope")],
            "snapname",
            "does not exist",
        ),
        (
            vec![("newid", "110"), ("full", "0")],
            "scsi0",
            "Linked clone",
        ),
        (
            vec![("newid", "110"), ("storage", "nosuch")],
            "storage",
            "does not exist",
        ),
        (vec![("newid", "110"), ("name", "bad name")], "name", "DNS"),
    ] {
        let r = d.request("POST", "/nodes/pve1/qemu/100/clone", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        let text = r.body["errors"][field].as_str().unwrap_or("");
        assert!(text.contains(fragment), "{form:?}: {r:?}");
    }
    let r = d.request("POST", "/nodes/pve1/qemu/100/template", &root, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["vmid"]
        .as_str()
        .unwrap()
        .contains("contains snapshots"));
    assert_eq!(config_snapshot(&d.etc()), before);

    // a template, and a linked clone of it
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/100/snapshot/s1", &[]);
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/100/template", &[]);
    let template = d.vm_config(&root, 100);
    assert_eq!(template["template"], "1");
    assert_eq!(template["scsi0"], "local:100/base-100-disk-0.qcow2,size=1G");
    let (base, _) = image_of(&d, other_dir.path(), template["scsi0"].as_str().unwrap());
    assert!(!image.exists() && base.exists());
    let r = d.request("POST", "/nodes/pve1/qemu/100/status/start", &root, &[]);
    let started = if r.status == 200 {
        d.wait_task(&root, r.body["data"].as_str().unwrap())["exitstatus"].clone()
    } else {
        Value::from("refused")
    };
    assert_ne!(started, "OK", "a template does not start");
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &root,
        &[("newid", "103"), ("storage", "other")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["storage"]
        .as_str()
        .unwrap()
        .contains("not allowed for linked clones"));
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &[("newid", "103")],
    );
    let c103 = d.vm_config(&root, 103);
    assert_eq!(
        c103["scsi0"],
        "local:100/base-100-disk-0.qcow2/103/vm-103-disk-0.qcow2,size=1G"
    );
    assert!(c103.get("template").is_none());
    let (i103, _) = image_of(&d, other_dir.path(), c103["scsi0"].as_str().unwrap());
    assert!(holds(&i103, "qcow2", 0x22), "reads through to the base");
    write(&i103, 0x33);
    assert!(holds(&base, "qcow2", 0x22), "the base is untouched");
    let content = d
        .request("GET", "/nodes/pve1/storage/local/content", &root, &[])
        .body["data"]
        .clone();
    assert!(
        content
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["volid"] == "local:100/base-100-disk-0.qcow2/103/vm-103-disk-0.qcow2"),
        "{content}"
    );
    // the template stays while a linked clone needs it
    let upid = d.request("DELETE", "/nodes/pve1/qemu/100", &root, &[]).body["data"]
        .as_str()
        .unwrap()
        .to_string();
    let status = d.wait_task(&root, &upid);
    assert!(
        status["exitstatus"]
            .as_str()
            .unwrap()
            .contains("in use by linked clones"),
        "{status}"
    );
    assert!(base.exists());
    assert_eq!(d.vm_config(&root, 100)["template"], "1");

    // privileges: VM.Clone on the source, VM.Allocate on the new vmid, space on the storage
    let r = d.request(
        "POST",
        "/access/roles",
        &root,
        &[("roleid", "Cloner"), ("privs", "VM.Audit,VM.Clone")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.add_user(&root, "cl@pve", "clonepass1", &[("/vms/100", "Cloner")]);
    let cl = d.login_as("cl@pve", "clonepass1");
    let before = config_snapshot(&d.etc());
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &cl,
        &[("newid", "104")],
    );
    assert_eq!(r.status, 403, "no VM.Allocate on /vms/104: {r:?}");
    let r = d.request(
        "PUT",
        "/access/acl",
        &root,
        &[
            ("path", "/vms/104"),
            ("roles", "PVEVMAdmin"),
            ("users", "cl@pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let before_space = config_snapshot(&d.etc());
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &cl,
        &[("newid", "104")],
    );
    assert_eq!(
        r.status, 403,
        "no Datastore.AllocateSpace on /storage/local: {r:?}"
    );
    assert_eq!(config_snapshot(&d.etc()), before_space);
    assert_ne!(before, before_space, "the grant was written");
    let r = d.request(
        "PUT",
        "/access/acl",
        &root,
        &[
            ("path", "/storage/local"),
            ("roles", "PVEDatastoreUser"),
            ("users", "cl@pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // The copy's card stays on vmbr0: SDN.Use on it (Proxmox VE's check_bridge_access).
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &cl,
        &[("newid", "104")],
    );
    assert_eq!(r.status, 403, "no SDN.Use on vmbr0: {r:?}");
    assert!(r.reason.contains("/sdn/zones/localnetwork/vmbr0"), "{r:?}");
    let r = d.request(
        "PUT",
        "/access/acl",
        &root,
        &[
            ("path", "/sdn/zones/localnetwork/vmbr0"),
            ("roles", "PVESDNUser"),
            ("users", "cl@pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.task_ok(
        &cl,
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &[("newid", "104")],
    );
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &cl,
        &[("disk", "scsi0"), ("storage", "other")],
    );
    assert_eq!(r.status, 403, "no VM.Config.Disk on VM 102: {r:?}");

    // move a stopped guest's disk: copy, the source stays as unused0
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &root,
        &[("disk", "scsi0"), ("storage", "local")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["storage"]
        .as_str()
        .unwrap()
        .contains("same storage"));
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/102/move_disk",
        &[("disk", "scsi0"), ("storage", "other"), ("format", "raw")],
    );
    let c102 = d.vm_config(&root, 102);
    assert_eq!(c102["scsi0"], "other:102/vm-102-disk-0.raw,size=1G");
    assert_eq!(c102["unused0"], "local:102/vm-102-disk-0.qcow2");
    let (moved, moved_format) = image_of(&d, other_dir.path(), c102["scsi0"].as_str().unwrap());
    assert!(holds(&moved, &moved_format, 0x22));

    // a running guest: its disk moves live (mirror, then the switch), and a full clone of
    // it is mirrored while it runs on
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/101/status/start", &[]);
    let pid = guest_pid(&d.path().join("run"), 101).expect("running");
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/move_disk",
        &[("disk", "scsi0"), ("storage", "local"), ("delete", "1")],
    );
    let c101 = d.vm_config(&root, 101);
    assert_eq!(c101["scsi0"], "local:101/vm-101-disk-0.raw,size=1G");
    assert!(c101.get("unused0").is_none());
    assert!(!i101.exists(), "delete=1 removed the source image");
    assert_eq!(
        guest_pid(&d.path().join("run"), 101),
        Some(pid),
        "it ran on"
    );
    let (live, live_format) = image_of(&d, other_dir.path(), c101["scsi0"].as_str().unwrap());
    assert!(holds(&live, &live_format, 0x11));
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.contains(other_dir.path().to_str().unwrap()),
        "the same QEMU, started on the old image, runs on"
    );
    let mut qmp = ferrox_qemu::Qmp::connect(
        &d.path().join("run/101.qmp"),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let blocks = qmp.execute("query-block", None).unwrap();
    let file = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "drive-scsi0")
        .map(|b| b["inserted"]["file"].as_str().unwrap_or("").to_string())
        .unwrap();
    assert_eq!(
        file,
        live.to_str().unwrap(),
        "QEMU writes to the moved image"
    );
    drop(qmp);
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/clone",
        &[("newid", "105"), ("storage", "other")],
    );
    let c105 = d.vm_config(&root, 105);
    let (i105, f105) = image_of(&d, other_dir.path(), c105["scsi0"].as_str().unwrap());
    assert_eq!(f105, "raw");
    assert!(holds(&i105, &f105, 0x11), "the running guest's data");
    assert_eq!(guest_pid(&d.path().join("run"), 101), Some(pid));
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/101/status/stop", &[]);

    // unlink: a disk leaves the config and stays as unusedN; with force its image goes
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/105/unlink",
        &root,
        &[("idlist", "scsi7")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["idlist"].is_string());
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/105/unlink",
        &root,
        &[("idlist", "scsi0")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let c105 = d.vm_config(&root, 105);
    assert!(c105.get("scsi0").is_none());
    assert_eq!(c105["unused0"], "other:105/vm-105-disk-0.raw");
    assert!(i105.exists());
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/105/unlink",
        &root,
        &[("idlist", "unused0"), ("force", "1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(d.vm_config(&root, 105).get("unused0").is_none());
    assert!(!i105.exists(), "force deleted the image");
}

/// A tmpfs of `mib` MiB, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(mib: u32) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs(dir))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn copies_that_cannot_fit_are_refused_naming_the_storage() {
    if !tools_available(&["qemu-img", "qemu-io"]) {
        return;
    }
    let Some(small) = SmallFs::mount(16) else {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    };
    let d = start_daemon("tcg");
    let root = d.login();
    let r = d.request(
        "POST",
        "/storage",
        &root,
        &[
            ("storage", "tiny"),
            ("type", "dir"),
            ("path", small.0.path().to_str().unwrap()),
            ("content", "images"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("memory", "64"), ("scsi0", "local:1")],
    );
    let image = d
        .path()
        .join("storage/local/images/100/vm-100-disk-0.qcow2");
    assert!(qemu_io(&image, "qcow2", "write -P 0x33 0 40M"));
    let unchanged = config_snapshot(&d.etc());
    for (path, form) in [
        (
            "/nodes/pve1/qemu/100/clone",
            vec![("newid", "101"), ("storage", "tiny"), ("full", "1")],
        ),
        (
            "/nodes/pve1/qemu/100/move_disk",
            vec![("disk", "scsi0"), ("storage", "tiny")],
        ),
    ] {
        let r = d.request("POST", path, &root, &form);
        assert_eq!(r.status, 400, "{path}: {r:?}");
        let e = r.body["errors"]["storage"].as_str().unwrap_or_default();
        assert!(
            e.contains("not enough space on storage 'tiny'"),
            "{path}: {}",
            r.raw
        );
    }
    assert_eq!(config_snapshot(&d.etc()), unchanged);
    assert!(std::fs::read_dir(small.0.path()).unwrap().next().is_none());
    // what fits still goes
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/100/clone",
        &[("newid", "102"), ("full", "1")],
    );
}
