//! Fault soak: three nodes in network namespaces (default HA timings), ten HA guests
//! under affinity rules, N minutes of random faults one at a time — kill -9 of a daemon,
//! of a watchdog, of a guest; SIGSTOP of a daemon for 5–40 s; a node's network cut for
//! 10–40 s; node maintenance on and off; disarm (freeze or ignore) and arm; a migration
//! with a fault on its source or target while it runs. After each fault heals, the soak
//! waits for the cluster to be at rest: every guest running exactly once and the rules
//! kept. Meanwhile a monitor looks every 20 ms for a guest running on two nodes, and a
//! writer creates a pool every 2 s through a random node; every pool whose creation was
//! acknowledged must exist at the end.
//!
//! `scripts/bench-fault-soak.sh [minutes] [seed]` (root, `ip netns`).

use ferrox_e2e::netns::{Lab, Remote};
use ferrox_e2e::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GUESTS: [u32; 10] = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109];
/// Guests no rule constrains: the ones a fault-during-migration moves.
const FREE: [u32; 4] = [106, 107, 108, 109];
const API_LIMIT: Duration = Duration::from_secs(20);
const REST_LIMIT: Duration = Duration::from_secs(300);

/// xorshift64*: a reproducible fault sequence from the seed printed at the start (no
/// crate needed for a benchmark's dice).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    fn secs(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_secs(from + self.below(to - from + 1))
    }

    fn node(&mut self) -> usize {
        1 + self.below(3) as usize
    }
}

/// Nodes (1-based) where guest `vmid` runs, as QEMU says; a process alone is enough when
/// only one node has one (the cheap path of the 20 ms sampling).
fn running_on(run_dirs: &[PathBuf], vmid: u32, exact: bool) -> Vec<usize> {
    let with_process: Vec<usize> = (0..run_dirs.len())
        .filter(|&i| guest_pid(&run_dirs[i], vmid).is_some())
        .collect();
    if with_process.len() < 2 && !exact {
        return with_process.into_iter().map(|i| i + 1).collect();
    }
    with_process
        .into_iter()
        .filter(|&i| guest_running(&run_dirs[i], vmid))
        .map(|i| i + 1)
        .collect()
}

