//! Failover time with the default HA timings (2 s rounds, 7 s lease, 5 s watchdog, 2 s
//! fence delay):
//! node death to the guest running elsewhere, over N runs each of power loss (daemon,
//! watchdog and guest killed with -9) and isolation (the node's network namespace cut
//! off; needs root and `ip netns`). `DoubleRunMonitor` counts double runs (samples in
//! which the guest runs on two nodes).
//!
//! `scripts/bench-failover.sh [runs]`

use ferrox_e2e::netns::Lab;
use ferrox_e2e::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn report(name: &str, times: &[f64], doubles: usize) {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = t.len();
    if n == 0 {
        println!("{name}: no successful run");
        return;
    }
    println!(
        "{name}: n={n} min {:.1} s, p50 {:.1} s, p90 {:.1} s, max {:.1} s, mean {:.1} s; double runs: {doubles}",
        t[0],
        t[n / 2],
        t[(n * 9 / 10).min(n - 1)],
        t[n - 1],
        t.iter().sum::<f64>() / n as f64
    );
    println!(
        "  runs: {}",
        t.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn power_loss(runs: usize) {
    let mut nodes = local_cluster(3, "fo", "tcg", &[]);

    let shared = tempfile::tempdir().unwrap();
    add_shared_storage(&nodes[0], shared.path());
    let auth = nodes[0].login();
    nodes[0].task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "128"), ("scsi0", "shared:1")],
    );
    nodes[0].request("POST", "/cluster/ha/resources", &auth, &[("sid", "vm:100")]);
    let runs_dirs: Vec<PathBuf> = nodes.iter().map(|d| d.path().join("run")).collect();
    wait(Duration::from_secs(120), || {
        runs_dirs.iter().any(|r| guest_pid(r, 100).is_some())
    })
    .expect("HA starts the guest");
    let mon = DoubleRunMonitor::start(100, runs_dirs.clone());
    let mut times = Vec::new();
    for run in 0..runs {
        let Some(victim) = (0..3).find(|&i| guest_pid(&runs_dirs[i], 100).is_some()) else {
            println!("run {run}: guest not running anywhere");
            break;
        };
        let d = nodes.remove(victim);
        let (name, port) = (
            d.name.clone(),
            d.addr.rsplit(':').next().unwrap().parse::<u16>().unwrap(),
        );
        let guest = guest_pid(&runs_dirs[victim], 100).unwrap();
        let watchdog = d.watchdog_pids();
        let t0 = Instant::now();
        let dir = d.kill();
        kill_pids(&watchdog);
        kill_pids(&[guest]);
        let others: Vec<PathBuf> = (0..3)
            .filter(|&i| i != victim)
            .map(|i| runs_dirs[i].clone())
            .collect();
        match wait(Duration::from_secs(180), || {
            others.iter().any(|r| guest_running(r, 100))
        }) {
            Some(_) => {
                let t = t0.elapsed().as_secs_f64();
                println!(
                    "power loss run {run}: {name} died, guest running elsewhere after {t:.1} s"
                );
                times.push(t);
            }
            None => println!("power loss run {run}: not recovered within 180 s"),
        }
        // The dead node comes back (same store), ready to be the next victim.
        nodes.insert(victim, start_node(dir, &name, "127.0.0.1", port, "tcg"));
        std::thread::sleep(Duration::from_secs(15));
    }
    report("power loss", &times, mon.finish().1);
}

fn isolation(runs: usize) {
    let Some(mut lab) = Lab::new() else {
        println!("isolation: skipped (needs root and ip netns)");
        return;
    };
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    lab.form_cluster("iso");
    let shared = tempfile::tempdir().unwrap();
    lab.ha_guest(1, 100, shared.path());
    let runs_dirs: Vec<PathBuf> = (1..=3).map(|i| lab.dir(i).join("run")).collect();
    wait(Duration::from_secs(120), || {
        runs_dirs.iter().any(|r| guest_pid(r, 100).is_some())
    })
    .expect("HA starts the guest");
    let mon = DoubleRunMonitor::start(100, runs_dirs.clone());
    let mut times = Vec::new();
    for run in 0..runs {
        let Some(victim) = (0..3).find(|&i| guest_pid(&runs_dirs[i], 100).is_some()) else {
            println!("run {run}: guest not running anywhere");
            break;
        };
        let t0 = Instant::now();
        lab.set_link(victim + 1, false);
        let others: Vec<PathBuf> = (0..3)
            .filter(|&i| i != victim)
            .map(|i| runs_dirs[i].clone())
            .collect();
        let fenced = wait(Duration::from_secs(120), || {
            guest_pid(&runs_dirs[victim], 100).is_none()
        });
        match wait(Duration::from_secs(180), || {
            others.iter().any(|r| guest_running(r, 100))
        }) {
            Some(_) => {
                let t = t0.elapsed().as_secs_f64();
                println!(
                    "isolation run {run}: n{} cut off, fenced its guest after {:.1} s, guest running elsewhere after {t:.1} s",
                    victim + 1,
                    fenced.map(|f| f.as_secs_f64()).unwrap_or(f64::NAN)
                );
                times.push(t);
            }
            None => println!("isolation run {run}: not recovered within 180 s"),
        }
        lab.set_link(victim + 1, true);
        std::thread::sleep(Duration::from_secs(15));
    }
    report("isolation", &times, mon.finish().1);
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    power_loss(runs);
    isolation(runs);
}
