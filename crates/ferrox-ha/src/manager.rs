//! The CRM master's round, `Manager::manage` (spec §6, §7, §9.5, §11).

use crate::env::{EnvResult, HaEnv, LogLevel, ResourceChange};
use crate::node_status::NodeStatus;
use crate::placement::{self, select_service_node, used_service_nodes, NodePreference};
use crate::rules::{self, CompiledRules};
use crate::version;
use ferrox_crs::{Placement, ResourceStats, Usage, UsageMode};
use ferrox_types::exit_code::*;
use ferrox_types::{
    service_type, CrsSettings, Disarm, DisarmMode, DisarmState, GroupsConfig, LrmMode, LrmResult,
    ManagerStatus, NodeRequest, NodeState, RequestState, ResourceConfig, SchedulerMode,
    ServiceCommand, ServiceConfig, ServiceState, ServiceStatus,
};
use std::collections::{BTreeMap, BTreeSet};

const GROUP_MIGRATION_INTERVAL: i32 = 6;
const MIN_GROUP_MIGRATION_VERSION: &str = "9.0.0~16";
/// Locks that a reset node cannot still be using, so recovery may remove them.
const REMOVABLE_LOCKS: [&str; 9] = [
    "backup",
    "mounted",
    "migrate",
    "clone",
    "rollback",
    "snapshot",
    "snapshot-delete",
    "suspending",
    "suspended",
];

type ServiceMap = BTreeMap<String, ServiceStatus>;

pub struct Manager {
    ms: ManagerStatus,
    ns: NodeStatus,
    ss: ServiceMap,
    crs: CrsSettings,
    scheduler: Option<String>,
    usage: Usage,
    compiled: Option<CompiledRules>,
    last_rules_digest: Option<String>,
    last_groups_digest: Option<String>,
    last_services_digest: Option<String>,
    sustained_imbalance_rounds: u32,
    group_migration_round: i32,
    uid_counter: u64,
}

/// What the CRM needs to know after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundOutcome {
    pub fully_disarmed: bool,
}

impl Manager {
    pub fn new(env: &mut dyn HaEnv) -> Self {
        let old = env.read_manager_status().unwrap_or_default();
        let ms = ManagerStatus {
            master_node: Some(env.nodename()),
            node_request: old.node_request.clone(),
            disarm: old.disarm,
            ..Default::default()
        };
        let mut manager = Manager {
            ms,
            ns: NodeStatus::new(old.node_status),
            ss: old.service_status,
            crs: CrsSettings::default(),
            scheduler: None,
            usage: Usage::new(UsageMode::Basic),
            compiled: None,
            last_rules_digest: None,
            last_groups_digest: None,
            last_services_digest: None,
            sustained_imbalance_rounds: 0,
            group_migration_round: 3,
            uid_counter: 0,
        };
        manager.update_crs_scheduler_mode(env);
        manager
    }

    fn new_uid(&mut self, env: &dyn HaEnv) -> String {
        self.uid_counter += 1;
        format!("{}-{}-{}", env.nodename(), env.get_time(), self.uid_counter)
    }

    fn update_crs_scheduler_mode(&mut self, env: &mut dyn HaEnv) {
        let dc = env.datacenter_config().unwrap_or_default();
        self.crs = dc.crs;
        let new_mode = self.crs.ha.clone();
        match &self.scheduler {
            None if new_mode != "basic" => env.log(
                LogLevel::Info,
                &format!("using scheduler mode '{new_mode}'"),
            ),
            Some(old) if *old != new_mode => env.log(
                LogLevel::Info,
                &format!("switching scheduler mode from '{old}' to '{new_mode}'"),
            ),
            _ => {}
        }
        self.scheduler = Some(new_mode);
    }

    fn scheduler_mode(&self) -> Option<SchedulerMode> {
        self.scheduler.as_deref().and_then(SchedulerMode::parse)
    }

    fn add_service_usage(&mut self, env: &mut dyn HaEnv, sid: &str) {
        let Some(sd) = self.ss.get(sid) else { return };
        let online: BTreeSet<String> = self.usage.list_nodes().map(String::from).collect();
        let (current, target) = used_service_nodes(&online, sd);
        let running = (sd.state == ServiceState::Started && sd.running)
            || (sd.state != ServiceState::Started && current.is_some());
        let placement = match (current, target) {
            (Some(current), Some(target)) => Placement::Moving { current, target },
            (Some(node), None) | (None, Some(node)) => Placement::Stationary(node),
            (None, None) => return,
        };
        let stats = self.resource_stats(env, sid);
        self.usage.add_resource(sid, stats, running, placement);
    }

    fn resource_stats(&self, env: &mut dyn HaEnv, sid: &str) -> ResourceStats {
        match self.usage.mode() {
            UsageMode::Basic => ResourceStats::default(),
            mode => env.service_usage_stats(mode, sid).unwrap_or_default(),
        }
    }

    fn recompute_online_node_usage(&mut self, env: &mut dyn HaEnv) {
        let online = self.ns.list_online_nodes();
        let mut usage = None;
        match self.scheduler.as_deref() {
            Some(text @ ("static" | "dynamic")) => {
                let mode = SchedulerMode::parse(text).unwrap_or(SchedulerMode::Basic);
                match env.node_usage_stats(mode) {
                    Ok(stats) => {
                        let mut u = Usage::new(mode);
                        let mut missing = None;
                        for node in &online {
                            match stats.get(node) {
                                Some(s) => u.add_node(node, *s),
                                None => {
                                    missing = Some(node.clone());
                                    break;
                                }
                            }
                        }
                        match missing {
                            None => usage = Some(u),
                            Some(node) => env.log(
                                LogLevel::Warning,
                                &format!(
                                    "fallback to 'basic' scheduler mode, init for '{text}' failed - {text} node usage information for '{node}' missing cpu count"
                                ),
                            ),
                        }
                    }
                    Err(err) => env.log(
                        LogLevel::Warning,
                        &format!(
                            "fallback to 'basic' scheduler mode, init for '{text}' failed - {err}"
                        ),
                    ),
                }
            }
            Some("basic") | None => {}
            Some(other) => env.log(
                LogLevel::Warning,
                &format!("got unknown scheduler mode '{other}', using 'basic'"),
            ),
        }
        self.usage = usage.unwrap_or_else(|| {
            let mut u = Usage::new(UsageMode::Basic);
            for node in &online {
                u.add_node(node, Default::default());
            }
            u
        });
        let sids: Vec<String> = self.ss.keys().cloned().collect();
        for sid in sids {
            self.add_service_usage(env, &sid);
        }
        for (sid, node, running) in env.non_ha_services() {
            if self.ss.contains_key(&sid) || !self.usage.contains_node(&node) {
                continue;
            }
            let stats = self.resource_stats(env, &sid);
            self.usage
                .add_resource(&sid, stats, running, Placement::Stationary(node));
        }
    }

