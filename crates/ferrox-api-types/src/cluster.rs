//! `/cluster`: the resource view, status, membership, options, locks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A row of `GET /cluster/resources`: a guest, a node or a storage. The same row is a
/// node in `GET /nodes` and a member of a pool: one shape wherever a resource is listed.
/// Which fields are present depends on `type` and on what the caller may see.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Resource {
    /// `qemu/100`, `node/n1`, `storage/n1/local`.
    pub id: String,
    /// `qemu`, `lxc`, `node`, `storage`.
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Guests: `running`, `stopped`, `unknown` (its node does not answer). Nodes:
    /// `online`, `offline`. Storages: `available`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<i64>,
    /// CPU use, 0..maxcpu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxcpu: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memhost: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxdisk: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diskread: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diskwrite: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netin: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netout: Option<u64>,
    /// Running guests: pressure stall information of the guest's cgroup, the share of
    /// the last 10 s in which some of its tasks waited for CPU, memory or IO (percent;
    /// the field names of Proxmox VE's guest status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressurecpusome: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressurememorysome: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressureiosome: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Guests: the HA service state (`started`, `fence`, ...); nodes: the HA node state
    /// (`online`, `maintenance`, ...). Only where HA knows the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hastate: Option<String>,
    /// Guests: the pool the guest belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Nodes: the support level (empty without a subscription).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(
        rename = "cgroup-mode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroup_mode: Option<u8>,
    /// Nodes in `GET /nodes`: the certificate's SHA-256 fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugintype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<u8>,
}

impl Resource {
    /// The group a `type` filter of `/cluster/resources` names: guests are `vm`.
    pub fn group(&self) -> &str {
        match &*self.kind {
            "qemu" | "lxc" => "vm",
            other => other,
        }
    }
}

/// A row of `GET /cluster/status`: the cluster itself or a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClusterStatusEntry {
    /// `cluster` or `node`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorate: Option<u8>,
    /// The cluster: the store's term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The cluster: the node that leads the store (a Ferrox addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodeid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Whether the node votes in the store (a Ferrox addition: learners do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter: Option<u8>,
}

/// A member in `GET /cluster/config/nodes` and in the join information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterMember {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub name: String,
    pub nodeid: String,
    pub pve_addr: String,
    pub pve_fp: String,
    pub ring0_addr: String,
    pub quorum_votes: String,
    /// `host:port` of the node's API (a Ferrox addition).
    pub address: String,
}

/// `GET /cluster/config/join`: what a joining node needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinInfo {
    pub nodelist: Vec<ClusterMember>,
    pub preferred_node: String,
    pub totem: Totem,
    pub config_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Totem {
    pub cluster_name: String,
    pub version: String,
}

/// A node of the cluster as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberAddress {
    pub name: String,
    pub address: String,
    pub fingerprint: String,
}

/// `POST /cluster/config/nodes/{node}`: the admission of a joining node (node to node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinGrant {
    pub id: u64,
    pub secret: String,
    pub cluster_name: String,
    pub members: Vec<MemberAddress>,
}

/// A row of `GET /cluster/locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterLock {
    pub name: String,
    pub owner: String,
    /// Unix seconds.
    pub expires: u64,
}

/// `POST /cluster/locks/{name}`: granted, or who holds the lock until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LockGrant {
    pub granted: u8,
    pub owner: String,
    pub expires: u64,
}

/// `DELETE /cluster/locks/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LockRelease {
    pub released: u8,
}

/// A row of `GET /cluster/log`: the cluster log (task starts and ends, as Proxmox VE
/// writes them), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterLogEntry {
    /// Unique within the answer.
    pub uid: u64,
    /// Unix seconds.
    pub time: i64,
    /// Syslog priority (6 info, 3 error).
    pub pri: u8,
    pub tag: String,
    pub pid: u32,
    pub node: String,
    pub user: String,
    pub msg: String,
}

/// A row of `GET /cluster/backup-info/not-backed-up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotBackedUp {
    pub vmid: u32,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One value of `GET /cluster/metrics/export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metric {
    /// `node/<name>`, `qemu/<vmid>`, `storage/<node>/<id>`.
    pub id: String,
    pub metric: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// `gauge`, `counter` or `derive`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: f64,
}

/// `GET /cluster/metrics/export` (Proxmox VE nests the list in a `data` field).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct MetricsExport {
    pub data: Vec<Metric>,
}

/// A row of `GET /cluster/metrics/server` and the reply of `GET .../server/{id}`: an
/// external metric server (the InfluxDB token is never shown).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct MetricServer {
    pub id: String,
    /// `influxdb` or `graphite`.
    #[serde(rename = "type")]
    pub kind: String,
    pub server: String,
    pub port: u16,
    pub disable: u8,
    /// `udp`, `tcp` (graphite), `http`, `https` (influxdb).
    pub proto: String,
    /// Graphite: the first element of every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(
        rename = "api-path-prefix",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_path_prefix: Option<String>,
    #[serde(
        rename = "max-body-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_body_size: Option<u64>,
    #[serde(
        rename = "verify-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_certificate: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Rounds not sent because the server fell behind (counted by the node answering).
    #[serde(default)]
    pub dropped: u64,
}

/// `GET /cluster/crs/plan` (Ferrox extension): the balancing plan the CRS would carry
/// out now, computed from the live cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrsPlan {
    /// `static` (configured cores and memory) or `dynamic` (measured usage).
    pub mode: String,
    pub imbalance_before: f64,
    pub imbalance_after: f64,
    /// Migrations that may run at the same time, in order.
    pub steps: Vec<CrsPlanStep>,
    /// Why planning stopped (also why nothing moves, when `steps` is empty).
    pub reason: String,
    /// Every node's load before and after the plan.
    pub nodes: Vec<CrsPlanNode>,
    /// Names this plan: `POST /cluster/crs/plan` carries it out only while the cluster
    /// still yields the same plan.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrsPlanStep {
    pub moves: Vec<CrsPlanMove>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrsPlanMove {
    /// `vm:100`.
    pub sid: String,
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Bytes of memory the migration copies.
    pub memory: u64,
    pub imbalance_after: f64,
}

/// A node's share of its capacity in use (0..1, above 1 when overcommitted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrsPlanNode {
    pub name: String,
    pub cpu_before: f64,
    pub cpu_after: f64,
    pub memory_before: f64,
    pub memory_after: f64,
}
