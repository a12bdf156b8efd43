//! `/nodes/{node}/lxc`: containers (none can exist yet: the listings answer empty).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A row of `GET /nodes/{node}/lxc`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ContainerStatus {
    pub vmid: u32,
    pub name: String,
    /// `running` or `stopped`.
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub cpus: u64,
    pub maxmem: u64,
    pub mem: u64,
    pub maxdisk: u64,
    pub disk: u64,
    pub uptime: i64,
}
