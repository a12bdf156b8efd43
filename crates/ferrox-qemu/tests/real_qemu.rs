//! Starts a real QEMU (no operating system: firmware only) and drives it over QMP.
//! Needs `qemu-system-x86_64` (`scripts/test.sh` installs it as root); skips loudly
//! without it.

use ferrox_qemu::{command_line, Accelerator, GuestProcess, LaunchSpec};
use ferrox_types::GuestConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn qemu() -> Option<PathBuf> {
    let path = Path::new("/usr/bin/qemu-system-x86_64");
    if path.exists() {
        Some(path.to_path_buf())
    } else {
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
        None
    }
}

#[test]
fn starts_reports_status_and_stops_a_guest() {
    let Some(binary) = qemu() else { return };
    let accel = if Path::new("/dev/kvm").exists() {
        Accelerator::Kvm
    } else {
        Accelerator::Tcg
    };
    if accel == Accelerator::Tcg {
        eprintln!("NOTE: /dev/kvm missing, testing with TCG only");
    }
    let run = std::env::temp_dir().join(format!("ferrox-qemu-test-{}", std::process::id()));
    let resolve =
        |v: &str| -> Result<(PathBuf, String), String> { Err(format!("no storage for {v}")) };
    let cfg = GuestConfig::parse("name: firmware-only\nmemory: 128\ncores: 1\n").expect("config");
    for accel in [accel, Accelerator::Tcg] {
        let spec = LaunchSpec {
            cpu_models: &Default::default(),
            vmid: 900,
            accel,
            run_dir: &run,
            resolve: &resolve,
            incoming: None,
            net_mode: ferrox_qemu::NetMode::Bridge,
            paused: false,
        };
        let args = command_line(&cfg, &spec).expect("command line");
        let guest = GuestProcess::start(&binary, &args, &spec).expect("qemu starts");
        assert!(ferrox_qemu::process::pid_alive(guest.pid));
        let state = guest.status().expect("status");
        assert_eq!(state.status, "running");
        assert_eq!(
            state.kvm,
            accel == Accelerator::Kvm,
            "query-kvm must match the accelerator"
        );
        guest.stop().expect("stop");
        assert!(
            !ferrox_qemu::process::pid_alive(guest.pid),
            "qemu still running after stop"
        );
        assert!(
            guest.status().is_err(),
            "status of a stopped guest must fail"
        );
    }
    // A firmware-only guest ignores ACPI power-down: shutdown falls back to a hard stop.
    let spec = LaunchSpec {
        cpu_models: &Default::default(),
        vmid: 901,
        accel: Accelerator::Tcg,
        run_dir: &run,
        resolve: &resolve,
        incoming: None,
        net_mode: ferrox_qemu::NetMode::Bridge,
        paused: false,
    };
    let guest = GuestProcess::start(&binary, &command_line(&cfg, &spec).expect("args"), &spec)
        .expect("start");
    let clean = guest.shutdown(Duration::from_secs(2)).expect("shutdown");
    assert!(!clean);
    assert!(!ferrox_qemu::process::pid_alive(guest.pid));
    let _ = std::fs::remove_dir_all(&run);
}

#[test]
fn guest_with_allocated_disks_starts_and_qemu_sees_them() {
    let Some(binary) = qemu() else { return };
    let base = std::env::temp_dir().join(format!("ferrox-qemu-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("dir");
    let storages = ferrox_types::StorageConfig::parse(&format!(
        "dir: local\n\tpath {}\n\tcontent images\n",
        base.display()
    ))
    .expect("storage.cfg");
    let mut cfg =
        GuestConfig::parse("memory: 128\nscsi0: local:1\nvirtio0: local:1\n").expect("config");
    ferrox_qemu::disk::allocate_new_disks(&mut cfg, &storages, "n1", 902).expect("allocate");
    let resolve = |v: &str| ferrox_storage::resolve(&storages, "n1", v).map_err(|e| e.to_string());
    let run = base.join("run");
    let spec = LaunchSpec {
        cpu_models: &Default::default(),
        vmid: 902,
        accel: Accelerator::Tcg,
        run_dir: &run,
        resolve: &resolve,
        incoming: None,
        net_mode: ferrox_qemu::NetMode::Bridge,
        paused: false,
    };
    let guest = GuestProcess::start(&binary, &command_line(&cfg, &spec).expect("args"), &spec)
        .expect("start");
    let blocks = guest
        .qmp()
        .expect("qmp")
        .execute("query-block", None)
        .expect("query-block");
    let devices: Vec<String> = blocks
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|b| b["device"].as_str().map(String::from))
        .collect();
    assert!(
        devices.contains(&"drive-scsi0".to_string())
            && devices.contains(&"drive-virtio0".to_string()),
        "{devices:?}"
    );
    guest.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&base);
}
