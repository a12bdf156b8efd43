//! `/cluster/ha`: HA resources, rules and status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A row of `GET /cluster/ha/resources` and the reply of `GET .../resources/{sid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HaResource {
    pub sid: String,
    /// `vm` or `ct`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `started`, `stopped`, `ignored`, `disabled`.
    pub state: String,
    pub max_restart: u32,
    pub max_relocate: u32,
    pub failback: u8,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A row of `GET /cluster/ha/rules` and the reply of `GET .../rules/{rule}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HaRule {
    pub rule: String,
    /// `node-affinity` or `resource-affinity`.
    #[serde(rename = "type")]
    pub kind: String,
    pub digest: String,
    pub order: u64,
    /// Service ids, comma-separated.
    pub resources: String,
    /// Node affinity: `node[:priority]`, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<u8>,
    /// Resource affinity: `positive` or `negative`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A row of `GET /cluster/ha/status/current`: the quorum, the master, the fencing (arm)
/// state, an LRM or a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HaStatusEntry {
    pub id: String,
    /// `quorum`, `master`, `lrm`, `service`.
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorate: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relocate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Fencing: `armed`, `standby`, `disarming`, `disarmed`.
    #[serde(
        rename = "armed-state",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub armed_state: Option<String>,
    /// Fencing while disarmed: `freeze` or `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_mode: Option<String>,
}

/// `GET /cluster/ha/status/manager_status`: the CRM's and the LRMs' own status files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HaManagerStatus {
    /// The CRM's `manager_status` (master, node states, service states).
    pub manager_status: serde_json::Value,
    /// Each node's `lrm_status`, by node name.
    pub lrm_status: BTreeMap<String, serde_json::Value>,
    pub quorum: HaQuorum,
}

/// `GET /cluster/ha/history` (a Ferrox extension): the master's node and service state
/// changes, oldest first — fence events and recovery timelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HaHistoryEntry {
    /// Unix time of the change (the master's clock).
    pub time: i64,
    /// `node` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node name or the service id.
    pub id: String,
    pub from: String,
    pub to: String,
    /// The service's node after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HaQuorum {
    pub node: String,
    pub quorate: u8,
}

/// `POST /cluster/ha/resources/{sid}/migrate` and `.../relocate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HaMoveRequested {
    pub sid: String,
    #[serde(rename = "requested-node")]
    pub requested_node: String,
}
