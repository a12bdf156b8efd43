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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalDisk {
    pub drivename: String,
    pub volid: String,
}
