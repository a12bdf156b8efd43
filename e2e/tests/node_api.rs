//! End-to-end tests of the node daemon: the `ferrox` binary serving HTTPS, driven through
//! its API with a plain HTTP client, with real QEMU guests where QEMU is installed.

use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrox_e2e::*;

/// Whether a process runs (zombies of daemonized QEMUs, not yet reaped, do not count).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn qemu_available() -> bool {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: qemu-system-x86_64 or qemu-img is not installed (scripts/test.sh installs them as root)");
    }
    ok
}

fn kvm_available() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("SKIPPED (KVM part): /dev/kvm cannot be opened");
    }
    ok
}

#[test]
fn authentication_follows_the_proxmox_rules() {
    let d = start_daemon("tcg");
    let none = Auth::default();

    let r = d.request("GET", "/version", &none, &[]);
    assert_eq!(
        (r.status, r.reason.as_str(), r.raw.as_str()),
        (401, "No ticket", "")
    );

    let r = d.request(
        "POST",
        "/access/ticket",
        &none,
        &[("username", "root@pam"), ("password", "wrong")],
    );
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "authentication failure")
    );
    assert_eq!(
        r.body,
        json!({"data": null, "message": "authentication failure\n"})
    );

    let auth = d.login();
    let ticket = auth.ticket.clone().unwrap();
    assert!(ticket.starts_with("PVE:root@pam:"), "{ticket}");
    let r = d.request("GET", "/version", &auth, &[]);
    assert_eq!(r.body["data"]["version"], "9.2.0");

    // renewal: the ticket as password
    let r = d.request(
        "POST",
        "/access/ticket",
        &none,
        &[("username", "root@pam"), ("password", &ticket)],
    );
    assert_eq!(r.status, 200);

    // non-GET with a ticket needs the CSRF token
    let no_csrf = Auth {
        csrf: None,
        ..auth.clone()
    };
    let r = d.request(
        "POST",
        "/access/users/root@pam/token/ci",
        &no_csrf,
        &[("privsep", "0")],
    );
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "Permission denied - invalid csrf token")
    );
    assert!(
        d.request("GET", "/access/users/root@pam/token", &auth, &[])
            .body["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the refused request created nothing"
    );

    let r = d.request(
        "POST",
        "/access/users/root@pam/token/ci",
        &auth,
        &[("privsep", "0")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["data"]["full-tokenid"], "root@pam!ci");
    let secret = r.body["data"]["value"].as_str().unwrap().to_string();
    let token = Auth {
        token: Some(format!("root@pam!ci={secret}")),
        ..Auth::default()
    };
    assert_eq!(
        d.request("GET", "/nodes", &token, &[]).body["data"][0]["node"],
        "pve1"
    );
    // tokens need no CSRF, but cannot log in
    let r = d.request(
        "POST",
        "/access/ticket",
        &token,
        &[("username", "root@pam"), ("password", "secret1")],
    );
    assert_eq!(r.status, 403);
    let bad = Auth {
        token: Some("root@pam!ci=00000000-0000-0000-0000-000000000000".into()),
        ..Auth::default()
    };
    assert_eq!(
        d.request("GET", "/nodes", &bad, &[]).reason,
        "Authentication failed!"
    );
    let r = d.request("DELETE", "/access/users/root@pam/token/ci", &auth, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(d.request("GET", "/nodes", &token, &[]).status, 401);

    // envelopes, 501 and the OpenAPI document
    let r = d.request("GET", "/nodes/pve1/bogus", &auth, &[]);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (501, "Method 'GET /nodes/pve1/bogus' not implemented")
    );
    let r = d.request("GET", "/api2/extjs/nodes/pve1/qemu/999/config", &auth, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["success"], 0);
    assert_eq!(r.body["status"], 500);
    let r = d.request("GET", "/openapi", &none, &[]);
    assert!(r.body["data"]["paths"]["/nodes/{node}/qemu/{vmid}/config"]["put"].is_object());
    let perms = d.request("GET", "/access/permissions", &auth, &[]).body;
    assert_eq!(perms["data"]["/"]["Sys.Audit"], 1);
}

#[test]
fn bad_input_names_the_parameter_and_changes_nothing() {
    let d = start_daemon("tcg");
    let auth = d.login();
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu",
        &auth,
        &[("vmid", "100"), ("name", "keep"), ("memory", "64")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let upid = r.body["data"].as_str().unwrap().to_string();
    assert_eq!(d.wait_task(&auth, &upid)["exitstatus"], "OK");
    let before = config_snapshot(&d.etc());

    /// method, path, form, the parameter the error must name
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        // Cluster, storage and lock endpoints (issues 5 and 6).
        (
            "POST",
            "/cluster/config",
            vec![("clustername", "bad name!")],
            "clustername",
        ),
        ("DELETE", "/cluster/config/nodes/nosuch", vec![], "node"),
        (
            "POST",
            "/cluster/config/join",
            vec![
                ("hostname", "127.0.0.1:1"),
                ("fingerprint", "AB:CD"),
                ("password", "x"),
            ],
            "fingerprint",
        ),
        (
            "POST",
            "/storage",
            vec![("storage", "s2"), ("type", "dir"), ("path", "relative")],
            "path",
        ),
        (
            "POST",
            "/storage",
            vec![("storage", "local"), ("type", "dir"), ("path", "/tmp")],
            "storage",
        ),
        ("POST", "/cluster/locks/l1", vec![("lease", "0")], "lease"),
        (
            "PUT",
            "/cluster/options",
            vec![("crs", "ha=dynamic,ha-auto-rebalance=maybe")],
            "crs",
        ),
        (
            "POST",
            "/nodes/pve1/qemu/100/migrate",
            vec![("target", "pve9")],
            "target",
        ),
        (
            "POST",
            "/nodes/pve1/qemu",
            vec![("vmid", "101"), ("bogus", "1")],
            "bogus",
        ),
        (
            "POST",
            "/nodes/pve1/qemu",
            vec![("vmid", "101"), ("memory", "lots")],
            "memory",
        ),
        (
            "POST",
            "/nodes/pve1/qemu",
            vec![("vmid", "100"), ("memory", "64")],
            "vmid",
        ),
        (
            "PUT",
            "/nodes/pve1/qemu/100/config",
            vec![("cores", "0")],
            "cores",
        ),
        (
            "PUT",
            "/nodes/pve1/qemu/100/config",
            vec![("memory", "-5")],
            "memory",
        ),
        (
            "PUT",
            "/nodes/pve1/qemu/100/config",
            vec![
                ("name", "x"),
                ("digest", "0000000000000000000000000000000000000000"),
            ],
            "digest",
        ),
        (
            "PUT",
            "/nodes/pve1/qemu/100/config",
            vec![("scsi0", "nowhere:1")],
            "scsi0",
        ),
        (
            "POST",
            "/nodes/pve1/qemu/100/status/start",
            vec![("skiplock", "yes")],
            "skiplock",
        ),
        (
            "GET",
            "/nodes/pve1/tasks/UPID:broken/status",
            vec![],
            "upid",
        ),
        (
            "PUT",
            "/nodes/pve1/qemu/100/config",
            vec![("vmid", "101"), ("name", "x")],
            "vmid",
        ),
    ];
    for (method, path, form, param) in cases {
        let r = d.request(method, path, &auth, &form);
        assert_eq!(r.status, 400, "{method} {path} {form:?}: {r:?}");
        assert!(
            r.body["errors"][param].is_string(),
            "{method} {path}: errors should name '{param}': {}",
            r.raw
        );
        assert!(r.reason.starts_with("Parameter verification failed") || !r.reason.is_empty());
    }
    assert_eq!(
        config_snapshot(&d.etc()),
        before,
        "a refused request changed files"
    );

    // a missing guest is a 500 with Proxmox VE's wording
    let r = d.request("GET", "/nodes/pve1/qemu/555/config", &auth, &[]);
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist"
    );

    // a good change with the right digest lands, and changes the digest
    let cfg = d
        .request("GET", "/nodes/pve1/qemu/100/config", &auth, &[])
        .body["data"]
        .clone();
    let digest = cfg["digest"].as_str().unwrap();
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/100/config",
        &auth,
        &[("cores", "2"), ("digest", digest)],
    );
    assert_eq!((r.status, &r.body), (200, &json!({"data": null})));
    let cfg2 = d
        .request("GET", "/nodes/pve1/qemu/100/config", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(cfg2["cores"], "2");
    assert_ne!(cfg2["digest"], cfg["digest"]);
}

