//! HA end to end: three daemons with real QEMU guests, the same HA manager code as the
//! simulator, the watchdog process, and a monitor that fails the test if a guest ever
//! runs on two nodes at once.

use ferrox_e2e::*;
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

/// One HA cluster at a time: six daemons and their guests on two cores would starve
/// each other's 1 s HA rounds.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn ha_cluster() -> Vec<Daemon> {
    local_cluster(3, "ha", "tcg", FAST_HA)
}

fn running_on(nodes: &[Option<Daemon>], vmid: u32) -> Option<String> {
    nodes
        .iter()
        .flatten()
        .find(|d| guest_pid(&d.path().join("run"), vmid).is_some())
        .map(|d| d.name.clone())
}

#[test]
fn power_loss_recovers_the_guest_elsewhere_and_never_runs_it_twice() {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let (mut nodes, _shared) = cluster_with_ha_guest();
    // Bad input: an unknown guest, a bad state, the same guest twice; nothing is added.
    let d1 = nodes[0].as_ref().unwrap();
    let auth = d1.login();
    let before = std::fs::read_to_string(d1.etc().join("ha/resources.cfg")).unwrap();
    for form in [
        vec![("sid", "vm:999")],
        vec![("sid", "101"), ("state", "asleep")],
        vec![("sid", "vm:100")],
        vec![("sid", "100")],
    ] {
        let r = d1.request("POST", "/cluster/ha/resources", &auth, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
    }
    assert_eq!(
        std::fs::read_to_string(d1.etc().join("ha/resources.cfg")).unwrap(),
        before
    );
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    // Fencing and the recovery are notified (to a webhook, through a matcher on `type`).
    let (hook, notifications) = http_receiver();
    let auth = d1.login();
    for (path, form) in [
        (
            "/cluster/notifications/endpoints/webhook",
            vec![
                ("name", "ops"),
                ("url", hook.as_str()),
                ("body", "eyJ0eXBlIjoie3sgZmllbGRzLnR5cGUgfX0iLCJzZXZlcml0eSI6Int7IHNldmVyaXR5IH19IiwidGl0bGUiOiJ7eyBlc2NhcGUgdGl0bGUgfX0ifQ=="),
            ],
        ),
        (
            "/cluster/notifications/matchers",
            vec![("name", "ha"), ("target", "ops"), ("match-field", "exact:type=fencing,ha-recovery")],
        ),
    ] {
        let r = d1.request("POST", path, &auth, &form);
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }

    // Power loss of n1: its daemon, its watchdog and its guest die at once.
    let n1 = nodes[0].take().unwrap();
    let guest = std::fs::read_to_string(n1.path().join("run/100.pid")).unwrap();
    let watchdog = n1.watchdog_pids();
    assert!(!watchdog.is_empty(), "n1 runs a watchdog process");
    let dir = n1.kill();
    kill_pids(&watchdog);
    kill_pids(&[guest.trim().parse().unwrap()]);
    let took = wait_for(
        "the guest is recovered on a surviving node",
        Duration::from_secs(90),
        || running_on(&nodes, 100).is_some(),
    );
    let target = running_on(&nodes, 100).unwrap();
    eprintln!("power loss: vm:100 running on {target} {took:?} after n1 died");
    assert_ne!(target, "n1");
    let survivor = nodes.iter().flatten().next().unwrap();
    let status = survivor.request("GET", "/cluster/ha/status/current", &survivor.login(), &[]);
    let service = status.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "service")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(service["node"], target.as_str(), "{}", status.raw);
    // The config moved with it.
    assert!(survivor
        .etc()
        .join(format!("nodes/{target}/qemu-server/100.conf"))
        .exists());
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
    let mut received: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(received.iter().any(|n| n["type"] == "fencing")
        && received.iter().any(|n| n["type"] == "ha-recovery"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match notifications.recv_timeout(left) {
            Ok(body) => received.extend(serde_json::from_str::<Value>(&body).ok()),
            Err(_) => break,
        }
    }
    assert!(
        received.iter().any(|n| n["type"] == "fencing"
            && n["severity"] == "error"
            && n["title"].as_str().is_some_and(|t| t.contains("n1"))),
        "no fencing notification: {received:?}"
    );
    assert!(
        received.iter().any(|n| n["type"] == "ha-recovery"),
        "no recovery notification: {received:?}"
    );
    // The HA history has the fence and the recovery timeline, in order.
    let history = survivor.request("GET", "/cluster/ha/history", &survivor.login(), &[]);
    let changes: Vec<String> = history.body["data"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            format!(
                "{} {}->{}{}",
                e["id"].as_str().unwrap_or("?"),
                e["from"].as_str().unwrap_or("?"),
                e["to"].as_str().unwrap_or("?"),
                e["node"]
                    .as_str()
                    .map(|n| format!(" @{n}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let at = |change: &str| {
        changes
            .iter()
            .position(|c| c == change)
            .unwrap_or_else(|| panic!("'{change}' not in the HA history: {changes:#?}"))
    };
    let lost = at("n1 online->unknown");
    let fencing = at("n1 unknown->fence");
    let fenced = at("n1 fence->unknown");
    let started = at(&format!("vm:100 recovery->started @{target}"));
    assert!(
        lost < fencing && fencing < fenced && fenced < started,
        "{changes:#?}"
    );
    drop(dir);
}

/// The node running an HA guest is cut off from the others (network namespaces): it stops
/// feeding its watchdog, which kills the guest; only then does the majority, after the
/// agent lock's lease, recover it. The monitor checks the order.
#[test]
fn an_isolated_node_fences_its_guest_before_the_majority_recovers_it() {
    let _serial = serial();
    use ferrox_e2e::netns::Lab;
    if !qemu_available() {
        return;
    }
    let Some(mut lab) = Lab::new() else {
        return;
    };
    for i in 1..=3 {
        lab.start(i, FAST_HA);
    }
    lab.form_cluster("iso");
    let shared = tempfile::tempdir().unwrap();
    lab.ha_guest(3, 100, shared.path());
    let pid_of = |i: usize| guest_pid(&lab.dir(i).join("run"), 100);
    wait_for("HA starts the guest on n3", Duration::from_secs(60), || {
        pid_of(3).is_some()
    });
    let monitor = DoubleRunMonitor::start(100, (1..=3).map(|i| lab.dir(i).join("run")).collect());

    lab.set_link(3, false);
    let fenced = wait_for(
        "n3's watchdog kills its guest",
        Duration::from_secs(60),
        || pid_of(3).is_none(),
    );
    let recovered = wait_for(
        "the majority recovers the guest",
        Duration::from_secs(90),
        || pid_of(1).is_some() || pid_of(2).is_some(),
    );
    eprintln!(
        "isolation: n3 fenced its guest after {fenced:?}, recovered elsewhere {recovered:?} later"
    );
    let watchdog_log =
        std::fs::read_to_string(lab.dir(3).join("run/watchdog.log")).unwrap_or_default();
    assert!(watchdog_log.contains("fenced this node"), "{watchdog_log}");
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
}

/// A cluster with guest 100 on shared storage under HA, running on n1.
fn cluster_with_ha_guest() -> (Vec<Option<Daemon>>, tempfile::TempDir) {
    let nodes = ha_cluster();
    let shared = tempfile::tempdir().unwrap();
    let d1 = &nodes[0];
    add_shared_storage(d1, shared.path());
    let auth = d1.login();
    d1.task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "128"), ("scsi0", "shared:1")],
    );
    let r = d1.request("POST", "/cluster/ha/resources", &auth, &[("sid", "vm:100")]);
    assert_eq!(r.status, 200, "{r:?}");
    let nodes: Vec<Option<Daemon>> = nodes.into_iter().map(Some).collect();
    wait_for("HA starts the guest on n1", Duration::from_secs(60), || {
        running_on(&nodes, 100).as_deref() == Some("n1")
    });
    (nodes, shared)
}

fn crm(d: &Daemon, command: &str) {
    let r = d.request(
        "POST",
        "/cluster/ha/crm-command",
        &d.login(),
        &[("command", command)],
    );
    assert_eq!(r.status, 200, "{command}: {r:?}");
}

fn run_dirs(nodes: &[Option<Daemon>]) -> Vec<std::path::PathBuf> {
    nodes
        .iter()
        .flatten()
        .map(|d| d.path().join("run"))
        .collect()
}

#[test]
fn node_maintenance_empties_the_node_and_brings_the_guest_back() {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let (nodes, _shared) = cluster_with_ha_guest();
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    let d2 = nodes[1].as_ref().unwrap();
    // Bad input: an unknown command and an unknown node are refused, nothing queued.
    let r = d2.request(
        "POST",
        "/cluster/ha/crm-command",
        &d2.login(),
        &[("command", "node-maintenance enable n9")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d2.request(
        "POST",
        "/cluster/ha/crm-command",
        &d2.login(),
        &[("command", "reboot everything")],
    );
    assert_eq!(r.status, 400, "{r:?}");

    crm(d2, "node-maintenance enable n1");
    wait_for("the guest leaves n1", Duration::from_secs(90), || {
        running_on(&nodes, 100).is_some_and(|n| n != "n1")
    });
    let status = d2.request("GET", "/cluster/ha/status/current", &d2.login(), &[]);
    assert!(status.raw.contains("maintenance"), "{}", status.raw);
    crm(d2, "node-maintenance disable n1");
    wait_for(
        "the guest comes back to n1",
        Duration::from_secs(90),
        || running_on(&nodes, 100).as_deref() == Some("n1"),
    );
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
}

fn disarm_then_kill(mode: &str) {
    if !qemu_available() {
        return;
    }
    let (mut nodes, _shared) = cluster_with_ha_guest();
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    let d2 = nodes[1].as_ref().unwrap();
    crm(d2, &format!("disarm-ha {mode}"));
    wait_for("the manager is disarmed", Duration::from_secs(30), || {
        let r = d2.request("GET", "/cluster/ha/status/manager_status", &d2.login(), &[]);
        r.body["data"]["manager_status"]["disarm"].is_object()
            && r.body["data"]["lrm_status"]["n1"]["state"] != "active"
    });
    // Power loss of n1 while disarmed: nothing may be recovered.
    let n1 = nodes[0].take().unwrap();
    let guest: u32 = std::fs::read_to_string(n1.path().join("run/100.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let watchdog = n1.watchdog_pids();
    let port: u16 = n1.addr.rsplit(':').next().unwrap().parse().unwrap();
    let n1_dir = n1.kill();
    kill_pids(&watchdog);
    kill_pids(&[guest]);
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(
        running_on(&nodes, 100),
        None,
        "{mode}: a guest was recovered while HA was disarmed"
    );
    let d2 = nodes[1].as_ref().unwrap();
    crm(d2, "arm-ha");
    if mode == "freeze" {
        // Proxmox VE: a frozen service stays frozen while its node is off (spec §11);
        // it runs again when the node's LRM is active again.
        std::thread::sleep(Duration::from_secs(10));
        assert_eq!(
            running_on(&nodes, 100),
            None,
            "a frozen service was recovered"
        );
        nodes[0] = Some(start_node_with(
            n1_dir,
            "n1",
            "127.0.0.1",
            port,
            "tcg",
            FAST_HA,
        ));
    } else {
        drop(n1_dir);
    }
    let took = wait_for(
        "armed HA brings the guest back",
        Duration::from_secs(90),
        || running_on(&nodes, 100).is_some(),
    );
    eprintln!(
        "disarm {mode}: running on {:?} {took:?} after arm-ha",
        running_on(&nodes, 100)
    );
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
}

#[test]
fn disarmed_with_freeze_nothing_is_recovered_until_armed() {
    let _serial = serial();
    disarm_then_kill("freeze");
}

#[test]
fn disarmed_with_ignore_nothing_is_recovered_until_armed() {
    let _serial = serial();
    disarm_then_kill("ignore");
}

/// Two CPU-burning HA guests on one node, `crs: ha=dynamic,ha-auto-rebalance=1`: the
/// manager moves one of them to another node by live migration, using the usage the
/// metrics collector measured.
#[test]
fn automatic_rebalancing_moves_a_busy_guest_off_the_loaded_node() {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let payload_dir = tempfile::tempdir().unwrap();
    let Some(spin) = build_payload(payload_dir.path(), "spin", SPIN_PAYLOAD) else {
        eprintln!("SKIPPED: building the CPU-burning payload needs binutils (as, ld)");
        return;
    };
    let nodes = ha_cluster();
    let d1 = &nodes[0];
    let auth = d1.login();
    // Bad crs values are refused and name the key; nothing is written.
    let r = d1.request(
        "PUT",
        "/cluster/options",
        &auth,
        &[("crs", "ha=dynamic,ha-auto-rebalance-threshold=lots")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.raw.contains("threshold"), "{}", r.raw);
    let r = d1.request(
        "PUT",
        "/cluster/options",
        &auth,
        &[(
            "crs",
            "ha=dynamic,ha-auto-rebalance=1,ha-auto-rebalance-threshold=0.3,ha-auto-rebalance-hold-duration=2",
        )],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d1.request("GET", "/cluster/options", &auth, &[]);
    assert_eq!(r.body["data"]["crs"]["ha"], "dynamic", "{}", r.raw);
    let args = format!("-kernel {}", spin.display());
    for vmid in ["101", "102"] {
        d1.task_ok(
            &auth,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", vmid), ("memory", "64"), ("args", &args)],
        );
        let r = d1.request("POST", "/cluster/ha/resources", &auth, &[("sid", vmid)]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    let nodes: Vec<Option<Daemon>> = nodes.into_iter().map(Some).collect();
    wait_for("both guests run on n1", Duration::from_secs(60), || {
        running_on(&nodes, 101).as_deref() == Some("n1")
            && running_on(&nodes, 102).as_deref() == Some("n1")
    });
    let monitors: Vec<DoubleRunMonitor> = [101, 102]
        .into_iter()
        .map(|v| DoubleRunMonitor::start(v, run_dirs(&nodes)))
        .collect();
    let took = wait_for(
        "one guest is moved off n1",
        Duration::from_secs(120),
        || {
            [101, 102]
                .iter()
                .any(|v| running_on(&nodes, *v).is_some_and(|n| n != "n1"))
        },
    );
    eprintln!("auto-rebalance: a guest left n1 after {took:?}");
    for m in monitors {
        assert_eq!(m.finish().0, 1, "a guest ran on two nodes at once");
    }
}

/// The HA configuration API refuses bad input with the field named, and changes nothing.
#[test]
fn ha_rules_and_resources_refuse_bad_input() {
    let _serial = serial();
    let d = start_daemon("tcg");
    let auth = d.login();
    let before = std::fs::read_to_string(d.etc().join("ha/rules.cfg")).ok();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("rule", "r1"),
                ("type", "node-affinity"),
                ("resources", "vm:100"),
                ("nodes", "nowhere"),
            ],
            "nodes",
        ),
        (
            &[
                ("rule", "r1"),
                ("type", "node-affinity"),
                ("resources", "oops"),
                ("nodes", "pve1"),
            ],
            "resources",
        ),
        (
            &[
                ("rule", "r1"),
                ("type", "resource-affinity"),
                ("resources", "vm:100,vm:101"),
            ],
            "affinity",
        ),
        (
            &[
                ("rule", "bad id!"),
                ("type", "node-affinity"),
                ("resources", "vm:100"),
                ("nodes", "pve1"),
            ],
            "rule",
        ),
        (
            &[
                ("rule", "r1"),
                ("type", "colocation"),
                ("resources", "vm:100"),
            ],
            "type",
        ),
    ];
    for (form, field) in cases {
        let r = d.request("POST", "/cluster/ha/rules", &auth, form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    assert_eq!(
        std::fs::read_to_string(d.etc().join("ha/rules.cfg")).ok(),
        before
    );
    let ok = [
        ("rule", "together"),
        ("type", "resource-affinity"),
        ("resources", "vm:100,vm:101"),
        ("affinity", "positive"),
    ];
    assert_eq!(
        d.request("POST", "/cluster/ha/rules", &auth, &ok).status,
        200
    );
    // The same guests kept apart too: the manager would drop it, so it is refused.
    let r = d.request(
        "POST",
        "/cluster/ha/rules",
        &auth,
        &[
            ("rule", "apart"),
            ("type", "resource-affinity"),
            ("resources", "vm:100,vm:101"),
            ("affinity", "negative"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["rule"].is_string(), "{}", r.raw);
    let r = d.request("GET", "/cluster/ha/rules", &auth, &[]);
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.raw
    );
    assert_eq!(r.body["data"][0]["resources"], "vm:100,vm:101");
    assert_eq!(
        d.request("DELETE", "/cluster/ha/rules/together", &auth, &[])
            .status,
        200
    );
    assert_eq!(
        d.request("DELETE", "/cluster/ha/rules/together", &auth, &[])
            .status,
        400
    );
    // The same through the CLI.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(ferrox_binary())
            .args(args)
            .env("FERROX_HOST", &d.addr)
            .env("FERROX_FINGERPRINT", d.fingerprint().unwrap())
            .env("FERROX_PASSWORD", "secret1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, out) = cli(&[
        "ha",
        "rules",
        "add",
        "prefer",
        "--type",
        "node-affinity",
        "--resources",
        "vm:100",
        "--nodes",
        "pve1:2",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["ha", "rules", "list"]);
    assert!(ok && out.contains("pve1:2"), "{out}");
    let (ok, out) = cli(&[
        "ha",
        "rules",
        "add",
        "x",
        "--type",
        "node-affinity",
        "--resources",
        "vm:1",
        "--nodes",
        "mars",
    ]);
    assert!(!ok && out.contains("nodes"), "{out}");
    let (ok, out) = cli(&["ha", "rules", "remove", "prefer"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["ha", "status"]);
    assert!(ok && out.contains("quorum"), "{out}");
    let (ok, out) = cli(&["ha", "crm-command", "reboot", "now"]);
    assert!(!ok && out.contains("command"), "{out}");
    // Resources: unknown guest, unknown resource.
    let r = d.request("POST", "/cluster/ha/resources", &auth, &[("sid", "ct:7")]);
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.request("DELETE", "/cluster/ha/resources/vm:100", &auth, &[]);
    assert_eq!(r.status, 400, "{r:?}");
}

/// Stopping a daemon (SIGTERM, as for an upgrade) is Proxmox VE's "LRM restart": its HA
/// guests are frozen and keep running, the watchdog is released, nothing is fenced or
/// recovered; the restarted daemon takes them back.
#[test]
fn stopping_a_daemon_freezes_its_guests_instead_of_fencing_them() {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let (mut nodes, _shared) = cluster_with_ha_guest();
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    let mut n1 = nodes[0].take().unwrap();
    let guest = guest_pid(&n1.path().join("run"), 100).unwrap();
    let port: u16 = n1.addr.rsplit(':').next().unwrap().parse().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &n1.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the daemon stops", Duration::from_secs(60), || {
        n1.child.try_wait().ok().flatten().is_some()
    });
    let log = std::fs::read_to_string(n1.path().join("daemon.log")).unwrap();
    assert!(log.contains("stopped"), "{log}");
    // Three watchdog timeouts later the guest still runs on n1 and nowhere else.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(guest_pid(&n1.path().join("run"), 100), Some(guest));
    assert_eq!(running_on(&nodes, 100), None, "recovered while only frozen");
    let d2 = nodes[1].as_ref().unwrap();
    let r = d2.request("GET", "/cluster/ha/status/current", &d2.login(), &[]);
    assert!(r.raw.contains("freeze"), "{}", r.raw);
    // The restarted daemon takes the running guest back (the same process).
    let dir = n1.kill();
    nodes[0] = Some(start_node_with(
        dir,
        "n1",
        "127.0.0.1",
        port,
        "tcg",
        FAST_HA,
    ));
    let d2 = nodes[1].as_ref().unwrap();
    wait_for(
        "the service is started again",
        Duration::from_secs(60),
        || {
            let r = d2.request("GET", "/cluster/ha/status/current", &d2.login(), &[]);
            r.raw.contains("vm:100 (n1, started)")
        },
    );
    assert_eq!(
        guest_pid(&nodes[0].as_ref().unwrap().path().join("run"), 100),
        Some(guest)
    );
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
}

/// A node shutdown through the API (not a daemon stop) with datacenter.cfg's
/// `ha: shutdown_policy`: `migrate` moves the HA guest to another node before the node's
/// daemon ends; `freeze` stops the guest and keeps it frozen on the node (not recovered)
/// until the node is back.
fn node_shutdown_with_policy(policy: &str) {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let (mut nodes, _shared) = cluster_with_ha_guest();
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    let d2 = nodes[1].as_ref().unwrap();
    let r = d2.request(
        "PUT",
        "/cluster/options",
        &d2.login(),
        &[("ha", &format!("shutdown_policy={policy}"))],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let mut n1 = nodes[0].take().unwrap();
    let port: u16 = n1.addr.rsplit(':').next().unwrap().parse().unwrap();
    let r = n1.request(
        "POST",
        "/nodes/n1/status",
        &n1.login(),
        &[("command", "shutdown")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let mut moved_before_exit = false;
    wait_for(
        "n1's daemon ends after the shutdown",
        Duration::from_secs(120),
        || {
            let running = running_on(&nodes, 100);
            if running.as_deref().is_some_and(|n| n != "n1")
                && n1.child.try_wait().ok().flatten().is_none()
            {
                moved_before_exit = true;
            }
            n1.child.try_wait().ok().flatten().is_some()
        },
    );
    let log = std::fs::read_to_string(n1.path().join("daemon.log")).unwrap();
    assert!(
        log.contains(&format!(
            "got shutdown request with shutdown policy '{policy}'"
        )),
        "{log}"
    );
    assert!(
        !guest_running(&n1.path().join("run"), 100),
        "the guest outlived its node"
    );
    let d2 = nodes[1].as_ref().unwrap();
    match policy {
        "migrate" => {
            assert!(
                moved_before_exit,
                "the guest was not running elsewhere before n1 went"
            );
            assert!(running_on(&nodes, 100).is_some_and(|n| n != "n1"));
        }
        _ => {
            // Frozen on n1: nothing recovers it while n1 is away (several fence delays).
            std::thread::sleep(Duration::from_secs(10));
            assert_eq!(running_on(&nodes, 100), None, "recovered while frozen");
            let r = d2.request("GET", "/cluster/ha/status/current", &d2.login(), &[]);
            assert!(r.raw.contains("vm:100 (n1, freeze)"), "{}", r.raw);
            let dir = n1.kill();
            nodes[0] = Some(start_node_with(
                dir,
                "n1",
                "127.0.0.1",
                port,
                "tcg",
                FAST_HA,
            ));
            wait_for(
                "the guest starts again on n1",
                Duration::from_secs(90),
                || running_on(&nodes, 100).as_deref() == Some("n1"),
            );
        }
    }
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
}

#[test]
fn a_node_shutdown_with_the_migrate_policy_moves_the_guest_first() {
    node_shutdown_with_policy("migrate");
}

#[test]
fn a_node_shutdown_with_the_freeze_policy_stops_and_freezes_the_guest() {
    node_shutdown_with_policy("freeze");
}

/// A live HA migration whose source daemon stops (SIGSTOP) in the middle; its source is
/// fenced and the guest recovered. Wherever it goes, it runs exactly once: on the target,
/// a copy that received the whole state is resumed (the same process; QEMU streams on
/// without its daemon), one that did not is killed and the guest started afresh; on a
/// third node, the target discards its copy. Before, the recovery could not remove the
/// source's `migrate` lock from another node (the start failed: `error`), and the target's
/// LRM took its paused copy for a running guest.
#[test]
fn a_migration_whose_source_stops_before_the_stream_recovers_the_guest_once() {
    interrupted_migration(false);
}

/// As above, the source daemon stopping while the stream runs (the copy completes).
#[test]
fn a_migration_whose_source_stops_during_the_stream_resumes_or_discards_the_copy() {
    interrupted_migration(true);
}

fn interrupted_migration(during_stream: bool) {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let (mut nodes, _shared) = cluster_with_ha_guest();
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    let d2 = nodes[1].as_ref().unwrap();
    // datacenter.cfg's migration limit (HA migrations name none): the source daemon polls
    // its migration every 20 ms, so an unlimited stream could end before the test stops it.
    let r = d2.request(
        "PUT",
        "/cluster/options",
        &d2.login(),
        &[("bwlimit", "migration=65536")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d2.request(
        "POST",
        "/cluster/ha/resources/vm:100/migrate",
        &d2.login(),
        &[("node", "n2")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let n2_run = d2.path().join("run");
    let n2_migration = || qemu_state(&n2_run, 100);
    let asked = std::time::Instant::now();
    while guest_pid(&n2_run, 100).is_none()
        || (during_stream && !matches!(n2_migration().1.as_str(), "active" | "completed"))
    {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "n2's incoming QEMU never got the stream"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let n1 = nodes[0].take().unwrap();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &n1.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let incoming = guest_pid(&n2_run, 100);
    // Whether n2's copy received the whole state; then a recovery to n2 must resume it.
    let mut complete = false;
    let started = std::time::Instant::now();
    let d2 = nodes[1].as_ref().unwrap();
    let auth = d2.login();
    let recovered_on = |nodes: &[Option<Daemon>]| {
        let holder = running_on(nodes, 100)?;
        let status = d2.request("GET", "/cluster/ha/status/current", &auth, &[]);
        (guest_running(&nodes_dir(nodes, &holder), 100)
            && status.raw.contains(&format!("vm:100 ({holder}, started)")))
        .then_some(holder)
    };
    while recovered_on(&nodes).is_none() {
        if !complete && guest_pid(&n2_run, 100) == incoming {
            complete = n2_migration().0 == "paused";
        }
        if started.elapsed() > Duration::from_secs(120) {
            let d2 = nodes[1].as_ref().unwrap();
            let status = d2.request("GET", "/cluster/ha/status/current", &d2.login(), &[]);
            let mut report = format!("HA status: {}\n", status.raw);
            for d in nodes.iter().flatten() {
                let log = std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("100") || l.contains("incoming") || l.contains("fence"))
                    .collect();
                report += &format!(
                    "{}: pid {:?}\n{}\n",
                    d.name,
                    guest_pid(&d.path().join("run"), 100),
                    lines[lines.len().saturating_sub(80)..].join("\n")
                );
            }
            panic!("the guest does not run again after n1 is fenced:\n{report}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered = started.elapsed();
    let holder = recovered_on(&nodes).unwrap();
    assert!(d2
        .etc()
        .join(format!("nodes/{holder}/qemu-server/100.conf"))
        .exists());
    let daemon_log = std::fs::read_to_string(d2.path().join("daemon.log")).unwrap_or_default();
    if holder == "n2" && complete {
        assert_eq!(
            guest_pid(&n2_run, 100),
            incoming,
            "the complete incoming copy was resumed, not replaced: {daemon_log}\nwatchdog: {}",
            std::fs::read_to_string(n2_run.join("watchdog.log")).unwrap_or_default()
        );
    } else if holder != "n2" {
        assert_eq!(
            guest_pid(&n2_run, 100),
            None,
            "n2 discarded its incoming copy: {daemon_log}"
        );
    }
    let recovery: Vec<&str> = daemon_log
        .lines()
        .filter(|l| l.contains("recover service"))
        .collect();
    eprintln!(
        "source stopped mid-migration: n2's copy {}complete; vm:100 running on {holder} {recovered:?} later: {recovery:?}",
        if complete { "" } else { "in" }
    );

    // The source daemon resumes: its migration fails at the hand-over and changes nothing.
    signal("-CONT");
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(running_on(&nodes, 100).as_deref(), Some(holder.as_str()));
    assert_eq!(guest_pid(&n1.path().join("run"), 100), None);
    assert_eq!(monitor.finish().0, 1, "vm:100 ran on two nodes at once");
    drop(n1);
}

fn nodes_dir(nodes: &[Option<Daemon>], name: &str) -> std::path::PathBuf {
    nodes
        .iter()
        .flatten()
        .find(|d| d.name == name)
        .map(|d| d.path().join("run"))
        .unwrap_or_default()
}

/// (`query-status`, `query-migrate` status) of guest `vmid`'s QEMU in `run`; empty when
/// it does not answer.
fn qemu_state(run: &std::path::Path, vmid: u32) -> (String, String) {
    ferrox_qemu::Qmp::connect(&run.join(format!("{vmid}.qmp")), Duration::from_millis(200))
        .and_then(|mut q| {
            Ok((
                q.execute("query-status", None)?,
                q.execute("query-migrate", None)?,
            ))
        })
        .map(|(status, migration)| {
            (
                status["status"].as_str().unwrap_or("").to_string(),
                migration["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

/// The source daemon is killed (-9) while QEMU streams a guest (not under HA) to the
/// target, and started again: the migration died with it, so the restarted daemon keeps
/// the guest where its config is (the source copy runs on, resumed if it had finished
/// streaming), removes the `migrate` lock the dead process left, and the target discards
/// its copy. Before, the guest stayed locked (every start or migration refused) and the
/// target's paused copy stayed forever.
#[test]
fn a_source_daemon_killed_midway_keeps_the_guest_and_clears_the_migration() {
    daemon_killed_midway(0);
}

/// The target daemon is killed (-9) while QEMU streams a guest to it, and started again
/// once the stream ended: the source handed the config over but could not ask the target
/// to resume, so it stopped its own copy. The restarted target goes on watching the
/// incoming migration its previous process recorded and resumes the complete copy.
/// Before, that copy stayed paused for good.
#[test]
fn a_target_daemon_killed_midway_resumes_the_guest_where_its_config_went() {
    daemon_killed_midway(1);
}

/// A migration of guest 100 from n1 to n2 during which node `killed`'s daemon is killed
/// mid-stream and started again: the guest ends running once, unlocked, on the node that
/// holds its config, and migrates again.
fn daemon_killed_midway(killed: usize) {
    let _serial = serial();
    if !qemu_available() {
        return;
    }
    let mut nodes: Vec<Option<Daemon>> = ha_cluster().into_iter().map(Some).collect();
    let shared = tempfile::tempdir().unwrap();
    let d1 = nodes[0].as_ref().unwrap();
    add_shared_storage(d1, shared.path());
    let auth = d1.login();
    d1.task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "128"), ("scsi0", "shared:1")],
    );
    d1.task_ok(&auth, "POST", "/nodes/n1/qemu/100/status/start", &[]);
    let n1_run = d1.path().join("run");
    let source = guest_pid(&n1_run, 100).expect("the guest runs on n1");
    let monitor = DoubleRunMonitor::start(100, run_dirs(&nodes));
    let r = d1.request(
        "POST",
        "/nodes/n1/qemu/100/migrate",
        &auth,
        &[("target", "n2"), ("online", "1"), ("bwlimit", "8192")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let n2_run = nodes[1].as_ref().unwrap().path().join("run");
    let asked = std::time::Instant::now();
    while !matches!(qemu_state(&n2_run, 100).1.as_str(), "active" | "completed") {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "the stream never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let victim = nodes[killed].take().unwrap();
    let name = victim.name.clone();
    let port: u16 = victim.addr.rsplit(':').next().unwrap().parse().unwrap();
    let dir = victim.kill();
    // The stream goes on without the daemon: a killed source's ends either way; a killed
    // target's is let finish, so that the source hands the config over to a target
    // daemon that is not there.
    let stopped_at = std::time::Instant::now();
    while killed == 1
        && matches!(
            qemu_state(&n1_run, 100).1.as_str(),
            "active" | "setup" | "device"
        )
    {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(60),
            "the stream never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    let source_state = qemu_state(&n1_run, 100).0;
    nodes[killed] = Some(start_node_with(
        dir,
        &name,
        "127.0.0.1",
        port,
        "tcg",
        FAST_HA,
    ));
    let d1 = nodes[0].as_ref().unwrap();
    let etc = d1.etc();
    let on = |node: &str| {
        etc.join(format!("nodes/{node}/qemu-server/100.conf"))
            .exists()
    };
    // Where the config is decides: the hand-over committed (the guest is n2's: n1 stops
    // its finished copy, n2 runs its own) or not (the guest stays n1's).
    let holder = if on("n2") { "n2" } else { "n1" };
    wait_for(
        "the restarted daemon settles the migration",
        Duration::from_secs(60),
        || {
            let unlocked =
                !std::fs::read_to_string(etc.join(format!("nodes/{holder}/qemu-server/100.conf")))
                    .unwrap_or_default()
                    .contains("lock:");
            let (here, there) = if holder == "n1" {
                (&n1_run, &n2_run)
            } else {
                (&n2_run, &n1_run)
            };
            unlocked && guest_running(here, 100) && guest_pid(there, 100).is_none()
        },
    );
    if holder == "n1" {
        assert_eq!(
            guest_pid(&n1_run, 100),
            Some(source),
            "the same source process"
        );
    }
    let back_from = if holder == "n1" { "n2" } else { "n1" };
    // The guest migrates again as usual.
    let auth = d1.login();
    d1.task_ok(
        &auth,
        "POST",
        &format!("/nodes/{holder}/qemu/100/migrate"),
        &[("target", back_from), ("online", "1")],
    );
    let back_run = if back_from == "n1" { &n1_run } else { &n2_run };
    wait_for("the guest migrates again", Duration::from_secs(30), || {
        guest_running(back_run, 100)
    });
    assert_eq!(monitor.finish().0, 1, "vm 100 ran on two nodes at once");
    eprintln!(
        "{name}'s daemon killed mid-stream (the source QEMU then {source_state:?}): the guest ended with its config on {holder}"
    );
}
