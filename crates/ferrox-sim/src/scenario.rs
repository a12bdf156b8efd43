//! Reading a scenario directory in Proxmox VE's HA regression-test layout (spec §12.2).
//! Every error names the file and the field that is wrong.

use ferrox_types::{
    DatacenterConfig, GroupsConfig, ManagerStatus, RequestState, ResourceConfig, RulesConfig,
    ServiceConfig,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: PathBuf,
        source: serde_json::Error,
    },
    #[error("{file}: {field}: {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
}

fn field_error(file: &Path, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Field {
        file: file.to_path_buf(),
        field: field.into(),
        message: message.into(),
    }
}

/// One simulated node's hardware.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHardware {
    pub power: bool,
    pub network: bool,
    pub maxcpu: Option<f64>,
    pub maxmem: Option<f64>,
    pub version: String,
}

/// Everything a simulation run starts from.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub cmdlist: Vec<Vec<String>>,
    pub nodes: BTreeMap<String, NodeHardware>,
    pub manager_status: ManagerStatus,
    pub services: ServiceConfig,
    pub running: BTreeMap<String, BTreeMap<String, bool>>,
    pub rules_text: String,
    pub groups_text: Option<String>,
    pub datacenter: DatacenterConfig,
    /// sid → (maxcpu, maxmem bytes)
    pub static_stats: BTreeMap<String, (f64, f64)>,
    /// sid → (cpu, mem bytes)
    pub dynamic_stats: BTreeMap<String, (f64, f64)>,
}

fn read_optional(path: &Path) -> Result<Option<String>, ScenarioError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ScenarioError::Io {
            file: path.to_path_buf(),
            source,
        }),
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, ScenarioError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| ScenarioError::Json {
                file: path.to_path_buf(),
                source,
            }),
    }
}

fn as_object<'a>(
    file: &Path,
    field: &str,
    v: &'a Value,
) -> Result<&'a serde_json::Map<String, Value>, ScenarioError> {
    v.as_object()
        .ok_or_else(|| field_error(file, field, "must be a JSON object"))
}

fn number(file: &Path, field: &str, v: &Value) -> Result<f64, ScenarioError> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| field_error(file, field, "must be a number"))
}

fn flag(file: &Path, field: &str, v: &Value) -> Result<bool, ScenarioError> {
    match v {
        Value::String(s) if s == "on" => Ok(true),
        Value::String(s) if s == "off" => Ok(false),
        _ => Err(field_error(file, field, "must be \"on\" or \"off\"")),
    }
}