    fn change_service_state(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        new_state: ServiceState,
        node: Option<String>,
        target: Option<String>,
        timeout: Option<i64>,
    ) {
        let uid = self.new_uid(env);
        let Some(sd) = self.ss.get_mut(sid) else {
            return;
        };
        let old_state = sd.state;
        let mut fresh = ServiceStatus::new(new_state, &sd.node);
        fresh.failed_nodes = sd.failed_nodes.take();
        fresh.maintenance_node = sd.maintenance_node.take();
        let mut params = Vec::new();
        if let Some(node) = node {
            params.push(format!("node = {node}"));
            fresh.node = node;
        }
        if let Some(target) = target {
            params.push(format!("target = {target}"));
            fresh.target = Some(target);
        }
        if let Some(timeout) = timeout {
            params.push(format!("timeout = {timeout}"));
            fresh.timeout = Some(timeout);
        }
        fresh.uid = Some(uid);
        let node_after = fresh.node.clone();
        *sd = fresh;
        self.usage.remove_resource(sid);
        self.add_service_usage(env, sid);
        let params = if params.is_empty() {
            String::new()
        } else {
            format!("  ({})", params.join(", "))
        };
        env.log(
            LogLevel::Info,
            &format!("service '{sid}': state changed from '{old_state}' to '{new_state}'{params}"),
        );
        env.record_state_change(crate::env::StateChange {
            subject: sid.to_string(),
            from: old_state.to_string(),
            to: new_state.to_string(),
            node: Some(node_after),
        });
    }

    fn select_node(
        &self,
        env: &mut dyn HaEnv,
        sid: &str,
        cd: &ResourceConfig,
        preference: NodePreference,
    ) -> Option<String> {
        let sd = self.ss.get(sid)?;
        // A running service moves live; a recovered one starts anew.
        let live_from = (sd.state == ServiceState::Started).then_some(sd.node.as_str());
        let refused = env.refused_nodes(sid, live_from);
        let empty = CompiledRules::default();
        let rules = self.compiled.as_ref().unwrap_or(&empty);
        let usage = &self.usage;
        let mut scores = |sid: &str| -> BTreeMap<String, f64> {
            let stats = match usage.mode() {
                UsageMode::Basic => None,
                mode => env.service_usage_stats(mode, sid),
            };
            match usage.score_nodes_to_start(sid, stats) {
                Ok(s) => s,
                Err(err) => {
                    env.log(
                        LogLevel::Err,
                        &format!(
                            "unable to score nodes according to {} usage for service '{sid}' - {err}",
                            usage.mode()
                        ),
                    );
                    usage.list_nodes().map(|n| (n.to_string(), 0.0)).collect()
                }
            }
        };
        select_service_node(
            rules,
            usage,
            &mut scores,
            sid,
            cd,
            sd,
            &self.ss,
            preference,
            &refused,
        )
    }

    fn read_lrm_status(
        &self,
        env: &mut dyn HaEnv,
    ) -> EnvResult<(BTreeMap<String, LrmResult>, BTreeMap<String, LrmMode>)> {
        let mut results = BTreeMap::new();
        let mut modes = BTreeMap::new();
        for node in self.ns.list_nodes() {
            let status = env.read_lrm_status(&node)?;
            modes.insert(node, status.mode.unwrap_or(LrmMode::Active));
            for (uid, res) in status.results {
                results.entry(uid).or_insert(res);
            }
        }
        Ok((results, modes))
    }

    fn flush(&mut self, env: &mut dyn HaEnv) -> EnvResult<()> {
        self.ms.node_status = self.ns.status.clone();
        self.ms.service_status = self.ss.clone();
        self.ms.timestamp = Some(env.get_time());
        env.write_manager_status(&self.ms)
    }

