//! HA on a real node: the `HaEnv` of `ferrox-ha` over the cluster store, this node's QEMU
//! guests and the watchdog process, and the CRM and LRM loops that drive the same
//! manager code the simulator runs. Decisions stay in `ferrox-ha`; this is the plumbing.
//!
//! Store layout (Proxmox VE's): `ha/resources.cfg`, `ha/rules.cfg`, `ha/groups.cfg`,
//! `ha/manager_status`, `ha/crm_commands`, `nodes/<node>/lrm_status`, `datacenter.cfg`;
//! plus `nodes/<node>/ha_node_stats` (capacity and usage for the scheduler).

pub mod status;
pub mod watchdog;

use crate::guests::kind::{kind_of, kinds};
use crate::ha::watchdog::{Reply, WatchdogClient};
use crate::Node;
use ferrox_api::{TaskError, TaskOutcome};
use ferrox_api_types::ha::HaHistoryEntry;
use ferrox_crs::{NodeStats, ResourceStats, UsageMode};
use ferrox_ha::{
    Crm, EnvError, EnvResult, HaEnv, LogLevel, Lrm, NodeInfo, ResourceChange, ServiceAction,
    StateChange, WatchdogHandle,
};
use ferrox_store::Expect;
use ferrox_types::{
    DatacenterConfig, GroupsConfig, HaResources, LrmStatus, ManagerStatus, ResourceConfig,
    RulesConfig, ServiceConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const RESOURCES: &str = "ha/resources.cfg";
pub const RULES: &str = "ha/rules.cfg";
pub const GROUPS: &str = "ha/groups.cfg";
pub const MANAGER_STATUS: &str = "ha/manager_status";
/// The master's state changes ([`HaHistoryEntry`] list, the newest [`HISTORY_KEPT`]).
pub const HISTORY: &str = "ha/history";
pub const HISTORY_KEPT: usize = 1000;
pub const CRM_COMMANDS: &str = "ha/crm_commands";

/// HA timings. docs/fencing.md explains why the defaults are safe.
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// CRM and LRM loop interval.
    pub round: Duration,
    /// Lease of the manager and agent locks.
    pub lock_lease: Duration,
    /// The longest the watchdog keeps guests alive after a feed.
    pub watchdog_timeout: Duration,
    /// Bound on the clock difference between nodes.
    pub max_clock_skew: Duration,
    /// Time the watchdog needs to notice and kill the guests.
    pub kill_time: Duration,
    /// How long a node must be offline before its services are fenced.
    pub fence_delay: Duration,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            round: Duration::from_secs(2),
            lock_lease: Duration::from_secs(7),
            watchdog_timeout: Duration::from_secs(5),
            max_clock_skew: Duration::from_secs(1),
            kill_time: Duration::from_secs(1),
            fence_delay: Duration::from_secs(2),
        }
    }
}

impl HaSettings {
    /// The time a lock holder may keep its guests alive after sending a renewal:
    /// the lease minus the skew and the kill time (docs/cluster-store.md, rule 3).
    pub fn safe_window(&self) -> Duration {
        self.lock_lease
            .saturating_sub(self.max_clock_skew)
            .saturating_sub(self.kill_time)
    }

    /// Refuses timings under which a fenced node's guests could still run when the
    /// master recovers them.
    pub fn check(&self) -> Result<(), String> {
        if self.watchdog_timeout.is_zero() || self.round.is_zero() {
            return Err("ha-round and watchdog-timeout must be positive".into());
        }
        if self.safe_window() < self.round * 2 {
            return Err(format!(
                "ha-lock-lease ({:?}) must exceed two rounds ({:?}) plus clock skew and kill time, \
                 or the agent lock expires between renewals",
                self.lock_lease, self.round
            ));
        }
        Ok(())
    }
}

/// What the scheduler needs to know of a node, written by its LRM every round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeCapacity {
    pub maxcpu: f64,
    pub maxmem: f64,
    pub cpu: f64,
    pub mem: f64,
    /// Running guests: vmid -> (cpu in cores, memory in bytes).
    pub guests: BTreeMap<u32, (f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Crm,
    Lrm,
}

