//! `/nodes/{node}/tasks`: task status, listing and log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /nodes/{node}/tasks/{upid}/status` and a row of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskStatus {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenid: Option<String>,
    /// The status reply: `running` or `stopped`. A listing row: `RUNNING` or the exit
    /// status (`OK`, `WARNINGS: n`, the error).
    pub status: String,
    /// The status reply of a finished task: `OK`, `WARNINGS: n` or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exitstatus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endtime: Option<i64>,
}

/// A line of `GET /nodes/{node}/tasks/{upid}/log`: number (from 1) and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskLogLine {
    pub n: usize,
    pub t: String,
}