/// Full lifecycle of a real QEMU guest with a disk, under one accelerator.
fn lifecycle(accel: &str) {
    let d = start_daemon(accel);
    let auth = d.login();
    let nextid = d.request("GET", "/cluster/nextid", &auth, &[]);
    assert_eq!(nextid.body["data"], "100");
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "100"),
            ("name", "life"),
            ("memory", "64"),
            ("scsi0", "local:1"),
            ("net0", "virtio,bridge=vmbr0"),
            ("tags", "a;b"),
        ],
    );
    let cfg = d
        .request("GET", "/nodes/pve1/qemu/100/config", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(cfg["scsi0"], "local:100/vm-100-disk-0.qcow2,size=1G");
    assert!(cfg["net0"]
        .as_str()
        .unwrap()
        .starts_with("virtio=BC:24:11:"));
    let image = d
        .path()
        .join("storage/local/images/100/vm-100-disk-0.qcow2");
    assert!(image.exists());
    let content = d
        .request("GET", "/nodes/pve1/storage/local/content", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(content[0]["volid"], "local:100/vm-100-disk-0.qcow2");
    assert_eq!(content[0]["size"], 1u64 << 30);

    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    let st = d
        .request("GET", "/nodes/pve1/qemu/100/status/current", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(st["status"], "running");
    assert_eq!(st["qmpstatus"], "running");
    assert_eq!(st["accel"], accel, "query-kvm must match the node setting");
    let pid = st["pid"].as_u64().unwrap();
    assert!(alive(pid));

    // deleting a running guest is refused and changes nothing
    let before = config_snapshot(&d.etc());
    let r = d.request("DELETE", "/nodes/pve1/qemu/100", &auth, &[]);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"]["vmid"],
        "VM 100 is running - destroy failed"
    );
    assert_eq!(config_snapshot(&d.etc()), before);
    assert!(image.exists());

    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/suspend", &[]);
    let st = d
        .request("GET", "/nodes/pve1/qemu/100/status/current", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(st["qmpstatus"], "paused");
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/resume", &[]);
    let st = d
        .request("GET", "/nodes/pve1/qemu/100/status/current", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(st["qmpstatus"], "running");

    // the collector samples the guest's vCPU threads and memory
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = d
            .request("GET", "/cluster/resources", &auth, &[("type", "vm")])
            .body["data"][0]
            .clone();
        if res["mem"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(res["id"], "qemu/100");
            assert_eq!(res["template"], 0);
            assert_eq!(res["tags"], "a;b");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guest memory never sampled: {res}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rrd = d
        .request(
            "GET",
            "/nodes/pve1/qemu/100/rrddata",
            &auth,
            &[("timeframe", "hour")],
        )
        .body["data"]
        .clone();
    assert_eq!(rrd.as_array().unwrap().len(), 60);
    assert!(rrd
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["maxmem"].as_f64() == Some(64.0 * 1024.0 * 1024.0)));
    let node_rrd = d
        .request(
            "GET",
            "/nodes/pve1/rrddata",
            &auth,
            &[("timeframe", "day"), ("cf", "MAX")],
        )
        .body["data"]
        .clone();
    assert_eq!(node_rrd.as_array().unwrap().len(), 60);

    // firmware ignores ACPI: shutdown with forceStop ends in a hard stop, with a warning
    let upid = d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu/100/status/shutdown",
        &[("timeout", "1"), ("forceStop", "1")],
    );
    let log = d
        .request("GET", &format!("/nodes/pve1/tasks/{upid}/log"), &auth, &[])
        .body
        .clone();
    assert_eq!(log["total"], 3, "{log}");
    assert_eq!(log["data"][2]["t"], "TASK WARNINGS: 1");
    assert!(!alive(pid), "QEMU {pid} still runs after the shutdown task");
    let st = d
        .request("GET", "/nodes/pve1/qemu/100/status/current", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(st["status"], "stopped");

    // start again, hard stop, destroy: the disk goes with the guest
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/stop", &[]);
    d.task_ok(&auth, "DELETE", "/nodes/pve1/qemu/100", &[]);
    assert!(!image.exists());
    assert!(!d.etc().join("nodes/pve1/qemu-server/100.conf").exists());
    let tasks = d
        .request(
            "GET",
            "/nodes/pve1/tasks",
            &auth,
            &[("vmid", "100"), ("typefilter", "qmstart")],
        )
        .body
        .clone();
    assert_eq!(tasks["total"], 2, "{tasks}");
    assert_eq!(tasks["data"][0]["status"], "OK");
}

#[test]
fn guest_lifecycle_under_tcg() {
    if qemu_available() {
        lifecycle("tcg");
    }
}

#[test]
fn guest_lifecycle_under_kvm() {
    if qemu_available() && kvm_available() {
        lifecycle("kvm");
    }
}

#[test]
fn a_restarted_daemon_finds_its_guests_and_tasks() {
    if !qemu_available() {
        return;
    }
    let d = start_daemon("tcg");
    let auth = d.login();
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "130"), ("memory", "64"), ("start", "1")],
    );
    let started = d.task_ok(&auth, "POST", "/nodes/pve1/qemu/130/status/suspend", &[]);
    let pid = d
        .request("GET", "/nodes/pve1/qemu/130/status/current", &auth, &[])
        .body["data"]["pid"]
        .as_u64()
        .unwrap();
    // kill -9 the daemon: the guest (a daemonized QEMU) keeps running
    let mut old = d;
    old.child.kill().unwrap();
    old.child.wait().unwrap();
    assert!(alive(pid));
    let dir = old.dir.take().unwrap();
    drop(old);
    let d = start_daemon_in(dir, "tcg");
    let auth = d.login();
    let st = d
        .request("GET", "/nodes/pve1/qemu/130/status/current", &auth, &[])
        .body["data"]
        .clone();
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["qmpstatus"], "paused");
    assert_eq!(st["pid"], pid);
    let old_task = d
        .request(
            "GET",
            &format!("/nodes/pve1/tasks/{started}/status"),
            &auth,
            &[],
        )
        .body["data"]
        .clone();
    assert_eq!(
        old_task["exitstatus"], "OK",
        "finished tasks survive a restart: {old_task}"
    );
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/130/status/stop", &[]);
    assert!(!alive(pid));
}

