//! HA documents shared through the cluster store: resource configuration, the manager
//! status written by the CRM master, the status each LRM writes, and `datacenter.cfg`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The manager's state of one HA service (spec §7.1).
    ServiceState {
        Stopped = "stopped",
        RequestStop = "request_stop",
        RequestStart = "request_start",
        RequestStartBalance = "request_start_balance",
        Started = "started",
        Fence = "fence",
        Recovery = "recovery",
        Migrate = "migrate",
        Relocate = "relocate",
        Freeze = "freeze",
        Error = "error",
    }
);

string_enum!(
    /// The manager's view of one node.
    NodeState {
        Online = "online",
        Maintenance = "maintenance",
        Unknown = "unknown",
        Fence = "fence",
        Gone = "gone",
    }
);

string_enum!(
    /// The state an administrator requests for a service in the resource config.
    RequestState {
        Started = "started",
        Stopped = "stopped",
        Disabled = "disabled",
        Ignored = "ignored",
    }
);

string_enum!(
    /// The LRM's mode, reported in its status.
    LrmMode {
        Active = "active",
        Shutdown = "shutdown",
        Restart = "restart",
        Maintenance = "maintenance",
        Disarm = "disarm",
    }
);

string_enum!(
    /// How a cluster-wide disarm treats services.
    DisarmMode {
        Freeze = "freeze",
        Ignore = "ignore",
    }
);

string_enum!(
    DisarmState {
        Disarming = "disarming",
        Disarmed = "disarmed",
    }
);

impl RequestState {
    /// Parses a request state, accepting `enabled` as the old name of `started`.
    pub fn parse_with_alias(text: &str) -> Option<Self> {
        if text == "enabled" {
            Some(RequestState::Started)
        } else {
            Self::parse(text)
        }
    }
}

/// Exit codes of LRM service commands (Proxmox VE `PVE::HA::Tools`).
pub mod exit_code {
    pub const SUCCESS: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const ETRY_AGAIN: i32 = 2;
    pub const EWRONG_NODE: i32 = 3;
    pub const EUNKNOWN_SERVICE_TYPE: i32 = 4;
    pub const EUNKNOWN_COMMAND: i32 = 5;
    pub const EINVALID_PARAMETER: i32 = 6;
    pub const EUNKNOWN_SERVICE: i32 = 7;
    pub const IGNORED: i32 = 8;
}

/// The type part of a service id (`vm:100` → `vm`).
pub fn service_type(sid: &str) -> &str {
    sid.split_once(':').map(|(t, _)| t).unwrap_or(sid)
}

/// One HA resource as configured (`ha/resources.cfg`), with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceConfig {
    pub node: String,
    pub state: RequestState,
    pub group: Option<String>,
    pub failback: bool,
    pub max_restart: u32,
    pub max_relocate: u32,
    /// A guest config lock (`backup`, `migrate`, ...) that blocks start and migration.
    pub lock: Option<String>,
}

impl ResourceConfig {
    pub fn new(node: &str, state: RequestState) -> Self {
        ResourceConfig {
            node: node.to_string(),
            state,
            group: None,
            failback: true,
            max_restart: 1,
            max_relocate: 1,
            lock: None,
        }
    }
}

pub type ServiceConfig = BTreeMap<String, ResourceConfig>;

/// A pending CRM command attached to a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", content = "arg", rename_all = "lowercase")]
pub enum ServiceCommand {
    Migrate(String),
    Relocate(String),
    Stop(i64),
}

/// The manager's record of one service (`sd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub state: ServiceState,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<ServiceCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_nodes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_node: Option<String>,
    #[serde(default, skip_serializing_if = "is_false", with = "bool_as_int")]
    pub running: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Proxmox VE writes booleans as 0/1 in its JSON documents.
pub mod bool_as_int {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(match v {
            serde_json::Value::Bool(b) => b,
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
            serde_json::Value::String(s) => !(s.is_empty() || s == "0"),
            _ => false,
        })
    }
}

