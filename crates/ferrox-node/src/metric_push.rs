//! Pushes this node's figures to the external metric servers of `status.cfg` after every
//! collection round, as Proxmox VE's `pvestatd` does: InfluxDB line protocol over UDP or
//! HTTP(S) (`/api/v2/write`), Graphite plaintext over UDP or TCP, with Proxmox VE's
//! measurement names, tags and paths (so its Grafana dashboards work).
//!
//! Each server has its own sender thread behind a bounded queue: a slow or unreachable
//! server never blocks the collector; a round that does not fit is dropped, counted and
//! logged.

use crate::Node;
use ferrox_types::status_config::{MetricServer, ServerKind, StatusConfig};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const STATUS_CFG: &str = "status.cfg";

/// Rounds a sender may fall behind before new ones are dropped.
const QUEUE: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Number(f64),
    Text(String),
}

/// One object's figures: its InfluxDB tags, its Graphite path below the prefix, and its
/// values by measurement (`system` holds the plain ones).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectStats {
    pub tags: Vec<(String, String)>,
    pub graphite: String,
    pub measurements: BTreeMap<String, BTreeMap<String, Field>>,
}

fn escape_tag(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
        .replace(' ', "\\ ")
}

/// InfluxDB line protocol, one line per object and measurement (timestamps in ns).
pub fn influx_lines(objects: &[ObjectStats], time_ns: i128) -> Vec<String> {
    let mut out = Vec::new();
    for o in objects {
        let tags: Vec<String> = o
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_tag(v)))
            .collect();
        for (measurement, fields) in &o.measurements {
            let values: Vec<String> = fields
                .iter()
                .filter_map(|(k, v)| match v {
                    Field::Number(n) if n.is_finite() => Some(format!("{k}={n}")),
                    Field::Number(_) => None,
                    Field::Text(t) => Some(format!("{k}=\"{}\"", t.replace('"', "\\\""))),
                })
                .collect();
            if !values.is_empty() {
                out.push(format!(
                    "{measurement},{} {} {time_ns}",
                    tags.join(","),
                    values.join(",")
                ));
            }
        }
    }
    out
}

/// Graphite plaintext (`path value timestamp`), numbers only.
pub fn graphite_lines(objects: &[ObjectStats], prefix: &str, time: i64) -> Vec<String> {
    let mut out = Vec::new();
    for o in objects {
        for (measurement, fields) in &o.measurements {
            for (key, value) in fields {
                let Field::Number(n) = value else { continue };
                if !n.is_finite() {
                    continue;
                }
                let path = if measurement == "system" {
                    format!("{prefix}.{}.{key}", o.graphite)
                } else {
                    format!("{prefix}.{}.{measurement}.{key}", o.graphite)
                };
                out.push(format!("{path} {n} {time}"));
            }
        }
    }
    out
}

/// Packs lines into chunks of at most `size` bytes (a datagram, a request body).
fn chunks(lines: &[String], size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + line.len() + 1 > size {
            out.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Sends one round to `server`.
fn send(server: &MetricServer, token: Option<&str>, lines: &[String]) -> Result<(), String> {
    let address = format!("{}:{}", server.server, server.port);
    let timeout = Duration::from_secs(u64::from(server.timeout.unwrap_or(1)));
    let mtu = server.mtu.unwrap_or(1500).saturating_sub(50).max(512) as usize;
    let datagrams = |lines: &[String]| -> Result<(), String> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        for chunk in chunks(lines, mtu) {
            socket
                .send_to(chunk.as_bytes(), &address)
                .map_err(|e| format!("{address}: {e}"))?;
        }
        Ok(())
    };
    match &server.kind {
        ServerKind::Graphite { proto, .. } if proto == "tcp" => {
            use std::net::ToSocketAddrs;
            let target = address
                .to_socket_addrs()
                .map_err(|e| format!("{address}: {e}"))?
                .next()
                .ok_or_else(|| format!("{address}: no address"))?;
            let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)
                .map_err(|e| format!("{address}: {e}"))?;
            stream
                .set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(lines.join("\n").as_bytes())
                .and_then(|_| stream.write_all(b"\n"))
                .map_err(|e| format!("{address}: {e}"))
        }
        ServerKind::Graphite { .. } => datagrams(lines),
        ServerKind::Influxdb { proto, .. } if proto == "udp" => datagrams(lines),
        ServerKind::Influxdb {
            proto,
            organization,
            bucket,
            api_path_prefix,
            max_body_size,
            ..
        } => {
            let url = format!(
                "{proto}://{address}{}/api/v2/write?org={}&bucket={}&precision=ns",
                api_path_prefix.as_deref().unwrap_or(""),
                organization.as_deref().unwrap_or("proxmox"),
                bucket.as_deref().unwrap_or("proxmox"),
            );
            let agent = ureq::AgentBuilder::new().timeout(timeout).build();
            let size = max_body_size.unwrap_or(25_000_000) as usize;
            for body in chunks(lines, size) {
                let mut request = agent.post(&url);
                if let Some(t) = token {
                    request = request.set("Authorization", &format!("Token {t}"));
                }
                request
                    .send_string(&body)
                    .map_err(|e| format!("{url}: {e}"))?;
            }
            Ok(())
        }
    }
}

