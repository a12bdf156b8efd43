//! The request and reply types of the `/api2/json` API, with Proxmox VE's field names:
//! what the server's handlers return, what the OpenAPI document describes (every type
//! derives `JsonSchema`), and what the client, the CLI and the tests read back.
//!
//! One module per top path segment, as the server's rooms. This crate holds data shapes
//! only: no IO, no validation beyond what serde does, no knowledge of the server.

pub mod access;
pub mod cluster;
pub mod ha;
pub mod lxc;
pub mod nodes;
pub mod notifications;
pub mod pools;
pub mod qemu;
pub mod storage;
pub mod tasks;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The UPID of a task that an endpoint started (`UPID:node:pid:pstart:starttime:type:id:user:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Upid(pub String);

impl JsonSchema for Upid {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Upid".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "UPID of the task"})
    }
}

impl std::fmt::Display for Upid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A row of a directory index (`GET /nodes/{node}/qemu/{vmid}`: `[{subdir: "config"}, ...]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subdir {
    pub subdir: String,
}

impl Subdir {
    pub fn list(names: &[&str]) -> Vec<Subdir> {
        names
            .iter()
            .map(|n| Subdir {
                subdir: n.to_string(),
            })
            .collect()
    }
}

/// A row of a named index (`GET /nodes/{node}`: `[{name: "qemu"}, ...]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Named {
    pub name: String,
}

/// `GET /version` and `GET /nodes/{node}/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Version {
    pub version: String,
    pub release: String,
    pub repoid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
    /// Ferrox's own version (not in Proxmox VE's reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferrox: Option<String>,
}

/// A set of privileges as Proxmox VE writes it: `{"VM.Audit": 1, ...}`.
pub type PrivilegeSet = std::collections::BTreeMap<String, u8>;

/// A JSON value whose shape is a config file's (guest config, `datacenter.cfg`): keys
/// are the file's keys, values strings or numbers.
pub type ConfigMap = std::collections::BTreeMap<String, serde_json::Value>;
