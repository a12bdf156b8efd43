//! Node-level guest actions as Proxmox VE's `pvenode` does them: `startall` by startup
//! order (onboot guests, HA ones left to HA), `stopall` in reverse, onboot guests started
//! once per host boot, and a node shutdown that stops every guest and ends the daemon
//! (unlike a daemon stop, which leaves guests running); `migrateall` to another node.

use ferrox_e2e::*;
use std::time::Duration;

fn running(d: &Daemon, auth: &Auth, vmid: u32) -> bool {
    d.request(
        "GET",
        &format!("/nodes/pve1/qemu/{vmid}/status/current"),
        auth,
        &[],
    )
    .body["data"]["status"]
        == "running"
}

/// The task log's lines, in order.
fn task_lines(d: &Daemon, auth: &Auth, upid: &str) -> Vec<String> {
    d.request(
        "GET",
        &format!("/nodes/pve1/tasks/{upid}/log"),
        auth,
        &[("limit", "500")],
    )
    .body["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["t"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn position(lines: &[String], text: &str) -> usize {
    lines
        .iter()
        .position(|l| l == text)
        .unwrap_or_else(|| panic!("'{text}' not in the task log: {lines:#?}"))
}

#[test]
fn startall_stopall_boot_start_and_node_shutdown() {
    if !qemu_available() {
        return;
    }
    let d = start_daemon("tcg");
    let root = d.login();
    // 101 starts first (order 1), then 100 (order 2), then 103 (no order); 102 has no
    // onboot. Disk-less guests: the firmware keeps them running and ignores ACPI, so
    // every shutdown ends hard after its timeout (`down`, kept short here).
    for (vmid, options) in [
        (
            "100",
            vec![("onboot", "1"), ("startup", "order=2,up=0,down=3")],
        ),
        (
            "101",
            vec![("onboot", "1"), ("startup", "order=1,up=1,down=2")],
        ),
        ("102", vec![("startup", "down=2")]),
        ("103", vec![("onboot", "1"), ("startup", "up=0")]),
    ] {
        let mut form = vec![("vmid", vmid), ("memory", "64")];
        form.extend(options);
        d.task_ok(&root, "POST", "/nodes/pve1/qemu", &form);
    }
    let bad = d.request(
        "POST",
        "/nodes/pve1/qemu",
        &root,
        &[("vmid", "104"), ("memory", "64"), ("startup", "order=soon")],
    );
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(bad.body["errors"]["startup"].is_string(), "{:?}", bad.body);

    // Privileges: VM.PowerMgmt on / for everything, on each named guest for `vms`.
    d.add_user(&root, "ops@pve", "secret12", &[("/vms/100", "PVEVMUser")]);
    let ops = d.login_as("ops@pve", "secret12");
    for path in ["/nodes/pve1/startall", "/nodes/pve1/stopall"] {
        let r = d.request("POST", path, &ops, &[]);
        assert_eq!(r.status, 403, "{path}: {:?}", r.body);
        let r = d.request("POST", path, &ops, &[("vms", "100,101")]);
        assert_eq!(r.status, 403, "{path} naming 101: {:?}", r.body);
    }
    let r = d.request(
        "POST",
        "/nodes/pve1/status",
        &ops,
        &[("command", "shutdown")],
    );
    assert_eq!(
        r.status, 403,
        "node shutdown needs Sys.PowerMgmt: {:?}",
        r.body
    );
    let r = d.request("POST", "/nodes/pve1/status", &root, &[("command", "halt")]);
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["errors"]["command"].is_string(), "{:?}", r.body);
    let upid = d.task_ok(&ops, "POST", "/nodes/pve1/startall", &[("vms", "100")]);
    assert!(running(&d, &root, 100), "{upid}");
    d.task_ok(&ops, "POST", "/nodes/pve1/stopall", &[("vms", "100")]);
    assert!(!running(&d, &root, 100));

    // startall: the onboot guests in startup order.
    let upid = d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/startall",
        &[("max-workers", "1")],
    );
    let lines = task_lines(&d, &root, &upid);
    let (first, second, third) = (
        position(&lines, "Starting VM 101"),
        position(&lines, "Starting VM 100"),
        position(&lines, "Starting VM 103"),
    );
    assert!(first < second && second < third, "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l == "Waiting for 1 seconds (startup delay)"));
    assert!(!lines.iter().any(|l| l.contains("VM 102")), "{lines:#?}");
    for vmid in [100, 101, 103] {
        assert!(running(&d, &root, vmid), "{vmid}");
    }
    assert!(!running(&d, &root, 102));

    // stopall: the reverse, each within its `down` timeout, else the request's.
    let upid = d.task_ok(&root, "POST", "/nodes/pve1/stopall", &[("timeout", "1")]);
    let lines = task_lines(&d, &root, &upid);
    let (first, second, third) = (
        position(&lines, "Stopping VM 103 (timeout = 1 seconds)"),
        position(&lines, "Stopping VM 100 (timeout = 3 seconds)"),
        position(&lines, "Stopping VM 101 (timeout = 2 seconds)"),
    );
    assert!(first < second && second < third, "{lines:#?}");
    for vmid in [100, 101, 103] {
        assert!(!running(&d, &root, vmid), "{vmid}");
    }

    // A daemon restart on the same boot starts nothing; a new boot id starts the onboot
    // guests once.
    let dir = d.kill();
    let d = start_daemon_in(dir, "tcg");
    let root = d.login();
    std::thread::sleep(Duration::from_secs(3));
    assert!(!running(&d, &root, 101), "a daemon restart is not a boot");
    let dir = d.kill();
    std::fs::write(dir.path().join("run/boot_id"), "an earlier boot\n").unwrap();
    let d = start_daemon_in(dir, "tcg");
    let root = d.login();
    wait_for(
        "the onboot guests after a boot",
        Duration::from_secs(60),
        || [100, 101, 103].iter().all(|v| running(&d, &root, *v)),
    );
    assert!(!running(&d, &root, 102));

    // A node shutdown stops every guest and ends the daemon (103, with the default
    // timeout of 180 s, is stopped beforehand to keep the test short).
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/103/status/stop", &[]);
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/102/status/start", &[]);
    let r = d.request(
        "POST",
        "/nodes/pve1/status",
        &root,
        &[("command", "shutdown")],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut d = d;
    let mut exited = None;
    wait_for(
        "the daemon to end after the node shutdown",
        Duration::from_secs(90),
        || {
            exited = d.child.try_wait().ok().flatten();
            exited.is_some()
        },
    );
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    let run = d.path().join("run");
    for vmid in [100, 101, 102, 103] {
        assert!(
            !guest_running(&run, vmid),
            "{vmid} still runs after the node shutdown"
        );
    }
}

#[test]
fn migrateall_moves_every_guest_and_checks_the_privilege() {
    if !qemu_available() {
        return;
    }
    let nodes = local_cluster(2, "mall", "tcg", FAST_HA);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let shared = tempfile::tempdir().unwrap();
    add_shared_storage(n1, shared.path());
    let root = n1.login();
    // 100 runs (goes live), 101 is stopped (goes offline), 102 is HA-managed (HA moves
    // it), 103 has a disk on n1's local storage (skipped without with-local-disks).
    for (vmid, disk) in [
        ("100", "shared:1"),
        ("101", "shared:1"),
        ("102", "shared:1"),
        ("103", "local:1"),
    ] {
        n1.task_ok(
            &root,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", vmid), ("memory", "64"), ("scsi0", disk)],
        );
    }
    n1.task_ok(&root, "POST", "/nodes/n1/qemu/100/status/start", &[]);
    n1.task_ok(&root, "POST", "/nodes/n1/qemu/103/status/start", &[]);
    let r = n1.request("POST", "/cluster/ha/resources", &root, &[("sid", "vm:102")]);
    assert_eq!(r.status, 200, "{r:?}");
    let run1 = n1.path().join("run");
    let run2 = n2.path().join("run");
    wait_for("HA starts 102 on n1", Duration::from_secs(60), || {
        guest_running(&run1, 102)
    });

    // VM.Migrate on one guest only: refused without `vms` and with another guest named.
    n1.add_user(&root, "mover@pve", "secret1", &[("/vms/100", "PVEVMAdmin")]);
    let mover = n1.login_as("mover@pve", "secret1");
    let r = n1.request("POST", "/nodes/n1/migrateall", &mover, &[("target", "n2")]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = n1.request(
        "POST",
        "/nodes/n1/migrateall",
        &mover,
        &[("target", "n2"), ("vms", "100,101")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Bad input names its field; nothing moves.
    for (form, field) in [
        (vec![("target", "n1")], "target"),
        (vec![("target", "n9")], "target"),
        (vec![("target", "n2"), ("vms", "100,abc")], "vms"),
        (vec![("target", "n2"), ("max-workers", "0")], "max-workers"),
    ] {
        let r = n1.request("POST", "/nodes/n1/migrateall", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    assert!(guest_running(&run1, 100));

    let upid = n1.task_ok(
        &root,
        "POST",
        "/nodes/n1/migrateall",
        &[("target", "n2"), ("max-workers", "2")],
    );
    let log = n1.request(
        "GET",
        &format!("/nodes/n1/tasks/{upid}/log"),
        &root,
        &[("limit", "500")],
    );
    let log = log.raw;
    assert!(log.contains("Migrating VM 100 (online)"), "{log}");
    assert!(log.contains("Migrating VM 101"), "{log}");
    assert!(
        log.contains("Requesting HA migration for VM 102 to node n2"),
        "{log}"
    );
    assert!(
        log.contains("skip VM 103 - precondition check failed"),
        "{log}"
    );
    assert!(
        guest_running(&run2, 100),
        "100 runs on n2 after a live migration"
    );
    assert!(guest_pid(&run1, 100).is_none());
    let config = |d: &Daemon, node: &str, vmid: u32| {
        d.request(
            "GET",
            &format!("/nodes/{node}/qemu/{vmid}/config"),
            &root,
            &[],
        )
        .status
    };
    assert_eq!(config(n2, "n2", 101), 200, "101's config is on n2");
    assert!(guest_pid(&run2, 101).is_none(), "101 stays stopped");
    wait_for("HA moves 102 to n2", Duration::from_secs(60), || {
        guest_running(&run2, 102) && guest_pid(&run1, 102).is_none()
    });
    assert_eq!(config(n1, "n1", 103), 200, "103 stays on n1");
    assert!(guest_running(&run1, 103));
}
