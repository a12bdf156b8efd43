//! Node shutdown with each HA shutdown policy (default HA timings): three daemons on
//! loopback, three HA guests on n1, then `POST /nodes/n1/status command=shutdown` (or
//! `reboot` for `conditional`). Measures when n1's daemon ended, each guest's outage
//! (running nowhere) and where it runs after; for the policies that freeze, n1's daemon is
//! started again and the time until its guests run again is measured. A monitor samples
//! for double runs every 20 ms.
//!
//! `scripts/bench-shutdown.sh`

use ferrox_e2e::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const GUESTS: [u32; 3] = [100, 101, 102];

fn wherever(run_dirs: &[PathBuf], vmid: u32) -> Option<usize> {
    (0..run_dirs.len()).find(|&i| guest_running(&run_dirs[i], vmid))
}

fn scenario(policy: &str, command: &str) {
    let mut nodes = local_cluster(3, "sd", "tcg", &[]);
    let shared = tempfile::tempdir().unwrap();
    add_shared_storage(&nodes[0], shared.path());
    let auth = nodes[0].login();
    for vmid in GUESTS {
        let id = vmid.to_string();
        nodes[0].task_ok(
            &auth,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", &id), ("memory", "128"), ("scsi0", "shared:1")],
        );
        let r = nodes[0].request(
            "POST",
            "/cluster/ha/resources",
            &auth,
            &[("sid", &format!("vm:{id}"))],
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = nodes[1].request(
        "PUT",
        "/cluster/options",
        &nodes[1].login(),
        &[("ha", &format!("shutdown_policy={policy}"))],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let run_dirs: Vec<PathBuf> = nodes.iter().map(|d| d.path().join("run")).collect();
    wait_for(
        "HA starts the guests on n1",
        Duration::from_secs(120),
        || GUESTS.iter().all(|v| guest_running(&run_dirs[0], *v)),
    );
    let monitors: Vec<DoubleRunMonitor> = GUESTS
        .iter()
        .map(|v| DoubleRunMonitor::start(*v, run_dirs.clone()))
        .collect();
    let t0 = Instant::now();
    let r = nodes[0].request(
        "POST",
        "/nodes/n1/status",
        &nodes[0].login(),
        &[("command", command)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let mut down: [Option<f64>; 3] = [None; 3];
    let mut back: [Option<(f64, usize)>; 3] = [None; 3];
    let mut exited = None;
    let deadline = t0 + Duration::from_secs(240);
    while Instant::now() < deadline && (exited.is_none() || back.iter().any(Option::is_none)) {
        let now = t0.elapsed().as_secs_f64();
        if exited.is_none() && nodes[0].child.try_wait().ok().flatten().is_some() {
            exited = Some(now);
        }
        for (k, vmid) in GUESTS.iter().enumerate() {
            match (wherever(&run_dirs, *vmid), down[k]) {
                (None, None) => down[k] = Some(now),
                (Some(i), Some(_)) if i != 0 && back[k].is_none() => back[k] = Some((now, i)),
                (Some(i), None) if i != 0 && back[k].is_none() => back[k] = Some((now, i)),
                _ => {}
            }
        }
        // Frozen guests wait for n1: stop waiting once the daemon ended and 20 s passed.
        if exited.is_some_and(|e| now > e + 20.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{policy} ({command}): n1's daemon ended after {}",
        exited.map_or("—".into(), |e| format!("{e:.1} s"))
    );
    for (k, vmid) in GUESTS.iter().enumerate() {
        match (down[k], back[k]) {
            (_, Some((t, i))) => println!(
                "  vm {vmid}: running on n{} {t:.1} s after the request; outage {}",
                i + 1,
                down[k].map_or("none (live migration)".into(), |d| format!(
                    "{:.1} s",
                    t - d
                ))
            ),
            (Some(d), None) => {
                println!("  vm {vmid}: stopped {d:.1} s after the request, not running elsewhere")
            }
            (None, None) => println!("  vm {vmid}: still running on n1?"),
        }
    }
    if back.iter().any(Option::is_none) {
        // Frozen: n1 comes back; how long until its guests run again.
        let n1 = nodes.remove(0);
        let port: u16 = n1.addr.rsplit(':').next().unwrap().parse().unwrap();
        let dir = n1.kill();
        let t1 = Instant::now();
        nodes.insert(0, start_node(dir, "n1", "127.0.0.1", port, "tcg"));
        let took = wait_for(
            "the frozen guests run again",
            Duration::from_secs(180),
            || GUESTS.iter().all(|v| wherever(&run_dirs, *v).is_some()),
        );
        println!(
            "  n1 started again {:.1} s after the request: its guests ran again {:.1} s later (daemon start included)",
            t1.duration_since(t0).as_secs_f64(),
            took.as_secs_f64()
        );
    }
    let doubles: usize = monitors.into_iter().map(|m| m.finish().1).sum();
    println!("  double-run samples: {doubles}");
}

fn main() {
    for (policy, command) in [
        ("migrate", "shutdown"),
        ("failover", "shutdown"),
        ("conditional", "shutdown"),
        ("conditional", "reboot"),
        ("freeze", "shutdown"),
    ] {
        scenario(policy, command);
    }
}
