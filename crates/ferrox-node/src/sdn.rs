//! The cluster's SDN configuration in the store: what is being edited (`sdn/zones.cfg`,
//! `sdn/vnets.cfg`, `sdn/subnets.cfg`) and what is running (`sdn/running`, written by
//! `PUT /cluster/sdn`, as Proxmox VE keeps `.running-config`). Every node applies the
//! running configuration to its host when it changes (and at start), and records the
//! result in `nodes/<node>/sdn_applied`, which the apply task waits for.

use crate::host::{network as host_net, sdn as host_sdn};
use crate::Node;
use ferrox_api::tasks::TaskLog;
use ferrox_api::ApiError;
use ferrox_store::{Expect, Op};
use ferrox_types::sdn::SdnConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ZONES: &str = "sdn/zones.cfg";
pub const VNETS: &str = "sdn/vnets.cfg";
pub const SUBNETS: &str = "sdn/subnets.cfg";
pub const RUNNING: &str = "sdn/running";

/// The running configuration as stored: the three files' texts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Running {
    zones: String,
    vnets: String,
    subnets: String,
}

/// What a node did with a running configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn applied_path(node: &str) -> String {
    format!("nodes/{node}/sdn_applied")
}

fn parse_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("SDN configuration: {e}"))
}

impl Node {
    /// The SDN configuration being edited.
    pub fn sdn_config(&self) -> Result<SdnConfig, ApiError> {
        let text = |p: &str| self.tree.get(p).map(|e| e.data).unwrap_or_default();
        SdnConfig::parse(&text(ZONES), &text(VNETS), &text(SUBNETS)).map_err(parse_error)
    }

    /// The running SDN configuration (the last one applied).
    pub fn sdn_running(&self) -> Result<SdnConfig, ApiError> {
        let Some(entry) = self.tree.get(RUNNING) else {
            return Ok(SdnConfig::default());
        };
        let r: Running = serde_json::from_str(&entry.data).map_err(parse_error)?;
        SdnConfig::parse(&r.zones, &r.vnets, &r.subnets).map_err(parse_error)
    }

    /// Writes `cfg` as the edited configuration, checked, in one transaction.
    pub fn save_sdn(&self, cfg: &SdnConfig) -> Result<(), ApiError> {
        cfg.check()
            .map_err(|e| ApiError::param(&e.field, e.message))?;
        let ops = [
            (ZONES, cfg.zones_text()),
            (VNETS, cfg.vnets_text()),
            (SUBNETS, cfg.subnets_text()),
        ]
        .into_iter()
        .map(|(path, data)| Op::Put {
            path: path.to_string(),
            data,
            expect: Expect::Any,
        })
        .collect();
        self.tree.txn(ops).map_err(crate::cluster::store_error)?;
        Ok(())
    }

    /// The worker of `PUT /cluster/sdn` (`reloadnetworkall`): the edited configuration
    /// becomes the running one; every node applies it; the task waits for each and fails
    /// naming the nodes where applying failed.
    pub fn apply_sdn(&self, log: &TaskLog) -> Result<(), String> {
        let cfg = self.sdn_config().map_err(|e| e.message)?;
        cfg.check().map_err(|e| e.to_string())?;
        let running = Running {
            zones: cfg.zones_text(),
            vnets: cfg.vnets_text(),
            subnets: cfg.subnets_text(),
        };
        let text = serde_json::to_string(&running).map_err(|e| e.to_string())?;
        let digest = ferrox_store::digest(&text);
        self.tree
            .put(RUNNING, &text, Expect::Any)
            .map_err(|e| e.to_string())?;
        let members: Vec<String> = self
            .store
            .status()
            .members
            .into_iter()
            .map(|m| m.member.name)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut failed = Vec::new();
        for node in members {
            log.log(format!("{node}: reloading network config"));
            loop {
                let applied: Option<Applied> = self
                    .tree
                    .get(&applied_path(&node))
                    .and_then(|e| serde_json::from_str(&e.data).ok());
                match applied {
                    Some(a) if a.digest == digest => {
                        match a.error {
                            Some(e) => {
                                log.warn(format!("{node}: {e}"));
                                failed.push(node.clone());
                            }
                            None => log.log(format!("{node}: applied")),
                        }
                        break;
                    }
                    // A node that is down applies the running configuration when it
                    // starts again.
                    _ if Instant::now() > deadline => {
                        log.warn(format!("{node}: not applied within 30 s (down?); it applies the configuration when it is back"));
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("not applied on: {}", failed.join(", ")))
        }
    }

    /// Whether `bridge` is a vnet of the running configuration that exists on `node`.
    pub fn is_vnet_on(&self, bridge: &str, node: &str) -> bool {
        self.sdn_running().is_ok_and(|cfg| {
            cfg.vnets
                .get(bridge)
                .and_then(|v| cfg.zones.get(&v.zone))
                .is_some_and(|z| z.on_node(node))
        })
    }

    /// The zone of `bridge` for permission paths: its vnet's zone, else `localnetwork`.
    pub fn zone_of_bridge(&self, bridge: &str) -> String {
        self.sdn_running()
            .ok()
            .and_then(|cfg| cfg.vnets.get(bridge).map(|v| v.zone.clone()))
            .unwrap_or_else(|| "localnetwork".into())
    }
}

fn local_addresses() -> BTreeSet<Ipv4Addr> {
    host_net::links()
        .unwrap_or_default()
        .iter()
        .flat_map(|l| l.addresses.iter())
        .filter_map(|(a, _)| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// Applies the running configuration whenever it changes (checked every second) and once
/// at start; records the outcome for the apply task. Nodes in `--net-mode user` record
/// it as applied without touching the host.
pub fn spawn_applier(node: Arc<Node>) {
    std::thread::spawn(move || {
        let me = node.opts.node_name.clone();
        let mut last_digest = String::new();
        let mut previous: Vec<host_sdn::VnetPlan> = Vec::new();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(entry) = node.tree.get(RUNNING) else {
                continue;
            };
            let digest = ferrox_store::digest(&entry.data);
            if digest == last_digest {
                continue;
            }
            let outcome = (|| -> Result<Vec<host_sdn::VnetPlan>, String> {
                let cfg = node.sdn_running().map_err(|e| e.message)?;
                let plan = host_sdn::plan(&cfg, &me, &local_addresses())?;
                if node.opts.net_mode == crate::NetMode::Bridge {
                    host_sdn::apply(&plan, &previous, &node.dirs.run)?;
                }
                Ok(plan)
            })();
            let error = match outcome {
                Ok(plan) => {
                    previous = plan;
                    None
                }
                Err(e) => {
                    tracing::warn!("SDN: {e}");
                    Some(e)
                }
            };
            let record = Applied {
                digest: digest.clone(),
                error,
            };
            let Ok(text) = serde_json::to_string(&record) else {
                continue;
            };
            if node
                .tree
                .put(&applied_path(&me), &text, Expect::Any)
                .is_ok()
            {
                last_digest = digest;
            }
        }
    });
}