pub struct NodeEnv {
    node: Arc<Node>,
    daemon: Daemon,
    settings: HaSettings,
    watchdog: Arc<WatchdogClient>,
    /// When the last successful renewal of a lock this daemon relies on was sent.
    renewal_sent: Option<Instant>,
    /// The open watchdog handle, and the last LRM status written (for keep-alives
    /// while a long service action blocks the loop).
    watchdog_armed: bool,
    last_lrm_status: Option<LrmStatus>,
    /// The CPU refusals last logged per service (each change is logged once).
    refusals_logged: BTreeMap<String, BTreeMap<String, String>>,
    /// Service actions running on worker threads report here: (sid, succeeded).
    finished_tx: std::sync::mpsc::Sender<(String, bool)>,
    finished_rx: std::sync::mpsc::Receiver<(String, bool)>,
    /// Why the watchdog's fence still holds, as last logged (each change is logged once).
    fence_logged: Option<String>,
    /// State changes of this round, written with the manager status.
    history: Vec<HaHistoryEntry>,
}

fn env_err(e: impl std::fmt::Display) -> EnvError {
    EnvError(e.to_string())
}

fn now_secs() -> i64 {
    ferrox_api::auth::now()
}

impl NodeEnv {
    pub fn new(
        node: &Arc<Node>,
        daemon: Daemon,
        settings: &HaSettings,
        wd: &Arc<WatchdogClient>,
    ) -> NodeEnv {
        let (finished_tx, finished_rx) = std::sync::mpsc::channel();
        NodeEnv {
            node: Arc::clone(node),
            daemon,
            settings: settings.clone(),
            watchdog: Arc::clone(wd),
            renewal_sent: None,
            watchdog_armed: false,
            last_lrm_status: None,
            refusals_logged: BTreeMap::new(),
            finished_tx,
            finished_rx,
            fence_logged: None,
            history: Vec::new(),
        }
    }

    fn me(&self) -> &str {
        &self.node.opts.node_name
    }

    fn read_text(&self, path: &str) -> Option<String> {
        self.node.tree.get(path).map(|e| e.data)
    }

    fn write_text(&self, path: &str, data: &str) -> EnvResult<()> {
        self.node
            .tree
            .put(path, data, Expect::Any)
            .map(drop)
            .map_err(env_err)
    }

    fn lock(&mut self, name: &str, relied_on: bool) -> bool {
        let sent = Instant::now();
        let store = Arc::clone(&self.node.store);
        let owner = self.me().to_string();
        let lease = self.settings.lock_lease;
        let granted = self
            .node
            .rt
            .block_on(store.lock(name, &owner, lease))
            .is_ok_and(|r| r.is_ok());
        if granted && relied_on {
            self.renewal_sent = Some(sent);
        }
        granted
    }

    fn unlock(&mut self, name: &str) -> bool {
        let store = Arc::clone(&self.node.store);
        let owner = self.me().to_string();
        self.node
            .rt
            .block_on(store.unlock(name, &owner))
            .unwrap_or(false)
    }

