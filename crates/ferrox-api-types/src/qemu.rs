//! `/nodes/{node}/qemu`: guests, their configs and status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A row of `GET /nodes/{node}/qemu` and the reply of `status/current`, which adds
/// `ha` and `agent`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GuestStatus {
    pub vmid: u32,
    pub name: String,
    /// `running` or `stopped`.
    pub status: String,
    /// What QEMU says: `running`, `paused`, `prelaunch`, ... or `stopped`.
    pub qmpstatus: String,
    pub cpus: u64,
    pub maxmem: u64,
    pub maxdisk: u64,
    pub disk: u64,
    pub netin: u64,
    pub netout: u64,
    /// CPU use, 0..cpus.
    pub cpu: f64,
    pub mem: u64,
    pub memhost: u64,
    pub diskread: u64,
    pub diskwrite: u64,
    pub uptime: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `kvm` or `tcg` (a Ferrox addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaManaged>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HaManaged {
    pub managed: u8,
}

/// A row of `GET /nodes/{node}/qemu/{vmid}/pending`: the current value, the pending
/// one, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PendingEntry {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// `GET /nodes/{node}/qemu/{vmid}/migrate`: whether and where the guest can go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MigratePreconditions {
    pub running: u8,
    pub allowed_nodes: Vec<String>,
    pub not_allowed_nodes: BTreeMap<String, NotAllowed>,
    pub local_disks: Vec<LocalDisk>,
    pub local_resources: Vec<String>,
    #[serde(rename = "mapped-resources")]
    pub mapped_resources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotAllowed {
    pub reason: String,
    /// The CPU flags (or model) the node lacks for the guest's CPU (a Ferrox extension).
    #[serde(
        rename = "missing-cpu-flags",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub missing_cpu_flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalDisk {
    pub drivename: String,
    pub volid: String,
    /// Virtual size in bytes.
    pub size: u64,
}

/// A row of `GET /cluster/qemu/cpu-flags` and `GET /nodes/{node}/capabilities/qemu/cpu-flags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CpuFlag {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The nodes whose CPU offers the flag with the asked accelerator.
    #[serde(rename = "supported-on")]
    pub supported_on: Vec<String>,
}

/// A custom CPU model (`GET /cluster/qemu/custom-cpu-models[/{cputype}]`), as
/// `cpu-models.conf` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CustomCpuModel {
    /// `custom-NAME`.
    pub cputype: String,
    #[serde(rename = "reported-model")]
    pub reported_model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<u8>,
    #[serde(
        rename = "hv-vendor-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hv_vendor_id: Option<String>,
    #[serde(rename = "phys-bits", default, skip_serializing_if = "Option::is_none")]
    pub phys_bits: Option<String>,
    #[serde(
        rename = "guest-phys-bits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub guest_phys_bits: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// The digest of `cpu-models.conf`.
    pub digest: String,
}

/// One node in `GET /cluster/qemu/cpu-baseline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeCpuBaseline {
    pub node: String,
    /// `GenuineIntel`, `AuthenticAMD`; empty while the node has not told its CPU.
    pub vendor: String,
    /// The host CPU's model name.
    pub cpu: String,
    /// The accelerator the baseline was asked for on this node.
    pub accel: String,
    /// The highest built-in model the node runs (`qemu64`, `x86-64-v2`, ... `x86-64-v4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The x86-64 level of that model (`x86-64-v1` ... `x86-64-v4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The next model up, and the flags the node lacks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lacks: Vec<String>,
    /// Why nothing is known (no record yet, accelerator not available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
    /// Flags hidden by the test-only `--cpu-flag-mask`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
}

/// `GET /cluster/qemu/cpu-baseline` (a Ferrox extension): the highest built-in CPU model
/// every node runs, so that guests with it can live-migrate anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CpuBaseline {
    /// The highest model every node that told its CPU runs; absent when one runs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub nodes: Vec<NodeCpuBaseline>,
}

/// `POST .../vncproxy` and `POST .../termproxy`: a one-time ticket for the guest's
/// console, to be passed with `port` to `GET .../vncwebsocket` within 40 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsoleTicket {
    pub user: String,
    pub ticket: String,
    /// Names the session (Proxmox VE's VNC port); nothing listens on it.
    pub port: u16,
    pub upid: String,
    /// The node's certificate (PEM), as Proxmox VE returns it from `vncproxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// With `generate-password=1`: the VNC password to use instead of the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A row of `GET /nodes/{node}/qemu/{vmid}/snapshot`: a snapshot, or (`name: current`)
/// the guest as it is now, with the snapshot it builds on as `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotEntry {
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Creation time (Unix seconds); snapshots only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaptime: Option<i64>,
    /// 1 when the snapshot includes the RAM; snapshots only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmstate: Option<u8>,
    /// `prepare` or `delete` while a snapshot is being taken or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapstate: Option<String>,
    /// 1 when the guest runs; `current` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u8>,
    /// The config's digest; `current` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A row of `GET /nodes/{node}/qemu/{vmid}/snapshot/{snapname}`: `rollback`, `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotCommand {
    pub cmd: String,
}