    /// One master round.
    pub fn manage(&mut self, env: &mut dyn HaEnv) -> EnvResult<RoundOutcome> {
        let node_info = env.get_node_info();
        let node_list_changed = node_info.keys().ne(self.ns.status.keys());
        let (lrm_results, lrm_modes) = self.read_lrm_status(env)?;
        self.ns.update(env, &node_info, &lrm_modes);
        if !self.ns.is_operational(&env.nodename()) {
            env.log(LogLevel::Info, "master seems offline");
            return Ok(RoundOutcome {
                fully_disarmed: false,
            });
        }
        self.update_crs_scheduler_mode(env);
        self.try_persistent_group_migration(env)?;

        let mut sc = env.read_service_config()?;
        let groups = env.read_groups_config()?;
        if self.ms.disarm.is_none() {
            for (sid, cd) in &sc {
                if self.ss.contains_key(sid) || cd.state == RequestState::Ignored {
                    continue;
                }
                env.log(
                    LogLevel::Info,
                    &format!("adding new service '{sid}' on node '{}'", cd.node),
                );
                let state = if cd.state == RequestState::Started {
                    ServiceState::RequestStart
                } else {
                    ServiceState::RequestStop
                };
                let mut sd = ServiceStatus::new(state, &cd.node);
                sd.uid = Some(self.new_uid(env));
                self.ss.insert(sid.clone(), sd);
            }
            let stale: Vec<(String, &str)> = self
                .ss
                .keys()
                .filter_map(|sid| match sc.get(sid) {
                    None => Some((sid.clone(), "no config")),
                    Some(cd) if cd.state == RequestState::Ignored => {
                        Some((sid.clone(), "ignored state requested"))
                    }
                    _ => None,
                })
                .collect();
            for (sid, reason) in stale {
                env.log(
                    LogLevel::Info,
                    &format!("removing stale service '{sid}' ({reason})"),
                );
                self.ss.remove(&sid);
            }
        }

        self.recompute_online_node_usage(env);

        let mut rules_cfg = env.read_rules_config()?;
        if let Some(groups) = &groups {
            for cd in sc.values_mut() {
                if let Some(group) = cd.group.as_ref().and_then(|g| groups.groups.get(g)) {
                    cd.failback = !group.nofailback;
                }
            }
        }
        let groups_digest = groups.as_ref().map(|g| g.digest.clone());
        let services_digest = env.service_config_digest();
        if self.compiled.is_none()
            || node_list_changed
            || self.last_rules_digest.as_deref() != Some(rules_cfg.digest.as_str())
            || self.last_groups_digest != groups_digest
            || self.last_services_digest != services_digest
        {
            if let Some(groups) = &groups {
                rules::migrate_groups_to_rules(&mut rules_cfg, groups, &sc);
            }
            let nodes = self.ns.list_nodes();
            for msg in rules::transform(&mut rules_cfg, &nodes) {
                env.log(LogLevel::Info, &msg);
            }
            self.compiled = Some(rules::compile(&rules_cfg, &nodes));
            self.last_rules_digest = Some(rules_cfg.digest.clone());
            self.last_groups_digest = groups_digest;
            self.last_services_digest = services_digest;
        }

        self.update_crm_commands(env, &sc)?;

        let mut only: Option<BTreeSet<String>> = None;
        if let Some(disarm) = self.ms.disarm {
            match self.handle_disarm(env, disarm, &lrm_modes)? {
                None => {
                    return Ok(RoundOutcome {
                        fully_disarmed: self.is_fully_disarmed(),
                    })
                }
                Some(deferred) => only = Some(deferred),
            }
        } else {
            self.load_balance(env, &sc);
        }

        self.run_fsm(env, &mut sc, &lrm_results, &lrm_modes, only.as_ref());
        self.flush(env)?;
        Ok(RoundOutcome {
            fully_disarmed: self.is_fully_disarmed(),
        })
    }

    fn is_fully_disarmed(&self) -> bool {
        self.ms
            .disarm
            .is_some_and(|d| d.state == DisarmState::Disarmed)
    }

    fn run_fsm(
        &mut self,
        env: &mut dyn HaEnv,
        sc: &mut ServiceConfig,
        lrm_results: &BTreeMap<String, LrmResult>,
        lrm_modes: &BTreeMap<String, LrmMode>,
        only: Option<&BTreeSet<String>>,
    ) {
        let disabled = ResourceConfig::new("", RequestState::Disabled);
        loop {
            let mut repeat = false;
            let sids: Vec<String> = self
                .ss
                .keys()
                .filter(|s| only.is_none_or(|o| o.contains(*s)))
                .cloned()
                .collect();
            for sid in &sids {
                let Some(sd) = self.ss.get(sid) else { continue };
                let last_state = sd.state;
                let lrm_res = sd.uid.as_ref().and_then(|u| lrm_results.get(u)).cloned();
                let mut cd = sc.get(sid).cloned().unwrap_or_else(|| disabled.clone());
                match last_state {
                    ServiceState::Stopped => self.next_state_stopped(env, sid, &cd),
                    ServiceState::Started => {
                        self.next_state_started(env, sid, &cd, lrm_res.as_ref())
                    }
                    ServiceState::RequestStart => self.next_state_request_start(env, sid, &cd),
                    ServiceState::Migrate
                    | ServiceState::Relocate
                    | ServiceState::RequestStartBalance => {
                        self.next_state_migrate_relocate(env, sid, &cd, lrm_res.as_ref())
                    }
                    ServiceState::Fence => {}
                    ServiceState::Recovery => {
                        self.next_state_recovery(env, sid, &mut cd);
                        if let Some(entry) = sc.get_mut(sid) {
                            entry.node = cd.node.clone();
                        }
                    }
                    ServiceState::RequestStop => {
                        self.next_state_request_stop(env, sid, lrm_res.as_ref())
                    }
                    ServiceState::Freeze => {
                        let node = &self.ss[sid].node;
                        if lrm_modes.get(node) == Some(&LrmMode::Active) {
                            let state = if cd.state == RequestState::Started {
                                ServiceState::Started
                            } else {
                                ServiceState::RequestStop
                            };
                            self.change_service_state(env, sid, state, None, None, None);
                        }
                    }
                    ServiceState::Error => {
                        if cd.state == RequestState::Disabled {
                            if let Some(sd) = self.ss.get_mut(sid) {
                                sd.failed_nodes = None;
                            }
                            self.change_service_state(
                                env,
                                sid,
                                ServiceState::Stopped,
                                None,
                                None,
                                None,
                            );
                        }
                    }
                }
                let Some(sd) = self.ss.get(sid) else { continue };
                if lrm_modes.get(&sd.node) == Some(&LrmMode::Restart)
                    && matches!(
                        sd.state,
                        ServiceState::Started | ServiceState::Stopped | ServiceState::RequestStop
                    )
                {
                    self.change_service_state(env, sid, ServiceState::Freeze, None, None, None);
                }
                if self.ss[sid].state != last_state {
                    repeat = true;
                }
            }

            let mut fenced: BTreeMap<String, bool> = BTreeMap::new();
            for sid in &sids {
                let Some(sd) = self.ss.get(sid) else { continue };
                if sd.state != ServiceState::Fence {
                    continue;
                }
                let node = sd.node.clone();
                let ok = match fenced.get(&node) {
                    Some(ok) => *ok,
                    None => {
                        let ok = self.ns.fence_node(env, &node);
                        fenced.insert(node, ok);
                        ok
                    }
                };
                if ok {
                    self.change_service_state(env, sid, ServiceState::Recovery, None, None, None);
                    repeat = true;
                }
            }
            for node in self.ns.list_nodes() {
                if fenced.contains_key(&node) || self.ns.get(&node) != NodeState::Fence {
                    continue;
                }
                env.log(
                    LogLevel::Notice,
                    &format!("node '{node}' in fence state but no services to-fence! admin interference?!"),
                );
                if self.ns.fence_node(env, &node) {
                    repeat = true;
                }
            }
            if !repeat {
                break;
            }
        }
    }

