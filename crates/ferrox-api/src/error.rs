//! API errors, shaped the way Proxmox VE reports them: an HTTP status, a message that
//! becomes the reason phrase, and an optional per-parameter `errors` map.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: BTreeMap<String, String>,
    /// Errors raised before a handler runs (authentication, CSRF) have an empty body.
    pub empty_body: bool,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: BTreeMap::new(),
            empty_body: false,
        }
    }

    /// 400 "Parameter verification failed." with one entry per bad parameter.
    pub fn params(errors: BTreeMap<String, String>) -> ApiError {
        ApiError {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors,
            empty_body: false,
        }
    }

    /// A 400 naming a single parameter.
    pub fn param(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::params(BTreeMap::from([(name.to_string(), message.into())]))
    }

    /// Any failure inside a handler (Proxmox VE's `die`).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError {
            empty_body: true,
            ..ApiError::new(401, message)
        }
    }

    pub fn forbidden(path: &str, privs: &[&str]) -> ApiError {
        ApiError::new(
            403,
            format!("Permission check failed ({path}, {})", privs.join("|")),
        )
    }

    pub fn not_implemented(method: &str, path: &str) -> ApiError {
        ApiError::new(501, format!("Method '{method} {path}' not implemented"))
    }

    /// The text Proxmox VE puts in the `message` field (always newline-terminated).
    pub fn body_message(&self) -> String {
        let mut text = self.message.clone();
        if !self.errors.is_empty() && self.status == 400 {
            let detail: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            text = format!("{text}\n{}", detail.join("\n"));
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }
}
