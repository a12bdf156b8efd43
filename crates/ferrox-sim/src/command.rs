//! The scenario command language (`cmdlist`, spec §12.3).

use crate::scenario::NodeHardware;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Delay(i64),
    SkipRound {
        crm: bool,
        rounds: u32,
    },
    Power {
        node: String,
        on: bool,
    },
    Network {
        node: String,
        on: bool,
    },
    Cfs {
        node: String,
        rw: bool,
        works: bool,
    },
    SetVersion {
        node: String,
        version: String,
    },
    Reboot(String),
    Shutdown(String),
    RestartLrm(String),
    CrmStop(String),
    CrmStart(String),
    /// A CRM command queued on behalf of a node (maintenance, disarm, arm).
    CrmQueue(String),
    Service {
        sid: String,
        action: ServiceAction,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceAction {
    SetState(ferrox_types::RequestState),
    Queue(String),
    Add {
        node: String,
        state: ferrox_types::RequestState,
        running: bool,
    },
    Delete,
    Lock(String),
    Unlock(Option<String>),
    SetStaticStats {
        maxcpu: Option<f64>,
        maxmem_mib: Option<f64>,
    },
    SetDynamicStats {
        cpu: Option<f64>,
        mem_mib: Option<f64>,
    },
    ManualMigrate(String),
}

fn parse_stats(words: &[&str], keys: [&str; 2]) -> Result<(Option<f64>, Option<f64>), String> {
    let mut out = (None, None);
    let mut it = words.iter();
    while let Some(key) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("'{key}' needs a value"))?
            .parse::<f64>()
            .map_err(|_| format!("value of '{key}' is not a number"))?;
        if *key == keys[0] {
            out.0 = Some(value);
        } else if *key == keys[1] {
            out.1 = Some(value);
        } else {
            return Err(format!(
                "unknown stat '{key}' (expected {} or {})",
                keys[0], keys[1]
            ));
        }
    }
    Ok(out)
}

impl Command {
    pub fn parse(text: &str, nodes: &BTreeMap<String, NodeHardware>) -> Result<Command, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let node = |name: &str| -> Result<String, String> {
            if nodes.contains_key(name) {
                Ok(name.to_string())
            } else {
                Err(format!("no such node '{name}'"))
            }
        };
        let on_off = |w: &str| match w {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(format!("unknown action '{other}' (expected on or off)")),
        };
        use ferrox_types::RequestState;
        Ok(match words.as_slice() {
            ["delay", secs] => Command::Delay(
                secs.parse()
                    .map_err(|_| "delay needs whole seconds".to_string())?,
            ),
            ["skip-round", which @ ("crm" | "lrm"), rest @ ..] => Command::SkipRound {
                crm: *which == "crm",
                rounds: match rest {
                    [] => 1,
                    [n] => n
                        .parse()
                        .map_err(|_| "round count must be a whole number".to_string())?,
                    _ => return Err("too many arguments".into()),
                },
            },
            ["power", n, action] => Command::Power {
                node: node(n)?,
                on: on_off(action)?,
            },
            ["network", n, action] => Command::Network {
                node: node(n)?,
                on: on_off(action)?,
            },
            ["cfs", n, what @ ("rw" | "update"), how @ ("work" | "fail")] => Command::Cfs {
                node: node(n)?,
                rw: *what == "rw",
                works: *how == "work",
            },
            ["pve-manager-version", n, "set", version] => Command::SetVersion {
                node: node(n)?,
                version: version.to_string(),
            },
            ["reboot", n] => Command::Reboot(node(n)?),
            ["shutdown", n] => Command::Shutdown(node(n)?),
            ["restart-lrm", n] => Command::RestartLrm(node(n)?),
            ["crm", n, "stop"] => Command::CrmStop(node(n)?),
            ["crm", n, "start"] => Command::CrmStart(node(n)?),
            ["crm", n, action @ ("enable-node-maintenance" | "disable-node-maintenance")] => {
                Command::CrmQueue(format!("{action} {}", node(n)?))
            }
            ["crm", n, "disarm-ha", mode @ ("freeze" | "ignore")] => {
                node(n)?;
                Command::CrmQueue(format!("disarm-ha {mode}"))
            }
            ["crm", n, "arm-ha"] => {
                node(n)?;
                Command::CrmQueue("arm-ha".into())
            }
            ["service", sid, rest @ ..] => {
                if !crate::scenario::is_sim_service_id(sid) {
                    return Err(format!("invalid service id '{sid}'"));
                }
                let action = match rest {
                    [state @ ("started" | "stopped" | "disabled" | "ignored" | "enabled")] => {
                        ServiceAction::SetState(
                            RequestState::parse_with_alias(state).unwrap_or(RequestState::Started),
                        )
                    }
                    [task @ ("migrate" | "relocate"), target] => {
                        ServiceAction::Queue(format!("{task} {sid} {target}"))
                    }
                    ["stop", timeout] => {
                        timeout
                            .parse::<i64>()
                            .map_err(|_| "stop timeout must be a whole number".to_string())?;
                        ServiceAction::Queue(format!("stop {sid} {timeout}"))
                    }
                    ["add", n, rest @ ..] => {
                        let state = match rest.first() {
                            None => RequestState::Started,
                            Some(s) => RequestState::parse_with_alias(s)
                                .ok_or_else(|| format!("unknown state '{s}'"))?,
                        };
                        let running = match rest.get(1) {
                            None => false,
                            Some(r) => {
                                r.parse::<i64>()
                                    .map_err(|_| "running flag must be 0 or 1".to_string())?
                                    != 0
                            }
                        };
                        ServiceAction::Add {
                            node: node(n)?,
                            state,
                            running,
                        }
                    }
                    ["delete"] => ServiceAction::Delete,
                    ["lock"] => ServiceAction::Lock("backup".into()),
                    ["lock", name] => ServiceAction::Lock(name.to_string()),
                    ["unlock"] => ServiceAction::Unlock(None),
                    ["unlock", name] => ServiceAction::Unlock(Some(name.to_string())),
                    ["set-static-stats", stats @ ..] => {
                        let (maxcpu, maxmem_mib) = parse_stats(stats, ["maxcpu", "maxmem"])?;
                        ServiceAction::SetStaticStats { maxcpu, maxmem_mib }
                    }
                    ["set-dynamic-stats", stats @ ..] => {
                        let (cpu, mem_mib) = parse_stats(stats, ["cpu", "mem"])?;
                        ServiceAction::SetDynamicStats { cpu, mem_mib }
                    }
                    ["manual-migrate", n] => ServiceAction::ManualMigrate(node(n)?),
                    _ => return Err("unknown service command".into()),
                };
                Command::Service {
                    sid: sid.to_string(),
                    action,
                }
            }
            _ => return Err("unknown command".into()),
        })
    }
}
