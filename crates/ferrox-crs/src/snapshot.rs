//! The cluster snapshot the planner works on: nodes, guests with their configured and
//! measured usage, placement rules, recent moves and planner settings. Serialised as JSON;
//! the format is documented in `docs/crs-snapshot.md`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// When the snapshot was taken (Unix seconds); the cool-down is measured from here.
    #[serde(default)]
    pub time: i64,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub guests: Vec<Guest>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub recent_moves: Vec<RecentMove>,
    #[serde(default)]
    pub settings: Settings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// Physical cores (or threads) the node offers guests.
    pub cores: f64,
    /// Memory in bytes.
    pub memory: u64,
    /// CPU in use now, in cores, guests included.
    #[serde(default)]
    pub cpu_usage: f64,
    /// Memory in use now, in bytes, guests included.
    #[serde(default)]
    pub memory_usage: u64,
    #[serde(default)]
    pub maintenance: bool,
    /// What the node's CPU offers guests (its flags, and every QEMU model with the flags
    /// it lacks); absent: unknown, no guest is refused for its CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_capability: Option<ferrox_types::cpu::AccelCpu>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Vm,
    Ct,
}

impl GuestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Vm => "vm",
            GuestKind::Ct => "ct",
        }
    }
}

/// A measured quantity: now, and the mean and peak over the last hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    #[serde(default)]
    pub now: f64,
    #[serde(default)]
    pub mean: f64,
    #[serde(default)]
    pub peak: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    pub vmid: u32,
    #[serde(default = "default_kind")]
    pub kind: GuestKind,
    pub node: String,
    #[serde(default)]
    pub ha_managed: bool,
    /// Configured virtual cores (0: no limit, counts as the whole node).
    pub cores: f64,
    /// Configured memory in bytes; a guest may always grow to this.
    pub memory: u64,
    /// Measured CPU in cores.
    #[serde(default)]
    pub cpu: Measured,
    /// Measured memory in bytes.
    #[serde(default)]
    pub memory_used: Measured,
    /// Bytes on node-local storage that a migration must copy.
    #[serde(default)]
    pub local_disk: u64,
    /// The guest opted out of balancing; only an evacuation moves it.
    #[serde(default)]
    pub no_balance: bool,
    /// What the guest's CPU model needs (QEMU model, flags); absent: runs anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_requirement: Option<ferrox_types::cpu::CpuRequirement>,
    /// Measured stall share: the sum of the guest's pressure stall information ("some",
    /// as fractions of time) for CPU, memory and IO, 0 to 3. Dynamic mode balances it as
    /// a third resource when any guest has one above zero; absent: not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<f64>,
}

fn default_kind() -> GuestKind {
    GuestKind::Vm
}

