//! Node benchmarks: `GET /cluster/resources` latency with many guest configs, idle daemon
//! memory, and the time from the start call to QMP `running`.
//!
//! `cargo build --release -p ferrox-cli && cargo run --release -p ferrox-cli --example bench_node`
//! (arguments: guest counts, default `1000 10000`); `push [guests]`: the cost of pushing to
//! external metric servers. Uses the `ferrox` binary next to it.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ferrox_cli::client::tls_agent(None).expect("TLS setup")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Node {
    child: std::process::Child,
    base: String,
    token: String,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run")) {
            for e in entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            {
                if let Ok(pid) = std::fs::read_to_string(e.path()) {
                    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                }
            }
        }
    }
}

fn start(guests: u32, accel: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("etc/nodes/bench/qemu-server");
    std::fs::create_dir_all(&conf).expect("mkdir");
    for i in 0..guests {
        let vmid = 1000 + i;
        std::fs::write(
            conf.join(format!("{vmid}.conf")),
            format!("name: guest{vmid}\nmemory: 2048\ncores: 2\nscsi0: local:{vmid}/vm-{vmid}-disk-0.qcow2,size=32G\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\ntags: bench\n"),
        )
        .expect("write config");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let exe = std::env::current_exe().expect("exe");
    let ferrox = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("ferrox");
    let child = Command::new(&ferrox)
        .args(["node", "serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "bench",
            "--root-password",
            "secret1",
            "--accel",
            accel,
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it with cargo build --release -p ferrox-cli)",
                ferrox.display()
            )
        });
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = agent();
    let base = format!("https://127.0.0.1:{port}/api2/json");
    let login: Value = agent
        .post(&format!("{base}/access/ticket"))
        .send_form(&[("username", "root@pam"), ("password", "secret1")])
        .expect("login")
        .into_json()
        .expect("json");
    let ticket = login["data"]["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let csrf = login["data"]["CSRFPreventionToken"]
        .as_str()
        .expect("csrf")
        .to_string();
    let tok: Value = agent
        .post(&format!("{base}/access/users/root@pam/token/bench"))
        .set("Cookie", &format!("PVEAuthCookie={ticket}"))
        .set("CSRFPreventionToken", &csrf)
        .send_form(&[("privsep", "0")])
        .expect("token")
        .into_json()
        .expect("json");
    let token = format!(
        "PVEAPIToken=root@pam!bench={}",
        tok["data"]["value"].as_str().expect("secret")
    );
    Node {
        child,
        base,
        token,
        agent,
        dir,
    }
}

impl Node {
    fn get(&self, path: &str) -> Value {
        self.agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &self.token)
            .call()
            .expect(path)
            .into_json()
            .expect("json")
    }
    fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.agent
            .post(&format!("{}{path}", self.base))
            .set("Authorization", &self.token)
            .send_form(form)
            .expect(path)
            .into_json()
            .expect("json")
    }
    fn wait(&self, upid: &str) {
        loop {
            let s = self.get(&format!("/nodes/bench/tasks/{upid}/status"));
            if s["data"]["status"] == "stopped" {
                assert_eq!(s["data"]["exitstatus"], "OK", "{s}");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The cost of pushing to external metric servers at `guests` guests: the daemon's CPU
/// over `seconds` without servers, then with an InfluxDB (UDP) and a Graphite (TCP)
/// server (local sockets counting the bytes), at the default 10 s interval.
fn push_cost(guests: u32, seconds: u64) {
    let node = start(guests, "kvm");
    std::thread::sleep(Duration::from_secs(12));
    let pid = node.child.id();
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let idle_cpu = cpu_seconds(pid) - before;

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let udp_port = udp.local_addr().expect("addr").port();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let tcp_port = tcp.local_addr().expect("addr").port();
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (b1, b2) = (bytes.clone(), bytes.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = udp.recv(&mut buf) {
            b1.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    });
    std::thread::spawn(move || {
        for mut stream in tcp.incoming().flatten() {
            let mut sink = Vec::new();
            if let Ok(n) = std::io::Read::read_to_end(&mut stream, &mut sink) {
                b2.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    node.post(
        "/cluster/metrics/server/influx",
        &[
            ("type", "influxdb"),
            ("server", "127.0.0.1"),
            ("port", &udp_port.to_string()),
        ],
    );
    node.post(
        "/cluster/metrics/server/carbon",
        &[
            ("type", "graphite"),
            ("server", "127.0.0.1"),
            ("port", &tcp_port.to_string()),
            ("proto", "tcp"),
        ],
    );
    std::thread::sleep(Duration::from_secs(12));
    let start_bytes = bytes.load(std::sync::atomic::Ordering::Relaxed);
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let push_cpu = cpu_seconds(pid) - before;
    let sent = bytes.load(std::sync::atomic::Ordering::Relaxed) - start_bytes;
    println!(
        "metrics push, {guests} guests, {seconds} s at the 10 s interval: daemon CPU {:.2} % without servers, {:.2} % with InfluxDB (UDP) + Graphite (TCP); {:.0} bytes/s to both",
        idle_cpu / seconds as f64 * 100.0,
        push_cpu / seconds as f64 * 100.0,
        sent as f64 / seconds as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("push") {
        let guests = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
        push_cost(guests, 60);
        return;
    }
    let counts: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1000, 10000]
    } else {
        counts
    };
    for n in counts {
        let node = start(n, "kvm");
        std::thread::sleep(Duration::from_secs(2));
        let idle = rss_kib(node.child.id());
        let mut times = Vec::new();
        for _ in 0..20 {
            node.get("/cluster/resources");
        }
        let v = node.get("/cluster/resources");
        assert!(v["data"].as_array().expect("list").len() > n as usize);
        for _ in 0..200 {
            // Latency until the whole body has arrived (the client's JSON parsing excluded).
            let t = Instant::now();
            let body = node
                .agent
                .get(&format!("{}/cluster/resources", node.base))
                .set("Authorization", &node.token)
                .call()
                .expect("resources")
                .into_string()
                .expect("body");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(body.len() > n as usize * 100);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "cluster/resources with {n} guests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; daemon RSS idle {} MiB, after {} MiB",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1],
            idle / 1024,
            rss_kib(node.child.id()) / 1024
        );
    }
    for accel in ["kvm", "tcg"] {
        let node = start(0, accel);
        println!(
            "idle daemon RSS with no guests: {} MiB",
            rss_kib(node.child.id()) / 1024
        );
        let r = node.post(
            "/nodes/bench/qemu",
            &[("vmid", "100"), ("memory", "256"), ("scsi0", "local:1")],
        );
        node.wait(r["data"].as_str().expect("upid"));
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let r = node.post("/nodes/bench/qemu/100/status/start", &[]);
            let upid = r["data"].as_str().expect("upid").to_string();
            loop {
                let s = node.get("/nodes/bench/qemu/100/status/current");
                if s["data"]["qmpstatus"] == "running" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            node.wait(&upid);
            let r = node.post("/nodes/bench/qemu/100/status/stop", &[]);
            node.wait(r["data"].as_str().expect("upid"));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "start call -> QMP running ({accel}, 256 MiB, 1 disk), 10 runs: min {:.0} ms, median {:.0} ms, max {:.0} ms",
            times[0],
            percentile(&times, 0.5),
            times[times.len() - 1]
        );
    }
}