    fn offline_delayed(&mut self, env: &dyn HaEnv, node: &str) -> bool {
        self.ns.is_offline_delayed(env, node, env.fence_delay())
    }

    /// Takes a pending migrate/relocate command apart: (task name, target, state).
    fn motion(cmd: &ServiceCommand) -> Option<(&'static str, String, ServiceState)> {
        match cmd {
            ServiceCommand::Migrate(t) => Some(("migrate", t.clone(), ServiceState::Migrate)),
            ServiceCommand::Relocate(t) => Some(("relocate", t.clone(), ServiceState::Relocate)),
            ServiceCommand::Stop(_) => None,
        }
    }

    /// Whether a requested move can happen; logs why not.
    fn motion_possible(
        &self,
        env: &mut dyn HaEnv,
        sid: &str,
        task: &str,
        node: &str,
        target: &str,
    ) -> bool {
        if !self.ns.is_online(target) {
            env.log(
                LogLevel::Err,
                &format!("ignore service '{sid}' {task} request - node '{target}' not online"),
            );
            false
        } else if node == target {
            env.log(
                LogLevel::Info,
                &format!(
                    "ignore service '{sid}' {task} request - service already on node '{target}'"
                ),
            );
            false
        } else {
            true
        }
    }

    fn next_state_stopped(&mut self, env: &mut dyn HaEnv, sid: &str, cd: &ResourceConfig) {
        let sd = self.ss.get_mut(sid).expect("service exists");
        if !cd.node.is_empty() && sd.node != cd.node {
            env.log(
                LogLevel::Info,
                &format!(
                    "fixup service '{sid}' location ({} => {})",
                    sd.node, cd.node
                ),
            );
            sd.node = cd.node.clone();
        }
        if let Some(cmd) = sd.cmd.take() {
            let node = sd.node.clone();
            match Self::motion(&cmd) {
                Some((task, target, state)) => {
                    if self.motion_possible(env, sid, task, &node, &target) {
                        self.change_service_state(env, sid, state, Some(node), Some(target), None);
                        return;
                    }
                }
                None => env.log(
                    LogLevel::Info,
                    &format!("ignore service '{sid}' stop request - service already stopped"),
                ),
            }
        }
        if cd.state == RequestState::Disabled {
            return;
        }
        let node = self.ss[sid].node.clone();
        if self.offline_delayed(env, &node) && self.ns.get(&node) != NodeState::Maintenance {
            self.change_service_state(env, sid, ServiceState::Fence, None, None, None);
            return;
        }
        match cd.state {
            RequestState::Stopped => {}
            RequestState::Started => self.change_service_state(
                env,
                sid,
                ServiceState::RequestStart,
                Some(node),
                None,
                None,
            ),
            other => env.log(
                LogLevel::Err,
                &format!("service '{sid}' - unknown state '{other}' in service configuration"),
            ),
        }
    }

    fn next_state_request_start(&mut self, env: &mut dyn HaEnv, sid: &str, cd: &ResourceConfig) {
        let current = self.ss[sid].node.clone();
        if self.crs.rebalance_on_start {
            let selected = self
                .select_node(env, sid, cd, NodePreference::BestScore)
                .unwrap_or_else(|| current.clone());
            let which = if selected != current {
                "new"
            } else {
                "current"
            };
            env.log(
                LogLevel::Info,
                &format!("service {sid}: re-balance selected {which} node {selected} for startup"),
            );
            if selected != current {
                self.change_service_state(
                    env,
                    sid,
                    ServiceState::RequestStartBalance,
                    Some(current),
                    Some(selected),
                    None,
                );
                return;
            }
        }
        self.change_service_state(env, sid, ServiceState::Started, Some(current), None, None);
    }

    fn requested_state(cd: &ResourceConfig) -> ServiceState {
        if cd.state == RequestState::Started {
            ServiceState::Started
        } else {
            ServiceState::RequestStop
        }
    }

    fn next_state_migrate_relocate(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        cd: &ResourceConfig,
        lrm_res: Option<&LrmResult>,
    ) {
        if let Some(res) = lrm_res {
            let requested = Self::requested_state(cd);
            let sd = &self.ss[sid];
            let (node, target) = (sd.node.clone(), sd.target.clone());
            match res.exit_code {
                SUCCESS => {
                    self.change_service_state(env, sid, requested, target, None, None);
                    return;
                }
                EWRONG_NODE => {
                    env.log(
                        LogLevel::Err,
                        &format!(
                            "service '{sid}' - migration failed: service registered on wrong node!"
                        ),
                    );
                    self.change_service_state(env, sid, ServiceState::Error, None, None, None);
                }
                IGNORED => {
                    env.log(
                        LogLevel::Info,
                        &format!("service '{sid}' - rebalance-on-start request ignored - service already running"),
                    );
                    self.change_service_state(env, sid, requested, Some(node), None, None);
                }
                code => {
                    env.log(
                        LogLevel::Err,
                        &format!("service '{sid}' - migration failed (exit code {code})"),
                    );
                    self.change_service_state(env, sid, requested, Some(node), None, None);
                    return;
                }
            }
        }
        let node = self.ss[sid].node.clone();
        if self.offline_delayed(env, &node) {
            self.change_service_state(env, sid, ServiceState::Fence, None, None, None);
        }
    }

    fn next_state_request_stop(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        lrm_res: Option<&LrmResult>,
    ) {
        if let Some(res) = lrm_res {
            if res.exit_code == SUCCESS {
                self.change_service_state(env, sid, ServiceState::Stopped, None, None, None);
            } else {
                env.log(
                    LogLevel::Err,
                    &format!("service '{sid}' stop failed (exit code {})", res.exit_code),
                );
                self.change_service_state(env, sid, ServiceState::Error, None, None, None);
            }
            return;
        }
        let node = self.ss[sid].node.clone();
        if self.offline_delayed(env, &node) {
            self.change_service_state(env, sid, ServiceState::Fence, None, None, None);
        }
    }

