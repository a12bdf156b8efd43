//! A `btrfs` storage on a real node (a loop-device file system): added through the API
//! (refused on a path that is not btrfs), a guest's raw disk in its own subvolume, a
//! running guest's snapshot with RAM taken as btrfs snapshots and rolled back (disk data
//! and RAM), a full clone from a snapshot, a template whose linked clone is a writable
//! snapshot, and nothing left behind when the guests go.

use ferrox_e2e::*;
use ferrox_storage::btrfs::scratch::{is_subvolume, ScratchBtrfs};
use std::os::unix::fs::FileExt;
use std::path::Path;

fn write(path: &Path, byte: u8) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[byte; 4096], 0).unwrap();
    f.sync_all().unwrap();
}

fn first_byte(path: &Path) -> u8 {
    let mut b = [0u8; 1];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, 0)
        .unwrap();
    b[0]
}

#[test]
fn guests_on_a_btrfs_storage_snapshot_clone_and_roll_back() {
    if !qemu_available() {
        return;
    }
    let fs = match ScratchBtrfs::create(512) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED: no btrfs to test on: {e}");
            return;
        }
    };
    let payload_dir = tempfile::tempdir().unwrap();
    let Some(echo) = build_payload(payload_dir.path(), "echo", ECHO_PAYLOAD) else {
        eprintln!("SKIPPED: building the echo guest needs binutils (as, ld)");
        return;
    };
    let d = start_daemon("tcg");
    let root = d.login();
    let run = d.path().join("run");
    let mnt = fs.path().display().to_string();

    // a path on another file system is refused, naming it; nothing is written
    let elsewhere = d.path().join("not-btrfs");
    let unchanged = config_snapshot(&d.etc());
    let r = d.request(
        "POST",
        "/storage",
        &root,
        &[
            ("storage", "slow"),
            ("type", "btrfs"),
            ("path", &elsewhere.display().to_string()),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body["errors"]["path"]
            .as_str()
            .unwrap()
            .contains("not a btrfs file system"),
        "{r:?}"
    );
    assert_eq!(config_snapshot(&d.etc()), unchanged);
    assert!(!elsewhere.exists(), "no folder made for a refused storage");
    let r = d.request(
        "POST",
        "/storage",
        &root,
        &[
            ("storage", "fast"),
            ("type", "btrfs"),
            ("path", &mnt),
            ("content", "images"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let listed = d.request("GET", "/nodes/pve1/storage/fast/status", &root, &[]);
    assert_eq!(listed.body["data"]["type"], "btrfs", "{listed:?}");

    // a guest whose disk is a raw file in a subvolume
    let args = format!("-kernel {}", echo.display());
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "101"),
            ("memory", "64"),
            ("scsi0", "fast:1"),
            ("serial0", "socket"),
            ("args", &args),
            ("start", "1"),
        ],
    );
    let cfg = d.vm_config(&root, 101);
    assert_eq!(cfg["scsi0"], "fast:101/vm-101-disk-0.raw,size=1G");
    let subvol = fs.path().join("images/101/vm-101-disk-0");
    assert!(is_subvolume(&subvol));
    let disk = subvol.join("disk.raw");

    // snapshot while running, with RAM: the guest is paused for the disk snapshot
    write(&disk, 0x11);
    type_byte(&run, 101, b'Z');
    let pid = guest_pid(&run, 101).expect("running");
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/snapshot",
        &[("snapname", "before"), ("vmstate", "1")],
    );
    assert_eq!(guest_pid(&run, 101), Some(pid), "the guest ran on");
    assert!(is_subvolume(
        &fs.path().join("images/101/vm-101-disk-0@before")
    ));
    let snap = d
        .request(
            "GET",
            "/nodes/pve1/qemu/101/snapshot/before/config",
            &root,
            &[],
        )
        .body["data"]
        .clone();
    assert_eq!(snap["vmstate"], "fast:101/vm-101-state-before.raw");
    assert!(is_subvolume(
        &fs.path().join("images/101/vm-101-state-before")
    ));
    write(&disk, 0x22);
    type_byte(&run, 101, b'Q');

    // rollback: the disk's data and the guest's RAM of the snapshot
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/snapshot/before/rollback",
        &[],
    );
    assert_eq!(first_byte(&disk), 0x11, "the disk is back at the snapshot");
    assert_eq!(last_received(&run, 101), b'Z', "the RAM is back too");
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/101/status/stop", &[]);

    // a full clone of the snapshot onto the dir storage: raw, as the source
    write(&disk, 0x33);
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/clone",
        &[
            ("newid", "102"),
            ("snapname", "before"),
            ("storage", "local"),
            ("full", "1"),
        ],
    );
    let cfg = d.vm_config(&root, 102);
    assert_eq!(cfg["scsi0"], "local:102/vm-102-disk-0.raw,size=1G");
    let copy = d.path().join("storage/local/images/102/vm-102-disk-0.raw");
    assert_eq!(
        first_byte(&copy),
        0x11,
        "the snapshot's data, not the current"
    );

    // a qcow2 clone cannot land on btrfs: refused before anything is made
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/102/clone",
        &root,
        &[
            ("newid", "103"),
            ("storage", "fast"),
            ("format", "qcow2"),
            ("full", "1"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["format"].as_str().unwrap().contains("raw"));

    // template and linked clone: a read-only base subvolume, a writable snapshot of it
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/101/snapshot/before", &[]);
    assert!(!fs.path().join("images/101/vm-101-disk-0@before").exists());
    assert!(!fs.path().join("images/101/vm-101-state-before").exists());
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/101/template", &[]);
    let base = fs.path().join("images/101/base-101-disk-0");
    assert!(is_subvolume(&base));
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu/101/clone",
        &[("newid", "104")],
    );
    let cfg = d.vm_config(&root, 104);
    assert_eq!(cfg["scsi0"], "fast:104/vm-104-disk-0.raw,size=1G");
    let linked = fs.path().join("images/104/vm-104-disk-0/disk.raw");
    assert_eq!(first_byte(&linked), 0x33);
    write(&linked, 0x44);
    assert_eq!(first_byte(&base.join("disk.raw")), 0x33);

    // the guests go, and their subvolumes with them
    for vmid in ["104", "101", "102"] {
        d.task_ok(&root, "DELETE", &format!("/nodes/pve1/qemu/{vmid}"), &[]);
    }
    let left: Vec<_> = std::fs::read_dir(fs.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
