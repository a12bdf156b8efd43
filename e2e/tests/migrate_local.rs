//! Guests with disks on local storage move between two real nodes: live (the target
//! exports new images over NBD, the source mirrors into them, then migrates the RAM) and
//! offline (copied into `qemu-nbd` exports). Each node has its own storage (`loc1` on n1,
//! `loc2` on n2), so `targetstorage` maps them. The data is checked in the images; the
//! source image is gone afterwards; refused and failed migrations leave the guest where it
//! was, with its disk.

use ferrox_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn holds(image: &Path, pattern: u8) -> bool {
    qemu_io(image, "qcow2", &format!("read -P {pattern:#x} 1M 256k"))
}

fn disk_of(d: &Daemon, node: &str, vmid: u32) -> String {
    let r = d.request(
        "GET",
        &format!("/nodes/{node}/qemu/{vmid}/config"),
        &d.login(),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    r.body["data"]["scsi0"].as_str().unwrap().to_string()
}

fn image(dir: &Path, disk: &str) -> PathBuf {
    let volid = disk.split(',').next().unwrap();
    let name = volid.split_once(':').unwrap().1;
    dir.join("images").join(name)
}

#[test]
fn guests_with_local_disks_migrate_live_and_offline() {
    if !tools_available(&["qemu-img", "qemu-io", "qemu-nbd", "qemu-system-x86_64"]) {
        return;
    }
    let nodes = local_cluster(2, "localdisks", "tcg", &[]);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let root = n1.login();
    let dir1 = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    for (id, dir, node) in [
        ("loc1", &dir1, "n1"),
        ("loc2", &dir2, "n2"),
        ("bad", &dir3, "n2"),
    ] {
        let path = dir.path().to_str().unwrap().to_string();
        let r = n1.request(
            "POST",
            "/storage",
            &root,
            &[
                ("storage", id),
                ("type", "dir"),
                ("path", &path),
                ("content", "images"),
                ("nodes", node),
            ],
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    // `bad` cannot hold an image: a file stands where its images folder should be.
    let _ = std::fs::remove_dir_all(dir3.path().join("images"));
    std::fs::write(dir3.path().join("images"), b"in the way").unwrap();
    n1.task_ok(
        &root,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "64"), ("scsi0", "loc1:1")],
    );
    let source_image = image(dir1.path(), &disk_of(n1, "n1", 100));
    let written = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 1M 256k"])
        .arg(&source_image)
        .status()
        .unwrap();
    assert!(written.success());
    n1.task_ok(&root, "POST", "/nodes/n1/qemu/100/status/start", &[]);
    let run1 = n1.path().join("run");
    let run2 = n2.path().join("run");
    let pid = guest_pid(&run1, 100).expect("running on n1");

    // refusals: nothing changes
    let before = (config_snapshot(&n1.etc()), config_snapshot(&n2.etc()));
    for (form, field, text) in [
        (
            vec![("target", "n2"), ("online", "1")],
            "with-local-disks",
            "with-local-disks=1",
        ),
        (
            vec![("target", "n2"), ("online", "1"), ("with-local-disks", "1")],
            "target",
            "storage 'loc1' is not available on node 'n2'",
        ),
        (
            vec![
                ("target", "n2"),
                ("online", "1"),
                ("with-local-disks", "1"),
                ("targetstorage", "loc1:loc2,loc1:bad"),
            ],
            "targetstorage",
            "mapped twice",
        ),
    ] {
        let r = n1.request("POST", "/nodes/n1/qemu/100/migrate", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        let msg = r.body["errors"][field].as_str().unwrap_or("");
        assert!(msg.contains(text), "{form:?}: {}", r.raw);
    }
    assert_eq!(
        (config_snapshot(&n1.etc()), config_snapshot(&n2.etc())),
        before
    );

    // a migration that fails on the target (its storage cannot hold the image): the
    // guest runs on where it was, with its disk
    let r = n1.request(
        "POST",
        "/nodes/n1/qemu/100/migrate",
        &root,
        &[
            ("target", "n2"),
            ("online", "1"),
            ("with-local-disks", "1"),
            ("targetstorage", "bad"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let status = n1.wait_task(&root, r.body["data"].as_str().unwrap());
    assert_ne!(status["exitstatus"], "OK", "{status}");
    assert_eq!(guest_pid(&run1, 100), Some(pid));
    assert!(guest_pid(&run2, 100).is_none());
    assert!(holds(&source_image, 0x5a));
    assert!(disk_of(n1, "n1", 100).starts_with("loc1:"));

    // live, with the disk
    n1.task_ok(
        &root,
        "POST",
        "/nodes/n1/qemu/100/migrate",
        &[
            ("target", "n2"),
            ("online", "1"),
            ("with-local-disks", "1"),
            ("targetstorage", "loc1:loc2"),
        ],
    );
    wait_for("the guest on n2", Duration::from_secs(30), || {
        guest_running(&run2, 100)
    });
    assert!(guest_pid(&run1, 100).is_none(), "the source QEMU is gone");
    let moved = disk_of(n2, "n2", 100);
    assert_eq!(moved, "loc2:100/vm-100-disk-0.qcow2,size=1G");
    let target_image = image(dir2.path(), &moved);
    assert!(holds(&target_image, 0x5a), "the data arrived");
    assert!(!source_image.exists(), "the source image is removed");
    let st = n2
        .request("GET", "/nodes/n2/qemu/100/status/current", &root, &[])
        .body["data"]
        .clone();
    assert_eq!(st["qmpstatus"], "running");

    // offline, back again
    n2.task_ok(&root, "POST", "/nodes/n2/qemu/100/status/stop", &[]);
    n2.task_ok(
        &root,
        "POST",
        "/nodes/n2/qemu/100/migrate",
        &[("target", "n1"), ("targetstorage", "loc1")],
    );
    let back = disk_of(n1, "n1", 100);
    assert!(back.starts_with("loc1:100/vm-100-disk-"), "{back}");
    let back_image = image(dir1.path(), &back);
    assert!(holds(&back_image, 0x5a), "the data came back");
    assert!(!target_image.exists(), "the image on n2 is removed");
    let leftovers: Vec<_> = std::fs::read_dir(&run2)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".nbd.pid"))
        .collect();
    assert!(leftovers.is_empty(), "qemu-nbd stopped: {leftovers:?}");
    n1.task_ok(&root, "POST", "/nodes/n1/qemu/100/status/start", &[]);
    assert!(guest_pid(&run1, 100).is_some());
}