    /// How long the watchdog may keep this node's guests alive from now: never past the
    /// end of the lease the last renewal bought.
    fn watchdog_allowance(&self) -> Duration {
        let used = self
            .renewal_sent
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX);
        self.settings
            .safe_window()
            .saturating_sub(used)
            .min(self.settings.watchdog_timeout)
    }

    fn handle_id(&self) -> String {
        format!(
            "{}-{}",
            self.me(),
            match self.daemon {
                Daemon::Crm => "crm",
                Daemon::Lrm => "lrm",
            }
        )
    }

    /// Before this daemon takes a lock it relies on: a node the watchdog fenced takes none
    /// until the service actions begun before the fence have ended and the watchdog has
    /// killed what they left (see the watchdog module).
    fn clean_after_fence(&mut self) -> bool {
        match self.watchdog.settle_fence() {
            Ok(()) => {
                if self.fence_logged.take().is_some() {
                    self.log(
                        LogLevel::Info,
                        "the watchdog lifted its fence: this node is clean",
                    );
                }
                true
            }
            Err(why) => {
                if self.fence_logged.as_deref() != Some(why.as_str()) {
                    self.log(LogLevel::Err, &why);
                    self.fence_logged = Some(why);
                }
                false
            }
        }
    }

    fn log_watchdog_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Ok => {}
            Reply::Fenced => self.log(
                LogLevel::Err,
                "the watchdog fenced this node: it keeps killing guests until the node is clean",
            ),
            Reply::Refused | Reply::Unreachable => {
                self.log(LogLevel::Err, "cannot reach the watchdog process")
            }
        }
    }

    /// Runs a guest operation as a task (visible in the task list) and waits for it,
    /// keeping the node's lock, watchdog and status alive every round meanwhile.
    fn run_task(
        &mut self,
        kind: &str,
        vmid: u32,
        work: impl FnOnce(&Arc<Node>, &ferrox_api::TaskLog) -> Result<(), TaskError> + Send + 'static,
    ) -> bool {
        let node = Arc::clone(&self.node);
        let round = self.settings.round;
        let _in_flight = self.watchdog.action_begins();
        match run_guest_task(&node, kind, vmid, work, round, || self.keepalive()) {
            Ok(ok) => ok,
            Err(msg) => {
                self.log(LogLevel::Err, &msg);
                false
            }
        }
    }

    /// What the LRM loop does every round besides acting, for when one action (a long
    /// migration, a slow shutdown) blocks it: renew the agent lock, feed the watchdog only
    /// if that worked, and refresh the LRM status so the master sees the node alive.
    /// Proxmox VE gets the same from running actions in forked workers.
    fn keepalive(&mut self) {
        if self.daemon != Daemon::Lrm {
            return;
        }
        if !self.renew_protection() {
            self.log(
                LogLevel::Warning,
                "lost the agent lock during a service action",
            );
        }
        if let Some(mut status) = self.last_lrm_status.clone() {
            status.timestamp = Some(now_secs());
            let _ = self.write_lrm_status(&status);
        }
    }

    /// While the watchdog protects this daemon's lock (the LRM's agent lock, the master's
    /// manager lock): renews the lock and feeds the watchdog only if that worked. False
    /// when the renewal failed. Called every round by the HA code and once more in the
    /// middle of each round, so that a store leader change (no writes for an election)
    /// finds the last renewal at most half a round old: the watchdog's allowance, not the
    /// round, is then what an election must fit in.
    pub fn renew_protection(&mut self) -> bool {
        if !self.watchdog_armed {
            return true;
        }
        let lock = match self.daemon {
            Daemon::Lrm => format!("ha_agent_{}_lock", self.me()),
            Daemon::Crm => "ha_manager_lock".to_string(),
        };
        if !self.lock(&lock, true) {
            return false;
        }
        let ms = self.watchdog_allowance().as_millis();
        let reply = self
            .watchdog
            .request(&format!("feed {} {ms}", self.handle_id()));
        self.log_watchdog_reply(reply);
        true
    }

    fn capacity(&self, node: &str) -> Option<NodeCapacity> {
        serde_json::from_str(&self.read_text(&format!("nodes/{node}/ha_node_stats"))?).ok()
    }

    /// Dynamic usage is the sum of this node's guests' measured usage (the metrics
    /// collector's per-guest CPU and RSS), not the host's: several nodes may share one
    /// host (tests, labs), and host-wide figures would count every node's guests.
    fn own_capacity(&self) -> NodeCapacity {
        let mem = crate::host::memory();
        let mut cap = NodeCapacity {
            maxcpu: crate::host::cpu_count() as f64,
            maxmem: mem.total as f64,
            ..NodeCapacity::default()
        };
        for (vmid, st, info) in self.node.guests.listing() {
            if let Some(i) = info {
                let (cpu, mem) = (i.cpu * st.cpus as f64, i.mem as f64);
                cap.cpu += cpu;
                cap.mem += mem;
                cap.guests.insert(vmid, (cpu, mem));
            }
        }
        cap
    }
}

impl HaEnv for NodeEnv {
    fn nodename(&self) -> String {
        self.me().to_string()
    }

    fn get_time(&self) -> i64 {
        now_secs()
    }

    fn log(&mut self, level: LogLevel, msg: &str) {
        let who = match self.daemon {
            Daemon::Crm => "crm",
            Daemon::Lrm => "lrm",
        };
        // The daemon's standard output is its log (Proxmox VE: syslog).
        println!("{} {} {who}: {msg}", now_secs(), level.short());
    }

    /// Fencing as Proxmox VE notifies it: `type=fencing`, an error when a node is to be
    /// fenced, informational once the fence is acknowledged.
    fn send_notification(&mut self, subject: &str, text: &str) {
        self.log(LogLevel::Email, &format!("{subject}: {text}"));
        let severity = if subject == "FENCE" { "error" } else { "info" };
        self.node.notify(crate::notify::Notification::new(
            severity,
            "fencing",
            format!("{subject}: {text}"),
            text.to_string(),
        ));
    }

