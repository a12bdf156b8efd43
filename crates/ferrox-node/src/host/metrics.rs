//! The metrics collector: every interval (10 s, as pvestatd) it samples the host from
//! /proc and each running guest from its QEMU process, and feeds the round-robin store
//! that answers `rrddata`. The store is saved to `rrd/rrd.json` every minute.

use crate::host;
use crate::host::rrd::Rrd;
use crate::metric_push::{Field, ObjectStats, Pusher};
use crate::Node;
use ferrox_api_types::cluster::Metric;
use ferrox_api_types::nodes::RrdRow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct HostSample {
    pub cpu: f64,
    pub iowait: f64,
}

pub struct Metrics {
    path: PathBuf,
    rrd: Mutex<Rrd>,
    latest: RwLock<HostSample>,
    /// Each byte counter's last total and when it was read, for its rate.
    counters: Mutex<BTreeMap<String, (f64, Instant)>>,
    /// The external metric servers each round is pushed to.
    pub pusher: Pusher,
}

impl Metrics {
    pub fn open(dir: &Path) -> Metrics {
        let path = dir.join("rrd.json");
        let rrd = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Metrics {
            path,
            rrd: Mutex::new(rrd),
            latest: RwLock::new(HostSample::default()),
            counters: Mutex::default(),
            pusher: Pusher::default(),
        }
    }

    pub fn latest(&self) -> HostSample {
        self.latest.read().map(|s| *s).unwrap_or_default()
    }

    pub fn rows(&self, key: &str, timeframe: &str, max: bool) -> Option<Vec<RrdRow>> {
        let now = ferrox_api::auth::now().max(0) as u64;
        self.rrd.lock().ok()?.rows(key, timeframe, max, now)
    }

