//! False fences under load: three daemons with the default HA timings and one HA guest
//! per node run for N minutes while both cores are saturated (a busy loop per core, a
//! disk writer with synced writes, and the TCG guests themselves). Counts watchdog fences
//! (`watchdog.log`), guests that changed process or node (HA recoveries, restarts) and
//! samples where a guest ran on two nodes. Expected: all zero.
//!
//! `scripts/bench-load-soak.sh [minutes]`

use ferrox_e2e::*;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn hogs(scratch: &std::path::Path) -> Vec<Child> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut children: Vec<Child> = (0..cores)
        .map(|_| {
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("busy loop")
        })
        .collect();
    let file = scratch.join("disk-writer");
    children.push(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do dd if=/dev/zero of={} bs=1M count=256 conv=fsync status=none; done",
                file.display()
            ))
            .spawn()
            .expect("disk writer"),
    );
    children
}

fn main() {
    let minutes: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let nodes = local_cluster(3, "soak", "tcg", &[]);
    let shared = tempfile::tempdir().unwrap();
    add_shared_storage(&nodes[0], shared.path());
    let auth = nodes[0].login();
    let vmids = [100u32, 101, 102];
    for vmid in &vmids {
        let id = vmid.to_string();
        nodes[0].task_ok(
            &auth,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", &id), ("memory", "128"), ("scsi0", "shared:1")],
        );
        let sid = format!("vm:{vmid}");
        let r = nodes[0].request("POST", "/cluster/ha/resources", &auth, &[("sid", &sid)]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    let run_dirs: Vec<PathBuf> = nodes.iter().map(|d| d.path().join("run")).collect();
    let placed = |vmid: u32| -> Option<(usize, u32)> {
        run_dirs
            .iter()
            .enumerate()
            .find_map(|(i, r)| guest_pid(r, vmid).map(|p| (i, p)))
    };
    // HA starts them where their configs are (n1); then one moves to each other node.
    wait_for("HA starts the guests", Duration::from_secs(120), || {
        vmids.iter().all(|v| placed(*v).is_some())
    });
    for (i, vmid) in vmids.iter().enumerate().skip(1) {
        let r = nodes[0].request(
            "POST",
            &format!("/cluster/ha/resources/vm:{vmid}/migrate"),
            &auth,
            &[("node", &format!("n{}", i + 1))],
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    wait_for(
        "the HA guests on their nodes",
        Duration::from_secs(180),
        || {
            vmids
                .iter()
                .enumerate()
                .all(|(i, v)| placed(*v).is_some_and(|(n, _)| n == i))
        },
    );
    let monitors: Vec<DoubleRunMonitor> = vmids
        .iter()
        .map(|v| DoubleRunMonitor::start(*v, run_dirs.clone()))
        .collect();
    let before: Vec<(usize, u32)> = vmids.iter().map(|v| placed(*v).unwrap()).collect();
    let scratch = tempfile::tempdir().unwrap();
    let mut load = hogs(scratch.path());
    println!(
        "load soak: {minutes} min, 3 nodes (2 s rounds, 7 s lease, 5 s watchdog), 3 HA guests, {} busy loops and a disk writer",
        load.len() - 1
    );
    let start = Instant::now();
    let mut changes = 0;
    let mut last = before.clone();
    let mut checks = 0u64;
    while start.elapsed() < Duration::from_secs(minutes * 60) {
        std::thread::sleep(Duration::from_secs(1));
        for (i, vmid) in vmids.iter().enumerate() {
            checks += 1;
            let now = placed(*vmid);
            if now != Some(last[i]) {
                changes += 1;
                println!(
                    "{:>6.0} s: vm:{vmid} was {:?}, now {now:?}",
                    start.elapsed().as_secs_f64(),
                    last[i]
                );
                if let Some(n) = now {
                    last[i] = n;
                }
            }
        }
    }
    for child in &mut load {
        let _ = child.kill();
        let _ = child.wait();
    }
    let fences: usize = run_dirs
        .iter()
        .map(|r| {
            std::fs::read_to_string(r.join("watchdog.log"))
                .unwrap_or_default()
                .matches("fenced this node")
                .count()
        })
        .sum();
    let doubles: usize = monitors.into_iter().map(|m| m.finish().1).sum();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load soak: {minutes} min, {checks} placement checks: fences {fences}, guests moved or restarted {changes}, double-run samples {doubles}; load average at the end {}",
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}