    fn fence_delay(&self) -> i64 {
        self.settings.fence_delay.as_secs() as i64
    }

    fn quorate(&self) -> bool {
        self.node.store.status().quorate
    }

    /// A node is online while its LRM keeps writing its status through the store
    /// (which needs quorum): the same test for a dead, hung or cut-off node.
    fn get_node_info(&self) -> BTreeMap<String, NodeInfo> {
        let status = self.node.store.status();
        let fresh = (self.settings.round * 3).as_secs() as i64 + 1;
        let now = now_secs();
        status
            .members
            .iter()
            .map(|m| {
                let name = m.member.name.clone();
                let online = if name == self.me() {
                    status.quorate
                } else {
                    self.read_lrm_status(&name)
                        .ok()
                        .and_then(|s| s.timestamp)
                        .is_some_and(|t| now - t <= fresh)
                };
                (name, NodeInfo { online })
            })
            .collect()
    }

    fn cluster_state_update(&mut self) -> bool {
        true
    }

    fn node_version(&self, node: &str) -> Option<String> {
        self.node
            .store
            .status()
            .member_named(node)
            .map(|_| ferrox_api::core::PVE_VERSION.to_string())
    }

    /// A node shutdown or reboot requested through the API (a daemon stop is neither:
    /// Proxmox VE's LRM restart).
    fn is_node_shutdown(&self) -> (bool, bool) {
        match self.node.power.get() {
            Some(crate::bulk::Power::Shutdown) => (true, false),
            Some(crate::bulk::Power::Reboot) => (true, true),
            None => (false, false),
        }
    }

    fn read_manager_status(&self) -> EnvResult<ManagerStatus> {
        match self.read_text(MANAGER_STATUS) {
            Some(t) => serde_json::from_str(&t).map_err(env_err),
            None => Ok(ManagerStatus::default()),
        }
    }

    fn write_manager_status(&mut self, status: &ManagerStatus) -> EnvResult<()> {
        self.write_text(
            MANAGER_STATUS,
            &serde_json::to_string(status).map_err(env_err)?,
        )?;
        if !self.history.is_empty() {
            // Only the master writes it; a failed write keeps the changes for the next round.
            let mut kept: Vec<HaHistoryEntry> = self
                .read_text(HISTORY)
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            kept.extend(self.history.iter().cloned());
            let excess = kept.len().saturating_sub(HISTORY_KEPT);
            kept.drain(..excess);
            if self
                .write_text(HISTORY, &serde_json::to_string(&kept).map_err(env_err)?)
                .is_ok()
            {
                self.history.clear();
            }
        }
        Ok(())
    }

    fn record_state_change(&mut self, change: StateChange) {
        self.history.push(HaHistoryEntry {
            time: now_secs(),
            kind: if change.node.is_some() {
                "service"
            } else {
                "node"
            }
            .into(),
            id: change.subject,
            from: change.from,
            to: change.to,
            node: change.node,
        });
    }

    fn read_lrm_status(&self, node: &str) -> EnvResult<LrmStatus> {
        match self.read_text(&format!("nodes/{node}/lrm_status")) {
            Some(t) => serde_json::from_str(&t).map_err(env_err),
            None => Ok(LrmStatus::default()),
        }
    }

    fn write_lrm_status(&mut self, status: &LrmStatus) -> EnvResult<()> {
        self.last_lrm_status = Some(status.clone());
        let me = self.me().to_string();
        let ops = vec![
            ferrox_store::Op::Put {
                path: format!("nodes/{me}/lrm_status"),
                data: serde_json::to_string(status).map_err(env_err)?,
                expect: Expect::Any,
            },
            ferrox_store::Op::Put {
                path: format!("nodes/{me}/ha_node_stats"),
                data: serde_json::to_string(&self.own_capacity()).map_err(env_err)?,
                expect: Expect::Any,
            },
        ];
        self.node.tree.txn(ops).map(drop).map_err(env_err)
    }

