//! Cluster benchmarks on three local daemons: commit latency and throughput of config
//! writes through the API, and live-migration downtime and total time for an idle guest
//! (firmware only) and a busy one (a bare-metal payload dirtying all its RAM, from
//! `shared/spec/qemu-on-these-machines.md` §1.4), under KVM and TCG.
//!
//! `scripts/bench-cluster.sh [runs]` (builds the release binary first).

use ferrox_e2e::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{name}: n={} p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms, max {:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        mean,
        ms[ms.len() - 1]
    );
}

fn cluster(accel: &str) -> Vec<Daemon> {
    local_cluster(3, "bench", accel, &[])
}

fn leader_index(nodes: &[Daemon]) -> usize {
    let r = nodes[0].request("GET", "/cluster/status", &nodes[0].login(), &[]);
    let leader = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "cluster")
        .and_then(|e| e["leader"].as_str())
        .unwrap()
        .to_string();
    nodes.iter().position(|d| d.name == leader).unwrap()
}

fn commit_latency(runs: usize) {
    let nodes = cluster("tcg");
    let leader = leader_index(&nodes);
    let follower = (leader + 1) % 3;
    for (label, idx) in [("leader", leader), ("follower", follower)] {
        let d = &nodes[idx];
        let auth = d.login();
        let vmid = format!("{}", 500 + idx);
        d.task_ok(
            &auth,
            "POST",
            &format!("/nodes/{}/qemu", d.name),
            &[("vmid", &vmid), ("memory", "64")],
        );
        let path = format!("/nodes/{}/qemu/{vmid}/config", d.name);
        let mut ms = Vec::new();
        for i in 0..runs {
            let t = Instant::now();
            let r = d.request("PUT", &path, &auth, &[("description", &format!("w{i}"))]);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r.status, 200, "{r:?}");
        }
        summary(
            &format!("config write on the {label} ({}), API to commit", d.name),
            ms,
        );
    }
    // Throughput: 8 clients, each on its own guest, spread over the nodes, for 10 s.
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for c in 0..8usize {
        let d = &nodes[c % 3];
        let auth = d.login();
        let vmid = format!("{}", 600 + c);
        d.task_ok(
            &auth,
            "POST",
            &format!("/nodes/{}/qemu", d.name),
            &[("vmid", &vmid), ("memory", "64")],
        );
        let url = format!("{}/json/nodes/{}/qemu/{vmid}/config", d.base, d.name);
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let agent = insecure_agent();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let ok = agent
                    .put(&url)
                    .set(
                        "Cookie",
                        &format!("PVEAuthCookie={}", auth.ticket.as_deref().unwrap()),
                    )
                    .set("CSRFPreventionToken", auth.csrf.as_deref().unwrap())
                    .send_form(&[("description", &format!("t{i}"))])
                    .is_ok();
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "throughput: {:.0} config writes/s (8 clients over 3 nodes, 10 s)",
        done.load(Ordering::Relaxed) as f64 / 10.0
    );
}

/// Migrates `vmid` back and forth `runs` times; prints QEMU's downtime, the hand-over,
/// the total downtime and the task's wall time.
fn migrations(nodes: &[Daemon], vmid: &str, label: &str, runs: usize) {
    let (mut qemu, mut total_down, mut wall) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (from, to) = if run % 2 == 0 {
            (&nodes[0], &nodes[1])
        } else {
            (&nodes[1], &nodes[0])
        };
        let auth = from.login();
        let t = Instant::now();
        let upid = from.task_ok(
            &auth,
            "POST",
            &format!("/nodes/{}/qemu/{vmid}/migrate", from.name),
            &[("target", &to.name), ("online", "1")],
        );
        wall.push(t.elapsed().as_secs_f64() * 1000.0);
        let log = from.request(
            "GET",
            &format!("/nodes/{}/tasks/{upid}/log", from.name),
            &auth,
            &[("limit", "1000")],
        );
        for line in log.body["data"].as_array().unwrap() {
            let text = line["t"].as_str().unwrap_or("");
            // "VM 300 running on 'n2': downtime 16 ms (QEMU 4 ms + hand-over 12 ms)"
            if let Some(rest) = text
                .split("downtime ")
                .nth(1)
                .filter(|_| text.contains("hand-over"))
            {
                let num = |s: &str| s.split_whitespace().next().unwrap().parse::<f64>().unwrap();
                total_down.push(num(rest));
                qemu.push(num(text.split("(QEMU ").nth(1).unwrap()));
            }
        }
    }
    summary(&format!("{label}: QEMU downtime"), qemu);
    summary(&format!("{label}: downtime incl. hand-over"), total_down);
    summary(&format!("{label}: migrate call to task end"), wall);
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    commit_latency(runs.max(100) * 3);
    let payload_dir = tempfile::tempdir().unwrap();
    let payload = build_payload(payload_dir.path(), "mbdirty", DIRTY_PAYLOAD)
        .expect("building the busy payload needs binutils (as, ld)");
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    for accel in ["kvm", "tcg"] {
        if accel == "kvm" && !kvm {
            println!("KVM not usable: skipping KVM migrations");
            continue;
        }
        let nodes = cluster(accel);
        let shared = tempfile::tempdir().unwrap();
        add_shared_storage(&nodes[0], shared.path());
        let auth = nodes[0].login();
        let args = format!("-kernel {}", payload.display());
        nodes[0].task_ok(
            &auth,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", "700"), ("memory", "256"), ("scsi0", "shared:1")],
        );
        nodes[0].task_ok(
            &auth,
            "POST",
            "/nodes/n1/qemu",
            &[("vmid", "701"), ("memory", "256"), ("args", &args)],
        );
        for vmid in ["700", "701"] {
            nodes[0].task_ok(
                &auth,
                "POST",
                &format!("/nodes/n1/qemu/{vmid}/status/start"),
                &[],
            );
        }
        std::thread::sleep(Duration::from_secs(5));
        migrations(&nodes, "700", &format!("{accel} idle 256 MiB"), runs);
        if accel == "kvm" {
            migrations(
                &nodes,
                "701",
                &format!("{accel} busy 256 MiB (all RAM dirtied)"),
                runs,
            );
        } else {
            // TCG runs the payload ~40x faster than KVM: it dirties faster than any link.
            println!("tcg busy: not measured (the payload outruns the migration under TCG)");
        }
        for d in &nodes {
            for vmid in ["700", "701"] {
                let _ = d.request(
                    "POST",
                    &format!("/nodes/{}/qemu/{vmid}/status/stop", d.name),
                    &d.login(),
                    &[],
                );
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
