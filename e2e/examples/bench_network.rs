//! Guest networking figures (issue 16): three nodes in network namespaces, Linux guests
//! (TCG) on a simple-zone vnet (one node, a bridge) and on a vxlan vnet (across nodes):
//! guest-to-guest throughput and latency, the same between the host namespaces (the limit
//! of this machine), pings lost while a guest migrates live, and the time from a node
//! being cut off to its HA guest answering pings again on another node.
//!
//! `scripts/bench-network.sh [runs]`

use ferrox_e2e::netns::{Lab, SUBNET};
use ferrox_e2e::{linux_args, linux_guest};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn stats(name: &str, unit: &str, values: &mut [f64]) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n == 0 {
        println!("{name}: no result");
        return;
    }
    println!(
        "{name}: n={n} min {:.2} {unit}, median {:.2} {unit}, max {:.2} {unit}",
        values[0],
        values[n / 2],
        values[n - 1]
    );
}

fn ok(lab: &Lab, node: usize, upid: &Value) {
    let log = lab.task_log(node, upid);
    assert!(log.starts_with("\"OK\""), "{log}");
}

fn ping(lab: &Lab, i: usize, addr: &str) -> bool {
    lab.run_in(i, &["busybox", "ping", "-c", "1", "-W", "1", addr])
        .0
}

/// Sends `line` to a guest service from node `i`'s namespace; its answer.
fn ask(lab: &Lab, i: usize, addr: &str, port: u16, line: &str, wait_s: u32) -> String {
    let cmd = format!("echo '{line}' | busybox nc -w {wait_s} {addr} {port}");
    lab.run_in(i, &["sh", "-c", &cmd]).1.trim().to_string()
}

/// `avg` of a ping summary line `round-trip min/avg/max = a/b/c ms`.
fn avg_rtt(summary: &str) -> Option<f64> {
    let values = summary.split('=').nth(1)?.trim().split(' ').next()?;
    values.split('/').nth(1)?.parse().ok()
}

fn guest(
    lab: &Lab,
    node: usize,
    vmid: &str,
    bridge: &str,
    append: &str,
    image: &(PathBuf, PathBuf),
) {
    let net = format!("virtio,bridge={bridge}");
    lab.start_guest(node, vmid, "256", &net, &linux_args(image, append));
}