    fn read_service_config(&self) -> EnvResult<ServiceConfig> {
        let resources =
            HaResources::parse(&self.read_text(RESOURCES).unwrap_or_default()).map_err(env_err)?;
        let mut out = ServiceConfig::new();
        for (sid, r) in resources.resources {
            let Some((kind, id)) = kind_of(&sid) else {
                continue;
            };
            let Some(owner) = kind.owner(&self.node, id) else {
                continue;
            };
            let mut cfg = ResourceConfig::new(&owner, r.state);
            cfg.lock = kind.config_lock(&self.node, &owner, id);
            cfg.group = r.group;
            cfg.failback = r.failback;
            cfg.max_restart = r.max_restart;
            cfg.max_relocate = r.max_relocate;
            out.insert(sid, cfg);
        }
        Ok(out)
    }

    fn service_config_digest(&self) -> Option<String> {
        self.read_text(RESOURCES).map(|t| ferrox_store::digest(&t))
    }

    fn update_resource_config(&mut self, sid: &str, change: ResourceChange) -> EnvResult<()> {
        let text = self.read_text(RESOURCES).unwrap_or_default();
        let mut cfg = HaResources::parse(&text).map_err(env_err)?;
        let r = cfg
            .resources
            .get_mut(sid)
            .ok_or_else(|| EnvError(format!("no such resource '{sid}'")))?;
        match change {
            ResourceChange::RequestStopped => r.state = ferrox_types::RequestState::Stopped,
            ResourceChange::DropGroup { failback } => {
                r.group = None;
                r.failback = failback;
            }
        }
        self.node
            .tree
            .put(
                RESOURCES,
                &cfg.to_text(),
                Expect::Digest(ferrox_store::digest(&text)),
            )
            .map(drop)
            .map_err(env_err)
    }

    fn read_rules_config(&self) -> EnvResult<RulesConfig> {
        RulesConfig::parse(&self.read_text(RULES).unwrap_or_default()).map_err(env_err)
    }

    fn write_rules_config(&mut self, rules: &RulesConfig) -> EnvResult<()> {
        self.write_text(RULES, &rules.to_section_text())
    }

    fn read_groups_config(&self) -> EnvResult<Option<GroupsConfig>> {
        self.read_text(GROUPS)
            .map(|t| GroupsConfig::parse(&t).map_err(env_err))
            .transpose()
    }

    fn delete_groups_config(&mut self) -> EnvResult<()> {
        self.node
            .tree
            .delete(GROUPS, Expect::Any)
            .map(drop)
            .map_err(env_err)
    }