pub(crate) fn is_sim_service_id(sid: &str) -> bool {
    match sid.split_once(':') {
        Some(("vm" | "ct" | "fa", id)) => !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

impl Scenario {
    pub fn load(dir: &Path) -> Result<Scenario, ScenarioError> {
        if !dir.is_dir() {
            return Err(ScenarioError::Io {
                file: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let file = dir.join("cmdlist");
        let cmdlist_value = read_json(&file)?.ok_or_else(|| ScenarioError::Io {
            file: file.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing (required)"),
        })?;
        let batches = cmdlist_value
            .as_array()
            .ok_or_else(|| field_error(&file, "$", "must be an array of command batches"))?;
        let mut cmdlist = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let items = batch.as_array().ok_or_else(|| {
                field_error(&file, format!("[{i}]"), "must be an array of commands")
            })?;
            let mut cmds = Vec::new();
            for (j, c) in items.iter().enumerate() {
                let c = c
                    .as_str()
                    .ok_or_else(|| field_error(&file, format!("[{i}][{j}]"), "must be a string"))?;
                cmds.push(c.to_string());
            }
            cmdlist.push(cmds);
        }

        let file = dir.join("hardware_status");
        let mut nodes = BTreeMap::new();
        match read_json(&file)? {
            None => {
                for n in ["node1", "node2", "node3"] {
                    nodes.insert(
                        n.to_string(),
                        NodeHardware {
                            power: false,
                            network: false,
                            maxcpu: Some(24.0),
                            maxmem: Some(131072.0 * MIB),
                            version: "9.0.0~2".into(),
                        },
                    );
                }
            }
            Some(v) => {
                for (name, hw) in as_object(&file, "$", &v)? {
                    let hw = as_object(&file, name, hw)?;
                    let get = |key: &str| hw.get(key);
                    let field = |key: &str| format!("{name}.{key}");
                    let power = match get("power") {
                        Some(v) => flag(&file, &field("power"), v)?,
                        None => false,
                    };
                    let network = match get("network") {
                        Some(v) => flag(&file, &field("network"), v)?,
                        None => false,
                    };
                    let maxcpu = get("maxcpu")
                        .map(|v| number(&file, &field("maxcpu"), v))
                        .transpose()?;
                    let maxmem = get("maxmem")
                        .map(|v| number(&file, &field("maxmem"), v))
                        .transpose()?;
                    let version = match get("pve-manager-version") {
                        Some(Value::String(s)) => s.clone(),
                        Some(_) => {
                            return Err(field_error(
                                &file,
                                field("pve-manager-version"),
                                "must be a string",
                            ))
                        }
                        None => "9.0.0~2".into(),
                    };
                    nodes.insert(
                        name.clone(),
                        NodeHardware {
                            power,
                            network,
                            maxcpu,
                            maxmem,
                            version,
                        },
                    );
                }
            }
        }
        if nodes.is_empty() {
            return Err(field_error(&file, "$", "no nodes defined"));
        }

        let file = dir.join("manager_status");
        let manager_status = match read_json(&file)? {
            None => ManagerStatus::default(),
            Some(v) => {
                serde_json::from_value(v).map_err(|source| ScenarioError::Json { file, source })?
            }
        };

        let file = dir.join("service_config");
        let mut services = ServiceConfig::new();
        match read_json(&file)? {
            None => {
                for (i, node) in ["node1", "node2", "node3", "node1", "node2", "node3"]
                    .iter()
                    .enumerate()
                {
                    services.insert(
                        format!("vm:{}", 101 + i),
                        ResourceConfig::new(node, RequestState::Disabled),
                    );
                }
            }
            Some(v) => {
                for (sid, cd) in as_object(&file, "$", &v)? {
                    if !is_sim_service_id(sid) {
                        return Err(field_error(
                            &file,
                            sid,
                            "service id must look like vm:<n>, ct:<n> or fa:<n>",
                        ));
                    }
                    services.insert(sid.clone(), parse_service(&file, sid, cd, &nodes)?);
                }
            }
        }

        let mut running = BTreeMap::new();
        for node in nodes.keys() {
            let file = dir.join(format!("service_status_{node}"));
            let mut map = BTreeMap::new();
            if let Some(v) = read_json(&file)? {
                for (sid, r) in as_object(&file, "$", &v)? {
                    map.insert(sid.clone(), number(&file, sid, r)? != 0.0);
                }
            }
            running.insert(node.clone(), map);
        }

        let file = dir.join("rules_config");
        let rules_text = read_optional(&file)?.unwrap_or_default();
        RulesConfig::parse(&rules_text).map_err(|e| field_error(&file, "rules", e.to_string()))?;
        let file = dir.join("groups");
        let groups_text = read_optional(&file)?;
        if let Some(text) = &groups_text {
            GroupsConfig::parse(text).map_err(|e| field_error(&file, "groups", e.to_string()))?;
        }

        let file = dir.join("datacenter.cfg");
        let datacenter = match read_json(&file)? {
            None => DatacenterConfig::default(),
            Some(v) => DatacenterConfig::from_json(&v)
                .map_err(|e| field_error(&file, e.field, e.message))?,
        };

        let file = dir.join("static_service_stats");
        let static_stats = match read_json(&file)? {
            None => services
                .keys()
                .map(|sid| (sid.clone(), (4.0, 4096.0 * MIB)))
                .collect(),
            Some(v) => {
                let mut map = BTreeMap::new();
                for (sid, s) in as_object(&file, "$", &v)? {
                    let s = as_object(&file, sid, s)?;
                    let maxcpu = s
                        .get("maxcpu")
                        .map(|v| number(&file, &format!("{sid}.maxcpu"), v))
                        .transpose()?
                        .unwrap_or(0.0);
                    let maxmem = s
                        .get("maxmem")
                        .map(|v| number(&file, &format!("{sid}.maxmem"), v))
                        .transpose()?
                        .unwrap_or(0.0);
                    map.insert(sid.clone(), (maxcpu, maxmem));
                }
                map
            }
        };
        let file = dir.join("dynamic_service_stats");
        let dynamic_stats = match read_json(&file)? {
            None => static_stats
                .keys()
                .map(|sid| (sid.clone(), (2.0, 2048.0 * MIB)))
                .collect(),
            Some(v) => {
                let mut map = BTreeMap::new();
                for (sid, s) in as_object(&file, "$", &v)? {
                    let s = as_object(&file, sid, s)?;
                    let cpu = s
                        .get("cpu")
                        .map(|v| number(&file, &format!("{sid}.cpu"), v))
                        .transpose()?
                        .unwrap_or(0.0);
                    let mem = s
                        .get("mem")
                        .map(|v| number(&file, &format!("{sid}.mem"), v))
                        .transpose()?
                        .unwrap_or(0.0);
                    map.insert(sid.clone(), (cpu, mem));
                }
                map
            }
        };

        let scenario = Scenario {
            cmdlist,
            nodes,
            manager_status,
            services,
            running,
            rules_text,
            groups_text,
            datacenter,
            static_stats,
            dynamic_stats,
        };
        scenario.validate_cmdlist(&dir.join("cmdlist"))?;
        Ok(scenario)
    }

    /// Checks every command before the run, so that a typo is reported with its position
    /// instead of ending the simulation halfway.
    fn validate_cmdlist(&self, file: &Path) -> Result<(), ScenarioError> {
        for (i, batch) in self.cmdlist.iter().enumerate() {
            for (j, cmd) in batch.iter().enumerate() {
                crate::command::Command::parse(cmd, &self.nodes)
                    .map_err(|msg| field_error(file, format!("[{i}][{j}] '{cmd}'"), msg))?;
            }
        }
        Ok(())
    }
}

fn parse_service(
    file: &Path,
    sid: &str,
    cd: &Value,
    nodes: &BTreeMap<String, NodeHardware>,
) -> Result<ResourceConfig, ScenarioError> {
    let obj = as_object(file, sid, cd)?;
    let field = |k: &str| format!("{sid}.{k}");
    let node = obj
        .get("node")
        .and_then(Value::as_str)
        .ok_or_else(|| field_error(file, field("node"), "missing (every service needs a node)"))?;
    if !nodes.contains_key(node) {
        return Err(field_error(
            file,
            field("node"),
            format!("unknown node '{node}'"),
        ));
    }
    let state = match obj.get("state") {
        None => RequestState::Disabled,
        Some(v) => v
            .as_str()
            .and_then(RequestState::parse_with_alias)
            .ok_or_else(|| {
                field_error(
                    file,
                    field("state"),
                    "must be started, stopped, disabled, ignored or enabled",
                )
            })?,
    };
    let mut cd = ResourceConfig::new(node, state);
    let uint = |k: &str| -> Result<Option<u32>, ScenarioError> {
        obj.get(k)
            .map(|v| {
                let n = number(file, &field(k), v)?;
                if n < 0.0 || n.fract() != 0.0 {
                    return Err(field_error(
                        file,
                        field(k),
                        "must be a non-negative integer",
                    ));
                }
                Ok(n as u32)
            })
            .transpose()
    };
    if let Some(n) = uint("max_restart")? {
        cd.max_restart = n;
    }
    if let Some(n) = uint("max_relocate")? {
        cd.max_relocate = n;
    }
    if let Some(n) = uint("failback")? {
        cd.failback = n != 0;
    }
    cd.group = obj.get("group").and_then(Value::as_str).map(String::from);
    cd.lock = obj.get("lock").and_then(Value::as_str).map(String::from);
    Ok(cd)
}
