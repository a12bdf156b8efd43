//! Parameter declarations and their validation. Each API parameter is declared once, here
//! or next to its endpoint; the same declaration validates requests, documents the
//! endpoint in the OpenAPI document and tells the CLI what an endpoint takes.

use crate::error::ApiError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub enum ParamType {
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Number,
    /// `0`/`1` in forms; `true`/`false` or `0`/`1` in JSON.
    Boolean,
    /// One line of text: control characters (newline, NUL, ...) are refused, so the value
    /// can never add a line to a config file.
    String {
        max_len: Option<usize>,
    },
    /// Free text that may span lines (descriptions, comments that the file format encodes).
    Text {
        max_len: Option<usize>,
    },
    /// A string in a named format (`pve-userid`, `pve-storage-id`, ...), checked by the
    /// format's function from `ferrox_types::format`.
    Format {
        name: &'static str,
        check: fn(&str) -> Result<(), String>,
    },
    Enum(&'static [&'static str]),
    /// A Proxmox VE guest id (100 ..= 999 999 999).
    VmId,
    /// A node name (`pve-node` format).
    Node,
    /// An array of values of the inner type (Proxmox VE's `type => 'array'`): repeated
    /// form keys or a JSON array; one value alone is a list of one.
    List(&'static ParamType),
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub ty: ParamType,
    pub optional: bool,
    pub description: &'static str,
}

impl Param {
    pub const fn required(name: &'static str, ty: ParamType, description: &'static str) -> Param {
        Param {
            name,
            ty,
            optional: false,
            description,
        }
    }
    pub const fn optional(name: &'static str, ty: ParamType, description: &'static str) -> Param {
        Param {
            name,
            ty,
            optional: true,
            description,
        }
    }
}

pub const fn int(min: Option<i64>, max: Option<i64>) -> ParamType {
    ParamType::Integer { min, max }
}
pub const STRING: ParamType = ParamType::String { max_len: None };
pub const TEXT: ParamType = ParamType::Text {
    max_len: Some(8192),
};

