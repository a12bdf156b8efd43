//! `priv/tfa.cfg`: users' second factors, as JSON (Proxmox VE keeps the same file, also as
//! JSON, under `/etc/pve/priv/`). TOTP entries hold their `otpauth://` URI (with the
//! secret: the file is for root alone); recovery keys are stored as SHA-256 hashes, a used
//! key as `null`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TfaConfig {
    #[serde(default)]
    pub users: BTreeMap<String, UserTfa>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTfa {
    #[serde(default)]
    pub totp: Vec<TotpEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEntry {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub created: i64,
    pub enable: bool,
    /// `otpauth://totp/...?secret=...`
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryEntry {
    pub id: String,
    pub created: i64,
    /// SHA-256 (hex) of each key; `None` once used.
    pub keys: Vec<Option<String>>,
}

impl UserTfa {
    /// Whether a login of this user needs a second factor.
    pub fn required(&self) -> bool {
        self.totp.iter().any(|t| t.enable)
            || self
                .recovery
                .as_ref()
                .is_some_and(|r| r.keys.iter().any(Option::is_some))
    }

    /// The factor types a login can use (`totp`, `recovery`).
    pub fn types(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.totp.iter().any(|t| t.enable) {
            out.push("totp");
        }
        if self
            .recovery
            .as_ref()
            .is_some_and(|r| r.keys.iter().any(Option::is_some))
        {
            out.push("recovery");
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
#[error("tfa.cfg: {0}")]
pub struct TfaConfigError(String);

impl TfaConfig {
    pub fn parse(text: &str) -> Result<TfaConfig, TfaConfigError> {
        if text.trim().is_empty() {
            return Ok(TfaConfig::default());
        }
        serde_json::from_str(text).map_err(|e| TfaConfigError(e.to_string()))
    }

    pub fn to_text(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_knows_when_a_factor_is_needed() {
        let mut cfg = TfaConfig::default();
        assert!(TfaConfig::parse("").unwrap().users.is_empty());
        let user = cfg.users.entry("a@pve".into()).or_default();
        assert!(!user.required());
        user.recovery = Some(RecoveryEntry {
            id: "recovery".into(),
            created: 1,
            keys: vec![None, Some("ab".into())],
        });
        assert!(user.required());
        assert_eq!(user.types(), ["recovery"]);
        assert_eq!(TfaConfig::parse(&cfg.to_text()).unwrap(), cfg);
        assert!(TfaConfig::parse("{").is_err());
    }
}
