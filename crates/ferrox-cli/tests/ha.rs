//! HA end to end: three daemons with real QEMU guests, the same HA manager code as the
//! simulator, the watchdog process, and a monitor that fails the test if a guest ever
//! runs on two nodes at once.

use ferrox_cli::harness::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Samples, every 20 ms, the QEMU process of guest `vmid` on every node (the live
/// process named by each node's `run/<vmid>.pid`, whose command line names the guest) and
/// records the most seen running at once. (QEMU's short-lived pre-`-daemonize` parent is
/// not a running guest; it writes no pid file.)
struct DoubleRunMonitor {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DoubleRunMonitor {
    fn start(vmid: u32, run_dirs: Vec<std::path::PathBuf>) -> DoubleRunMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&max));
        let name = format!("-name vm{vmid},");
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let running = run_dirs
                    .iter()
                    .filter(|dir| {
                        let Ok(pid) = std::fs::read_to_string(dir.join(format!("{vmid}.pid")))
                        else {
                            return false;
                        };
                        let pid = pid.trim();
                        let alive =
                            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                                !st.rsplit(')')
                                    .next()
                                    .unwrap_or("")
                                    .trim_start()
                                    .starts_with('Z')
                            });
                        alive
                            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                                String::from_utf8_lossy(&c)
                                    .replace('\0', " ")
                                    .contains(&name)
                            })
                    })
                    .count();
                m.fetch_max(running, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        DoubleRunMonitor {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

fn qemu_available() -> bool {
    let ok = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed (scripts/test.sh installs it)");
    }
    ok
}

fn ha_cluster() -> Vec<Daemon> {
    let nodes: Vec<Daemon> = (1..=3)
        .map(|i| {
            start_node_with(
                tempfile::tempdir().unwrap(),
                &format!("n{i}"),
                "127.0.0.1",
                free_port(),
                "tcg",
                FAST_HA,
            )
        })
        .collect();
    let auth = nodes[0].login();
    nodes[0].task_ok(&auth, "POST", "/cluster/config", &[("clustername", "ha")]);
    for d in &nodes[1..] {
        let r = d.request(
            "POST",
            "/cluster/config/join",
            &d.login(),
            &[
                ("hostname", &nodes[0].addr),
                ("fingerprint", &nodes[0].fingerprint().unwrap()),
                ("password", "secret1"),
            ],
        );
        assert_eq!(r.status, 200, "join: {r:?}");
    }
    nodes
}

/// The node whose run directory has a live QEMU for `vmid`.
fn running_on(nodes: &[Option<Daemon>], vmid: u32) -> Option<String> {
    nodes.iter().flatten().find_map(|d| {
        let pid = std::fs::read_to_string(d.path().join(format!("run/{vmid}.pid"))).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
        (!stat.rsplit(')').next()?.trim_start().starts_with('Z')).then(|| d.name.clone())
    })
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn power_loss_recovers_the_guest_elsewhere_and_never_runs_it_twice() {
    if !qemu_available() {
        return;
    }
    let nodes = ha_cluster();
    let shared = tempfile::tempdir().unwrap();
    let d1 = &nodes[0];
    let auth = d1.login();
    let r = d1.request(
        "POST",
        "/storage",
        &auth,
        &[
            ("storage", "shared"),
            ("type", "dir"),
            ("path", shared.path().to_str().unwrap()),
            ("shared", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d1.task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "128"), ("scsi0", "shared:1")],
    );
    // Bad input first: an unknown guest, a bad state; nothing is added.
    let r = d1.request("POST", "/cluster/ha/resources", &auth, &[("sid", "vm:999")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["sid"]
        .as_str()
        .unwrap_or("")
        .contains("does not exist"));
    let r = d1.request(
        "POST",
        "/cluster/ha/resources",
        &auth,
        &[("sid", "100"), ("state", "asleep")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d1.request("POST", "/cluster/ha/resources", &auth, &[("sid", "100")]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d1.request("POST", "/cluster/ha/resources", &auth, &[("sid", "vm:100")]);
    assert_eq!(r.status, 400, "a second add of the same guest: {r:?}");

    let mut nodes: Vec<Option<Daemon>> = nodes.into_iter().map(Some).collect();
    wait_for("HA starts the guest on n1", Duration::from_secs(60), || {
        running_on(&nodes, 100).as_deref() == Some("n1")
    });
    let monitor = DoubleRunMonitor::start(
        100,
        nodes
            .iter()
            .flatten()
            .map(|d| d.path().join("run"))
            .collect(),
    );

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
    assert_eq!(monitor.finish(), 1, "vm:100 ran on two nodes at once");
    drop(dir);
}

/// The node running an HA guest is cut off from the others (network namespaces): it stops
/// feeding its watchdog, which kills the guest; only then does the majority, after the
/// agent lock's lease, recover it. The monitor checks the order.
#[test]
fn an_isolated_node_fences_its_guest_before_the_majority_recovers_it() {
    use ferrox_cli::harness::netns::{Lab, SUBNET};
    if !qemu_available() {
        return;
    }
    let Some(mut lab) = Lab::new() else {
        return;
    };
    for i in 1..=3 {
        lab.start(i, FAST_HA);
    }
    let (ok, out) = lab.cli(1, &["cluster", "create", "iso"]);
    assert!(ok, "{out}");
    let fp1 = lab.fingerprint(1).unwrap();
    for i in [2, 3] {
        let (ok, out) = lab.cli(
            i,
            &[
                "cluster",
                "join",
                &format!("{SUBNET}.1:8006"),
                "--fingerprint",
                &fp1,
            ],
        );
        assert!(ok, "n{i}: {out}");
    }
    let shared = tempfile::tempdir().unwrap();
    lab.api(
        3,
        &[
            "create",
            "/storage",
            "--storage",
            "shared",
            "--type",
            "dir",
            "--path",
            shared.path().to_str().unwrap(),
            "--shared",
            "1",
        ],
    )
    .unwrap();
    let (ok, out) = lab.cli(
        3,
        &[
            "vm", "create", "100", "--memory", "128", "--scsi0", "shared:1",
        ],
    );
    assert!(ok, "{out}");
    lab.api(3, &["create", "/cluster/ha/resources", "--sid", "vm:100"])
        .unwrap();
    let pid_of = |i: usize| -> Option<u32> {
        let pid = std::fs::read_to_string(lab.dir(i).join("run/100.pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (!stat.rsplit(')').next()?.trim_start().starts_with('Z')).then_some(pid)
    };
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
    assert_eq!(monitor.finish(), 1, "vm:100 ran on two nodes at once");
}
