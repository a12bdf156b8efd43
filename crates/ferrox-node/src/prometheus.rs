//! The cluster in Prometheus' text format, with prometheus-pve-exporter's metric names
//! and labels (`pve_up`, `pve_cpu_usage_ratio`, `pve_guest_info`, `pve_ha_state`, ...,
//! ids `node/X`, `qemu/N`, `storage/X/S`), so dashboards built for the exporter work
//! against `GET /metrics` unchanged. Pure: the caller gathers the rows.
//!
//! Written by hand rather than with a registry crate: the exposition format is a few
//! lines of grammar, and the values already exist as resource rows.

use ferrox_api_types::cluster::{ClusterStatusEntry, Resource};
use std::fmt::Write;

/// What one scrape shows.
pub struct Scrape<'a> {
    pub resources: &'a [Resource],
    pub status: &'a [ClusterStatusEntry],
    /// (version, release, repoid)
    pub version: (&'a str, &'a str, &'a str),
    /// Guests with `onboot` set: (id, node).
    pub onboot: &'a [(String, String, bool)],
}

const GUEST_HA_STATES: &[&str] = &[
    "stopped",
    "request_stop",
    "request_start",
    "request_start_balance",
    "started",
    "fence",
    "recovery",
    "migrate",
    "relocate",
    "freeze",
    "error",
];
const NODE_HA_STATES: &[&str] = &["online", "maintenance", "unknown", "fence", "gone"];
const LOCK_STATES: &[&str] = &[
    "backup",
    "clone",
    "create",
    "migrate",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspended",
    "suspending",
];

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: its header and samples.
struct Family {
    text: String,
}