impl Guest {
    /// The resource id Proxmox VE's rules use (`vm:100`, `ct:101`).
    pub fn sid(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.vmid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityKind {
    Positive,
    Negative,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Rule {
    /// Proxmox VE's node affinity: preferred nodes with priorities (higher first); when
    /// strict, the guests may run nowhere else.
    #[serde(rename = "node-affinity")]
    NodeAffinity {
        id: String,
        resources: Vec<String>,
        nodes: BTreeMap<String, i64>,
        #[serde(default)]
        strict: bool,
    },
    /// Proxmox VE's resource affinity: keep together (positive) or apart (negative).
    /// Strict by default, as in Proxmox VE.
    #[serde(rename = "resource-affinity")]
    ResourceAffinity {
        id: String,
        resources: Vec<String>,
        affinity: AffinityKind,
        #[serde(default = "default_true")]
        strict: bool,
    },
}

fn default_true() -> bool {
    true
}

impl Rule {
    pub fn id(&self) -> &str {
        match self {
            Rule::NodeAffinity { id, .. } | Rule::ResourceAffinity { id, .. } => id,
        }
    }
    pub fn resources(&self) -> &[String] {
        match self {
            Rule::NodeAffinity { resources, .. } | Rule::ResourceAffinity { resources, .. } => {
                resources
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentMove {
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Unix seconds when the move finished.
    pub time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Balance configured cores and memory.
    Static,
    /// Balance measured usage (mean over the last hour); capacity checks still use the
    /// configured memory, which a guest may always grow to.
    Dynamic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub mode: Mode,
    /// Stop once the imbalance (coefficient of variation of node loads) is at most this.
    pub imbalance_target: f64,
    pub max_moves: usize,
    /// Migrations a node takes part in at once, as source or target.
    pub max_concurrent_per_node: usize,
    /// Configured cores a node may carry per physical core.
    pub cpu_overcommit: f64,
    /// Each moved guest must lower the imbalance by at least this divided by the number
    /// of nodes balanced, so that no migration is made for a negligible gain.
    pub min_improvement: f64,
    /// Seconds after a move during which the balancer leaves that guest where it is.
    pub cooldown: i64,
    /// Bytes of each node's memory kept for the host: guests may use the rest.
    pub host_memory_reserve: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Static,
            imbalance_target: 0.05,
            max_moves: 10,
            max_concurrent_per_node: 2,
            cpu_overcommit: 4.0,
            min_improvement: 0.01,
            cooldown: 3600,
            host_memory_reserve: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct SnapshotError {
    /// JSON path of the offending field, e.g. `guests[3].node`.
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SnapshotError {
    SnapshotError {
        field: field.into(),
        message: message.into(),
    }
}

impl Snapshot {
    /// Parses and validates a snapshot; errors name the offending field.
    pub fn from_json(text: &str) -> Result<Snapshot, SnapshotError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let snapshot: Snapshot = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." { "$".to_string() } else { path };
            err(field, inner.to_string())
        })?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("snapshot serialises")
    }

    pub fn validate(&self) -> Result<(), SnapshotError> {
        if self.nodes.is_empty() {
            return Err(err("nodes", "at least one node is required"));
        }
        let mut names = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(err(format!("nodes[{i}].name"), "must not be empty"));
            }
            if !names.insert(n.name.as_str()) {
                return Err(err(
                    format!("nodes[{i}].name"),
                    format!("node '{}' listed twice", n.name),
                ));
            }
            if !(n.cores > 0.0 && n.cores.is_finite()) {
                return Err(err(
                    format!("nodes[{i}].cores"),
                    "must be a positive number",
                ));
            }
            if n.memory == 0 {
                return Err(err(format!("nodes[{i}].memory"), "must be positive"));
            }
            if !(n.cpu_usage >= 0.0 && n.cpu_usage.is_finite()) {
                return Err(err(
                    format!("nodes[{i}].cpu_usage"),
                    "must be a non-negative number",
                ));
            }
        }
        let mut sids = BTreeSet::new();
        let mut vmids = BTreeSet::new();
        for (i, g) in self.guests.iter().enumerate() {
            if !names.contains(g.node.as_str()) {
                return Err(err(
                    format!("guests[{i}].node"),
                    format!("unknown node '{}'", g.node),
                ));
            }
            if !vmids.insert(g.vmid) {
                return Err(err(
                    format!("guests[{i}].vmid"),
                    format!("vmid {} listed twice", g.vmid),
                ));
            }
            sids.insert(g.sid());
            if !(g.cores >= 0.0 && g.cores.is_finite()) {
                return Err(err(
                    format!("guests[{i}].cores"),
                    "must be a non-negative number",
                ));
            }
            if let Some(p) = g.pressure {
                if !((0.0..=3.0).contains(&p)) {
                    return Err(err(
                        format!("guests[{i}].pressure"),
                        "must be a stall share from 0 to 3",
                    ));
                }
            }
            for (what, m) in [("cpu", &g.cpu), ("memory_used", &g.memory_used)] {
                for (k, v) in [("now", m.now), ("mean", m.mean), ("peak", m.peak)] {
                    if !(v >= 0.0 && v.is_finite()) {
                        return Err(err(
                            format!("guests[{i}].{what}.{k}"),
                            "must be a non-negative number",
                        ));
                    }
                }
            }
        }
        let mut ids = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !ids.insert(rule.id()) {
                return Err(err(
                    format!("rules[{i}].id"),
                    format!("rule '{}' listed twice", rule.id()),
                ));
            }
            for (j, sid) in rule.resources().iter().enumerate() {
                if !sids.contains(sid) {
                    return Err(err(
                        format!("rules[{i}].resources[{j}]"),
                        format!("no guest '{sid}' in the snapshot"),
                    ));
                }
            }
            match rule {
                Rule::NodeAffinity { nodes, .. } => {
                    if nodes.is_empty() {
                        return Err(err(
                            format!("rules[{i}].nodes"),
                            "must name at least one node",
                        ));
                    }
                    if let Some(bad) = nodes.keys().find(|n| !names.contains(n.as_str())) {
                        return Err(err(
                            format!("rules[{i}].nodes"),
                            format!("unknown node '{bad}'"),
                        ));
                    }
                }
                Rule::ResourceAffinity { resources, .. } => {
                    if resources.len() < 2 {
                        return Err(err(
                            format!("rules[{i}].resources"),
                            "needs at least two resources",
                        ));
                    }
                }
            }
        }
        for (i, m) in self.recent_moves.iter().enumerate() {
            if !vmids.contains(&m.vmid) {
                return Err(err(
                    format!("recent_moves[{i}].vmid"),
                    format!("no guest {}", m.vmid),
                ));
            }
        }
        let s = &self.settings;
        if s.imbalance_target.is_nan() || s.imbalance_target < 0.0 {
            return Err(err("settings.imbalance_target", "must be non-negative"));
        }
        if s.max_concurrent_per_node == 0 {
            return Err(err(
                "settings.max_concurrent_per_node",
                "must be at least 1",
            ));
        }
        if s.cpu_overcommit.is_nan() || s.cpu_overcommit <= 0.0 {
            return Err(err("settings.cpu_overcommit", "must be positive"));
        }
        if !(s.min_improvement >= 0.0 && s.min_improvement < 1.0) {
            return Err(err("settings.min_improvement", "must be in [0, 1)"));
        }
        if s.cooldown < 0 {
            return Err(err("settings.cooldown", "must be non-negative"));
        }
        if let Some((i, n)) = self
            .nodes
            .iter()
            .enumerate()
            .find(|(_, n)| s.host_memory_reserve >= n.memory)
        {
            return Err(err(
                "settings.host_memory_reserve",
                format!(
                    "{} bytes leave nothing of node '{}' for guests (nodes[{i}].memory is {})",
                    s.host_memory_reserve, n.name, n.memory
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = Snapshot::from_json(r#"{"nodes":[{"name":"a","cores":"many","memory":1}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "nodes[0].cores");
        let e = Snapshot::from_json(
            r#"{"nodes":[{"name":"a","cores":4,"memory":1}],"guests":[{"vmid":1,"node":"b","cores":1,"memory":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "guests[0].node");
        let e = Snapshot::from_json(r#"{"nodes":[{"name":"a","cores":4,"memory":1,"colour":1}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "nodes[0].colour");
        assert!(e.message.contains("colour"));
    }
}
