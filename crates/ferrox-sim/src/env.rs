//! `HaEnv` for one daemon of one simulated node.

use crate::world::World;
use ferrox_crs::{NodeStats, ResourceStats, UsageMode};
use ferrox_ha::{EnvError, EnvResult, HaEnv, LogLevel, NodeInfo, ResourceChange, WatchdogHandle};
use ferrox_types::{
    service_type, DatacenterConfig, GroupsConfig, LrmStatus, ManagerStatus, RulesConfig,
    ServiceConfig,
};
use std::collections::BTreeMap;

const LOCK_TIMEOUT: i64 = 120;
const DEFAULT_MAXCPU: f64 = 24.0;
const DEFAULT_MAXMEM: f64 = 128.0 * 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Crm,
    Lrm,
}

pub struct SimEnv<'a> {
    world: &'a mut World,
    node: String,
    daemon: Daemon,
}

fn cfs_error() -> EnvError {
    EnvError("cfs connection refused - not mounted?".into())
}

/// Behaviour encoded in the id of an `fa:` test service (spec §12.6).
struct FailSpec {
    start_failures: u32,
    migrate_failures: u32,
    stop_fails: bool,
    only_on: Option<String>,
}

impl FailSpec {
    fn decode(sid: &str) -> FailSpec {
        let digits: Vec<u32> = sid
            .split_once(':')
            .map(|(_, id)| id.chars().skip(1).filter_map(|c| c.to_digit(10)).collect())
            .unwrap_or_default();
        let d = |i: usize| digits.get(i).copied().unwrap_or(0);
        FailSpec {
            start_failures: d(0),
            migrate_failures: d(1),
            stop_fails: d(2) != 0,
            only_on: (d(4) != 0).then(|| format!("node{}", d(4))),
        }
    }

    fn applies_on(&self, node: &str) -> bool {
        self.only_on.as_deref().is_none_or(|n| n == node)
    }
}

impl<'a> SimEnv<'a> {
    pub fn new(world: &'a mut World, node: &str, daemon: Daemon) -> Self {
        SimEnv {
            world,
            node: node.to_string(),
            daemon,
        }
    }

    fn clock(&mut self) -> &mut i64 {
        let s = self.world.node_mut(&self.node);
        match self.daemon {
            Daemon::Crm => &mut s.crm_clock,
            Daemon::Lrm => &mut s.lrm_clock,
        }
    }

    pub fn loop_start(&mut self) {
        let now = self.world.time;
        *self.clock() = now;
    }

    pub fn loop_end(&mut self) {
        *self.clock() += 1;
    }

    pub fn log_daemon(&mut self, level: &str, msg: &str) {
        let source = format!(
            "{}/{}",
            self.node,
            match self.daemon {
                Daemon::Crm => "crm",
                Daemon::Lrm => "lrm",
            }
        );
        let t = self.get_time();
        self.world.log_line(level, t, &source, msg);
    }

    fn cfs(&self) -> EnvResult<()> {
        if self.world.node(&self.node).cfs_rw {
            Ok(())
        } else {
            Err(cfs_error())
        }
    }

    fn lock(&mut self, name: &str) -> bool {
        if !self.quorate() {
            return false;
        }
        let now = self.get_time();
        match self.world.locks.get_mut(name) {
            Some((time, holder)) if now - *time <= LOCK_TIMEOUT => {
                if *holder == self.node {
                    *time = now;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.world
                    .locks
                    .insert(name.to_string(), (now, self.node.clone()));
                self.log(LogLevel::Info, &format!("got lock '{name}'"));
                true
            }
        }
    }

    fn unlock(&mut self, name: &str) -> bool {
        if !self.quorate() {
            return false;
        }
        let now = self.get_time();
        match self.world.locks.get(name) {
            None => false,
            Some((time, _)) if now - *time > LOCK_TIMEOUT => true,
            Some((_, holder)) if *holder == self.node => {
                self.world.locks.remove(name);
                true
            }
            Some(_) => false,
        }
    }

    /// A guest lock blocks every action on the service, as in Proxmox VE.
    fn refused_by_lock(&mut self, sid: &str, action: &str) -> bool {
        let Some(lock) = self.world.services.get(sid).and_then(|cd| cd.lock.clone()) else {
            return false;
        };
        self.log(
            LogLevel::Err,
            &format!("service '{sid}' locked ({lock}), unable to {action}!"),
        );
        true
    }

    fn set_running(&mut self, sid: &str, running: bool) {
        self.world
            .running
            .entry(self.node.clone())
            .or_default()
            .insert(sid.to_string(), running);
    }
}

impl HaEnv for SimEnv<'_> {
    fn nodename(&self) -> String {
        self.node.clone()
    }

    fn get_time(&self) -> i64 {
        let s = self.world.node(&self.node);
        match self.daemon {
            Daemon::Crm => s.crm_clock,
            Daemon::Lrm => s.lrm_clock,
        }
    }

    fn log(&mut self, level: LogLevel, msg: &str) {
        self.log_daemon(level.short(), msg);
    }

