//! Three daemons on one machine form a cluster through the CLI and keep a consistent,
//! replicated configuration through leader loss, minority loss and restarts.

use ferrox_e2e::*;

use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn cli(d: &Daemon, args: &[&str], extra_env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(ferrox_binary());
    cmd.args(args)
        .env("FERROX_HOST", &d.addr)
        .env("FERROX_FINGERPRINT", d.fingerprint().unwrap())
        .env("FERROX_PASSWORD", "secret1");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn join(d: &Daemon, via: &Daemon, fingerprint: &str) -> (bool, String) {
    cli(
        d,
        &["cluster", "join", &via.addr, "--fingerprint", fingerprint],
        &[("FERROX_JOIN_PASSWORD", "secret1")],
    )
}

fn status(d: &Daemon) -> Value {
    let auth = d.login();
    let r = d.request("GET", "/cluster/status", &auth, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.body["data"].clone()
}

fn leader(d: &Daemon) -> Option<String> {
    status(d)
        .as_array()?
        .iter()
        .find(|e| e["type"] == "cluster")?["leader"]
        .as_str()
        .map(String::from)
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn description(d: &Daemon, node: &str, vmid: u32) -> Option<String> {
    let auth = d.login();
    let r = d.request(
        "GET",
        &format!("/nodes/{node}/qemu/{vmid}/config"),
        &auth,
        &[],
    );
    r.body["data"]["description"].as_str().map(String::from)
}

fn n(nodes: &[Option<Daemon>], i: usize) -> &Daemon {
    nodes[i].as_ref().expect("running node")
}

fn mirrored(d: &Daemon, path: &str) -> Option<String> {
    std::fs::read_to_string(d.etc().join(path)).ok()
}

#[test]
fn three_nodes_form_a_cluster_and_keep_every_acknowledged_write() {
    let mut nodes: Vec<Option<Daemon>> = (1..=3)
        .map(|i| {
            let d = start_node(
                tempfile::tempdir().unwrap(),
                &format!("n{i}"),
                "127.0.0.1",
                free_port(),
                "tcg",
            );
            Some(d)
        })
        .collect();

    let (ok, out) = cli(n(&nodes, 0), &["cluster", "create", "demo"], &[]);
    assert!(ok, "{out}");
    let fp1 = n(&nodes, 0).fingerprint().unwrap();
    let fp2 = n(&nodes, 1).fingerprint().unwrap();
    let (ok, out) = join(n(&nodes, 1), n(&nodes, 0), &fp1);
    assert!(ok, "{out}");
    // The third joins through a follower.
    let (ok, out) = join(n(&nodes, 2), n(&nodes, 1), &fp2);
    assert!(ok, "{out}");

    // Bad joins: a wrong fingerprint, then a name already taken. Nothing changes.
    let intruder = start_node(
        tempfile::tempdir().unwrap(),
        "n2",
        "127.0.0.1",
        free_port(),
        "tcg",
    );
    let before = std::fs::read_to_string(intruder.etc().join("storage.cfg")).unwrap();
    let (ok, out) = join(&intruder, n(&nodes, 0), &fp2);
    assert!(!ok && out.contains("fingerprint"), "{out}");
    let (ok, out) = join(&intruder, n(&nodes, 0), &fp1);
    assert!(!ok && out.contains("already exists"), "{out}");
    assert!(
        !status(&intruder).to_string().contains("\"cluster\""),
        "the refused node must stay standalone"
    );
    assert_eq!(
        std::fs::read_to_string(intruder.etc().join("storage.cfg")).unwrap(),
        before
    );
    assert_eq!(
        status(n(&nodes, 0)).as_array().unwrap().len(),
        4,
        "cluster + 3 nodes"
    );
    drop(intruder);

    let (ok, out) = cli(n(&nodes, 2), &["cluster", "status"], &[]);
    assert!(ok && out.contains("3 nodes, quorate yes"), "{out}");

    // A write on any node is visible on all: each node creates a guest through its
    // own API, every node lists all three, and every data directory holds the files.
    for i in 0..3 {
        let d = n(&nodes, i);
        let auth = d.login();
        let vmid = (101 + i).to_string();
        d.task_ok(
            &auth,
            "POST",
            &format!("/nodes/{}/qemu", d.name),
            &[("vmid", &vmid), ("memory", "64")],
        );
    }
    for i in 0..3 {
        let d = n(&nodes, i);
        let auth = d.login();
        let r = d.request("GET", "/cluster/resources", &auth, &[("type", "vm")]);
        let mut ids: Vec<u64> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["vmid"].as_u64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, vec![101, 102, 103], "{}", r.raw);
        for j in 1..=3 {
            assert!(
                mirrored(d, &format!("nodes/n{j}/qemu-server/10{j}.conf")).is_some(),
                "n{} lacks n{j}'s guest config",
                i + 1
            );
        }
    }
    // Requests for another node are proxied: n1 reads n3's guest.
    assert_eq!(description(n(&nodes, 0), "n3", 103), None);

    // Kill the leader with -9 while a client keeps writing through a survivor.
    let leader_name = leader(n(&nodes, 0)).expect("a leader");
    let leader_idx = nodes
        .iter()
        .position(|d| d.as_ref().unwrap().name == leader_name)
        .unwrap();
    let writer_idx = (leader_idx + 1) % 3;
    let other_idx = (leader_idx + 2) % 3;
    let writer_name = n(&nodes, writer_idx).name.clone();
    let writer_vmid = 101 + writer_idx as u32;
    let acked = Arc::new(Mutex::new(Vec::<u32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let base = n(&nodes, writer_idx).base.clone();
        let auth = n(&nodes, writer_idx).login();
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        let name = writer_name.clone();
        std::thread::spawn(move || {
            let agent = insecure_agent();
            let url = format!("{base}/json/nodes/{name}/qemu/{writer_vmid}/config");
            let mut seq = 0u32;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let r = agent
                    .put(&url)
                    .set(
                        "Cookie",
                        &format!("PVEAuthCookie={}", auth.ticket.as_deref().unwrap()),
                    )
                    .set("CSRFPreventionToken", auth.csrf.as_deref().unwrap())
                    .send_form(&[("description", &format!("seq-{seq}"))]);
                if r.is_ok() {
                    acked.lock().unwrap().push(seq);
                }
            }
        })
    };
    wait_until("writes before the kill", Duration::from_secs(20), || {
        acked.lock().unwrap().len() >= 5
    });
    let killed_at = acked.lock().unwrap().len();
    let leader_dir = nodes[leader_idx].take().unwrap().kill();
    wait_until(
        "the two survivors accept writes after the leader died",
        Duration::from_secs(30),
        || acked.lock().unwrap().len() >= killed_at + 5,
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let last = *acked.lock().unwrap().last().unwrap();
    let current = description(n(&nodes, writer_idx), &writer_name, writer_vmid).unwrap();
    let current: u32 = current.trim_start_matches("seq-").parse().unwrap();
    assert!(
        current >= last,
        "acknowledged seq-{last} lost: config says seq-{current}"
    );
    // The other survivor has it too (linearizable through the store).
    wait_until("replica up to date", Duration::from_secs(10), || {
        mirrored(
            n(&nodes, other_idx),
            &format!("nodes/{writer_name}/qemu-server/{writer_vmid}.conf"),
        )
        .is_some_and(|t| t.contains(&format!("seq-{current}")))
    });

    // Kill a second node: the survivor serves reads and refuses writes, clearly.
    let other_dir = nodes[other_idx].take().unwrap().kill();
    let survivor = n(&nodes, writer_idx);
    let auth = survivor.login();
    let r = survivor.request(
        "PUT",
        &format!("/nodes/{writer_name}/qemu/{writer_vmid}/config"),
        &auth,
        &[("description", "minority")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.reason.contains("cluster not ready"), "{}", r.reason);
    assert_eq!(
        description(survivor, &writer_name, writer_vmid).as_deref(),
        Some(format!("seq-{current}").as_str())
    );
    let (ok, out) = cli(survivor, &["cluster", "status"], &[]);
    assert!(ok && out.contains("quorate no"), "{out}");

    // Restart both: they catch up, and the cluster takes writes again.
    let port_of = |dir: &DataDir| -> u16 {
        let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
        log.lines()
            .find_map(|l| l.split("https://127.0.0.1:").nth(1))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap()
    };
    let lp = port_of(&leader_dir);
    let op = port_of(&other_dir);
    let other_name = format!("n{}", other_idx + 1);
    nodes[leader_idx] = Some(start_node(leader_dir, &leader_name, "127.0.0.1", lp, "tcg"));
    nodes[other_idx] = Some(start_node(other_dir, &other_name, "127.0.0.1", op, "tcg"));
    let survivor = n(&nodes, writer_idx);
    wait_until(
        "writes accepted after restart",
        Duration::from_secs(60),
        || {
            let auth = survivor.login();
            survivor
                .request(
                    "PUT",
                    &format!("/nodes/{writer_name}/qemu/{writer_vmid}/config"),
                    &auth,
                    &[("description", "healed")],
                )
                .status
                == 200
        },
    );
    for idx in [leader_idx, other_idx] {
        wait_until("restarted node catches up", Duration::from_secs(30), || {
            mirrored(
                n(&nodes, idx),
                &format!("nodes/{writer_name}/qemu-server/{writer_vmid}.conf"),
            )
            .is_some_and(|t| t.contains("healed"))
        });
    }

    // Remove a member through another one.
    let (ok, out) = cli(
        n(&nodes, writer_idx),
        &["cluster", "remove-node", &format!("n{}", other_idx + 1)],
        &[],
    );
    assert!(ok, "{out}");
    wait_until("membership shrinks", Duration::from_secs(20), || {
        status(n(&nodes, writer_idx))
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "node")
            .count()
            == 2
    });
}

/// A running QEMU guest on shared storage moves live between two nodes and back.
#[test]
fn a_running_guest_migrates_live_and_bad_migrations_change_nothing() {
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed (scripts/test.sh installs it)");
        return;
    }
    let mut accels = vec!["tcg"];
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
    {
        accels.push("kvm");
    } else {
        eprintln!("NOTE: /dev/kvm is not usable here: migrating under TCG only");
    }
    for accel in accels {
        let a = start_node(
            tempfile::tempdir().unwrap(),
            "n1",
            "127.0.0.1",
            free_port(),
            accel,
        );
        let b = start_node(
            tempfile::tempdir().unwrap(),
            "n2",
            "127.0.0.1",
            free_port(),
            accel,
        );
        let (ok, out) = cli(&a, &["cluster", "create", "mig"], &[]);
        assert!(ok, "{out}");
        let (ok, out) = join(&b, &a, &a.fingerprint().unwrap());
        assert!(ok, "{out}");
        let shared = tempfile::tempdir().unwrap();
        let only_a = tempfile::tempdir().unwrap();
        let auth = a.login();
        for (id, path, extra) in [
            ("shared", shared.path(), ("shared", "1")),
            ("only1", only_a.path(), ("nodes", "n1")),
        ] {
            let r = a.request(
                "POST",
                "/storage",
                &auth,
                &[
                    ("storage", id),
                    ("type", "dir"),
                    ("path", path.to_str().unwrap()),
                    extra,
                ],
            );
            assert_eq!(r.status, 200, "{r:?}");
        }
        for (vmid, disk) in [("300", "shared:1"), ("301", "only1:1"), ("302", "local:1")] {
            a.task_ok(
                &auth,
                "POST",
                "/nodes/n1/qemu",
                &[("vmid", vmid), ("memory", "128"), ("scsi0", disk)],
            );
        }
        a.task_ok(&auth, "POST", "/nodes/n1/qemu/300/status/start", &[]);

        // Refused migrations name the parameter and change nothing anywhere.
        let before = (config_snapshot(&a.etc()), config_snapshot(&b.etc()));
        for (vmid, form, field, text) in [
            (
                "300",
                vec![("target", "n9"), ("online", "1")],
                "target",
                "no such cluster node",
            ),
            ("300", vec![("target", "n2")], "online", "without --online"),
            (
                "301",
                vec![("target", "n2")],
                "target",
                "not available on node 'n2'",
            ),
            (
                "302",
                vec![("target", "n2"), ("targetstorage", "nosuch")],
                "targetstorage",
                "storage 'nosuch' is not available on node 'n2'",
            ),
            (
                "300",
                vec![("target", "n1"), ("online", "1")],
                "target",
                "local node",
            ),
        ] {
            let r = a.request(
                "POST",
                &format!("/nodes/n1/qemu/{vmid}/migrate"),
                &auth,
                &form,
            );
            assert_eq!(r.status, 400, "{vmid} {form:?}: {r:?}");
            let msg = r.body["errors"][field].as_str().unwrap_or("");
            assert!(msg.contains(text), "{vmid} {form:?}: {}", r.raw);
        }
        // The preconditions say the same before anyone tries.
        let pre = |vmid: &str| {
            let r = a.request("GET", &format!("/nodes/n1/qemu/{vmid}/migrate"), &auth, &[]);
            assert_eq!(r.status, 200, "{r:?}");
            r.body["data"].clone()
        };
        assert_eq!(pre("300")["allowed_nodes"], serde_json::json!(["n2"]));
        assert_eq!(pre("300")["running"], 1);
        let only1 = pre("301");
        assert!(
            only1["not_allowed_nodes"]["n2"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("not available"),
            "{only1}"
        );
        // A stopped guest's local disk is copied along (tests/migrate_local.rs).
        let local = pre("302");
        assert_eq!(local["local_disks"][0]["drivename"], "scsi0", "{local}");
        assert_eq!(local["local_disks"][0]["size"], 1u64 << 30, "{local}");
        assert_eq!(local["allowed_nodes"], serde_json::json!(["n2"]), "{local}");
        // A stale digest, through the proxy to the other node's API.
        let r = b.request(
            "PUT",
            "/nodes/n1/qemu/300/config",
            &b.login(),
            &[
                ("description", "x"),
                ("digest", "0000000000000000000000000000000000000000"),
            ],
        );
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(
            (config_snapshot(&a.etc()), config_snapshot(&b.etc())),
            before,
            "a refused request changed files"
        );

        // Live: there and back again.
        for (from, to) in [(&a, &b), (&b, &a)] {
            let auth = from.login();
            let upid = from.task_ok(
                &auth,
                "POST",
                &format!("/nodes/{}/qemu/300/migrate", from.name),
                &[("target", &to.name), ("online", "1")],
            );
            let log = from.request(
                "GET",
                &format!("/nodes/{}/tasks/{upid}/log", from.name),
                &auth,
                &[("limit", "100")],
            );
            assert!(log.raw.contains("downtime"), "{}", log.raw);
            let r = to.request(
                "GET",
                &format!("/nodes/{}/qemu/300/status/current", to.name),
                &to.login(),
                &[],
            );
            assert_eq!(r.body["data"]["qmpstatus"], "running", "{accel}: {}", r.raw);
            assert_eq!(r.body["data"]["accel"], accel, "{}", r.raw);
            assert!(
                guest_pid(&to.path().join("run"), 300).is_some(),
                "the guest runs on {}",
                to.name
            );
            assert!(
                guest_pid(&from.path().join("run"), 300).is_none(),
                "the source process on {} is gone",
                from.name
            );
            for d in [&a, &b] {
                assert!(
                    mirrored(d, &format!("nodes/{}/qemu-server/300.conf", to.name))
                        .is_some_and(|c| !c.contains("lock"))
                );
                assert!(
                    mirrored(d, &format!("nodes/{}/qemu-server/300.conf", from.name)).is_none()
                );
            }
        }
        let auth = a.login();
        a.task_ok(&auth, "POST", "/nodes/n1/qemu/300/status/stop", &[]);
    }
}