    fn next_state_recovery(&mut self, env: &mut dyn HaEnv, sid: &str, cd: &mut ResourceConfig) {
        let fenced = self.ss[sid].node.clone();
        // The config went to a live node before the fence (a migration that completed
        // while its source failed): the guest runs there, or is started there; moving
        // the config elsewhere would leave that copy running unmanaged.
        let holder = env
            .service_config_node(sid)
            .unwrap_or_else(|| fenced.clone());
        if holder != fenced && self.ns.is_online(&holder) {
            env.log(
                LogLevel::Info,
                &format!("recover service '{sid}' from fenced node '{fenced}' to node '{holder}', which holds its config already"),
            );
            cd.node = holder.clone();
            if let Some(sd) = self.ss.get_mut(sid) {
                sd.node = holder.clone();
            }
            let state = Self::requested_state(cd);
            self.change_service_state(env, sid, state, Some(holder), None, None);
            return;
        }
        self.recompute_online_node_usage(env);
        match self.select_node(env, sid, cd, NodePreference::BestScore) {
            Some(node) => {
                let msg = if node == fenced {
                    format!("recover service '{sid}' to previous failed and fenced node '{fenced}' again")
                } else {
                    format!("recover service '{sid}' from fenced node '{fenced}' to node '{node}'")
                };
                env.log(LogLevel::Info, &msg);
                if let Some(lock) = env.service_remove_locks(sid, &REMOVABLE_LOCKS) {
                    env.log(
                        LogLevel::Warning,
                        &format!("removed leftover lock '{lock}' from recovered service '{sid}' to allow its start."),
                    );
                }
                env.steal_service(sid, &holder, &node);
                cd.node = node.clone();
                if let Some(sd) = self.ss.get_mut(sid) {
                    sd.node = node.clone();
                }
                let state = Self::requested_state(cd);
                self.change_service_state(env, sid, state, Some(node), None, None);
            }
            None => {
                env.log(
                    LogLevel::Err,
                    &format!("recovering service '{sid}' from fenced node '{fenced}' failed, no recovery node found"),
                );
                if cd.state == RequestState::Disabled {
                    if let Some(sd) = self.ss.get_mut(sid) {
                        sd.failed_nodes = None;
                    }
                    self.change_service_state(env, sid, ServiceState::Stopped, None, None, None);
                }
            }
        }
    }

    fn next_state_started(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        cd: &ResourceConfig,
        lrm_res: Option<&LrmResult>,
    ) {
        let node = self.ss[sid].node.clone();
        if !self.ns.is_online(&node) {
            if self.offline_delayed(env, &node) {
                self.change_service_state(env, sid, ServiceState::Fence, None, None, None);
            }
            if self.ns.get(&node) != NodeState::Maintenance {
                return;
            }
            if let Some(sd) = self.ss.get_mut(sid) {
                sd.maintenance_node = Some(node.clone());
            }
        }
        match cd.state {
            RequestState::Disabled | RequestState::Stopped => {
                self.change_service_state(env, sid, ServiceState::RequestStop, None, None, None);
                return;
            }
            RequestState::Started => {}
            other => {
                env.log(
                    LogLevel::Err,
                    &format!("service '{sid}' - unknown state '{other}' in service configuration"),
                );
                return;
            }
        }
        if let Some(cmd) = self.ss.get_mut(sid).and_then(|sd| sd.cmd.take()) {
            match Self::motion(&cmd) {
                Some((task, target, state)) => {
                    if self.motion_possible(env, sid, task, &node, &target) {
                        env.log(
                            LogLevel::Info,
                            &format!("{task} service '{sid}' to node '{target}'"),
                        );
                        self.change_service_state(env, sid, state, Some(node), Some(target), None);
                    }
                }
                None => {
                    let ServiceCommand::Stop(timeout) = cmd else {
                        unreachable!()
                    };
                    if timeout == 0 {
                        env.log(
                            LogLevel::Info,
                            &format!("request immediate service hard-stop for service '{sid}'"),
                        );
                    } else {
                        env.log(
                            LogLevel::Info,
                            &format!("request graceful stop with timeout '{timeout}' for service '{sid}'"),
                        );
                    }
                    self.change_service_state(
                        env,
                        sid,
                        ServiceState::RequestStop,
                        None,
                        None,
                        Some(timeout),
                    );
                    if let Err(err) =
                        env.update_resource_config(sid, ResourceChange::RequestStopped)
                    {
                        env.log(
                            LogLevel::Err,
                            &format!("unable to update service config - {err}"),
                        );
                    }
                }
            }
            return;
        }

        let mut preference = NodePreference::None;
        if let Some(res) = lrm_res {
            let sd = self.ss.get_mut(sid).expect("service exists");
            match res.exit_code {
                SUCCESS => {
                    if let Some(failed) = sd.failed_nodes.take() {
                        env.log(
                            LogLevel::Info,
                            &format!(
                                "relocation policy successful for '{sid}' on node '{}', failed nodes: {}",
                                sd.node,
                                failed.join(", ")
                            ),
                        );
                    }
                    sd.running = true;
                }
                ERROR | EWRONG_NODE => {
                    sd.running = false;
                    let failed = sd.failed_nodes.get_or_insert_with(Vec::new);
                    failed.push(sd.node.clone());
                    if failed.len() <= cd.max_relocate as usize {
                        preference = NodePreference::TryNext;
                        env.log(
                            LogLevel::Warning,
                            &format!(
                                "starting service {sid} on node '{}' failed, relocating service.",
                                sd.node
                            ),
                        );
                    } else {
                        env.log(
                            LogLevel::Err,
                            &format!(
                                "recovery policy for service {sid} failed, entering error state. Failed nodes: {}",
                                failed.join(", ")
                            ),
                        );
                        self.change_service_state(env, sid, ServiceState::Error, None, None, None);
                        return;
                    }
                }
                code => {
                    sd.failed_nodes
                        .get_or_insert_with(Vec::new)
                        .push(sd.node.clone());
                    env.log(
                        LogLevel::Err,
                        &format!("service '{sid}' got unrecoverable error (exit code {code})"),
                    );
                    self.change_service_state(env, sid, ServiceState::Error, None, None, None);
                    return;
                }
            }
        }

        let selected = self.select_node(env, sid, cd, preference);
        let sd = self.ss.get_mut(sid).expect("service exists");
        match selected {
            Some(target) if target != sd.node => {
                if let Some(fallback) = sd.maintenance_node.clone() {
                    if target == fallback {
                        env.log(
                            LogLevel::Info,
                            &format!("moving service '{sid}' back to '{fallback}', node came back from maintenance."),
                        );
                        sd.maintenance_node = None;
                    } else if sd.node != fallback {
                        env.log(
                            LogLevel::Info,
                            &format!("dropping maintenance fallback node '{fallback}' for '{sid}'"),
                        );
                        sd.maintenance_node = None;
                    }
                }
                let current = sd.node.clone();
                if service_type(sid) == "vm" {
                    env.log(
                        LogLevel::Info,
                        &format!("migrate service '{sid}' to node '{target}' (running)"),
                    );
                    self.change_service_state(
                        env,
                        sid,
                        ServiceState::Migrate,
                        Some(current),
                        Some(target),
                        None,
                    );
                } else {
                    env.log(
                        LogLevel::Info,
                        &format!("relocate service '{sid}' to node '{target}'"),
                    );
                    self.change_service_state(
                        env,
                        sid,
                        ServiceState::Relocate,
                        Some(current),
                        Some(target),
                        None,
                    );
                }
            }
            selected => {
                if preference == NodePreference::TryNext && selected.is_none() {
                    env.log(
                        LogLevel::Warning,
                        &format!(
                            "Start Error Recovery: Tried all available nodes for service '{sid}', retry start on current node. Tried nodes: {}",
                            sd.failed_nodes.clone().unwrap_or_default().join(", ")
                        ),
                    );
                }
                if sd.maintenance_node.as_ref() == Some(&sd.node)
                    && self.ns.get(&sd.node) == NodeState::Online
                {
                    env.log(
                        LogLevel::Info,
                        &format!("service '{sid}': clearing stale maintenance node '{}' setting (is current node)", sd.node),
                    );
                    sd.maintenance_node = None;
                }
                if lrm_res.is_some() {
                    // A new uid makes the LRM run `started` again: that restarts a crashed service.
                    self.uid_counter += 1;
                    sd.uid = Some(format!(
                        "{}-{}-{}",
                        env.nodename(),
                        env.get_time(),
                        self.uid_counter
                    ));
                }
            }
        }
    }

