//! `/storage` and `/nodes/{node}/storage`: storage definitions, status and content.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A row of `GET /nodes/{node}/storage` and the reply of its `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StorageStatus {
    pub storage: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Content types, comma-separated.
    pub content: String,
    pub shared: u8,
    pub active: u8,
    pub enabled: u8,
    /// Bytes.
    pub total: u64,
    pub used: u64,
    pub avail: u64,
    pub used_fraction: f64,
}

/// A row of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Volume {
    pub volid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    pub format: String,
    /// Bytes the guest sees.
    pub size: u64,
    /// Bytes the volume takes on the storage.
    pub used: u64,
    pub content: String,
    pub ctime: i64,
    /// Backups: their notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Backups: 1 when protected from removal and pruning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<u8>,
}

/// `GET /nodes/{node}/storage/{storage}/content/{volume}`: a volume's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeDetails {
    pub path: String,
    /// Bytes the guest sees (the file size for ISO images and backups).
    pub size: u64,
    pub used: u64,
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<u8>,
}

/// A row of `GET /storage` (the definitions in `storage.cfg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StorageDefinition {
    pub storage: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    pub shared: u8,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `POST /storage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StorageCreated {
    pub storage: String,
    #[serde(rename = "type")]
    pub kind: String,
}
