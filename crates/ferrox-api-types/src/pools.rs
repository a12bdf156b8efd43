//! `/pools`: resource pools.

use crate::cluster::Resource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A row of `GET /pools` (with `members` when one pool is asked for) and, without
/// `poolid`, the reply of `GET /pools/{poolid}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Pool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poolid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Guests and storages, as rows of `/cluster/resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Resource>>,
}
