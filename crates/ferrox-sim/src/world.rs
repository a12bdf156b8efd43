//! The simulated cluster's shared state: hardware, the "cluster filesystem" documents,
//! locks, watchdogs, service processes and the event log.

use crate::scenario::{NodeHardware, Scenario};
use ferrox_types::{DatacenterConfig, LrmStatus, ManagerStatus, ServiceConfig};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownKind {
    Reboot,
    Shutdown,
}

impl ShutdownKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownKind::Reboot => "reboot",
            ShutdownKind::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeState {
    pub power: bool,
    pub network: bool,
    pub maxcpu: Option<f64>,
    pub maxmem: Option<f64>,
    pub version: String,
    pub cfs_rw: bool,
    pub cfs_update: bool,
    pub shutdown: Option<ShutdownKind>,
    pub crm_clock: i64,
    pub lrm_clock: i64,
}

pub struct World {
    /// The hardware clock H.
    pub time: i64,
    nodes: BTreeMap<String, NodeState>,
    pub manager_status: ManagerStatus,
    pub lrm_status: BTreeMap<String, LrmStatus>,
    pub services: ServiceConfig,
    /// node → sid → running
    pub running: BTreeMap<String, BTreeMap<String, bool>>,
    pub rules_text: String,
    pub groups_text: Option<String>,
    pub datacenter: DatacenterConfig,
    pub static_stats: BTreeMap<String, (f64, f64)>,
    pub dynamic_stats: BTreeMap<String, (f64, f64)>,
    /// lock name → (time, holder)
    pub locks: BTreeMap<String, (i64, String)>,
    /// handle → (node, last update)
    pub watchdogs: BTreeMap<String, (String, i64)>,
    pub watchdog_count: u64,
    pub crm_commands: Vec<String>,
    /// Failure counters of `fa:` test services, shared across nodes like upstream's.
    pub fail_start_tries: BTreeMap<String, u32>,
    pub fail_migrate_tries: BTreeMap<String, u32>,
    pub lrm_status_written: bool,
    log: String,
}

impl World {
    pub fn new(s: Scenario) -> Self {
        let nodes = s
            .nodes
            .iter()
            .map(|(name, hw)| {
                (
                    name.clone(),
                    NodeState {
                        power: hw.power,
                        network: hw.network,
                        maxcpu: hw.maxcpu,
                        maxmem: hw.maxmem,
                        version: hw.version.clone(),
                        cfs_rw: true,
                        cfs_update: true,
                        shutdown: None,
                        crm_clock: 0,
                        lrm_clock: 0,
                    },
                )
            })
            .collect();
        World {
            time: 0,
            nodes,
            manager_status: s.manager_status,
            lrm_status: BTreeMap::new(),
            services: s.services,
            running: s.running,
            rules_text: s.rules_text,
            groups_text: s.groups_text,
            datacenter: s.datacenter,
            static_stats: s.static_stats,
            dynamic_stats: s.dynamic_stats,
            locks: BTreeMap::new(),
            watchdogs: BTreeMap::new(),
            watchdog_count: 0,
            crm_commands: Vec::new(),
            fail_start_tries: BTreeMap::new(),
            fail_migrate_tries: BTreeMap::new(),
            lrm_status_written: false,
            log: String::new(),
        }
    }

    pub fn node(&self, name: &str) -> &NodeState {
        &self.nodes[name]
    }

    pub fn node_mut(&mut self, name: &str) -> &mut NodeState {
        self.nodes.get_mut(name).expect("known node")
    }

    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    /// The node list as the command parser validates it.
    pub fn hardware_nodes(&self) -> BTreeMap<String, NodeHardware> {
        self.nodes
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    NodeHardware {
                        power: s.power,
                        network: s.network,
                        maxcpu: s.maxcpu,
                        maxmem: s.maxmem,
                        version: s.version.clone(),
                    },
                )
            })
            .collect()
    }

    /// Online means powered and networked, and inside a quorate partition.
    pub fn node_info(&self) -> (BTreeMap<String, bool>, bool) {
        let mut info: BTreeMap<String, bool> = self
            .nodes
            .iter()
            .map(|(n, s)| (n.clone(), s.power && s.network))
            .collect();
        let online = info.values().filter(|o| **o).count();
        let quorate = online > self.nodes.len() / 2;
        if !quorate {
            info.values_mut().for_each(|o| *o = false);
        }
        (info, quorate)
    }

    pub fn sync_clocks(&mut self) {
        let t = self.time;
        for s in self.nodes.values_mut() {
            s.lrm_clock = t;
            s.crm_clock = t;
        }
    }

    pub fn advance_to_clock(&mut self, node: &str, daemon: crate::env::Daemon) {
        let s = &self.nodes[node];
        let clock = match daemon {
            crate::env::Daemon::Crm => s.crm_clock,
            crate::env::Daemon::Lrm => s.lrm_clock,
        };
        self.time = self.time.max(clock);
    }

    pub fn remove_watchdogs(&mut self, node: &str) {
        self.watchdogs.retain(|_, (n, _)| n != node);
    }

    /// Drops the node's expired watchdogs; true if any had expired.
    pub fn expire_watchdogs(&mut self, node: &str, timeout: i64) -> bool {
        let now = self.time;
        let before = self.watchdogs.len();
        self.watchdogs
            .retain(|_, (n, updated)| !(n == node && now - *updated > timeout));
        self.watchdogs.len() != before
    }

    pub fn log_line(&mut self, level: &str, time: i64, source: &str, msg: &str) {
        let msg = msg.strip_suffix('\n').unwrap_or(msg);
        let _ = writeln!(self.log, "{level:<5} {time:>5} {source:>12}: {msg}");
    }

    pub fn log_hw(&mut self, level: &str, source: &str, msg: &str) {
        let t = self.time;
        self.log_line(level, t, source, msg);
    }

    pub fn take_log(&mut self) -> String {
        std::mem::take(&mut self.log)
    }
}
