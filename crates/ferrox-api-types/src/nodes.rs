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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetworkInterface {
    pub iface: String,
    /// `bridge`, `eth`, `vlan`, `bond`, `loopback`, `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<u8>,
    /// `inet` and/or `inet6`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// `static`, `manual`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_ports: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Whether the interface exists on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_vlan_aware: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_vids: Option<String>,
    #[serde(rename = "vlan-id", default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    #[serde(
        rename = "vlan-raw-device",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vlan_raw_device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// Ferrox: `user` when the node runs with `--net-mode user` (its bridges are
    /// configured but guests get user-mode networking).
    #[serde(rename = "net-mode", default, skip_serializing_if = "Option::is_none")]
    pub net_mode: Option<String>,
}

/// `GET /nodes/{node}/subscription`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Subscription {
    /// `new`, `notfound`, `active`, `invalid`, `expired`, `suspended`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Shown to users with `Sys.Audit` on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serverid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nextduedate: Option<String>,
}

/// A row of `GET /nodes/{node}/apt/update`: an update that is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AptUpdate {
    pub package: String,
    pub title: String,
    pub version: String,
    pub old_version: String,
    pub origin: String,
    pub priority: String,
    pub section: String,
}

/// A row of `GET /nodes/{node}/capabilities/qemu/cpu`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CpuModel {
    pub name: String,
    pub vendor: String,
    /// 1 for a custom model (`cpu-models.conf`).
    pub custom: u8,
    /// 1 for Proxmox VE's built-in models (`x86-64-vN`): a QEMU model plus flags.
    #[serde(rename = "abstract", default, skip_serializing_if = "Option::is_none")]
    pub is_abstract: Option<u8>,
}

/// A row of `GET /nodes/{node}/capabilities/qemu/machines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MachineType {
    /// `pc-i440fx-7.2`, `pc-q35-7.2`, ...
    pub id: String,
    /// `i440fx` or `q35`.
    #[serde(rename = "type")]
    pub kind: String,
    /// QEMU's version of the machine type, `7.2`.
    pub version: String,
}

/// A row of `GET /nodes/{node}/replication` and `GET /cluster/replication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicationJob {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub guest: u32,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmtype: Option<String>,
}

/// `GET /nodes/{node}/time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeTime {
    pub timezone: String,
    /// Unix seconds.
    pub time: i64,
    /// Seconds since the epoch in the node's time zone (Proxmox VE's `localtime`).
    pub localtime: i64,
}

/// `GET /nodes/{node}/dns`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns3: Option<String>,
}
