//! The HA stack's only window on the world. The simulator and the node daemon each
//! implement it; nothing in this crate does IO of its own.

use ferrox_crs::{NodeStats, ResourceStats, UsageMode};
use ferrox_types::{
    DatacenterConfig, GroupsConfig, LrmStatus, ManagerStatus, RulesConfig, ServiceConfig,
};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Notice,
    Warning,
    Err,
    /// A notification to the administrator (fencing events).
    Email,
}

impl LogLevel {
    /// The level as Proxmox VE's simulator prints it: four characters at most.
    pub fn short(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Notice => "noti",
            LogLevel::Warning => "warn",
            LogLevel::Err => "err",
            LogLevel::Email => "emai",
        }
    }
}

/// A failure of the shared configuration store (e.g. not mounted or not writable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError(pub String);

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvError {}

pub type EnvResult<T> = Result<T, EnvError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub online: bool,
}

/// An open watchdog registration; dropping it without closing lets the watchdog fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogHandle(pub String);

/// A change to one resource's configuration made by the HA stack itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceChange {
    /// The `stop` CRM command persists the stopped request state.
    RequestStopped,
    /// Group migration: drop the group reference, keep failback only where it was on.
    DropGroup { failback: bool },
}

/// What the LRM asks the environment to do to one of its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAction {
    Start,
    /// A clean shutdown within `timeout` seconds (the environment's default if none).
    Shutdown {
        timeout: Option<i64>,
    },
    /// A move to `target`: live when `online`, else stopped first and moved (relocate).
    Migrate {
        target: String,
        online: bool,
    },
}

/// A state change the master made, for the HA history (fence events, recovery
/// timelines): `subject` is a node name or a service id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub subject: String,
    pub from: String,
    pub to: String,
    /// The service's node after the change (services only).
    pub node: Option<String>,
}

pub trait HaEnv {
    fn nodename(&self) -> String;
    fn get_time(&self) -> i64;
    fn log(&mut self, level: LogLevel, msg: &str);
    /// Keeps a node or service state change in the HA history; the simulator keeps none
    /// (its log already has every change).
    fn record_state_change(&mut self, _change: StateChange) {}
    fn send_notification(&mut self, subject: &str, text: &str) {
        self.log(LogLevel::Email, &format!("{subject}: {text}"));
    }

    /// Seconds a node must be offline before its services are fenced (Proxmox VE: 60).
    fn fence_delay(&self) -> i64 {
        crate::node_status::FENCE_DELAY
    }

    // --- cluster membership and quorum
    fn quorate(&self) -> bool;
    fn get_node_info(&self) -> BTreeMap<String, NodeInfo>;
    /// Whether the local view of the cluster state could be refreshed this round.
    fn cluster_state_update(&mut self) -> bool;
    fn node_version(&self, node: &str) -> Option<String>;
    /// (shutting down, rebooting) for this node.
    fn is_node_shutdown(&self) -> (bool, bool);

    // --- cluster state
    fn read_manager_status(&self) -> EnvResult<ManagerStatus>;
    fn write_manager_status(&mut self, status: &ManagerStatus) -> EnvResult<()>;
    fn read_lrm_status(&self, node: &str) -> EnvResult<LrmStatus>;
    fn write_lrm_status(&mut self, status: &LrmStatus) -> EnvResult<()>;
    fn read_service_config(&self) -> EnvResult<ServiceConfig>;
    /// The digest of the resource configuration, where the store has one.
    fn service_config_digest(&self) -> Option<String> {
        None
    }
    fn update_resource_config(&mut self, sid: &str, change: ResourceChange) -> EnvResult<()>;
    fn read_rules_config(&self) -> EnvResult<RulesConfig>;
    fn write_rules_config(&mut self, rules: &RulesConfig) -> EnvResult<()>;
    /// The legacy groups file, `None` when it does not exist.
    fn read_groups_config(&self) -> EnvResult<Option<GroupsConfig>>;
    fn delete_groups_config(&mut self) -> EnvResult<()>;
    /// Takes and clears the queued CRM commands.
    fn read_crm_commands(&mut self) -> EnvResult<Vec<String>>;
    /// Whether CRM commands are queued, without taking them.
    fn has_pending_crm_commands(&self) -> bool;
    fn datacenter_config(&self) -> EnvResult<DatacenterConfig>;

    // --- locks and watchdog
    fn get_ha_manager_lock(&mut self) -> bool;
    fn release_ha_manager_lock(&mut self) -> bool;
    /// The agent lock of `node`; the master takes a dead node's lock to acknowledge fencing.
    fn get_ha_agent_lock(&mut self, node: &str) -> bool;
    fn release_ha_agent_lock(&mut self) -> bool;
    fn watchdog_open(&mut self) -> WatchdogHandle;
    fn watchdog_update(&mut self, handle: &WatchdogHandle);
    fn watchdog_close(&mut self, handle: &WatchdogHandle);

    // --- scheduling inputs
    /// Node stats for the scheduler mode, or the reason the mode cannot be used.
    fn node_usage_stats(&mut self, mode: UsageMode) -> Result<BTreeMap<String, NodeStats>, String>;
    fn service_usage_stats(&mut self, mode: UsageMode, sid: &str) -> Option<ResourceStats>;
    /// Online nodes that cannot run the service, with the reason: its CPU model, a
    /// network bridge it needs; `live_from` is the node a live migration would start from.
    /// Nodes whose CPU is unknown are not refused (the simulator knows none).
    fn refused_nodes(&mut self, _sid: &str, _live_from: Option<&str>) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Guests that are not HA-managed but occupy capacity: (sid, node, running).
    fn non_ha_services(&self) -> Vec<(String, String, bool)> {
        Vec::new()
    }

    // --- the services on this node
    fn service_type_known(&self, service_type: &str) -> bool;
    fn service_is_running(&mut self, sid: &str) -> bool;
    fn service_start(&mut self, sid: &str);
    fn service_shutdown(&mut self, sid: &str, timeout: Option<i64>);
    /// Moves the service to `target` (live if `online`); false when the move failed.
    fn service_migrate(&mut self, sid: &str, target: &str, online: bool) -> bool;
    /// Removes the first of `locks` the service holds; returns its name.
    fn service_remove_locks(&mut self, sid: &str, locks: &[&str]) -> Option<String>;
    /// Reassigns a fenced service's config to its recovery node.
    fn steal_service(&mut self, sid: &str, from: &str, to: &str);
    /// The node whose config directory holds the service now, where the environment can
    /// tell. A migration whose source failed after it handed the config over leaves the
    /// config (and the running guest) on the target while the service state still names
    /// the source.
    fn service_config_node(&mut self, _sid: &str) -> Option<String> {
        None
    }

    // --- concurrent service actions (Proxmox VE forks LRM workers)
    /// How many service actions the LRM runs at once (Proxmox VE: `max_workers` of
    /// datacenter.cfg, default 4). 0, the default (the simulator): each runs inline, in
    /// service order, as Proxmox VE's test environment does.
    fn max_workers(&self) -> usize {
        0
    }
    /// Begins `action` for `sid` on a worker; false when no worker could be started.
    /// Called only when [`Self::max_workers`] is above 0.
    fn begin_service_action(&mut self, _sid: &str, _action: &ServiceAction) -> bool {
        false
    }
    /// Waits a little (about a second) for begun actions and returns those that finished,
    /// each with whether it succeeded (for a start or stop the LRM checks the service
    /// itself).
    fn finished_service_actions(&mut self) -> Vec<(String, bool)> {
        Vec::new()
    }
}