    fn update_crm_commands(&mut self, env: &mut dyn HaEnv, sc: &ServiceConfig) -> EnvResult<()> {
        for cmd in env.read_crm_commands()? {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            match words.as_slice() {
                [task @ ("migrate" | "relocate"), sid, node] => {
                    let Some(sd) = self.ss.get(*sid) else {
                        env.log(
                            LogLevel::Err,
                            &format!("crm command error - no such service: {cmd}"),
                        );
                        continue;
                    };
                    if !self.ns.is_online(node) {
                        env.log(
                            LogLevel::Err,
                            &format!("crm command error - node not online: {cmd}"),
                        );
                    } else if sd.node == *node {
                        env.log(
                            LogLevel::Info,
                            &format!("ignore crm command - service already on target node: {cmd}"),
                        );
                    } else if let Some(reason) =
                        env.refused_nodes(sid, Some(sd.node.as_str())).remove(*node)
                    {
                        env.log(
                            LogLevel::Err,
                            &format!("crm command error - {reason}: {cmd}"),
                        );
                    } else {
                        self.queue_resource_motion(env, sc, &cmd, task, sid, node);
                    }
                }
                ["stop", sid, timeout] => {
                    let Ok(timeout) = timeout.parse::<i64>() else {
                        env.log(
                            LogLevel::Err,
                            &format!("unable to parse crm command: {cmd}"),
                        );
                        continue;
                    };
                    match self.ss.get_mut(*sid) {
                        None => env.log(
                            LogLevel::Err,
                            &format!("crm command error - no such service: {cmd}"),
                        ),
                        Some(sd) => {
                            env.log(LogLevel::Info, &format!("got crm command: {cmd}"));
                            sd.cmd = Some(ServiceCommand::Stop(timeout));
                        }
                    }
                }
                ["enable-node-maintenance", node] => {
                    if self.ms.disarm.is_some() {
                        env.log(
                            LogLevel::Warning,
                            &format!("ignoring maintenance command for node {node} - HA stack is disarmed"),
                        );
                    } else if self.ns.is_online(node) {
                        self.ms
                            .node_request
                            .insert(node.to_string(), NodeRequest { maintenance: true });
                    } else if self.ns.get(node) == NodeState::Maintenance {
                        env.log(
                            LogLevel::Info,
                            &format!("ignoring crm command - node {node} is already in maintenance state"),
                        );
                    } else {
                        env.log(
                            LogLevel::Err,
                            &format!("crm command error - node not online: {cmd}"),
                        );
                    }
                }
                ["disable-node-maintenance", node] => {
                    let state = self.ns.get(node);
                    if state != NodeState::Maintenance {
                        env.log(
                            LogLevel::Warning,
                            &format!("clearing maintenance of node {node} requested, but it's in state {state}"),
                        );
                    }
                    self.ms.node_request.remove(*node);
                }
                ["disarm-ha", mode @ ("freeze" | "ignore")] => {
                    if let Some(disarm) = self.ms.disarm {
                        env.log(
                            LogLevel::Notice,
                            &format!(
                                "ignoring disarm-ha command - already in disarm state ({})",
                                disarm.state
                            ),
                        );
                        continue;
                    }
                    env.log(
                        LogLevel::Info,
                        &format!("got crm command: disarm-ha {mode}"),
                    );
                    let mode = DisarmMode::parse(mode).unwrap_or(DisarmMode::Freeze);
                    if mode == DisarmMode::Ignore {
                        for sid in self.ss.keys() {
                            env.log(
                                LogLevel::Info,
                                &format!("disarm: suspending HA tracking for service '{sid}'"),
                            );
                        }
                    }
                    self.ms.disarm = Some(Disarm {
                        mode,
                        state: DisarmState::Disarming,
                    });
                }
                ["arm-ha"] => {
                    let Some(disarm) = self.ms.disarm else {
                        env.log(
                            LogLevel::Notice,
                            "ignoring arm-ha command - HA stack is not disarmed",
                        );
                        continue;
                    };
                    env.log(LogLevel::Info, "got crm command: arm-ha");
                    if disarm.mode == DisarmMode::Ignore {
                        for (sid, sd) in self.ss.iter_mut() {
                            if let Some(cd) = sc.get(sid) {
                                if cd.node != sd.node {
                                    env.log(
                                        LogLevel::Info,
                                        &format!(
                                            "service '{sid}': updating node '{}' => '{}' (changed while disarmed)",
                                            sd.node, cd.node
                                        ),
                                    );
                                    sd.node = cd.node.clone();
                                }
                            }
                        }
                    }
                    self.ms.disarm = None;
                }
                _ => env.log(
                    LogLevel::Err,
                    &format!("unable to parse crm command: {cmd}"),
                ),
            }
        }
        Ok(())
    }

