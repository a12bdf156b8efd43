//! `/nodes` and `/nodes/{node}`: a node's status, metrics and network. The rows of
//! `GET /nodes` are `cluster::Resource`s of type `node`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeStatus {
    pub uptime: u64,
    pub idle: u64,
    /// 1, 5 and 15 minute load averages, as strings (Proxmox VE's format).
    pub loadavg: Vec<String>,
    pub kversion: String,
    #[serde(rename = "current-kernel")]
    pub current_kernel: Kernel,
    #[serde(rename = "boot-info")]
    pub boot_info: BootInfo,
    pub cpuinfo: CpuInfo,
    /// CPU use, 0..1.
    pub cpu: f64,
    /// IO wait, 0..1.
    pub wait: f64,
    pub memory: Memory,
    pub swap: Space,
    pub ksm: Ksm,
    pub rootfs: Space,
    pub pveversion: String,
    /// `kvm` or `tcg`: how this node runs guests (a Ferrox addition).
    pub accelerator: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Kernel {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootInfo {
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CpuInfo {
    pub model: String,
    pub sockets: u32,
    pub cores: u32,
    pub cpus: u32,
    pub hvm: String,
    pub user_hz: u32,
}

/// Bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Memory {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    pub available: u64,
}

/// Bytes; `avail` is what an unprivileged writer may still use (file systems only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Space {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avail: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ksm {
    pub shared: u64,
}

/// A row of `rrddata` (node or guest): the start of the interval and one number per
/// metric (absent where the round-robin archive has no value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrdRow {
    /// Unix seconds.
    pub time: u64,
    #[serde(flatten)]
    pub values: std::collections::BTreeMap<String, f64>,
}

/// A row of `GET /nodes/{node}/network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkInterface {
    pub iface: String,
    /// `bridge`, `eth`, `vlan`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_ports: Option<String>,
}