use ferrox_types::format as fmt;
macro_rules! formats {
    ($($(#[$doc:meta])* $const:ident = $name:literal, $check:path;)*) => {
        $($(#[$doc])* pub const $const: ParamType = ParamType::Format { name: $name, check: $check };)*
    };
}
formats! {
    USERID = "pve-userid", fmt::userid;
    REALM = "pve-realm", fmt::realm;
    TOKEN_NAME = "pve-tokenid", fmt::token_name;
    GROUP_ID = "pve-groupid", fmt::group_id;
    ROLE_ID = "pve-roleid", fmt::role_id;
    POOL_ID = "pve-poolid", fmt::pool_id;
    STORAGE_ID = "pve-storage-id", fmt::storage_id;
    NODE_LIST = "pve-node-list", fmt::node_list;
    CONTENT_LIST = "pve-storage-content-list", fmt::content_list;
    TAGS = "pve-tag-list", fmt::tag_list;
    EMAIL = "email-opt", fmt::email;
    ABSOLUTE_PATH = "pve-storage-path", fmt::absolute_path;
    DNS_NAME = "dns-name", fmt::dns_name;
    SNAPSHOT_NAME = "pve-snapshot-name", crate::schema::snapshot_name;
    /// A field of `user.cfg` (first name, last name, keys): one line without `:`.
    COLON_FIELD = "pve-user-field", fmt::colon_field;
}
fn snapshot_name(value: &str) -> Result<(), String> {
    ferrox_types::guest_config::check_snapshot_name(value)
}
pub const BOOL: ParamType = ParamType::Boolean;

/// Parameters that many endpoints share, declared once.
pub mod common {
    use super::{Param, ParamType};

    pub const NODE: Param = Param::required("node", ParamType::Node, "The cluster node name.");
    pub const VMID: Param = Param::required("vmid", ParamType::VmId, "The (unique) ID of the VM.");
}

/// Keys accepted beyond the declared parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    None,
    /// Any Proxmox VE guest config key, checked by the guest config format.
    GuestConfigKeys,
}

/// Validated parameters: integers and booleans as JSON numbers/bools, the rest strings.
/// A handler reads a parameter through its declaration (the `Param` it lists for the
/// endpoint), so a parameter's name is written once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Map<String, Value>);

impl Params {
    pub fn str(&self, param: &Param) -> Option<&str> {
        self.0.get(param.name).and_then(Value::as_str)
    }
    pub fn int(&self, param: &Param) -> Option<i64> {
        self.0.get(param.name).and_then(Value::as_i64)
    }
    pub fn bool(&self, param: &Param) -> Option<bool> {
        self.0.get(param.name).and_then(Value::as_bool)
    }
    /// A list parameter's values (empty when not given).
    pub fn list(&self, param: &Param) -> Vec<String> {
        match self.0.get(param.name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
    /// A key accepted beyond the declarations (`Extra`: a guest config key), as text.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    /// A path or required parameter; validation guarantees its presence.
    pub fn need_str(&self, param: &Param) -> Result<&str, ApiError> {
        self.str(param).ok_or_else(|| param.missing())
    }
    pub fn need_int(&self, param: &Param) -> Result<i64, ApiError> {
        self.int(param).ok_or_else(|| param.missing())
    }
}

impl Param {
    fn missing(&self) -> ApiError {
        ApiError::param(self.name, "property is missing and it is not optional")
    }

    /// An error about this parameter's value.
    pub fn error(&self, message: impl Into<String>) -> ApiError {
        ApiError::param(self.name, message)
    }
}

fn type_error(ty: &str, got: &Value) -> String {
    let shown = match got {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("type check ('{ty}') failed - got '{shown}'")
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

/// A string value within `max_len` (the two string types share it).
fn text_within(value: &Value, max_len: Option<usize>) -> Result<String, String> {
    let s = as_text(value).ok_or_else(|| type_error("string", value))?;
    match max_len {
        Some(max) if s.len() > max => Err(format!("value may only be {max} characters long")),
        _ => Ok(s),
    }
}

/// Checks one value against its type; returns the normalised value.
pub fn check(ty: &ParamType, value: &Value) -> Result<Value, String> {
    match ty {
        ParamType::Integer { min, max } => {
            let n = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| type_error("integer", value))?;
            if let Some(min) = min.filter(|m| n < *m) {
                return Err(format!("value must have a minimum value of {min}"));
            }
            if let Some(max) = max.filter(|m| n > *m) {
                return Err(format!("value must have a maximum value of {max}"));
            }
            Ok(Value::from(n))
        }
        ParamType::VmId => {
            let n = check(&int(None, None), value).map_err(|_| type_error("integer", value))?;
            let n = n.as_i64().unwrap_or(0);
            if !(100..=999_999_999).contains(&n) {
                return Err(format!("value must have a minimum value of 100 (got {n})"));
            }
            Ok(Value::from(n))
        }
        ParamType::Number => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| type_error("number", value)),
            _ => Err(type_error("number", value)),
        },
        ParamType::Boolean => match value {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            Value::String(s) if s == "0" || s == "1" => Ok(Value::Bool(s == "1")),
            _ => Err(type_error("boolean", value)),
        },
        ParamType::String { max_len } => {
            let s = text_within(value, *max_len)?;
            ferrox_types::text::check_single_line(&s)?;
            Ok(Value::String(s))
        }
        ParamType::Text { max_len } => {
            let s = text_within(value, *max_len)?;
            if s.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                return Err("value must not contain control characters".into());
            }
            Ok(Value::String(s))
        }
        ParamType::Format { check, .. } => {
            let s = as_text(value).ok_or_else(|| type_error("string", value))?;
            check(&s)?;
            Ok(Value::String(s))
        }
        ParamType::Enum(values) => {
            let s = as_text(value).ok_or_else(|| type_error("string", value))?;
            if values.contains(&s.as_str()) {
                Ok(Value::String(s))
            } else {
                Err(format!(
                    "value '{s}' does not have a value in the enumeration '{}'",
                    values.join(", ")
                ))
            }
        }
        ParamType::List(inner) => {
            let items: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            items
                .into_iter()
                .map(|v| check(inner, v))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        ParamType::Node => {
            let s = as_text(value).ok_or_else(|| type_error("string", value))?;
            if fmt::node_name(&s).is_ok() {
                Ok(Value::String(s))
            } else {
                Err(format!(
                    "value does not match the regex pattern (got '{s}')"
                ))
            }
        }
    }
}

/// Validates raw request parameters against the declarations. Every problem is reported,
/// keyed by parameter name, as Proxmox VE does.
pub fn validate(
    declared: &[Param],
    extra: Extra,
    raw: &BTreeMap<String, Value>,
) -> Result<Params, ApiError> {
    let mut errors = BTreeMap::new();
    let mut out = Map::new();
    for param in declared {
        match raw.get(param.name) {
            None => {
                if !param.optional {
                    errors.insert(
                        param.name.to_string(),
                        "property is missing and it is not optional".to_string(),
                    );
                }
            }
            Some(value) => match check(&param.ty, value) {
                Ok(v) => {
                    out.insert(param.name.to_string(), v);
                }
                Err(e) => {
                    errors.insert(param.name.to_string(), e);
                }
            },
        }
    }
    for (key, value) in raw {
        if declared.iter().any(|p| p.name == key) {
            continue;
        }
        match extra {
            Extra::GuestConfigKeys if ferrox_types::guest_config::is_known_key(key) => {
                match as_text(value) {
                    Some(text) => match ferrox_types::guest_config::check_value(key, &text) {
                        Ok(()) => {
                            out.insert(key.clone(), Value::String(text));
                        }
                        Err(e) => {
                            errors.insert(key.clone(), e.message);
                        }
                    },
                    None => {
                        errors.insert(key.clone(), type_error("string", value));
                    }
                }
            }
            _ => {
                errors.insert(
                    key.clone(),
                    "property is not defined in schema and the schema does not allow additional properties"
                        .to_string(),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(Params(out))
    } else {
        Err(ApiError::params(errors))
    }
}

/// The JSON Schema of one parameter type (used by the OpenAPI document).
pub fn json_schema(ty: &ParamType) -> Value {
    match ty {
        ParamType::Integer { min, max } => {
            let mut s = serde_json::json!({"type": "integer"});
            if let Some(min) = min {
                s["minimum"] = Value::from(*min);
            }
            if let Some(max) = max {
                s["maximum"] = Value::from(*max);
            }
            s
        }
        ParamType::VmId => {
            serde_json::json!({"type": "integer", "minimum": 100, "maximum": 999_999_999})
        }
        ParamType::Number => serde_json::json!({"type": "number"}),
        ParamType::Boolean => serde_json::json!({"type": "integer", "enum": [0, 1]}),
        ParamType::String { max_len } => {
            let mut s = serde_json::json!({"type": "string"});
            if let Some(max) = max_len {
                s["maxLength"] = Value::from(*max);
            }
            s
        }
        ParamType::Text { max_len } => {
            let mut s = serde_json::json!({"type": "string"});
            if let Some(max) = max_len {
                s["maxLength"] = Value::from(*max);
            }
            s
        }
        ParamType::Format { name, .. } => serde_json::json!({"type": "string", "format": name}),
        ParamType::Enum(values) => serde_json::json!({"type": "string", "enum": values}),
        ParamType::Node => {
            serde_json::json!({"type": "string", "pattern": "^[a-zA-Z0-9]([a-zA-Z0-9\\-]*[a-zA-Z0-9])?$"})
        }
        ParamType::List(inner) => serde_json::json!({"type": "array", "items": json_schema(inner)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn booleans_accept_only_0_1_in_strings() {
        assert_eq!(check(&BOOL, &json!("1")), Ok(json!(true)));
        assert_eq!(check(&BOOL, &json!(false)), Ok(json!(false)));
        assert!(check(&BOOL, &json!("true"))
            .unwrap_err()
            .contains("type check ('boolean') failed"));
    }

    #[test]
    fn reports_every_bad_parameter_by_name() {
        let declared = [
            Param::required("vmid", ParamType::VmId, ""),
            Param::optional("timeout", int(Some(0), None), ""),
        ];
        let err = validate(
            &declared,
            Extra::None,
            &raw(&[("timeout", json!("-1")), ("bogus", json!("x"))]),
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.message, "Parameter verification failed.");
        assert_eq!(
            err.errors["vmid"],
            "property is missing and it is not optional"
        );
        assert!(err.errors["timeout"].contains("minimum value of 0"));
        assert!(err.errors["bogus"].contains("not defined in schema"));
    }

    #[test]
    fn strings_stay_on_one_line_and_formats_are_checked() {
        assert!(check(&STRING, &json!("x\nonboot: 1")).is_err());
        assert!(check(&TEXT, &json!("two\nlines")).is_ok());
        assert!(check(&TEXT, &json!("nul\u{0}")).is_err());
        assert!(check(&USERID, &json!("bob@pve")).is_ok());
        assert!(check(&NODE_LIST, &json!("n1\n\tshared 1")).is_err());
        assert_eq!(json_schema(&USERID)["format"], "pve-userid");
    }

    #[test]
    fn guest_config_keys_are_checked_by_the_config_format() {
        let err = validate(
            &[],
            Extra::GuestConfigKeys,
            &raw(&[("memory", json!("lots")), ("cores", json!(2))]),
        )
        .unwrap_err();
        assert!(err.errors.contains_key("memory"), "{err:?}");
        assert!(!err.errors.contains_key("cores"));
        let ok = validate(&[], Extra::GuestConfigKeys, &raw(&[("cores", json!(2))])).unwrap();
        assert_eq!(ok.extra("cores"), Some("2"));
    }
}
