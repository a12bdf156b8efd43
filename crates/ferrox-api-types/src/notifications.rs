//! `/cluster/notifications`: targets (webhook, sendmail) and matchers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A row of `GET /cluster/notifications/targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationTarget {
    pub name: String,
    /// `webhook` or `sendmail`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub disable: u8,
    /// `user-created` (Ferrox ships no built-in targets).
    pub origin: String,
}

/// A notification endpoint or matcher as its section in `notifications.cfg` says it:
/// `name`, the properties (lists as arrays), and the file's `digest`. Webhook secrets are
/// listed by name only.
pub type NotificationEntry = std::collections::BTreeMap<String, serde_json::Value>;
