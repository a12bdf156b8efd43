//! `/access`: users, groups, roles, ACLs, tokens, realms, second factors, tickets.

use crate::PrivilegeSet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A row of `GET /access/users` and the reply of `GET /access/users/{userid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    pub userid: String,
    pub enable: u8,
    pub expire: u64,
    #[serde(
        rename = "realm-type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub realm_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lastname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<UserGroups>,
    /// Only with `full=1` and in `GET /access/users/{userid}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<Token>>,
}

/// Proxmox VE lists a user's groups as one comma-separated string in the listing and as
/// an array in the full view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum UserGroups {
    List(Vec<String>),
    Joined(String),
}

/// An API token: in `GET /access/users/{userid}/token` (with `tokenid`), the token read,
/// create and update replies (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Token {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenid: Option<String>,
    pub privsep: u8,
    pub expire: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `POST /access/users/{userid}/token/{tokenid}`: the secret is shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenCreated {
    #[serde(rename = "full-tokenid")]
    pub full_tokenid: String,
    pub info: Token,
    pub value: String,
}

/// A row of `GET /access/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupEntry {
    pub groupid: String,
    /// Members, comma-separated.
    pub users: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `GET /access/groups/{groupid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Group {
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A row of `GET /access/roles`; `GET /access/roles/{roleid}` answers a `PrivilegeSet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleEntry {
    pub roleid: String,
    /// Privileges, comma-separated.
    pub privs: String,
    /// 1 for a built-in role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special: Option<u8>,
}

/// A row of `GET /access/acl`: one role granted to one user, group or token on a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AclEntry {
    pub path: String,
    /// `user`, `group` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    pub ugid: String,
    pub roleid: String,
    pub propagate: u8,
}

/// Privileges per ACL path (`GET /access/permissions`) or per area (a ticket's `cap`).
pub type PermissionMap = BTreeMap<String, PrivilegeSet>;

/// `POST /access/ticket`: a ticket, or (`NeedTFA`) the partial ticket of the first step,
/// or (ticket check mode) the user name only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ticket {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(
        rename = "CSRFPreventionToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub csrf_prevention_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<PermissionMap>,
    #[serde(rename = "NeedTFA", default, skip_serializing_if = "Option::is_none")]
    pub need_tfa: Option<u8>,
}

/// A row of `GET /access/domains` and `GET /access/domains/{realm}` (which adds the
/// LDAP settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Realm {
    pub realm: String,
    /// `pam`, `pve`, `ldap`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_attr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<u8>,
}

/// One second factor of a user (`GET /access/tfa/{userid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TfaEntry {
    /// `totp` or `recovery`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub description: String,
    pub created: i64,
    pub enable: u8,
}

/// A row of `GET /access/tfa`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserTfa {
    pub userid: String,
    pub entries: Vec<TfaEntry>,
}

/// `POST /access/tfa/{userid}`: the new entry's id; the keys for recovery keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TfaAdded {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Vec<String>>,
}