    fn quorate(&self) -> bool {
        let (info, quorate) = self.world.node_info();
        quorate && info.get(&self.node).copied().unwrap_or(false)
    }

    fn get_node_info(&self) -> BTreeMap<String, NodeInfo> {
        let (info, _) = self.world.node_info();
        info.into_iter()
            .map(|(n, online)| (n, NodeInfo { online }))
            .collect()
    }

    fn cluster_state_update(&mut self) -> bool {
        self.world.node(&self.node).cfs_update
    }

    fn node_version(&self, node: &str) -> Option<String> {
        self.world
            .node_names()
            .any(|n| n == node)
            .then(|| self.world.node(node).version.clone())
    }

    fn is_node_shutdown(&self) -> (bool, bool) {
        match self.world.node(&self.node).shutdown {
            Some(crate::world::ShutdownKind::Reboot) => (true, true),
            Some(crate::world::ShutdownKind::Shutdown) => (true, false),
            None => (false, false),
        }
    }

    fn read_manager_status(&self) -> EnvResult<ManagerStatus> {
        self.cfs()?;
        Ok(self.world.manager_status.clone())
    }

    fn write_manager_status(&mut self, status: &ManagerStatus) -> EnvResult<()> {
        self.cfs()?;
        self.world.manager_status = status.clone();
        Ok(())
    }

    fn read_lrm_status(&self, node: &str) -> EnvResult<LrmStatus> {
        self.cfs()?;
        Ok(self.world.lrm_status.get(node).cloned().unwrap_or_default())
    }

    fn write_lrm_status(&mut self, status: &LrmStatus) -> EnvResult<()> {
        self.cfs()?;
        self.world
            .lrm_status
            .insert(self.node.clone(), status.clone());
        Ok(())
    }

    fn read_service_config(&self) -> EnvResult<ServiceConfig> {
        self.cfs()?;
        Ok(self.world.services.clone())
    }

    fn update_resource_config(&mut self, sid: &str, change: ResourceChange) -> EnvResult<()> {
        self.cfs()?;
        let Some(cd) = self.world.services.get_mut(sid) else {
            return Err(EnvError(format!("no such resource '{sid}'")));
        };
        match change {
            ResourceChange::RequestStopped => cd.state = ferrox_types::RequestState::Stopped,
            ResourceChange::DropGroup { failback } => {
                cd.group = None;
                cd.failback = failback;
            }
        }
        Ok(())
    }

    fn read_rules_config(&self) -> EnvResult<RulesConfig> {
        self.cfs()?;
        RulesConfig::parse(&self.world.rules_text).map_err(|e| EnvError(e.to_string()))
    }

    fn write_rules_config(&mut self, rules: &RulesConfig) -> EnvResult<()> {
        self.cfs()?;
        self.world.rules_text = rules.to_section_text();
        Ok(())
    }

    fn read_groups_config(&self) -> EnvResult<Option<GroupsConfig>> {
        self.cfs()?;
        self.world
            .groups_text
            .as_deref()
            .map(|t| GroupsConfig::parse(t).map_err(|e| EnvError(e.to_string())))
            .transpose()
    }

    fn delete_groups_config(&mut self) -> EnvResult<()> {
        self.cfs()?;
        self.world.groups_text = None;
        Ok(())
    }

    fn read_crm_commands(&mut self) -> EnvResult<Vec<String>> {
        self.cfs()?;
        Ok(std::mem::take(&mut self.world.crm_commands))
    }

    fn has_pending_crm_commands(&self) -> bool {
        !self.world.crm_commands.is_empty()
    }

    fn datacenter_config(&self) -> EnvResult<DatacenterConfig> {
        Ok(self.world.datacenter.clone())
    }

    fn get_ha_manager_lock(&mut self) -> bool {
        self.lock("ha_manager_lock")
    }

    fn release_ha_manager_lock(&mut self) -> bool {
        self.unlock("ha_manager_lock")
    }

    fn get_ha_agent_lock(&mut self, node: &str) -> bool {
        self.lock(&format!("ha_agent_{node}_lock"))
    }

    fn release_ha_agent_lock(&mut self) -> bool {
        let name = format!("ha_agent_{}_lock", self.node);
        self.unlock(&name)
    }

    fn watchdog_open(&mut self) -> WatchdogHandle {
        self.world.watchdog_count += 1;
        let id = format!("WD:{}:{}", self.node, self.world.watchdog_count);
        self.world
            .watchdogs
            .insert(id.clone(), (self.node.clone(), self.world.time));
        WatchdogHandle(id)
    }

    fn watchdog_update(&mut self, handle: &WatchdogHandle) {
        let now = self.world.time;
        if let Some((_, updated)) = self.world.watchdogs.get_mut(&handle.0) {
            *updated = now;
        }
    }

    fn watchdog_close(&mut self, handle: &WatchdogHandle) {
        self.world.watchdogs.remove(&handle.0);
    }