struct Sender {
    config: MetricServer,
    queue: SyncSender<Vec<String>>,
    dropped: Arc<AtomicU64>,
}

impl Sender {
    /// Queues a round, or drops it (counted, logged at powers of two) when the sender
    /// still has `QUEUE` rounds to send.
    fn offer(&self, lines: Vec<String>) {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(lines) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "metric server '{}' falls behind: {dropped} rounds dropped so far",
                    self.config.id
                );
            }
        }
    }
}

/// The sender threads, one per configured server.
#[derive(Default)]
pub struct Pusher {
    senders: Mutex<BTreeMap<String, Sender>>,
}

impl Pusher {
    /// Hands this round to every enabled server of `status.cfg`; never blocks. `objects`
    /// is only built when a server is configured.
    pub fn push(&self, node: &Node, objects: impl FnOnce() -> Vec<ObjectStats>) {
        let cfg = node
            .tree
            .get(STATUS_CFG)
            .and_then(|e| StatusConfig::parse(&e.data).ok())
            .unwrap_or_default();
        let Ok(mut senders) = self.senders.lock() else {
            return;
        };
        // Servers removed or changed get a new thread (the old one ends with its queue).
        senders.retain(|id, s| cfg.servers.get(id) == Some(&s.config) && !s.config.disable);
        if cfg.servers.values().all(|s| s.disable) {
            return;
        }
        let objects = objects();
        let now = ferrox_api::auth::now();
        for server in cfg.servers.values().filter(|s| !s.disable) {
            let sender = senders
                .entry(server.id.clone())
                .or_insert_with(|| spawn_sender(node, server.clone()));
            let lines = match &server.kind {
                ServerKind::Influxdb { .. } => {
                    influx_lines(&objects, i128::from(now) * 1_000_000_000)
                }
                ServerKind::Graphite { path, .. } => graphite_lines(&objects, path, now),
            };
            sender.offer(lines);
        }
    }

    /// Rounds dropped for `id` because its queue was full.
    pub fn dropped(&self, id: &str) -> u64 {
        self.senders
            .lock()
            .ok()
            .and_then(|s| s.get(id).map(|s| s.dropped.load(Ordering::Relaxed)))
            .unwrap_or(0)
    }
}

fn spawn_sender(node: &Node, config: MetricServer) -> Sender {
    let (queue, rounds) = sync_channel::<Vec<String>>(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let token = node
        .tree
        .get(&format!("priv/metricserver/{}.pw", config.id))
        .map(|e| e.data.trim().to_string());
    let server = config.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("metrics-{}", config.id))
        .spawn(move || {
            let mut failing = false;
            for lines in rounds {
                match send(&server, token.as_deref(), &lines) {
                    Ok(()) if failing => {
                        tracing::info!("metric server '{}' reachable again", server.id);
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!("metric server '{}': {e}", server.id);
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("metric server '{}': no sender thread: {e}", config.id);
    }
    Sender {
        config,
        queue,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_stats() -> ObjectStats {
        ObjectStats {
            tags: vec![
                ("object".into(), "qemu".into()),
                ("vmid".into(), "100".into()),
                ("nodename".into(), "n1".into()),
                ("host".into(), "web one".into()),
            ],
            graphite: "qemu.100".into(),
            measurements: BTreeMap::from([(
                "system".to_string(),
                BTreeMap::from([
                    ("cpu".to_string(), Field::Number(0.5)),
                    ("name".to_string(), Field::Text("web one".into())),
                    ("bad".to_string(), Field::Number(f64::NAN)),
                ]),
            )]),
        }
    }

    #[test]
    fn influx_lines_are_proxmox_ve_s() {
        let lines = influx_lines(&[node_stats()], 1_700_000_000_000_000_000);
        assert_eq!(
            lines,
            [
                r#"system,object=qemu,vmid=100,nodename=n1,host=web\ one cpu=0.5,name="web one" 1700000000000000000"#
            ]
        );
    }

    #[test]
    fn graphite_lines_take_numbers_under_the_prefix() {
        assert_eq!(
            graphite_lines(&[node_stats()], "proxmox", 1_700_000_000),
            ["proxmox.qemu.100.cpu 0.5 1700000000"]
        );
    }

    #[test]
    fn a_sender_that_falls_behind_drops_rounds_and_counts_them() {
        let (queue, _rounds) = sync_channel(QUEUE);
        let sender = Sender {
            config: MetricServer {
                id: "slow".into(),
                kind: ServerKind::Graphite {
                    proto: "tcp".into(),
                    path: "proxmox".into(),
                },
                server: "10.0.0.1".into(),
                port: 2003,
                disable: false,
                mtu: None,
                timeout: None,
            },
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..10 {
            sender.offer(vec!["x 1 1".into()]);
        }
        assert_eq!(sender.dropped.load(Ordering::Relaxed), 10 - QUEUE as u64);
    }

    #[test]
    fn lines_are_packed_below_the_size() {
        let lines: Vec<String> = (0..10).map(|i| format!("line{i}")).collect();
        let packed = chunks(&lines, 20);
        assert!(packed.iter().all(|c| c.len() <= 20), "{packed:?}");
        assert_eq!(packed.concat().lines().count(), 10);
    }
}