    /// Queues a move of `sid` to `target`, refusing it when a service kept apart from it
    /// is there, and taking its positive partners along (spec §7.6).
    fn queue_resource_motion(
        &mut self,
        env: &mut dyn HaEnv,
        sc: &ServiceConfig,
        cmd: &str,
        task: &str,
        sid: &str,
        target: &str,
    ) {
        let rules = self.compiled.clone().unwrap_or_default();
        let ignored = |csid: &str| {
            sc.get(csid)
                .is_some_and(|cd| cd.state == RequestState::Ignored)
        };
        let occupies_target =
            |sd: &ServiceStatus| sd.node == target || sd.target.as_deref() == Some(target);
        for csid in rules.negative.get(sid).into_iter().flatten() {
            let Some(csd) = self.ss.get(csid) else {
                continue;
            };
            if !ignored(csid) && occupies_target(csd) {
                env.log(
                    LogLevel::Err,
                    &format!("crm command '{cmd}' error - service '{csid}' on node '{target}' in negative affinity with service '{sid}'"),
                );
                return;
            }
        }
        let make = |t: &str| match task {
            "migrate" => ServiceCommand::Migrate(t.to_string()),
            _ => ServiceCommand::Relocate(t.to_string()),
        };
        env.log(LogLevel::Info, &format!("got crm command: {cmd}"));
        if let Some(sd) = self.ss.get_mut(sid) {
            sd.cmd = Some(make(target));
        }
        for csid in rules.positive.get(sid).into_iter().flatten() {
            let Some(csd) = self.ss.get_mut(csid) else {
                continue;
            };
            if ignored(csid) || occupies_target(csd) {
                continue;
            }
            env.log(
                LogLevel::Info,
                &format!("crm command '{cmd}' - {task} service '{csid}' to node '{target}' (service '{csid}' in positive affinity with service '{sid}')"),
            );
            csd.cmd = Some(make(target));
        }
    }

    /// Disarm handling; returns the services that still must finish a transition
    /// (the disarm is deferred for them), or `None` when the round is complete.
    fn handle_disarm(
        &mut self,
        env: &mut dyn HaEnv,
        disarm: Disarm,
        lrm_modes: &BTreeMap<String, LrmMode>,
    ) -> EnvResult<Option<BTreeSet<String>>> {
        let mut deferred = BTreeSet::new();
        for (sid, sd) in &self.ss {
            let level = match sd.state {
                ServiceState::Fence | ServiceState::Recovery => LogLevel::Warning,
                ServiceState::Migrate | ServiceState::Relocate => LogLevel::Info,
                _ => continue,
            };
            env.log(
                level,
                &format!(
                    "deferring disarm - service '{sid}' is in '{}' state",
                    sd.state
                ),
            );
            deferred.insert(sid.clone());
        }
        if !deferred.is_empty() {
            return Ok(Some(deferred));
        }
        let sids: Vec<String> = self.ss.keys().cloned().collect();
        for sid in sids {
            let uid = self.new_uid(env);
            let sd = self.ss.get_mut(&sid).expect("service exists");
            let freeze = disarm.mode == DisarmMode::Freeze
                && matches!(
                    sd.state,
                    ServiceState::Started
                        | ServiceState::Stopped
                        | ServiceState::RequestStop
                        | ServiceState::RequestStart
                        | ServiceState::RequestStartBalance
                );
            if disarm.mode == DisarmMode::Freeze && !freeze {
                continue;
            }
            let mut pruned = ServiceStatus::new(sd.state, &sd.node);
            pruned.uid = sd.uid.clone();
            pruned.maintenance_node = sd.maintenance_node.take();
            if freeze {
                env.log(
                    LogLevel::Info,
                    &format!("disarm: freezing service '{sid}' (was '{}')", sd.state),
                );
                pruned.state = ServiceState::Freeze;
                pruned.uid = Some(uid);
            }
            *sd = pruned;
        }
        if disarm.state != DisarmState::Disarmed {
            let all_disarmed = self
                .ns
                .list_online_nodes()
                .iter()
                .all(|n| lrm_modes.get(n) == Some(&LrmMode::Disarm));
            if all_disarmed {
                env.log(
                    LogLevel::Info,
                    "all LRMs disarmed, HA stack is now fully disarmed",
                );
                self.ms.disarm = Some(Disarm {
                    mode: disarm.mode,
                    state: DisarmState::Disarmed,
                });
            }
        }
        self.flush(env)?;
        Ok(None)
    }