    fn node_usage_stats(&mut self, mode: UsageMode) -> Result<BTreeMap<String, NodeStats>, String> {
        let mut out = BTreeMap::new();
        for name in self.world.node_names().cloned().collect::<Vec<_>>() {
            let hw = self.world.node(&name);
            let stats = match mode {
                UsageMode::Dynamic => {
                    let mut s = NodeStats {
                        cpu: 0.0,
                        maxcpu: hw.maxcpu.unwrap_or(DEFAULT_MAXCPU),
                        mem: 0.0,
                        maxmem: hw.maxmem.unwrap_or(DEFAULT_MAXMEM),
                    };
                    for (sid, cd) in &self.world.services {
                        let running = self
                            .world
                            .running
                            .get(&cd.node)
                            .and_then(|m| m.get(sid))
                            .copied()
                            .unwrap_or(false);
                        if cd.node == name && running {
                            let (cpu, mem) = self
                                .world
                                .dynamic_stats
                                .get(sid)
                                .copied()
                                .unwrap_or((0.0, 0.0));
                            s.cpu += cpu;
                            s.mem += mem;
                        }
                    }
                    s
                }
                _ => match (hw.maxcpu, hw.maxmem) {
                    (Some(maxcpu), Some(maxmem)) => NodeStats {
                        cpu: 0.0,
                        maxcpu: maxcpu.trunc(),
                        mem: 0.0,
                        maxmem: maxmem.trunc(),
                    },
                    _ => continue,
                },
            };
            out.insert(name, stats);
        }
        Ok(out)
    }

    fn service_usage_stats(&mut self, mode: UsageMode, sid: &str) -> Option<ResourceStats> {
        let (maxcpu, maxmem) = self.world.static_stats.get(sid).copied()?;
        Some(match mode {
            UsageMode::Dynamic => {
                let (cpu, mem) = self
                    .world
                    .dynamic_stats
                    .get(sid)
                    .copied()
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

    fn service_type_known(&self, kind: &str) -> bool {
        matches!(kind, "vm" | "ct" | "fa")
    }

    fn service_is_running(&mut self, sid: &str) -> bool {
        self.world
            .running
            .get(&self.node)
            .and_then(|m| m.get(sid))
            .copied()
            .unwrap_or(false)
    }

    fn service_start(&mut self, sid: &str) {
        if service_type(sid) == "fa" {
            let spec = FailSpec::decode(sid);
            if spec.applies_on(&self.node) {
                let tries = self
                    .world
                    .fail_start_tries
                    .entry(sid.to_string())
                    .or_insert(0);
                if *tries < spec.start_failures {
                    *tries += 1;
                    return;
                }
                *tries = 0;
            }
        }
        if !self.refused_by_lock(sid, "start") {
            self.set_running(sid, true);
        }
    }

    fn service_shutdown(&mut self, sid: &str, _timeout: Option<i64>) {
        if service_type(sid) == "fa" && FailSpec::decode(sid).stop_fails {
            return;
        }
        if !self.refused_by_lock(sid, "shutdown") {
            self.set_running(sid, false);
        }
    }

    fn service_migrate(&mut self, sid: &str, target: &str, mut online: bool) -> bool {
        let kind = service_type(sid);
        if kind == "fa" {
            let spec = FailSpec::decode(sid);
            let tries = self
                .world
                .fail_migrate_tries
                .entry(sid.to_string())
                .or_insert(0);
            if *tries < spec.migrate_failures {
                *tries += 1;
                return false;
            }
            *tries = 0;
        }
        if kind == "ct" && online && self.service_is_running(sid) {
            self.log(
                LogLevel::Warning,
                "unable to live migrate running container, fallback to relocate",
            );
            online = false;
        }
        let task = if online { "migrate" } else { "relocate" };
        self.log(
            LogLevel::Info,
            &format!("service {sid} - start {task} to node '{target}'"),
        );
        if self.refused_by_lock(sid, task) {
            return false;
        }
        if !online && self.service_is_running(sid) {
            self.log(
                LogLevel::Info,
                &format!("stopping service {sid} (relocate)"),
            );
            self.service_shutdown(sid, None);
            self.log(LogLevel::Info, &format!("service status {sid} stopped"));
        }
        if let Some(cd) = self.world.services.get_mut(sid) {
            cd.node = target.to_string();
        }
        self.log(
            LogLevel::Info,
            &format!("service {sid} - end {task} to node '{target}'"),
        );
        let node = self.node.clone();
        if let Some(m) = self.world.running.get_mut(&node) {
            m.remove(sid);
        }
        true
    }

    fn service_remove_locks(&mut self, sid: &str, locks: &[&str]) -> Option<String> {
        let cd = self.world.services.get_mut(sid)?;
        let lock = cd.lock.clone()?;
        if locks.contains(&lock.as_str()) {
            cd.lock = None;
            Some(lock)
        } else {
            None
        }
    }

    fn service_config_node(&mut self, sid: &str) -> Option<String> {
        Some(self.world.services.get(sid)?.node.clone())
    }

    fn steal_service(&mut self, sid: &str, _from: &str, to: &str) {
        if let Some(cd) = self.world.services.get_mut(sid) {
            cd.node = to.to_string();
        }
    }
}