    fn read_crm_commands(&mut self) -> EnvResult<Vec<String>> {
        let Some(text) = self.read_text(CRM_COMMANDS) else {
            return Ok(Vec::new());
        };
        self.node
            .tree
            .delete(CRM_COMMANDS, Expect::Digest(ferrox_store::digest(&text)))
            .map_err(env_err)?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    fn has_pending_crm_commands(&self) -> bool {
        self.read_text(CRM_COMMANDS)
            .is_some_and(|t| !t.trim().is_empty())
    }

    fn datacenter_config(&self) -> EnvResult<DatacenterConfig> {
        DatacenterConfig::parse_cfg(&self.read_text("datacenter.cfg").unwrap_or_default())
            .map_err(env_err)
    }

    fn get_ha_manager_lock(&mut self) -> bool {
        let own = self.daemon == Daemon::Crm;
        if own && !self.clean_after_fence() {
            return false;
        }
        self.lock("ha_manager_lock", own)
    }

    fn release_ha_manager_lock(&mut self) -> bool {
        self.unlock("ha_manager_lock")
    }

    fn get_ha_agent_lock(&mut self, node: &str) -> bool {
        let own = node == self.me() && self.daemon == Daemon::Lrm;
        if own && !self.clean_after_fence() {
            return false;
        }
        self.lock(&format!("ha_agent_{node}_lock"), own)
    }

    fn release_ha_agent_lock(&mut self) -> bool {
        let name = format!("ha_agent_{}_lock", self.me());
        self.unlock(&name)
    }

    fn watchdog_open(&mut self) -> WatchdogHandle {
        self.watchdog_armed = true;
        let id = self.handle_id();
        let ms = self.watchdog_allowance().as_millis();
        let reply = self.watchdog.request(&format!("open {id} {ms}"));
        self.log_watchdog_reply(reply);
        WatchdogHandle(id)
    }

    fn watchdog_update(&mut self, handle: &WatchdogHandle) {
        let ms = self.watchdog_allowance().as_millis();
        let reply = self.watchdog.request(&format!("feed {} {ms}", handle.0));
        self.log_watchdog_reply(reply);
    }

    fn watchdog_close(&mut self, handle: &WatchdogHandle) {
        self.watchdog_armed = false;
        self.watchdog.request(&format!("close {}", handle.0));
    }

    fn node_usage_stats(&mut self, mode: UsageMode) -> Result<BTreeMap<String, NodeStats>, String> {
        let mut out = BTreeMap::new();
        for m in self.node.store.status().members {
            let Some(cap) = self.capacity(&m.member.name) else {
                continue;
            };
            let (cpu, mem) = match mode {
                UsageMode::Dynamic => (cap.cpu, cap.mem),
                _ => (0.0, 0.0),
            };
            out.insert(
                m.member.name,
                NodeStats {
                    cpu,
                    maxcpu: cap.maxcpu,
                    mem,
                    maxmem: cap.maxmem,
                },
            );
        }
        Ok(out)
    }

    fn service_usage_stats(&mut self, mode: UsageMode, sid: &str) -> Option<ResourceStats> {
        let (kind, vmid) = kind_of(sid)?;
        let owner = &kind.owner(&self.node, vmid)?;
        let (maxcpu, maxmem) = kind.configured_size(&self.node, owner, vmid)?;
        Some(match mode {
            UsageMode::Dynamic => {
                let (cpu, mem) = self
                    .capacity(owner)
                    .and_then(|c| c.guests.get(&vmid).copied())
                    .unwrap_or((0.0, 0.0));
                ResourceStats {
                    cpu,
                    maxcpu,
                    mem,
                    maxmem,
                }
            }
            _ => ResourceStats::from_static(maxcpu, maxmem),
        })
    }

    fn refused_nodes(&mut self, sid: &str, live_from: Option<&str>) -> BTreeMap<String, String> {
        let Some((kind, vmid)) = kind_of(sid) else {
            return BTreeMap::new();
        };
        let Some(owner) = kind.owner(&self.node, vmid) else {
            return BTreeMap::new();
        };
        let config = self
            .node
            .tree
            .get(&kind.config_path(&owner, vmid))
            .and_then(|e| ferrox_types::GuestConfig::parse(&e.data).ok());
        let Some(config) = config else {
            return BTreeMap::new();
        };
        let mut refused: BTreeMap<String, String> = match self.node.cpu_refusals(&config, live_from)
        {
            Ok(refusals) => refusals.into_iter().map(|(n, r)| (n, r.reason)).collect(),
            Err(_) => BTreeMap::new(),
        };
        for member in self.node.store.status().members {
            let name = member.member.name;
            if refused.contains_key(&name) {
                continue;
            }
            if let Ok(Some(reason)) = self.node.bridge_refusal(&config, &name) {
                refused.insert(name, reason);
            }
        }
        if self.refusals_logged.get(sid) != Some(&refused) {
            for reason in refused.values() {
                self.log(
                    LogLevel::Info,
                    &format!("service '{sid}': node skipped - {reason}"),
                );
            }
            self.refusals_logged
                .insert(sid.to_string(), refused.clone());
        }
        refused
    }

    fn service_type_known(&self, kind: &str) -> bool {
        kinds().iter().any(|k| k.prefix() == kind)
    }

    fn service_is_running(&mut self, sid: &str) -> bool {
        kind_of(sid).is_some_and(|(kind, id)| kind.is_running(&self.node, id))
    }

    fn service_start(&mut self, sid: &str) {
        if let Some((kind, id)) = kind_of(sid) {
            self.run_task(kind.task_types().start, id, move |n, log| {
                kind.start(n, id, log)
            });
        }
    }

    fn service_shutdown(&mut self, sid: &str, timeout: Option<i64>) {
        if let Some((kind, id)) = kind_of(sid) {
            let timeout = Duration::from_secs(timeout.unwrap_or(60).max(0) as u64);
            self.run_task(kind.task_types().shutdown, id, move |n, log| {
                kind.shutdown(n, id, timeout, log)
            });
        }
    }

    fn service_migrate(&mut self, sid: &str, target: &str, online: bool) -> bool {
        let Some((kind, id)) = kind_of(sid) else {
            return false;
        };
        let running = self.service_is_running(sid);
        if running && !online {
            self.log(
                LogLevel::Info,
                &format!("stopping service {sid} (relocate)"),
            );
            self.service_shutdown(sid, None);
        }
        let plan = match kind.plan_migration(&self.node, id, target, online && running) {
            Ok(p) => p,
            Err(e) => {
                self.log(LogLevel::Err, &format!("service {sid}: {}", e.message));
                return false;
            }
        };
        self.run_task(kind.task_types().migrate, id, move |n, log| {
            kind.migrate(n, plan, log)
        })
    }

    /// Proxmox VE's `max_workers` of datacenter.cfg (default 4).
    fn max_workers(&self) -> usize {
        self.datacenter_config()
            .ok()
            .and_then(|dc| dc.max_workers)
            .unwrap_or(4) as usize
    }

    fn begin_service_action(&mut self, sid: &str, action: &ServiceAction) -> bool {
        let node = Arc::clone(&self.node);
        let tx = self.finished_tx.clone();
        let (sid, action) = (sid.to_string(), action.clone());
        let round = self.settings.round;
        let in_flight = self.watchdog.action_begins();
        std::thread::Builder::new()
            .name(format!("ha-worker-{sid}"))
            .spawn(move || {
                let _in_flight = in_flight;
                let succeeded = run_service_action(&node, &sid, &action, round);
                let _ = tx.send((sid, succeeded));
            })
            .is_ok()
    }

    fn finished_service_actions(&mut self) -> Vec<(String, bool)> {
        // Long actions outlast a round: keep the lock, watchdog and status alive as the
        // inline path does.
        if self
            .renewal_sent
            .is_none_or(|t| t.elapsed() >= self.settings.round)
        {
            self.keepalive();
        }
        let mut finished: Vec<(String, bool)> = self
            .finished_rx
            .recv_timeout(Duration::from_secs(1))
            .into_iter()
            .collect();
        finished.extend(self.finished_rx.try_iter());
        finished
    }

    fn service_remove_locks(&mut self, sid: &str, locks: &[&str]) -> Option<String> {
        let (kind, id) = kind_of(sid)?;
        kind.remove_lock(&self.node, id, locks)
    }

    fn service_config_node(&mut self, sid: &str) -> Option<String> {
        let (kind, id) = kind_of(sid)?;
        kind.owner(&self.node, id)
    }

    /// Recovery of a fenced node's guest: its config moves to `to` in one transaction.
    fn steal_service(&mut self, sid: &str, from: &str, to: &str) {
        let Some((kind, id)) = kind_of(sid) else {
            return;
        };
        let src = kind.config_path(from, id);
        let Some(text) = self.read_text(&src) else {
            return;
        };
        let ops = vec![
            ferrox_store::Op::Delete {
                path: src,
                expect: Expect::Digest(ferrox_store::digest(&text)),
            },
            ferrox_store::Op::Put {
                path: kind.config_path(to, id),
                data: text,
                expect: Expect::Absent,
            },
        ];
        match self.node.tree.txn(ops) {
            Err(e) => self.log(LogLevel::Err, &format!("moving {sid} to '{to}': {e}")),
            Ok(_) => self.node.notify(
                crate::notify::Notification::new(
                    "warning",
                    "ha-recovery",
                    format!("HA recovery of {sid}: from fenced node '{from}' to '{to}'"),
                    format!("The HA service {sid} was recovered from the fenced node '{from}' to node '{to}'."),
                )
                .field("sid", sid),
            ),
        }
    }
}

/// Runs a guest operation as a task and waits for it, calling `waiting` every `round`
/// meanwhile: whether it succeeded, or why it could not start or failed (for the log).
fn run_guest_task(
    node: &Arc<Node>,
    kind: &str,
    vmid: u32,
    work: impl FnOnce(&Arc<Node>, &ferrox_api::TaskLog) -> Result<(), TaskError> + Send + 'static,
    round: Duration,
    mut waiting: impl FnMut(),
) -> Result<bool, String> {
    let worker_node = Arc::clone(node);
    let upid = node
        .tasks
        .spawn(kind, &vmid.to_string(), "root@pam", move |log| {
            work(&worker_node, log)
        })
        .map_err(|e| format!("{kind} {vmid}: {}", e.message))?;
    let ok = loop {
        match node.tasks.wait(&upid, round) {
            Ok(Some(outcome)) => break outcome == TaskOutcome::Ok,
            Ok(None) => waiting(),
            Err(_) => break false,
        }
    };
    if ok {
        Ok(true)
    } else {
        Err(format!("{kind} {vmid} failed ({upid})"))
    }
}

/// One service action on an LRM worker thread, as [`NodeEnv`]'s inline service methods
/// carry it out; the LRM loop keeps the node's lock and watchdog alive meanwhile.
fn run_service_action(
    node: &Arc<Node>,
    sid: &str,
    action: &ServiceAction,
    round: Duration,
) -> bool {
    let Some((kind, id)) = kind_of(sid) else {
        return false;
    };
    let types = kind.task_types();
    let report = |result: Result<bool, String>| match result {
        Ok(ok) => ok,
        Err(msg) => {
            println!("{} err lrm: {msg}", now_secs());
            false
        }
    };
    let shutdown = |timeout: Option<i64>| {
        let timeout = Duration::from_secs(timeout.unwrap_or(60).max(0) as u64);
        report(run_guest_task(
            node,
            types.shutdown,
            id,
            move |n, log| kind.shutdown(n, id, timeout, log),
            round,
            || {},
        ))
    };
    match action {
        ServiceAction::Start => report(run_guest_task(
            node,
            types.start,
            id,
            move |n, log| kind.start(n, id, log),
            round,
            || {},
        )),
        ServiceAction::Shutdown { timeout } => shutdown(*timeout),
        ServiceAction::Migrate { target, online } => {
            let running = kind.is_running(node, id);
            if running && !online {
                println!("{} info lrm: stopping service {sid} (relocate)", now_secs());
                shutdown(None);
            }
            match kind.plan_migration(node, id, target, *online && running) {
                Ok(plan) => report(run_guest_task(
                    node,
                    types.migrate,
                    id,
                    move |n, log| kind.migrate(n, plan, log),
                    round,
                    || {},
                )),
                Err(e) => {
                    println!("{} err lrm: service {sid}: {}", now_secs(), e.message);
                    false
                }
            }
        }
    }
}

/// Waits for the rest of the round; once a stop is requested, rounds are short so the
/// daemon exits promptly.
fn pause(round: Duration, start: Instant, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let step = Duration::from_millis(100);
    while start.elapsed() < round {
        if stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        std::thread::sleep(step.min(round.saturating_sub(start.elapsed())));
    }
}

/// Starts the CRM and LRM loops (threads: the HA code is synchronous by design). When
/// `stop` is set (the daemon is asked to stop) both get Proxmox VE's shutdown request —
/// for a daemon stop that is the "LRM restart" path: services are frozen and keep
/// running, the agent lock and the watchdog are released cleanly — and the threads end
/// once the HA code says it is done.
pub fn spawn(
    node: &Arc<Node>,
    settings: HaSettings,
    watchdog: Arc<WatchdogClient>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    let round = settings.round;
    let mut threads = Vec::new();
    {
        let mut env = NodeEnv::new(node, Daemon::Lrm, &settings, &watchdog);
        let stop = Arc::clone(&stop);
        threads.push(
            std::thread::Builder::new()
                .name("ha-lrm".into())
                .spawn(move || {
                    let mut lrm = Lrm::new(&mut env);
                    let mut written = false;
                    loop {
                        let start = Instant::now();
                        if stop.load(Ordering::Relaxed) {
                            lrm.shutdown_request(&mut env);
                        }
                        if !lrm.do_one_iteration(&mut env, &mut written) {
                            return;
                        }
                        pause(round / 2, start, &stop);
                        env.renew_protection();
                        pause(round, start, &stop);
                    }
                })
                .expect("spawning the LRM thread"),
        );
    }
    let mut env = NodeEnv::new(node, Daemon::Crm, &settings, &watchdog);
    threads.push(
        std::thread::Builder::new()
            .name("ha-crm".into())
            .spawn(move || {
                let mut crm = Crm::new(&mut env);
                loop {
                    let start = Instant::now();
                    if stop.load(Ordering::Relaxed) {
                        crm.shutdown_request(&mut env);
                    }
                    if !crm.do_one_iteration(&mut env) {
                        return;
                    }
                    pause(round / 2, start, &stop);
                    env.renew_protection();
                    pause(round, start, &stop);
                }
            })
            .expect("spawning the CRM thread"),
    );
    threads
}
