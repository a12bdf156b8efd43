//! Failover time with the default HA timings (5 s rounds, 15 s lease, 10 s watchdog):
//! node death to the guest running elsewhere, over N runs each of power loss (daemon,
//! watchdog and guest killed with -9) and isolation (the node's network namespace cut
//! off; needs root and `ip netns`). A monitor counts double runs (two live QEMU
//! processes of the guest on different nodes, both with QMP saying `running`).
//!
//! `scripts/bench-failover.sh [runs]`

use ferrox_cli::harness::netns::{Lab, SUBNET};
use ferrox_cli::harness::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn live_pid(run: &Path, vmid: u32) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(run.join(format!("{vmid}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    (!stat.rsplit(')').next()?.trim_start().starts_with('Z')).then_some(pid)
}

fn running(run: &Path, vmid: u32) -> bool {
    if live_pid(run, vmid).is_none() {
        return false;
    }
    match ferrox_qemu::Qmp::connect(&run.join(format!("{vmid}.qmp")), Duration::from_millis(200))
        .and_then(|mut q| q.execute("query-status", None))
    {
        Ok(s) => s["status"] == "running",
        Err(_) => true,
    }
}

struct Monitor {
    stop: Arc<AtomicBool>,
    doubles: Arc<AtomicUsize>,
}

fn monitor(runs: Vec<PathBuf>, vmid: u32) -> Monitor {
    let m = Monitor {
        stop: Arc::new(AtomicBool::new(false)),
        doubles: Arc::new(AtomicUsize::new(0)),
    };
    let (stop, doubles) = (Arc::clone(&m.stop), Arc::clone(&m.doubles));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if runs.iter().filter(|r| running(r, vmid)).count() > 1 {
                doubles.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    m
}

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
    let mut nodes: Vec<Daemon> = (1..=3)
        .map(|i| {
            start_node(
                tempfile::tempdir().unwrap(),
                &format!("n{i}"),
                "127.0.0.1",
                free_port(),
                "tcg",
            )
        })
        .collect();
    let auth = nodes[0].login();
    nodes[0].task_ok(&auth, "POST", "/cluster/config", &[("clustername", "fo")]);
    for i in 1..3 {
        let d = &nodes[i];
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
        assert_eq!(r.status, 200, "{r:?}");
    }
    let shared = tempfile::tempdir().unwrap();
    let auth = nodes[0].login();
    nodes[0].request(
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
    nodes[0].task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "128"), ("scsi0", "shared:1")],
    );
    nodes[0].request("POST", "/cluster/ha/resources", &auth, &[("sid", "vm:100")]);
    let runs_dirs: Vec<PathBuf> = nodes.iter().map(|d| d.path().join("run")).collect();
    wait(Duration::from_secs(120), || {
        runs_dirs.iter().any(|r| live_pid(r, 100).is_some())
    })
    .expect("HA starts the guest");
    let mon = monitor(runs_dirs.clone(), 100);
    let mut times = Vec::new();
    for run in 0..runs {
        let Some(victim) = (0..3).find(|&i| live_pid(&runs_dirs[i], 100).is_some()) else {
            println!("run {run}: guest not running anywhere");
            break;
        };
        let d = nodes.remove(victim);
        let (name, port) = (
            d.name.clone(),
            d.addr.rsplit(':').next().unwrap().parse::<u16>().unwrap(),
        );
        let guest = live_pid(&runs_dirs[victim], 100).unwrap();
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
            others.iter().any(|r| running(r, 100))
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
    mon.stop.store(true, Ordering::Relaxed);
    report("power loss", &times, mon.doubles.load(Ordering::Relaxed));
}

fn isolation(runs: usize) {
    let Some(mut lab) = Lab::new() else {
        println!("isolation: skipped (needs root and ip netns)");
        return;
    };
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    lab.cli(1, &["cluster", "create", "iso"]);
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
        assert!(ok, "{out}");
    }
    let shared = tempfile::tempdir().unwrap();
    lab.api(
        1,
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
    lab.cli(
        1,
        &[
            "vm", "create", "100", "--memory", "128", "--scsi0", "shared:1",
        ],
    );
    lab.api(1, &["create", "/cluster/ha/resources", "--sid", "vm:100"])
        .unwrap();
    let runs_dirs: Vec<PathBuf> = (1..=3).map(|i| lab.dir(i).join("run")).collect();
    wait(Duration::from_secs(120), || {
        runs_dirs.iter().any(|r| live_pid(r, 100).is_some())
    })
    .expect("HA starts the guest");
    let mon = monitor(runs_dirs.clone(), 100);
    let mut times = Vec::new();
    for run in 0..runs {
        let Some(victim) = (0..3).find(|&i| live_pid(&runs_dirs[i], 100).is_some()) else {
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
            live_pid(&runs_dirs[victim], 100).is_none()
        });
        match wait(Duration::from_secs(180), || {
            others.iter().any(|r| running(r, 100))
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
    mon.stop.store(true, Ordering::Relaxed);
    report("isolation", &times, mon.doubles.load(Ordering::Relaxed));
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    power_loss(runs);
    isolation(runs);
}