impl ServiceStatus {
    pub fn new(state: ServiceState, node: &str) -> Self {
        ServiceStatus {
            state,
            node: node.to_string(),
            uid: None,
            target: None,
            timeout: None,
            cmd: None,
            failed_nodes: None,
            maintenance_node: None,
            running: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRequest {
    #[serde(default, with = "bool_as_int")]
    pub maintenance: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disarm {
    pub mode: DisarmMode,
    pub state: DisarmState,
}

/// The document the CRM master writes after every round (`ha/manager_status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub node_status: BTreeMap<String, NodeState>,
    #[serde(default)]
    pub service_status: BTreeMap<String, ServiceStatus>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_request: BTreeMap<String, NodeRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disarm: Option<Disarm>,
}

/// The outcome of one LRM command, keyed by the command's uid in the LRM status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LrmResult {
    pub sid: String,
    pub state: ServiceState,
    pub exit_code: i32,
}

/// The document each LRM writes (`nodes/<node>/lrm_status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LrmStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LrmMode>,
    #[serde(default)]
    pub results: BTreeMap<String, LrmResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

string_enum!(
    /// `datacenter.cfg` `crs: ha=...`.
    SchedulerMode {
        Basic = "basic",
        Static = "static",
        Dynamic = "dynamic",
    }
);

string_enum!(
    RebalanceMethod {
        Bruteforce = "bruteforce",
        Topsis = "topsis",
    }
);

string_enum!(
    ShutdownPolicy {
        Conditional = "conditional",
        Freeze = "freeze",
        Failover = "failover",
        Migrate = "migrate",
    }
);

/// The CRS settings of `datacenter.cfg` with Proxmox VE 9.2's defaults (spec §9.1).
#[derive(Debug, Clone, PartialEq)]
pub struct CrsSettings {
    /// The configured scheduler text; unknown values fall back to basic with a warning.
    pub ha: String,
    pub rebalance_on_start: bool,
    pub auto_rebalance: bool,
    pub auto_rebalance_threshold: f64,
    pub auto_rebalance_method: RebalanceMethod,
    pub auto_rebalance_hold_duration: u32,
    pub auto_rebalance_margin: f64,
    /// Ferrox: balance the guests HA does not manage with the CRS planner (`balance`).
    pub balance: bool,
    /// Ferrox: the planner's imbalance above which a balancing plan is carried out.
    pub balance_threshold: f64,
    /// Ferrox: seconds between two looks at the imbalance.
    pub balance_interval: u32,
}

impl Default for CrsSettings {
    fn default() -> Self {
        CrsSettings {
            ha: "basic".into(),
            rebalance_on_start: false,
            auto_rebalance: false,
            auto_rebalance_threshold: 0.3,
            auto_rebalance_method: RebalanceMethod::Bruteforce,
            auto_rebalance_hold_duration: 3,
            auto_rebalance_margin: 0.1,
            balance: false,
            balance_threshold: 0.15,
            balance_interval: 300,
        }
    }
}

/// The parts of `datacenter.cfg` that HA reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatacenterConfig {
    pub crs: CrsSettings,
    /// `ha: shutdown_policy=...`, kept as text: an unknown policy is logged and treated as
    /// conditional by the LRM.
    pub shutdown_policy: Option<String>,
    /// `max_workers`: how many service actions an LRM (and a bulk action) runs at once;
    /// unset means Proxmox VE's default, 4.
    pub max_workers: Option<u32>,
    /// `bwlimit: migration=KiB/s` (else its `default=`): the speed of migrations that
    /// name no limit themselves, HA's included.
    pub migration_bwlimit_kib: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn json_bool(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        serde_json::Value::String(s) => match s.as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn json_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl DatacenterConfig {
    /// Reads the JSON form `{ "ha": {"shutdown_policy": ..}, "crs": {..} }` used by the
    /// simulator's scenario directories. Every bad value names its key.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, FieldError> {
        let mut cfg = DatacenterConfig::default();
        if let Some(ha) = value.get("ha") {
            if let Some(policy) = ha.get("shutdown_policy") {
                let text = policy
                    .as_str()
                    .ok_or_else(|| FieldError::new("ha.shutdown_policy", "must be a string"))?;
                cfg.shutdown_policy = Some(text.to_string());
            }
        }
        if let Some(v) = value.get("max_workers") {
            let n = json_f64(v)
                .filter(|n| (1.0..=64.0).contains(n) && n.fract() == 0.0)
                .ok_or_else(|| FieldError::new("max_workers", "must be an integer from 1 to 64"))?;
            cfg.max_workers = Some(n as u32);
        }
        if let Some(limits) = value.get("bwlimit") {
            let obj = limits
                .as_object()
                .ok_or_else(|| FieldError::new("bwlimit", "must be an object"))?;
            let mut default = None;
            for (key, v) in obj {
                let field = format!("bwlimit.{key}");
                let kib = json_f64(v)
                    .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= u32::MAX as f64)
                    .ok_or_else(|| {
                        FieldError::new(field.clone(), "must be a whole number of KiB/s")
                    })? as u64;
                match key.as_str() {
                    "migration" => cfg.migration_bwlimit_kib = Some(kib),
                    "default" => default = Some(kib),
                    "clone" | "move" | "restore" => {}
                    _ => return Err(FieldError::new(field, "unknown key")),
                }
            }
            // 0 means no limit, as in Proxmox VE.
            cfg.migration_bwlimit_kib =
                cfg.migration_bwlimit_kib.or(default).filter(|kib| *kib > 0);
        }
        if let Some(crs) = value.get("crs") {
            let obj = crs
                .as_object()
                .ok_or_else(|| FieldError::new("crs", "must be an object"))?;
            for (key, v) in obj {
                let field = format!("crs.{key}");
                let bad = |what: &str| FieldError::new(field.clone(), format!("must be {what}"));
                match key.as_str() {
                    "ha" => cfg.crs.ha = v.as_str().ok_or_else(|| bad("a string"))?.to_string(),
                    "ha-rebalance-on-start" => {
                        cfg.crs.rebalance_on_start = json_bool(v).ok_or_else(|| bad("a boolean"))?
                    }
                    "ha-auto-rebalance" => {
                        cfg.crs.auto_rebalance = json_bool(v).ok_or_else(|| bad("a boolean"))?
                    }
                    "ha-auto-rebalance-threshold" => {
                        cfg.crs.auto_rebalance_threshold =
                            json_f64(v).ok_or_else(|| bad("a number"))?
                    }
                    "ha-auto-rebalance-margin" => {
                        cfg.crs.auto_rebalance_margin =
                            json_f64(v).ok_or_else(|| bad("a number"))?
                    }
                    "ha-auto-rebalance-hold-duration" => {
                        let n = json_f64(v)
                            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
                            .ok_or_else(|| bad("a non-negative integer"))?;
                        cfg.crs.auto_rebalance_hold_duration = n as u32;
                    }
                    "ha-auto-rebalance-method" => {
                        cfg.crs.auto_rebalance_method = v
                            .as_str()
                            .and_then(RebalanceMethod::parse)
                            .ok_or_else(|| bad("'bruteforce' or 'topsis'"))?
                    }
                    "balance" => cfg.crs.balance = json_bool(v).ok_or_else(|| bad("a boolean"))?,
                    "balance-threshold" => {
                        cfg.crs.balance_threshold = json_f64(v)
                            .filter(|t| (0.0..=10.0).contains(t))
                            .ok_or_else(|| bad("a number from 0 to 10"))?
                    }
                    "balance-interval" => {
                        let n = json_f64(v)
                            .filter(|n| (10.0..=86_400.0).contains(n) && n.fract() == 0.0)
                            .ok_or_else(|| bad("whole seconds from 10 to 86400"))?;
                        cfg.crs.balance_interval = n as u32;
                    }
                    _ => return Err(FieldError::new(field, "unknown key")),
                }
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datacenter_defaults_and_errors() {
        let cfg =
            DatacenterConfig::from_json(&serde_json::json!({"crs": {"ha": "static"}})).unwrap();
        assert_eq!(cfg.crs.ha, "static");
        assert_eq!(cfg.crs.auto_rebalance_hold_duration, 3);
        let err = DatacenterConfig::from_json(
            &serde_json::json!({"crs": {"ha-auto-rebalance-method": "magic"}}),
        )
        .unwrap_err();
        assert_eq!(err.field, "crs.ha-auto-rebalance-method");
        assert_eq!(cfg.max_workers, None, "Proxmox VE's default (4) applies");
        let cfg = DatacenterConfig::parse_cfg("max_workers: 8\nkeyboard: de\n").unwrap();
        assert_eq!(cfg.max_workers, Some(8));
        for bad in ["0", "65", "two", "1.5"] {
            let err = DatacenterConfig::parse_cfg(&format!("max_workers: {bad}\n")).unwrap_err();
            assert_eq!(err.field, "max_workers", "{bad}");
        }
    }

    #[test]
    fn ferrox_balancing_keys() {
        let cfg = DatacenterConfig::from_json(&serde_json::json!({"crs": {}})).unwrap();
        assert!(!cfg.crs.balance, "off by default");
        let cfg = DatacenterConfig::from_json(&serde_json::json!(
            {"crs": {"balance": "1", "balance-threshold": "0.2", "balance-interval": "60"}}
        ))
        .unwrap();
        assert!(cfg.crs.balance);
        assert_eq!(cfg.crs.balance_threshold, 0.2);
        assert_eq!(cfg.crs.balance_interval, 60);
        for (key, bad) in [
            ("balance", "maybe"),
            ("balance-threshold", "-1"),
            ("balance-interval", "5"),
            ("balance-interval", "1.5"),
        ] {
            let err =
                DatacenterConfig::from_json(&serde_json::json!({"crs": {key: bad}})).unwrap_err();
            assert_eq!(err.field, format!("crs.{key}"), "{bad}");
        }
    }

    #[test]
    fn service_status_roundtrip() {
        let mut sd = ServiceStatus::new(ServiceState::Migrate, "node1");
        sd.target = Some("node2".into());
        sd.cmd = Some(ServiceCommand::Stop(0));
        let text = serde_json::to_string(&sd).unwrap();
        let back: ServiceStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sd);
    }
}