#[test]
fn bad_daemon_options_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(ferrox_binary())
            .args(["node", "serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--accel", "turbo"]);
    assert!(
        err.contains("--accel") && err.contains("kvm, tcg, auto"),
        "{err}"
    );
    let err = run(&["--root-password", "abc"]);
    assert!(
        err.contains("password") && err.contains("at least 5"),
        "{err}"
    );
    assert!(
        !dir.path().join("etc/priv/shadow.cfg").exists(),
        "a refused password was stored"
    );
    // HA timings under which a lease could lapse between renewals are refused.
    let err = run(&["--ha-lock-lease-ms", "2000"]);
    assert!(err.contains("ha-lock-lease"), "{err}");
}

#[test]
fn cli_drives_the_daemon() {
    let d = start_daemon("tcg");
    let fp_file = d.path().join("etc/nodes/pve1/pve-ssl.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fp_file.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let auth = d.login();
    let fingerprint = d.request("GET", "/nodes", &auth, &[]).body["data"][0]["ssl_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let host = d
        .base
        .trim_start_matches("https://")
        .trim_end_matches("/api2")
        .to_string();
    let ferrox = |args: &[&str]| {
        let out = Command::new(ferrox_binary())
            .args(args)
            .env("FERROX_HOST", &host)
            .env("FERROX_FINGERPRINT", &fingerprint)
            .env("FERROX_PASSWORD", "secret1")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = ferrox(&["vm", "create", "120", "--name", "cli", "--memory", "64"]);
    assert!(ok, "{out}");
    assert!(out.contains("qmcreate:120:root@pam:"), "{out}");
    let (ok, out) = ferrox(&["vm", "set", "120", "--cores", "2"]);
    assert!(ok, "{out}");
    let (ok, out) = ferrox(&["vm", "config", "120"]);
    assert!(
        ok && out.contains("cores: 2") && out.contains("name: cli"),
        "{out}"
    );
    let (ok, out) = ferrox(&["vm", "list"]);
    assert!(
        ok && out.contains("cli") && out.contains("stopped"),
        "{out}"
    );
    let (ok, out) = ferrox(&["api", "get", "/cluster/resources", "--type", "vm"]);
    assert!(ok && out.contains("\"qemu/120\""), "{out}");
    let (ok, out) = ferrox(&["vm", "set", "120", "--memory", "lots"]);
    assert!(!ok && out.contains("memory"), "{out}");
    let (ok, out) = ferrox(&["task", "list"]);
    assert!(ok && out.contains("qmcreate"), "{out}");
    let upid = out
        .split_whitespace()
        .find(|w| w.contains("qmcreate"))
        .unwrap()
        .to_string();
    let (ok, out) = ferrox(&["task", "log", &upid]);
    assert!(ok && out.trim_end().ends_with("TASK OK"), "{out}");
    let (ok, out) = ferrox(&["vm", "destroy", "120"]);
    assert!(ok, "{out}");
    // a wrong fingerprint is refused before anything is sent
    let wrong = vec!["00"; 32].join(":");
    let out = Command::new(ferrox_binary())
        .args(["vm", "list"])
        .env("FERROX_HOST", &host)
        .env("FERROX_FINGERPRINT", &wrong)
        .env("FERROX_PASSWORD", "secret1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fingerprint"),
        "{out:?}"
    );
}