struct Monitor {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicUsize>,
    doubles: Arc<Mutex<Vec<String>>>,
    /// Times a guest ran nowhere (a fault took it down until HA brought it back): seconds.
    outages: Arc<Mutex<Vec<(u32, f64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(run_dirs: Vec<PathBuf>, started: Instant) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicUsize::new(0));
        let doubles: Arc<Mutex<Vec<String>>> = Arc::default();
        let outages: Arc<Mutex<Vec<(u32, f64)>>> = Arc::default();
        let (s, n, d, o) = (
            Arc::clone(&stop),
            Arc::clone(&samples),
            Arc::clone(&doubles),
            Arc::clone(&outages),
        );
        let thread = std::thread::spawn(move || {
            let mut down_since: [Option<Instant>; GUESTS.len()] = [None; GUESTS.len()];
            while !s.load(Ordering::Relaxed) {
                for (k, vmid) in GUESTS.into_iter().enumerate() {
                    let nodes = running_on(&run_dirs, vmid, false);
                    match (nodes.is_empty(), down_since[k]) {
                        (true, None) => down_since[k] = Some(Instant::now()),
                        (false, Some(since)) => {
                            o.lock()
                                .unwrap()
                                .push((vmid, since.elapsed().as_secs_f64()));
                            down_since[k] = None;
                        }
                        _ => {}
                    }
                    if nodes.len() > 1 {
                        let line = format!(
                            "{:.2} s: vm {vmid} runs on nodes {nodes:?}",
                            started.elapsed().as_secs_f64()
                        );
                        eprintln!("DOUBLE RUN {line}");
                        d.lock().unwrap().push(line);
                    }
                }
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Monitor {
            stop,
            samples,
            doubles,
            outages,
            thread: Some(thread),
        }
    }

    /// The outages that ended since the last call: (vmid, seconds).
    fn outages(&self) -> Vec<(u32, f64)> {
        std::mem::take(&mut *self.outages.lock().unwrap())
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let doubles = self.doubles.lock().unwrap().clone();
        (self.samples.load(Ordering::Relaxed), doubles)
    }
}

/// Creates a pool every 2 s through a random node; keeps the acknowledged ones.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Writer {
    fn start(remotes: Vec<Remote>, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut dice = Dice(seed ^ 0x9E37_79B9_7F4A_7C15);
            let (mut tried, mut acked) = (0, Vec::new());
            while !s.load(Ordering::Relaxed) {
                let name = format!("soak{tried}");
                tried += 1;
                let remote = &remotes[dice.below(remotes.len() as u64) as usize];
                if remote
                    .api_within(API_LIMIT, &["create", "/pools", "--poolid", &name])
                    .is_ok()
                {
                    acked.push(name);
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            (tried, acked)
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

struct Soak {
    lab: Lab,
    run_dirs: Vec<PathBuf>,
    /// Nodes whose API answers right now (faults take nodes out, heals put them back).
    healthy: [bool; 3],
    at_rest_checks: usize,
}

impl Soak {
    fn api(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut last = String::from("no healthy node");
        for i in (1..=3).filter(|i| self.healthy[i - 1]) {
            match self.lab.api_within(i, API_LIMIT, args) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn crm(&self, command: &str) {
        if let Err(e) = self.api(&["create", "/cluster/ha/crm-command", "--command", command]) {
            println!("  crm-command '{command}' failed: {e}");
        }
    }

    /// Why the cluster is not at rest: a guest not running exactly once, or a rule broken.
    fn unrest(&mut self) -> Option<String> {
        self.at_rest_checks += 1;
        let mut on = std::collections::BTreeMap::new();
        for vmid in GUESTS {
            let nodes = running_on(&self.run_dirs, vmid, true);
            if nodes.len() != 1 {
                return Some(format!("vm {vmid} runs on {nodes:?}"));
            }
            on.insert(vmid, nodes[0]);
        }
        if on[&100] != on[&101] {
            return Some(format!(
                "together: 100 on n{}, 101 on n{}",
                on[&100], on[&101]
            ));
        }
        if on[&102] == on[&103] {
            return Some(format!("apart: 102 and 103 both on n{}", on[&102]));
        }
        if on[&105] != 2 {
            return Some(format!("prefer-n2: 105 on n{}", on[&105]));
        }
        None
    }

    /// Waits for rest; the time it took, or why it did not come.
    fn settle(&mut self) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            match self.unrest() {
                None => return Ok(start.elapsed()),
                Some(why) if start.elapsed() > REST_LIMIT => return Err(why),
                Some(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.lab.daemon_pid(i).to_string();
        let ok = Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("  kill {signal} {pid} failed");
        }
    }

    fn node_with(&self, vmid: u32) -> Option<usize> {
        running_on(&self.run_dirs, vmid, true).first().copied()
    }

    /// One fault and its heal; what was done.
    fn fault(&mut self, kind: u64, dice: &mut Dice) -> String {
        let n = dice.node();
        match kind {
            0 => {
                let down = dice.secs(5, 30);
                self.healthy[n - 1] = false;
                self.lab.kill_daemon(n);
                std::thread::sleep(down);
                self.lab.restart(n, &[]);
                self.healthy[n - 1] = true;
                format!("kill -9 daemon n{n}, restarted after {}s", down.as_secs())
            }
            1 => {
                let run = self.run_dirs[n - 1].display().to_string();
                let pids = pids_matching(&["node watchdog", &run]);
                kill_pids(&pids);
                format!("kill -9 watchdog n{n} {pids:?}")
            }
            2 => {
                let vmid = GUESTS[dice.below(GUESTS.len() as u64) as usize];
                let Some(node) = self.node_with(vmid) else {
                    return format!("kill -9 guest {vmid}: not running");
                };
                let pid = guest_pid(&self.run_dirs[node - 1], vmid);
                kill_pids(&pid.into_iter().collect::<Vec<_>>());
                format!("kill -9 guest {vmid} on n{node}")
            }
            3 => {
                let pause = dice.secs(5, 40);
                self.healthy[n - 1] = false;
                self.signal(n, "-STOP");
                std::thread::sleep(pause);
                self.signal(n, "-CONT");
                self.healthy[n - 1] = true;
                format!("SIGSTOP daemon n{n} for {}s", pause.as_secs())
            }
            4 => {
                let cut = dice.secs(10, 40);
                self.healthy[n - 1] = false;
                self.lab.set_link(n, false);
                std::thread::sleep(cut);
                self.lab.set_link(n, true);
                self.healthy[n - 1] = true;
                format!("network cut n{n} for {}s", cut.as_secs())
            }
            5 => {
                self.crm(&format!("node-maintenance enable n{n}"));
                let run = self.run_dirs[n - 1].clone();
                let emptied = (0..240).find(|_| {
                    std::thread::sleep(Duration::from_millis(500));
                    GUESTS.iter().all(|v| guest_pid(&run, *v).is_none())
                });
                self.crm(&format!("node-maintenance disable n{n}"));
                match emptied {
                    Some(half_secs) => format!(
                        "maintenance n{n}: emptied in {:.1}s",
                        half_secs as f64 / 2.0
                    ),
                    None => format!("maintenance n{n}: NOT emptied in 120 s"),
                }
            }
            6 => {
                let mode = if dice.below(2) == 0 {
                    "freeze"
                } else {
                    "ignore"
                };
                let held = dice.secs(10, 20);
                self.crm(&format!("disarm-ha {mode}"));
                std::thread::sleep(held);
                self.crm("arm-ha");
                format!("disarm-ha {mode} for {}s, arm-ha", held.as_secs())
            }
            _ => {
                let vmid = FREE[dice.below(FREE.len() as u64) as usize];
                let Some(source) = self.node_with(vmid) else {
                    return format!("migration of {vmid}: not running");
                };
                let target = [1, 2, 3]
                    .into_iter()
                    .filter(|t| *t != source)
                    .nth(dice.below(2) as usize)
                    .unwrap_or(1);
                // (The CLI's `--node` selects the node to talk to: the crm command
                // carries the target instead.)
                if let Err(e) = self.api(&[
                    "create",
                    "/cluster/ha/crm-command",
                    "--command",
                    &format!("migrate vm:{vmid} n{target}"),
                ]) {
                    return format!("migration of {vmid}: refused: {e}");
                }
                std::thread::sleep(Duration::from_millis(500 + dice.below(2500)));
                let victim = if dice.below(2) == 0 { source } else { target };
                let during = match dice.below(3) {
                    0 => {
                        self.healthy[victim - 1] = false;
                        self.lab.kill_daemon(victim);
                        std::thread::sleep(dice.secs(5, 20));
                        self.lab.restart(victim, &[]);
                        "kill -9 daemon"
                    }
                    1 => {
                        self.healthy[victim - 1] = false;
                        self.signal(victim, "-STOP");
                        std::thread::sleep(dice.secs(5, 40));
                        self.signal(victim, "-CONT");
                        "SIGSTOP daemon"
                    }
                    _ => {
                        self.healthy[victim - 1] = false;
                        self.lab.set_link(victim, false);
                        std::thread::sleep(dice.secs(10, 40));
                        self.lab.set_link(victim, true);
                        "network cut"
                    }
                };
                self.healthy[victim - 1] = true;
                let role = if victim == source { "source" } else { "target" };
                format!(
                    "migration of {vmid} n{source} -> n{target}, {during} on its {role} n{victim}"
                )
            }
        }
    }
}

fn fences(run_dirs: &[PathBuf]) -> usize {
    run_dirs
        .iter()
        .map(|r| {
            std::fs::read_to_string(r.join("watchdog.log"))
                .unwrap_or_default()
                .matches("not fed in time")
                .count()
        })
        .sum()
}

fn main() {
    let minutes: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    println!("fault soak: {minutes} min, seed {seed}");
    let Some(mut lab) = Lab::new() else {
        println!("fault soak: SKIPPED (needs root and ip netns)");
        std::process::exit(2);
    };
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    lab.form_cluster("soak");
    let shared = tempfile::tempdir().unwrap();
    lab.shared_storage(1, shared.path());
    for (k, vmid) in GUESTS.iter().enumerate() {
        let node = 1 + k % 3;
        let id = vmid.to_string();
        let (ok, out) = lab.cli(
            node,
            &["vm", "create", &id, "--memory", "64", "--scsi0", "shared:1"],
        );
        assert!(ok, "{out}");
        lab.api(
            1,
            &[
                "create",
                "/cluster/ha/resources",
                "--sid",
                &format!("vm:{id}"),
            ],
        )
        .expect("HA resource");
    }
    for rule in [
        &[
            "--rule",
            "together",
            "--type",
            "resource-affinity",
            "--resources",
            "vm:100,vm:101",
            "--affinity",
            "positive",
        ][..],
        &[
            "--rule",
            "apart",
            "--type",
            "resource-affinity",
            "--resources",
            "vm:102,vm:103",
            "--affinity",
            "negative",
        ],
        &[
            "--rule",
            "prefer-n2",
            "--type",
            "node-affinity",
            "--resources",
            "vm:105",
            "--nodes",
            "n2",
        ],
    ] {
        lab.api(1, &[&["create", "/cluster/ha/rules"][..], rule].concat())
            .expect("rule");
    }
    let run_dirs: Vec<PathBuf> = (1..=3).map(|i| lab.dir(i).join("run")).collect();
    let remotes: Vec<Remote> = (1..=3).filter_map(|i| lab.remote(i)).collect();
    let mut soak = Soak {
        lab,
        run_dirs: run_dirs.clone(),
        healthy: [true; 3],
        at_rest_checks: 0,
    };
    match soak.settle() {
        Ok(t) => println!("at rest after setup: {:.1} s", t.as_secs_f64()),
        Err(why) => panic!("the cluster did not come to rest after setup: {why}"),
    }
    let started = Instant::now();
    let monitor = Monitor::start(run_dirs.clone(), started);
    let writer = Writer::start(remotes, seed);
    let mut dice = Dice(seed);
    let names = [
        "kill daemon",
        "kill watchdog",
        "kill guest",
        "pause daemon",
        "network cut",
        "maintenance",
        "disarm/arm",
        "migration + fault",
    ];
    let mut counts = [0usize; 8];
    let mut recoveries: Vec<f64> = Vec::new();
    let mut outages: Vec<f64> = Vec::new();
    let mut worst_outage = (0.0f64, String::new());
    let mut unsettled = Vec::new();
    let deadline = started + Duration::from_secs(minutes * 60);
    while Instant::now() < deadline {
        let kind = dice.below(8);
        counts[kind as usize] += 1;
        let fences_before = fences(&run_dirs);
        let what = soak.fault(kind, &mut dice);
        let settled = soak.settle();
        let mut ended = Vec::new();
        for (vmid, secs) in monitor.outages() {
            outages.push(secs);
            if secs > worst_outage.0 {
                worst_outage = (secs, format!("vm {vmid}: {what}"));
            }
            ended.push(format!("{vmid} {secs:.1}s"));
        }
        let what = format!(
            "{what} [fences {}; outages: {}]",
            fences(&run_dirs) - fences_before,
            ended.join(", ")
        );
        match settled {
            Ok(t) => {
                println!(
                    "{:7.1} s  {what}; at rest {:.1} s after the heal",
                    started.elapsed().as_secs_f64(),
                    t.as_secs_f64()
                );
                recoveries.push(t.as_secs_f64());
            }
            Err(why) => {
                println!(
                    "{:7.1} s  {what}; NOT at rest {} s after the heal: {why}",
                    started.elapsed().as_secs_f64(),
                    REST_LIMIT.as_secs()
                );
                match soak.api(&["get", "/cluster/ha/status/current"]) {
                    Ok(status) => println!("  HA status: {status}"),
                    Err(e) => println!("  HA status: {e}"),
                }
                unsettled.push(format!("{what}: {why}"));
            }
        }
        std::thread::sleep(dice.secs(2, 10));
    }
    let (tried, acked) = writer.finish();
    let (samples, doubles) = monitor.finish();
    let pools = soak.api(&["get", "/pools"]).unwrap_or_default();
    let present: std::collections::BTreeSet<String> = pools
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["poolid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let lost: Vec<&String> = acked.iter().filter(|p| !present.contains(*p)).collect();
    recoveries.sort_by(|a, b| a.total_cmp(b));
    let faults: usize = counts.iter().sum();
    println!("\nfault soak: {minutes} min, seed {seed}");
    println!(
        "faults injected: {faults} ({})",
        names
            .iter()
            .zip(counts)
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "double-run checks: {samples} samples x {} guests, double runs: {}",
        GUESTS.len(),
        doubles.len()
    );
    for d in &doubles {
        println!("  {d}");
    }
    if let (Some(max), n) = (recoveries.last(), recoveries.len()) {
        println!(
            "back at rest after a heal: n={n}, p50 {:.1} s, p90 {:.1} s, max {max:.1} s; not at rest within {} s: {}",
            recoveries[n / 2],
            recoveries[(n * 9 / 10).min(n - 1)],
            REST_LIMIT.as_secs(),
            unsettled.len()
        );
    }
    for u in &unsettled {
        println!("  {u}");
    }
    outages.sort_by(|a, b| a.total_cmp(b));
    if let Some(max) = outages.last() {
        let n = outages.len();
        println!(
            "guest outages (running nowhere): n={n}, p50 {:.1} s, p90 {:.1} s, max {max:.1} s ({})",
            outages[n / 2],
            outages[(n * 9 / 10).min(n - 1)],
            worst_outage.1
        );
    }
    println!(
        "at-rest checks (every guest once, rules kept): {}",
        soak.at_rest_checks
    );
    println!(
        "config writes: {tried} tried, {} acknowledged, {} lost {lost:?}",
        acked.len(),
        lost.len()
    );
    println!("watchdog fences: {}", fences(&run_dirs));
    let failed = !doubles.is_empty() || !unsettled.is_empty() || !lost.is_empty();
    // `exit` runs no destructors: tear the lab down (daemons, guests, namespaces) first.
    drop(soak);
    std::process::exit(i32::from(failed));
}