    fn load_balance(&mut self, env: &mut dyn HaEnv, sc: &ServiceConfig) {
        if !self.crs.auto_rebalance
            || !matches!(
                self.scheduler_mode(),
                Some(SchedulerMode::Static | SchedulerMode::Dynamic)
            )
        {
            return;
        }
        let moving = self.ss.values().any(|sd| {
            matches!(sd.state, ServiceState::Migrate | ServiceState::Relocate)
                || matches!(
                    sd.cmd,
                    Some(ServiceCommand::Migrate(_) | ServiceCommand::Relocate(_))
                )
        });
        if moving {
            return;
        }
        if self.usage.imbalance() <= self.crs.auto_rebalance_threshold {
            self.sustained_imbalance_rounds = 0;
            return;
        }
        self.sustained_imbalance_rounds += 1;
        if self.sustained_imbalance_rounds < self.crs.auto_rebalance_hold_duration {
            return;
        }
        self.sustained_imbalance_rounds = 0;

        let rules = self.compiled.clone().unwrap_or_default();
        let online: BTreeSet<String> = self.usage.list_nodes().map(String::from).collect();
        let mut candidates = placement::rebalance_candidates(&rules, &self.ss, &online);
        for candidate in &mut candidates {
            for sid in &candidate.resources {
                let from = self.ss.get(sid).map(|sd| sd.node.clone());
                let refused = env.refused_nodes(sid, from.as_deref());
                candidate.nodes.retain(|n| !refused.contains_key(n));
            }
        }
        candidates.retain(|c| !c.nodes.is_empty());
        let (imbalance, choice) = match self.usage.auto_rebalance_choice(
            &candidates,
            self.crs.auto_rebalance_method,
            self.crs.auto_rebalance_margin,
        ) {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(err) => {
                env.log(
                    LogLevel::Warning,
                    &format!("unable to score best balancing migration - {err}"),
                );
                return;
            }
        };
        let sid = choice.migration.sid;
        let target = choice.migration.target;
        let task = if service_type(&sid) == "vm" {
            "migrate"
        } else {
            "relocate"
        };
        env.log(
            LogLevel::Info,
            &format!(
                "auto rebalance - {task} {sid} to {target} (expected change for imbalance from {imbalance:.2} to {:.2})",
                choice.imbalance
            ),
        );
        let cmd = format!("{task} {sid} {target}");
        self.queue_resource_motion(env, sc, &cmd, task, &sid, &target);
    }

    /// Replaces legacy HA groups by rules once every node can read rules (spec §8.6).
    fn try_persistent_group_migration(&mut self, env: &mut dyn HaEnv) -> EnvResult<()> {
        let Some(groups) = env.read_groups_config()? else {
            return Ok(());
        };
        if groups.groups.is_empty() {
            return Ok(());
        }
        self.group_migration_round -= 1;
        if self.group_migration_round > 0 {
            return Ok(());
        }
        self.group_migration_round = GROUP_MIGRATION_INTERVAL;
        env.log(LogLevel::Notice, "start ha group migration...");
        match self.group_migration_blocker(env) {
            Some(reason) => {
                env.log(
                    LogLevel::Err,
                    &format!("abort ha groups migration: {reason}"),
                );
                env.log(LogLevel::Err, "ha groups migration failed");
                env.log(
                    LogLevel::Notice,
                    &format!(
                        "retry ha groups migration in {GROUP_MIGRATION_INTERVAL} rounds (~ {} seconds)",
                        GROUP_MIGRATION_INTERVAL * 10
                    ),
                );
            }
            None => self.migrate_groups(env, &groups)?,
        }
        Ok(())
    }

    fn group_migration_blocker(&self, env: &mut dyn HaEnv) -> Option<String> {
        let nodes = self.ns.list_nodes();
        if !env.quorate() || nodes.is_empty() {
            return Some("cluster is not quorate".into());
        }
        for node in nodes {
            let state = self.ns.get(&node);
            env.log(
                LogLevel::Notice,
                &format!("ha groups migration: node '{node}' is in state '{state}'"),
            );
            if state != NodeState::Online {
                return Some(format!("node '{node}' is not online"));
            }
            let lrm = env.read_lrm_status(&node).unwrap_or_default();
            let (Some(lrm_state), Some(mode)) = (lrm.state.clone(), lrm.mode) else {
                return Some(format!("lrm '{node}' has no state or mode"));
            };
            env.log(
                LogLevel::Notice,
                &format!(
                    "ha groups migration: lrm '{node}' is in state '{lrm_state}' and mode '{mode}'"
                ),
            );
            let active_services = crate::count_active_services(&self.ss, &node);
            if !(lrm_state == "active"
                || (lrm_state == "wait_for_agent_lock" && active_services == 0))
            {
                return Some(format!("lrm '{node}' is not in state 'active'"));
            }
            if mode != LrmMode::Active {
                return Some(format!("lrm '{node}' is not in mode 'active'"));
            }
            let version = env.node_version(&node).unwrap_or_default();
            env.log(
                LogLevel::Notice,
                &format!("ha groups migration: node '{node}' has version '{version}'"),
            );
            if version::compare(&version, MIN_GROUP_MIGRATION_VERSION).is_lt() {
                return Some(format!(
                    "node '{node}' needs at least pve-manager version '{MIN_GROUP_MIGRATION_VERSION}'"
                ));
            }
        }
        None
    }

    fn migrate_groups(&mut self, env: &mut dyn HaEnv, groups: &GroupsConfig) -> EnvResult<()> {
        let sc = env.read_service_config()?;
        let mut rules_cfg = env.read_rules_config()?;
        rules::migrate_groups_to_rules(&mut rules_cfg, groups, &sc);
        env.write_rules_config(&rules_cfg)?;
        env.log(
            LogLevel::Notice,
            "ha groups migration: migration to rules config successful",
        );
        for (sid, cd) in &sc {
            if let Some(group) = cd.group.as_ref() {
                let failback = groups
                    .groups
                    .get(group)
                    .map(|g| !g.nofailback)
                    .unwrap_or(cd.failback);
                env.update_resource_config(sid, ResourceChange::DropGroup { failback })?;
            }
        }
        env.log(
            LogLevel::Notice,
            "ha groups migration: migration to resources config successful",
        );
        env.delete_groups_config()?;
        env.log(
            LogLevel::Notice,
            "ha groups migration: group config deletion successful",
        );
        env.log(LogLevel::Notice, "ha groups migration successful");
        Ok(())
    }
}
