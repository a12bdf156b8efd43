//! Automatic balancing of guests HA does not manage (`datacenter.cfg` `crs: balance=1`, a
//! Ferrox extension) on a real 2-node cluster with real QEMU guests: off by default; once
//! on, one node carries out a plan as root@pam in a `crsplan` task and the cluster ends
//! balanced; the moved guest is not sent back or on; bad values name their key.

use ferrox_e2e::*;
use std::time::Duration;

fn node_of(d: &Daemon, auth: &Auth, vmid: u32) -> Option<String> {
    let r = d.request("GET", "/cluster/resources?type=vm", auth, &[]);
    r.body["data"]
        .as_array()?
        .iter()
        .find(|g| g["vmid"] == vmid && g["status"] == "running")
        .and_then(|g| g["node"].as_str().map(String::from))
}

fn crsplan_tasks(d: &Daemon, auth: &Auth) -> Vec<serde_json::Value> {
    let r = d.request("GET", "/cluster/tasks", auth, &[]);
    r.body["data"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| t["type"] == "crsplan")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn non_ha_guests_are_balanced_automatically_when_enabled() {
    if !qemu_available() {
        return;
    }
    let nodes = local_cluster(2, "autobalance", "tcg", &[]);
    let n1 = &nodes[0];
    let root = n1.login();
    for vmid in ["100", "101"] {
        n1.task_ok(
            &root,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", vmid), ("memory", "64"), ("start", "1")],
        );
    }
    wait_for("both guests run on n1", Duration::from_secs(60), || {
        node_of(n1, &root, 100).as_deref() == Some("n1")
            && node_of(n1, &root, 101).as_deref() == Some("n1")
    });

    // Off by default: the balancer looks every 5 s, nothing moves.
    std::thread::sleep(Duration::from_secs(12));
    assert!(crsplan_tasks(n1, &root).is_empty());
    assert_eq!(node_of(n1, &root, 100).as_deref(), Some("n1"));
    assert_eq!(node_of(n1, &root, 101).as_deref(), Some("n1"));

    // Bad values are refused naming the key, and nothing is written.
    for bad in [
        "balance=maybe",
        "balance-interval=5",
        "balance-threshold=-1",
    ] {
        let r = n1.request(
            "PUT",
            "/cluster/options",
            &root,
            &[("crs", &format!("ha=static,{bad}"))],
        );
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        let key = bad.split('=').next().unwrap();
        assert!(r.raw.contains(key), "{bad}: {}", r.raw);
    }
    let r = n1.request("GET", "/cluster/options", &root, &[]);
    assert!(r.body["data"]["crs"]["balance"].is_null(), "{}", r.raw);

    let r = n1.request(
        "PUT",
        "/cluster/options",
        &root,
        &[("crs", "ha=static,balance=1,balance-interval=10")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_for("one guest moves to n2", Duration::from_secs(180), || {
        [100, 101]
            .iter()
            .any(|v| node_of(n1, &root, *v).as_deref() == Some("n2"))
    });
    let tasks = crsplan_tasks(n1, &root);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["user"], "root@pam", "{tasks:?}");
    wait_for("the plan task ends", Duration::from_secs(120), || {
        crsplan_tasks(n1, &root)
            .iter()
            .all(|t| t["status"].is_string() && t["endtime"].is_number())
    });
    let placed = |v: u32| node_of(n1, &root, v);
    let before = (placed(100), placed(101));
    assert_ne!(before.0, before.1, "one guest on each node: {before:?}");

    // Balanced now: later looks carry out nothing, and the moved guest stays.
    std::thread::sleep(Duration::from_secs(25));
    assert_eq!((placed(100), placed(101)), before);
    assert_eq!(crsplan_tasks(n1, &root).len(), 1);
}
