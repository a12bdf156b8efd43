//! Node-level guest actions as Proxmox VE's `pvenode` does them: `startall` by startup
//! order (onboot guests, HA ones left to HA), `stopall` in reverse, onboot guests started
//! once per host boot, and a node shutdown that stops every guest and ends the daemon
//! (unlike a daemon stop, which leaves guests running).

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
