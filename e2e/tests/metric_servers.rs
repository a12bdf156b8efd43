//! External metric servers (`/cluster/metrics/server`, `status.cfg`): every node pushes
//! its figures after each collection round, in Proxmox VE's InfluxDB and Graphite
//! formats. InfluxDB is Debian's `influxdb` (1.x, UDP input), started by the test;
//! Graphite is received by the test's own TCP listener (a plaintext line reader: Debian's
//! carbon would need its own daemon and whisper files to read back).

use ferrox_e2e::*;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn graphite_over_tcp_gets_the_node_guest_and_storage_paths() {
    let d = start_daemon("tcg");
    let auth = d.login();
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("name", "pushed"), ("memory", "64")],
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let r = d.request(
        "POST",
        "/cluster/metrics/server/carbon",
        &auth,
        &[
            ("type", "graphite"),
            ("server", "127.0.0.1"),
            ("port", &port),
            ("proto", "tcp"),
            ("path", "lab.pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    listener.set_nonblocking(false).unwrap();
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let lines: Vec<String> = BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    for path in [
        "lab.pve.nodes.pve1.cpustat.cpu ",
        "lab.pve.nodes.pve1.memory.memtotal ",
        "lab.pve.qemu.100.maxmem 67108864 ",
        "lab.pve.storages.pve1.local.total ",
    ] {
        assert!(has(path), "no '{path}' in {lines:?}");
    }
    // Every line is `path value timestamp`.
    assert!(lines.iter().all(|l| l.split(' ').count() == 3), "{lines:?}");
    let listed = d.request("GET", "/cluster/metrics/server", &auth, &[]);
    assert_eq!(listed.body["data"][0]["id"], "carbon");
    assert_eq!(listed.body["data"][0]["proto"], "tcp");
}

#[test]
fn bad_metric_servers_are_refused_naming_the_parameter_and_nothing_is_written() {
    let d = start_daemon("tcg");
    let auth = d.login();
    let before = d.request("GET", "/cluster/metrics/server", &auth, &[]).body["data"].clone();
    for (form, field) in [
        (
            vec![
                ("type", "graphite"),
                ("server", "bad host"),
                ("port", "2003"),
            ],
            "server",
        ),
        (
            vec![
                ("type", "graphite"),
                ("server", "10.0.0.1"),
                ("port", "70000"),
            ],
            "port",
        ),
        (
            vec![
                ("type", "graphite"),
                ("server", "10.0.0.1"),
                ("port", "2003"),
                ("proto", "https"),
            ],
            "proto",
        ),
        (
            vec![
                ("type", "graphite"),
                ("server", "10.0.0.1"),
                ("port", "2003"),
                ("path", "a..b"),
            ],
            "path",
        ),
        (vec![("type", "influxdb"), ("port", "8089")], "server"),
        (
            vec![
                ("type", "graphite"),
                ("server", "10.0.0.1"),
                ("port", "2003"),
                ("token", "x"),
            ],
            "token",
        ),
    ] {
        let r = d.request("POST", "/cluster/metrics/server/bad", &auth, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    let r = d.request(
        "POST",
        "/cluster/metrics/server/9bad",
        &auth,
        &[
            ("type", "graphite"),
            ("server", "10.0.0.1"),
            ("port", "2003"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["id"].is_string());
    let after = d.request("GET", "/cluster/metrics/server", &auth, &[]).body["data"].clone();
    assert_eq!(before, after);
    assert!(
        !d.etc().join("status.cfg").exists()
            || std::fs::read_to_string(d.etc().join("status.cfg"))
                .unwrap()
                .is_empty()
    );

    // A server that cannot be reached does not hold up the node (its sender fails or
    // falls behind on its own thread; dropping is tested in `metric_push`).
    let r = d.request(
        "POST",
        "/cluster/metrics/server/void",
        &auth,
        &[
            ("type", "graphite"),
            ("server", "10.255.255.1"),
            ("port", "2003"),
            ("proto", "tcp"),
            ("timeout", "5"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..5 {
        let start = Instant::now();
        let row = d.request("GET", "/cluster/metrics/server/void", &auth, &[]);
        assert_eq!(row.status, 200, "{row:?}");
        let status = d.request("GET", "/nodes/pve1/status", &auth, &[]);
        assert_eq!(status.status, 200);
        eprintln!(
            "API answers in {:?} with an unreachable metric server",
            start.elapsed()
        );
    }
    let r = d.request("DELETE", "/cluster/metrics/server/void", &auth, &[]);
    assert_eq!(r.status, 200, "{r:?}");
}

struct Influx {
    child: Child,
    http: String,
    udp: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn influxd() -> Option<Influx> {
    let binary = ["/usr/bin/influxd", "/usr/sbin/influxd"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists())?;
    let dir = tempfile::tempdir().ok()?;
    let (http, udp, rpc) = (free_port(), free_port(), free_port());
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n[http]\n  bind-address = \"127.0.0.1:{http}\"\n[[udp]]\n  enabled = true\n  bind-address = \"127.0.0.1:{udp}\"\n  database = \"proxmox\"\n  batch-timeout = \"100ms\"\n",
        d = dir.path().display()
    );
    let path = dir.path().join("influxdb.conf");
    std::fs::write(&path, config).ok()?;
    let child = Command::new(binary)
        .arg("-config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let influx = Influx {
        child,
        http: format!("http://127.0.0.1:{http}"),
        udp,
        _dir: dir,
    };
    let start = Instant::now();
    while ureq::get(&format!("{}/ping", influx.http)).call().is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(influx)
}

#[test]
fn influxdb_over_udp_stores_proxmox_ve_s_measurements() {
    let Some(influx) = influxd() else {
        eprintln!(
            "SKIPPED: influxd (Debian's influxdb) is not installed; scripts/test.sh installs it"
        );
        return;
    };
    let udp = influx.udp.to_string();
    let query = |q: &str| -> serde_json::Value {
        ureq::post(&format!("{}/query", influx.http))
            .send_form(&[("db", "proxmox"), ("q", q)])
            .ok()
            .and_then(|r| r.into_json().ok())
            .unwrap_or_default()
    };
    query("CREATE DATABASE proxmox");
    let d = start_daemon("tcg");
    let auth = d.login();
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("name", "influx"), ("memory", "64")],
    );
    let r = d.request(
        "POST",
        "/cluster/metrics/server/influx",
        &auth,
        &[
            ("type", "influxdb"),
            ("server", "127.0.0.1"),
            ("port", &udp),
            ("proto", "udp"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let start = Instant::now();
    let series = loop {
        let answer =
            query("SELECT last(memtotal) FROM memory WHERE object='nodes' AND host='pve1'");
        let values = answer["results"][0]["series"][0]["values"].clone();
        if values.is_array() {
            break values;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no data: {answer}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(series[0][1].as_f64().unwrap_or(0.0) > 0.0, "{series}");
    let guest = query(
        "SELECT last(maxmem) FROM system WHERE object='qemu' AND vmid='100' AND nodename='pve1'",
    );
    assert_eq!(
        guest["results"][0]["series"][0]["values"][0][1].as_f64(),
        Some(67108864.0),
        "{guest}"
    );
    let storage = query(
        "SELECT last(total) FROM system WHERE object='storages' AND host='local' AND type='dir'",
    );
    assert!(
        storage["results"][0]["series"][0]["values"].is_array(),
        "{storage}"
    );
}