impl Family {
    fn new(name: &str, kind: &str, help: &str) -> Family {
        let mut text = String::new();
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        Family { text }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(self.text, "{name}{{{}}} {value:?}", labels.join(","));
    }
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn render(scrape: &Scrape<'_>) -> String {
    let mut out = String::new();

    let mut up = Family::new("pve_up", "gauge", "Node/VM/CT-Status is online/running");
    for e in scrape.status {
        match e.kind.as_str() {
            "node" => up.sample("pve_up", &[("id", &e.id)], f64::from(e.online.unwrap_or(0))),
            "cluster" => up.sample(
                "pve_up",
                &[("id", &format!("cluster/{}", e.name))],
                f64::from(e.quorate.unwrap_or(0)),
            ),
            _ => {}
        }
    }
    for r in scrape.resources {
        match r.group() {
            "vm" => up.sample(
                "pve_up",
                &[("id", &r.id)],
                bool_value(r.status.as_deref() == Some("running")),
            ),
            "storage" => up.sample(
                "pve_up",
                &[("id", &r.id)],
                bool_value(r.status.as_deref() == Some("available")),
            ),
            _ => {}
        }
    }
    out.push_str(&up.text);

    // Per-resource gauges, from the row's fields.
    type Field = fn(&Resource) -> Option<f64>;
    let gauges: [(&str, &str, &str, Field); 11] = [
        ("pve_disk_size_bytes", "gauge", "Storage size in bytes (for type 'storage'), root image size for VMs (for types 'qemu' and 'lxc').", |r| r.maxdisk.map(|v| v as f64)),
        ("pve_disk_usage_bytes", "gauge", "Used disk space in bytes (for type 'storage'), used root image space for VMs (for types 'qemu' and 'lxc').", |r| r.disk.map(|v| v as f64)),
        ("pve_memory_size_bytes", "gauge", "Number of available memory in bytes (for types 'node', 'qemu' and 'lxc').", |r| r.maxmem.map(|v| v as f64)),
        ("pve_memory_usage_bytes", "gauge", "Used memory in bytes (for types 'node', 'qemu' and 'lxc').", |r| r.mem.map(|v| v as f64)),
        ("pve_network_transmit_bytes_total", "counter", "The amount of traffic in bytes that was sent from the guest over the network since it was started. (for types 'qemu' and 'lxc')", |r| r.netout.map(|v| v as f64)),
        ("pve_network_receive_bytes_total", "counter", "The amount of traffic in bytes that was sent to the guest over the network since it was started. (for types 'qemu' and 'lxc')", |r| r.netin.map(|v| v as f64)),
        ("pve_disk_written_bytes_total", "counter", "The amount of bytes the guest wrote to its block devices since the guest was started. (for types 'qemu' and 'lxc')", |r| r.diskwrite.map(|v| v as f64)),
        ("pve_disk_read_bytes_total", "counter", "The amount of bytes the guest read from its block devices since the guest was started. (for types 'qemu' and 'lxc')", |r| r.diskread.map(|v| v as f64)),
        ("pve_cpu_usage_ratio", "gauge", "CPU utilization (for types 'node', 'qemu' and 'lxc').", |r| r.cpu),
        ("pve_cpu_usage_limit", "gauge", "Number of available CPUs (for types 'node', 'qemu' and 'lxc').", |r| r.maxcpu.map(|v| v as f64)),
        ("pve_uptime_seconds", "gauge", "Uptime of node or virtual guest in seconds (for types 'node', 'qemu' and 'lxc').", |r| r.uptime.map(|v| v as f64)),
    ];
    for (name, kind, help, field) in gauges {
        let mut family = Family::new(name, kind, help);
        // Counters are exposed under their name without `_total` in the TYPE line.
        if kind == "counter" {
            let base = name.trim_end_matches("_total");
            family = Family::new(base, kind, help);
        }
        for r in scrape.resources {
            if let Some(v) = field(r) {
                family.sample(name, &[("id", &r.id)], v);
            }
        }
        out.push_str(&family.text);
    }
    let mut shared = Family::new(
        "pve_storage_shared",
        "gauge",
        "Whether or not the storage is shared among cluster nodes",
    );
    for r in scrape.resources.iter().filter(|r| r.kind == "storage") {
        shared.sample(
            "pve_storage_shared",
            &[("id", &r.id)],
            f64::from(r.shared.unwrap_or(0)),
        );
    }
    out.push_str(&shared.text);

    let mut ha = Family::new(
        "pve_ha_state",
        "gauge",
        "HA service status (for HA managed VMs).",
    );
    let mut lock = Family::new(
        "pve_lock_state",
        "gauge",
        "The guest's current config lock (for types 'qemu' and 'lxc')",
    );
    for r in scrape.resources {
        let states = match &*r.kind {
            "qemu" | "lxc" => GUEST_HA_STATES,
            "node" => NODE_HA_STATES,
            _ => continue,
        };
        for state in states {
            ha.sample(
                "pve_ha_state",
                &[("id", &r.id), ("state", state)],
                bool_value(r.hastate.as_deref() == Some(state)),
            );
        }
        if r.group() == "vm" {
            for state in LOCK_STATES {
                lock.sample(
                    "pve_lock_state",
                    &[("id", &r.id), ("state", state)],
                    bool_value(r.lock.as_deref() == Some(state)),
                );
            }
        }
    }
    out.push_str(&ha.text);
    out.push_str(&lock.text);

    let mut guest_info = Family::new("pve_guest_info", "gauge", "VM/CT info");
    let mut storage_info = Family::new("pve_storage_info", "gauge", "Storage info");
    for r in scrape.resources {
        let node = r.node.clone().unwrap_or_default();
        match r.group() {
            "vm" => guest_info.sample(
                "pve_guest_info",
                &[
                    ("id", &r.id),
                    ("node", &node),
                    ("name", r.name.as_deref().unwrap_or("")),
                    ("type", &r.kind),
                    ("template", &r.template.unwrap_or(0).to_string()),
                    ("tags", r.tags.as_deref().unwrap_or("")),
                ],
                1.0,
            ),
            "storage" => {
                let mut content: Vec<&str> = r
                    .content
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .collect();
                content.sort();
                storage_info.sample(
                    "pve_storage_info",
                    &[
                        ("id", &r.id),
                        ("node", &node),
                        ("storage", r.storage.as_deref().unwrap_or("")),
                        ("plugintype", r.plugintype.as_deref().unwrap_or("")),
                        ("content", &content.join(",")),
                    ],
                    1.0,
                );
            }
            _ => {}
        }
    }
    out.push_str(&guest_info.text);
    out.push_str(&storage_info.text);

    let mut node_info = Family::new("pve_node_info", "gauge", "Node info");
    let mut cluster_info = Family::new("pve_cluster_info", "gauge", "Cluster info");
    for e in scrape.status {
        match e.kind.as_str() {
            "node" => node_info.sample(
                "pve_node_info",
                &[
                    ("id", &e.id),
                    ("level", e.level.as_deref().unwrap_or("")),
                    ("name", &e.name),
                    ("nodeid", &e.nodeid.unwrap_or(0).to_string()),
                ],
                1.0,
            ),
            "cluster" => cluster_info.sample(
                "pve_cluster_info",
                &[
                    ("id", &format!("cluster/{}", e.name)),
                    ("nodes", &e.nodes.unwrap_or(0).to_string()),
                    ("quorate", &e.quorate.unwrap_or(0).to_string()),
                    ("version", &e.version.unwrap_or(0).to_string()),
                ],
                1.0,
            ),
            _ => {}
        }
    }
    out.push_str(&node_info.text);
    out.push_str(&cluster_info.text);

    let (version, release, repoid) = scrape.version;
    let mut version_info = Family::new("pve_version_info", "gauge", "Proxmox VE version info");
    version_info.sample(
        "pve_version_info",
        &[
            ("release", release),
            ("repoid", repoid),
            ("version", version),
        ],
        1.0,
    );
    out.push_str(&version_info.text);

    let mut onboot = Family::new(
        "pve_onboot_status",
        "gauge",
        "Proxmox vm config onboot value",
    );
    for (id, node, on) in scrape.onboot {
        let kind = id.split('/').next().unwrap_or("qemu");
        onboot.sample(
            "pve_onboot_status",
            &[("id", id), ("node", node), ("type", kind)],
            bool_value(*on),
        );
    }
    out.push_str(&onboot.text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_the_exporter_s_metrics() {
        let resources = vec![
            Resource {
                id: "qemu/100".into(),
                kind: "qemu".into(),
                node: Some("n1".into()),
                status: Some("running".into()),
                vmid: Some(100),
                name: Some("web \"1\"".into()),
                maxmem: Some(64 << 20),
                mem: Some(1 << 20),
                cpu: Some(0.25),
                maxcpu: Some(2),
                hastate: Some("started".into()),
                template: Some(0),
                ..Resource::default()
            },
            Resource {
                id: "storage/n1/local".into(),
                kind: "storage".into(),
                node: Some("n1".into()),
                status: Some("available".into()),
                storage: Some("local".into()),
                plugintype: Some("dir".into()),
                content: Some("rootdir,images".into()),
                maxdisk: Some(1000),
                shared: Some(0),
                ..Resource::default()
            },
        ];
        let status = vec![ClusterStatusEntry {
            kind: "node".into(),
            id: "node/n1".into(),
            name: "n1".into(),
            online: Some(1),
            nodeid: Some(1),
            level: Some(String::new()),
            ..ClusterStatusEntry::default()
        }];
        let text = render(&Scrape {
            resources: &resources,
            status: &status,
            version: ("9.2.0", "9.2", "abc"),
            onboot: &[("qemu/100".into(), "n1".into(), true)],
        });
        for line in [
            "pve_up{id=\"node/n1\"} 1.0",
            "pve_up{id=\"qemu/100\"} 1.0",
            "pve_up{id=\"storage/n1/local\"} 1.0",
            "pve_memory_size_bytes{id=\"qemu/100\"} 67108864.0",
            "pve_cpu_usage_ratio{id=\"qemu/100\"} 0.25",
            "pve_ha_state{id=\"qemu/100\",state=\"started\"} 1.0",
            "pve_ha_state{id=\"qemu/100\",state=\"fence\"} 0.0",
            "pve_guest_info{id=\"qemu/100\",node=\"n1\",name=\"web \\\"1\\\"\",type=\"qemu\",template=\"0\",tags=\"\"} 1.0",
            "pve_storage_info{id=\"storage/n1/local\",node=\"n1\",storage=\"local\",plugintype=\"dir\",content=\"images,rootdir\"} 1.0",
            "pve_node_info{id=\"node/n1\",level=\"\",name=\"n1\",nodeid=\"1\"} 1.0",
            "pve_version_info{release=\"9.2\",repoid=\"abc\",version=\"9.2.0\"} 1.0",
            "pve_onboot_status{id=\"qemu/100\",node=\"n1\",type=\"qemu\"} 1.0",
            "# TYPE pve_network_receive_bytes counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing: {line}\n{text}");
        }
    }
}