    /// The rate per second of a byte counter (as Proxmox VE's RRD keeps `netin`,
    /// `diskread`, ...): 0 on its first reading and when it went backwards (a restart).
    fn rate(&self, key: &str, total: f64) -> f64 {
        let now = Instant::now();
        let Ok(mut counters) = self.counters.lock() else {
            return 0.0;
        };
        let rate = match counters.get(key) {
            Some((last, at)) if total >= *last => {
                let secs = now.duration_since(*at).as_secs_f64();
                if secs > 0.0 {
                    (total - last) / secs
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        counters.insert(key.to_string(), (total, now));
        rate
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut r) = self.rrd.lock() {
            r.remove(key);
        }
        if let Ok(mut c) = self.counters.lock() {
            c.retain(|k, _| !k.starts_with(&format!("{key}/")));
        }
    }

    fn update(&self, key: &str, values: &[(&str, f64)]) {
        let now = ferrox_api::auth::now().max(0) as u64;
        if let Ok(mut r) = self.rrd.lock() {
            r.update(key, now, values);
        }
    }

    fn save(&self) {
        let bytes = match self.rrd.lock() {
            Ok(r) => serde_json::to_vec(&*r).unwrap_or_default(),
            Err(_) => return,
        };
        if let Err(e) = ferrox_api::fsutil::write_atomic(&self.path, &bytes, 0o640) {
            tracing::warn!("saving {}: {e}", self.path.display());
        }
    }
}

/// One collection round.
fn collect(node: &Node, cpu_before: &mut host::CpuTimes, ticks: f64) {
    let cpu_now = host::cpu_times();
    let (cpu, iowait) = host::cpu_usage(*cpu_before, cpu_now);
    *cpu_before = cpu_now;
    if let Ok(mut l) = node.metrics.latest.write() {
        *l = HostSample { cpu, iowait };
    }
    let mem = host::memory();
    let root = host::filesystem(&node.opts.data_dir);
    let (netin, netout) = host::network_bytes();
    let (diskread, diskwrite) = host::disk_bytes();
    let rate = |name: &str, total: u64| node.metrics.rate(&format!("node/{name}"), total as f64);
    let load: f64 = host::loadavg()[0].parse().unwrap_or(0.0);
    let pressure = ferrox_qemu::cgroup::host_pressure().unwrap_or_default();
    let mut values = vec![
        ("cpu", cpu),
        ("iowait", iowait),
        ("loadavg", load),
        ("maxcpu", host::cpu_count() as f64),
        ("memtotal", mem.total as f64),
        ("memused", mem.used() as f64),
        ("memavailable", mem.available as f64),
        ("swaptotal", mem.swap_total as f64),
        (
            "swapused",
            mem.swap_total.saturating_sub(mem.swap_free) as f64,
        ),
        ("roottotal", root.total as f64),
        ("rootused", root.used() as f64),
        ("netin", rate("netin", netin)),
        ("netout", rate("netout", netout)),
        ("diskread", rate("diskread", diskread)),
        ("diskwrite", rate("diskwrite", diskwrite)),
    ];
    values.extend(pressure.fields());
    node.metrics.update("node", &values);
    node.guests.sample(ticks);
    for vmid in node.guests.running_vmids() {
        let (Some(fixed), Some(info)) = (node.guests.fixed(vmid), node.guests.run_info(vmid))
        else {
            continue;
        };
        let pressure = info.pressure.unwrap_or_default();
        let mut values = vec![
            ("cpu", info.cpu),
            ("maxcpu", fixed.cpus as f64),
            ("mem", info.mem as f64),
            ("memhost", info.mem as f64),
            ("maxmem", fixed.maxmem as f64),
            ("disk", 0.0),
            ("maxdisk", fixed.maxdisk as f64),
            (
                "diskread",
                node.metrics
                    .rate(&format!("qemu/{vmid}/diskread"), info.diskread as f64),
            ),
            (
                "diskwrite",
                node.metrics
                    .rate(&format!("qemu/{vmid}/diskwrite"), info.diskwrite as f64),
            ),
            ("netin", 0.0),
            ("netout", 0.0),
        ];
        values.extend(pressure.fields());
        node.metrics.update(&format!("qemu/{vmid}"), &values);
    }
    node.metrics.pusher.push(node, || push_objects(node));
}

/// This node's current values for `GET /cluster/metrics/export`, with Proxmox VE's
/// metric names (`PVE::PullMetric`): the node, its guests and its storages.
pub fn export(node: &Node) -> Vec<Metric> {
    let now = ferrox_api::auth::now();
    let metric = |id: &str, name: &str, kind: &str, value: f64| Metric {
        id: id.to_string(),
        metric: name.to_string(),
        timestamp: now,
        kind: kind.to_string(),
        value,
    };
    let gauge = |id: &str, name: &str, value: f64| metric(id, name, "gauge", value);
    let derive = |id: &str, name: &str, value: f64| metric(id, name, "derive", value);
    let id = format!("node/{}", node.opts.node_name);
    let mem = host::memory();
    let root = host::filesystem(&node.opts.data_dir);
    let (netin, netout) = host::network_bytes();
    let load = host::loadavg().map(|l| l.parse::<f64>().unwrap_or(0.0));
    let sample = node.metrics.latest();
    let mut out = vec![
        gauge(&id, "uptime", host::uptime() as f64),
        derive(&id, "net_in", netin as f64),
        derive(&id, "net_out", netout as f64),
        gauge(&id, "cpu_avg1", load[0]),
        gauge(&id, "cpu_avg5", load[1]),
        gauge(&id, "cpu_avg15", load[2]),
        gauge(&id, "cpu_max", host::cpu_count() as f64),
        gauge(&id, "cpu_current", sample.cpu),
        gauge(&id, "cpu_iowait", sample.iowait),
        gauge(&id, "mem_total", mem.total as f64),
        gauge(&id, "mem_used", mem.used() as f64),
        gauge(&id, "swap_total", mem.swap_total as f64),
        gauge(
            &id,
            "swap_used",
            mem.swap_total.saturating_sub(mem.swap_free) as f64,
        ),
        gauge(&id, "disk_total", root.total as f64),
        gauge(&id, "disk_used", root.used() as f64),
    ];
    for (vmid, fixed, info) in node.guests.listing() {
        let id = format!("qemu/{vmid}");
        if let Some(i) = &info {
            out.extend([
                gauge(&id, "cpu_current", i.cpu),
                gauge(&id, "mem_used", i.mem as f64),
                derive(&id, "disk_read", i.diskread as f64),
                derive(&id, "disk_write", i.diskwrite as f64),
                derive(&id, "net_in", 0.0),
                derive(&id, "net_out", 0.0),
            ]);
        }
        let uptime = info.as_ref().map_or(0, |i| (now - i.started).max(0));
        out.extend([
            gauge(&id, "uptime", uptime as f64),
            gauge(&id, "cpu_max", fixed.cpus as f64),
            gauge(&id, "mem_total", fixed.maxmem as f64),
            gauge(&id, "disk_total", fixed.maxdisk as f64),
        ]);
    }
    let storages = node.storage_config().unwrap_or_default();
    for s in storages
        .storages
        .values()
        .filter(|s| ferrox_storage::is_usable_on(s, &node.opts.node_name))
    {
        let space = ferrox_storage::space(s, &node.opts.node_name);
        let id = format!("storage/{}/{}", node.opts.node_name, s.id);
        out.push(gauge(&id, "disk_total", space.total as f64));
        out.push(gauge(&id, "disk_used", space.used as f64));
    }
    out
}

/// One round for the external metric servers, in Proxmox VE's shape (`pvestatd`): the
/// node (`system`, `cpustat`, `memory` measurements), each guest, each storage.
fn push_objects(node: &Node) -> Vec<ObjectStats> {
    let name = &node.opts.node_name;
    let n = |v: f64| Field::Number(v);
    let mem = host::memory();
    let root = host::filesystem(&node.opts.data_dir);
    let load = host::loadavg().map(|l| l.parse::<f64>().unwrap_or(0.0));
    let sample = node.metrics.latest();
    let mut out = vec![ObjectStats {
        tags: vec![
            ("object".into(), "nodes".into()),
            ("host".into(), name.clone()),
        ],
        graphite: format!("nodes.{name}"),
        measurements: BTreeMap::from([
            (
                "system".to_string(),
                BTreeMap::from([("uptime".to_string(), n(host::uptime() as f64))]),
            ),
            (
                "cpustat".to_string(),
                BTreeMap::from([
                    ("cpu".to_string(), n(sample.cpu)),
                    ("iowait".to_string(), n(sample.iowait)),
                    ("avg1".to_string(), n(load[0])),
                    ("avg5".to_string(), n(load[1])),
                    ("avg15".to_string(), n(load[2])),
                    ("cpus".to_string(), n(host::cpu_count() as f64)),
                ]),
            ),
            (
                "memory".to_string(),
                BTreeMap::from([
                    ("memtotal".to_string(), n(mem.total as f64)),
                    ("memused".to_string(), n(mem.used() as f64)),
                    ("memfree".to_string(), n(mem.free as f64)),
                    ("swaptotal".to_string(), n(mem.swap_total as f64)),
                    (
                        "swapused".to_string(),
                        n(mem.swap_total.saturating_sub(mem.swap_free) as f64),
                    ),
                ]),
            ),
            (
                "blockstat".to_string(),
                BTreeMap::from([
                    ("total".to_string(), n(root.total as f64)),
                    ("used".to_string(), n(root.used() as f64)),
                    ("avail".to_string(), n(root.avail as f64)),
                ]),
            ),
        ]),
    }];
    let now = ferrox_api::auth::now();
    for (vmid, fixed, info) in node.guests.listing() {
        let mut tags = vec![
            ("object".into(), "qemu".into()),
            ("vmid".into(), vmid.to_string()),
            ("nodename".into(), name.clone()),
        ];
        if !fixed.name.is_empty() {
            tags.push(("host".into(), fixed.name.clone()));
        }
        let running = info.is_some();
        let i = info.as_ref();
        let system = BTreeMap::from([
            ("name".to_string(), Field::Text(fixed.name.clone())),
            (
                "status".to_string(),
                Field::Text(if running { "running" } else { "stopped" }.into()),
            ),
            (
                "uptime".to_string(),
                n(i.map_or(0, |i| (now - i.started).max(0)) as f64),
            ),
            ("cpu".to_string(), n(i.map_or(0.0, |i| i.cpu))),
            ("cpus".to_string(), n(fixed.cpus as f64)),
            ("mem".to_string(), n(i.map_or(0, |i| i.mem) as f64)),
            ("maxmem".to_string(), n(fixed.maxmem as f64)),
            ("maxdisk".to_string(), n(fixed.maxdisk as f64)),
            (
                "diskread".to_string(),
                n(i.map_or(0, |i| i.diskread) as f64),
            ),
            (
                "diskwrite".to_string(),
                n(i.map_or(0, |i| i.diskwrite) as f64),
            ),
            (
                "template".to_string(),
                n(f64::from(u8::from(fixed.template))),
            ),
        ]);
        out.push(ObjectStats {
            tags,
            graphite: format!("qemu.{vmid}"),
            measurements: BTreeMap::from([("system".to_string(), system)]),
        });
    }
    let storages = node.storage_config().unwrap_or_default();
    for s in storages
        .storages
        .values()
        .filter(|s| ferrox_storage::is_usable_on(s, name))
    {
        let space = ferrox_storage::space(s, name);
        out.push(ObjectStats {
            tags: vec![
                ("object".into(), "storages".into()),
                ("nodename".into(), name.clone()),
                ("host".into(), s.id.clone()),
                ("type".into(), s.storage_type.clone()),
            ],
            graphite: format!("storages.{name}.{}", s.id),
            measurements: BTreeMap::from([(
                "system".to_string(),
                BTreeMap::from([
                    ("total".to_string(), n(space.total as f64)),
                    ("used".to_string(), n(space.used as f64)),
                    ("avail".to_string(), n(space.avail as f64)),
                    ("active".to_string(), n(1.0)),
                    ("enabled".to_string(), n(f64::from(u8::from(!s.disable)))),
                    ("shared".to_string(), n(f64::from(u8::from(s.shared)))),
                ]),
            )]),
        });
    }
    out
}

/// Starts the collector thread.
pub fn spawn_collector(node: Arc<Node>) -> std::io::Result<()> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut cpu = host::cpu_times();
            let mut last_save = Instant::now();
            loop {
                std::thread::sleep(node.opts.metrics_interval);
                collect(&node, &mut cpu, ticks);
                if last_save.elapsed() >= Duration::from_secs(60) {
                    node.metrics.save();
                    last_save = Instant::now();
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counters_become_rates() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::open(dir.path());
        assert_eq!(
            m.rate("node/netin", 1000.0),
            0.0,
            "no rate from one reading"
        );
        std::thread::sleep(Duration::from_millis(100));
        let r = m.rate("node/netin", 2000.0);
        // 1000 bytes in a little over 0.1 s.
        assert!(r > 1000.0 && r <= 10_000.0, "{r}");
        assert_eq!(m.rate("node/netin", 10.0), 0.0, "a counter that restarted");
        m.rate("qemu/100/diskread", 5.0);
        m.forget("qemu/100");
        assert_eq!(
            m.rate("qemu/100/diskread", 50.0),
            0.0,
            "forgotten with its guest"
        );
    }
}