/// Throughput of `blocks` × 10 KiB from the guest at `from` to the one at `to`, as the
/// receiving guest timed it, in MiB/s; asked from node `probe`.
fn throughput(lab: &Lab, probe: usize, from: &str, to: &str, blocks: u32) -> Option<f64> {
    let before = ask(lab, probe, to, 11, "", 2);
    let answer = ask(lab, probe, from, 13, &format!("{to} {blocks}"), 120);
    if !answer.contains("sent") {
        println!("  send from {from} failed: {answer}");
        return None;
    }
    let mut timed = String::new();
    wait(Duration::from_secs(30), || {
        timed = ask(lab, probe, to, 11, "", 2);
        timed != before && timed != "none"
    })?;
    let mut parts = timed.split_whitespace();
    let bytes: f64 = parts.next()?.parse().ok()?;
    let secs: f64 = parts.next()?.parse().ok()?;
    (secs > 0.0).then(|| bytes / secs / (1 << 20) as f64)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let Some(mut lab) = Lab::new() else {
        println!("skipped: needs root and ip netns");
        return;
    };
    let Some(image) = linux_guest() else {
        return;
    };
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    lab.form_cluster("netbench");
    let peers = format!("{SUBNET}.1,{SUBNET}.2,{SUBNET}.3");
    for args in [
        vec![
            "create",
            "/cluster/sdn/zones",
            "--zone",
            "loc",
            "--type",
            "simple",
        ],
        vec![
            "create",
            "/cluster/sdn/zones",
            "--zone",
            "ovl",
            "--type",
            "vxlan",
            "--peers",
            &peers,
        ],
        vec![
            "create",
            "/cluster/sdn/vnets",
            "--vnet",
            "lan",
            "--zone",
            "loc",
        ],
        vec![
            "create",
            "/cluster/sdn/vnets",
            "--vnet",
            "v1",
            "--zone",
            "ovl",
            "--tag",
            "100",
        ],
    ] {
        lab.api(1, &args).unwrap();
    }
    let upid = lab.api(1, &["set", "/cluster/sdn"]).unwrap();
    ok(&lab, 1, &upid);

    // Guests: two on n1's simple vnet, one on n1 and one on n2 on the vxlan vnet.
    guest(&lab, 1, "301", "lan", "fxip=10.88.1.11/24", &image);
    guest(&lab, 1, "302", "lan", "fxip=10.88.1.12/24", &image);
    guest(&lab, 1, "303", "v1", "fxip=10.88.2.11/24", &image);
    guest(&lab, 2, "304", "v1", "fxip=10.88.2.12/24", &image);
    assert!(
        lab.run_in(1, &["ip", "addr", "add", "10.88.1.250/24", "dev", "lan"])
            .0
    );
    assert!(
        lab.run_in(3, &["ip", "addr", "add", "10.88.2.250/24", "dev", "v1"])
            .0
    );
    assert!(
        lab.run_in(2, &["ip", "addr", "add", "10.88.2.251/24", "dev", "v1"])
            .0
    );
    for (probe, addr) in [
        (1, "10.88.1.11"),
        (1, "10.88.1.12"),
        (3, "10.88.2.11"),
        (3, "10.88.2.12"),
    ] {
        wait(Duration::from_secs(120), || ping(&lab, probe, addr)).expect("guest answers");
    }

    let blocks = 500; // 5 MiB: TCG guests move well under 1 MiB/s
    for (name, probe, from, to) in [
        ("one node (bridge)", 1, "10.88.1.11", "10.88.1.12"),
        ("across nodes (VXLAN)", 3, "10.88.2.11", "10.88.2.12"),
    ] {
        let mut mib = Vec::new();
        let mut rtt = Vec::new();
        for _ in 0..runs {
            if let Some(t) = throughput(&lab, probe, from, to, blocks) {
                mib.push(t);
            }
            if let Some(r) = avg_rtt(&ask(&lab, probe, from, 12, to, 10)) {
                rtt.push(r);
            }
        }
        stats(
            &format!("guest to guest, {name}: throughput (5 MiB)"),
            "MiB/s",
            &mut mib,
        );
        stats(
            &format!("guest to guest, {name}: ping RTT (avg of 20)"),
            "ms",
            &mut rtt,
        );
    }

    // The limit here: the same between two host namespaces (n1 -> n2 over their veths).
    let mut host_mib = Vec::new();
    let mut host_rtt = Vec::new();
    for _ in 0..runs {
        let mut listener = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(2),
                "sh",
                "-c",
                "busybox nc -l -p 5001 > /dev/null",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let cmd = format!(
            "dd if=/dev/zero bs=10240 count={blocks} 2>/dev/null | busybox nc -w 5 {SUBNET}.2 5001"
        );
        lab.run_in(1, &["sh", "-c", &cmd]);
        let _ = listener.wait();
        host_mib.push((blocks as f64 * 10240.0) / t0.elapsed().as_secs_f64() / (1 << 20) as f64);
        let (_, out) = lab.run_in(
            1,
            &[
                "busybox",
                "ping",
                "-q",
                "-c",
                "20",
                "-i",
                "0.2",
                &format!("{SUBNET}.2"),
            ],
        );
        if let Some(r) = out.lines().last().and_then(avg_rtt) {
            host_rtt.push(r);
        }
    }
    stats(
        "host namespace to host namespace: throughput (5 MiB, nc)",
        "MiB/s",
        &mut host_mib,
    );
    stats(
        "host namespace to host namespace: ping RTT (avg of 20)",
        "ms",
        &mut host_rtt,
    );

    // Pings lost while 303 migrates live between n1 and n2 (probe on n3, every 10 ms).
    let mut lost = Vec::new();
    let mut from = 1;
    for run in 0..runs {
        let to = if from == 1 { 2 } else { 1 };
        let pinger = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(3),
                "busybox",
                "ping",
                "-q",
                "-i",
                "0.01",
                "-w",
                "20",
                "10.88.2.11",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let upid = lab
            .api(
                from,
                &[
                    "create",
                    &format!("/nodes/n{from}/qemu/303/migrate"),
                    "--target",
                    &format!("n{to}"),
                    "--online",
                    "1",
                ],
            )
            .unwrap();
        ok(&lab, from, &upid);
        let out = pinger.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or("")
            .to_string();
        let nums: Vec<f64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if nums.len() >= 2 {
            println!("migration run {run}: n{from} -> n{to}: {line}");
            lost.push(nums[0] - nums[1]);
        }
        from = to;
    }
    stats(
        "pings lost during a live migration (every 10 ms, 20 s window)",
        "pings",
        &mut lost,
    );

    // Failover: the HA guest 305 on v1; its node is cut off; time until it answers again.
    guest(&lab, 1, "305", "v1", "fxip=10.88.2.15/24", &image);
    lab.api(1, &["create", "/cluster/ha/resources", "--sid", "vm:305"])
        .unwrap();
    wait(Duration::from_secs(120), || ping(&lab, 3, "10.88.2.15")).expect("305 answers");
    let mut failover = Vec::new();
    for run in 0..runs.min(3) {
        let Some(victim) = (1..=3).find(|&i| lab.link(i, "tap305i0").is_some()) else {
            break;
        };
        let probe = if victim == 3 { 2 } else { 3 };
        let t0 = Instant::now();
        lab.set_link(victim, false);
        match wait(Duration::from_secs(180), || {
            (1..=3).any(|i| i != victim && lab.link(i, "tap305i0").is_some())
                && ping(&lab, probe, "10.88.2.15")
        }) {
            Some(_) => {
                let t = t0.elapsed().as_secs_f64();
                println!("failover run {run}: n{victim} cut off, 305 answers pings after {t:.1} s");
                failover.push(t);
            }
            None => println!("failover run {run}: 305 did not answer within 180 s"),
        }
        lab.set_link(victim, true);
        std::thread::sleep(Duration::from_secs(20));
    }
    stats(
        "node cut off to its HA guest answering pings elsewhere",
        "s",
        &mut failover,
    );
}
