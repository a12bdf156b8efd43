//! The local resource manager: one per node, runs the commands the master assigns to the
//! node's services, holds the node's agent lock and feeds its watchdog (spec §4).

use crate::env::{HaEnv, LogLevel, ServiceAction, WatchdogHandle};
use crate::{count_active_services, count_fenced_services};
use ferrox_types::exit_code::*;
use ferrox_types::{
    service_type, LrmMode, LrmResult, LrmStatus, NodeState, ResourceConfig, ServiceState,
    ServiceStatus, ShutdownPolicy,
};
use std::collections::BTreeMap;

const MAX_ACTIVE_IDLE_ROUNDS: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrmState {
    Startup,
    WaitForAgentLock,
    Active,
    LostAgentLock,
    Maintenance,
}

impl LrmState {
    pub fn as_str(self) -> &'static str {
        match self {
            LrmState::Startup => "startup",
            LrmState::WaitForAgentLock => "wait_for_agent_lock",
            LrmState::Active => "active",
            LrmState::LostAgentLock => "lost_agent_lock",
            LrmState::Maintenance => "maintenance",
        }
    }
}

#[derive(Debug, Clone)]
struct Worker {
    /// `None` marks a stop job queued by a node shutdown; its result is not reported.
    uid: Option<String>,
    command: ServiceState,
    target: Option<String>,
    timeout: Option<i64>,
    /// Rounds of `run_workers` that saw it queued: the longest waiting start first.
    start_tries: u32,
}

/// What running a command comes to: a result known without acting, or an action for
/// the environment to carry out (inline or on a worker) and check afterwards.
enum Step {
    Done(i32),
    Act(ServiceAction),
}

pub struct Lrm {
    state: LrmState,
    state_change_time: i64,
    mode: LrmMode,
    /// Commands queued and not yet begun.
    workers: BTreeMap<String, Worker>,
    /// Commands whose action runs on a worker of the environment (max_workers > 0).
    running: BTreeMap<String, (Worker, ServiceAction)>,
    results: BTreeMap<String, LrmResult>,
    restart_tries: BTreeMap<String, u32>,
    shutdown_request: bool,
    shutdown_errors: u32,
    cluster_state_update: bool,
    active_idle_rounds: u32,
    service_status: BTreeMap<String, ServiceStatus>,
    node_status: NodeState,
    watchdog: Option<WatchdogHandle>,
}

impl Lrm {
    pub fn new(env: &mut dyn HaEnv) -> Self {
        let mut lrm = Lrm {
            state: LrmState::Startup,
            state_change_time: env.get_time(),
            mode: LrmMode::Active,
            workers: BTreeMap::new(),
            running: BTreeMap::new(),
            results: BTreeMap::new(),
            restart_tries: BTreeMap::new(),
            shutdown_request: false,
            shutdown_errors: 0,
            cluster_state_update: false,
            active_idle_rounds: 0,
            service_status: BTreeMap::new(),
            node_status: NodeState::Unknown,
            watchdog: None,
        };
        lrm.set_state(env, LrmState::WaitForAgentLock);
        lrm
    }

    pub fn state(&self) -> LrmState {
        self.state
    }

    pub fn mode(&self) -> LrmMode {
        self.mode
    }

    pub fn node_status(&self) -> NodeState {
        self.node_status
    }

    fn set_state(&mut self, env: &mut dyn HaEnv, state: LrmState) {
        if self.state == state {
            return;
        }
        env.log(
            LogLevel::Info,
            &format!(
                "status change {} => {}",
                self.state.as_str(),
                state.as_str()
            ),
        );
        self.state = state;
        self.state_change_time = env.get_time();
    }

    fn active_service_count(&self, env: &dyn HaEnv) -> usize {
        count_active_services(&self.service_status, &env.nodename())
    }

    fn has_configured_service_on_local_node(&self, env: &dyn HaEnv) -> bool {
        let me = env.nodename();
        self.service_status.values().any(|sd| sd.node == me)
    }

    /// A shutdown or LRM restart was requested (spec §4.4).
    pub fn shutdown_request(&mut self, env: &mut dyn HaEnv) {
        if self.shutdown_request {
            return;
        }
        let (shutdown, reboot) = env.is_node_shutdown();
        let policy_text = env
            .datacenter_config()
            .ok()
            .and_then(|dc| dc.shutdown_policy)
            .unwrap_or_else(|| "conditional".to_string());
        if shutdown {
            env.log(
                LogLevel::Info,
                &format!("got shutdown request with shutdown policy '{policy_text}'"),
            );
        }
        let mut freeze_all = false;
        let mut maintenance = false;
        match ShutdownPolicy::parse(&policy_text) {
            Some(ShutdownPolicy::Conditional) => freeze_all = reboot,
            Some(ShutdownPolicy::Freeze) => freeze_all = true,
            Some(ShutdownPolicy::Failover) => freeze_all = false,
            Some(ShutdownPolicy::Migrate) => maintenance = true,
            None => {
                env.log(
                    LogLevel::Err,
                    &format!("unknown shutdown policy '{policy_text}', fall back to conditional"),
                );
                freeze_all = reboot;
            }
        }
        let me = env.nodename();
        if shutdown && !maintenance {
            let local: Vec<String> = self
                .service_status
                .iter()
                .filter(|(_, sd)| sd.node == me)
                .map(|(sid, _)| sid.clone())
                .collect();
            for sid in local {
                self.queue_command(&sid, None, ServiceState::RequestStop, None, None);
            }
        }
        if shutdown {
            let kind = if reboot { "reboot" } else { "shutdown" };
            if self.mode == LrmMode::Maintenance {
                if maintenance {
                    env.log(
                        LogLevel::Info,
                        &format!(
                            "{kind} LRM, ignore maintenance policy, already in maintenance mode"
                        ),
                    );
                } else {
                    env.log(
                        LogLevel::Info,
                        &format!("{kind} LRM, ignore {policy_text} policy as manual maintenance mode is enabled"),
                    );
                }
            } else if maintenance {
                env.log(
                    LogLevel::Info,
                    &format!("{kind} LRM, doing maintenance, removing this node from active list"),
                );
                self.mode = LrmMode::Maintenance;
            } else if freeze_all {
                env.log(
                    LogLevel::Info,
                    &format!("{kind} LRM, stop and freeze all services"),
                );
                self.mode = LrmMode::Restart;
            } else {
                env.log(LogLevel::Info, "shutdown LRM, stop all services");
                self.mode = LrmMode::Shutdown;
            }
        } else if self.mode == LrmMode::Maintenance {
            env.log(
                LogLevel::Info,
                "Restarting LRM in maintenance mode may be delayed until all services are moved",
            );
        } else {
            env.log(LogLevel::Info, "restart LRM, freeze all services");
            self.mode = LrmMode::Restart;
        }
        self.shutdown_request = true;
        if !self.update_lrm_status(env) {
            env.log(
                LogLevel::Err,
                "unable to update lrm status file - not quorate?",
            );
        }
    }

    fn update_lrm_status(&mut self, env: &mut dyn HaEnv) -> bool {
        if !env.quorate() {
            return false;
        }
        let status = LrmStatus {
            state: Some(self.state.as_str().to_string()),
            mode: Some(self.mode),
            results: self.results.clone(),
            timestamp: Some(env.get_time()),
        };
        match env.write_lrm_status(&status) {
            Ok(()) => true,
            Err(err) => {
                env.log(
                    LogLevel::Err,
                    &format!("unable to write lrm status file - {err}"),
                );
                false
            }
        }
    }

    fn update_service_status(&mut self, env: &mut dyn HaEnv) -> bool {
        match env.read_manager_status() {
            Err(err) => {
                env.log(
                    LogLevel::Err,
                    &format!("updating service status from manager failed: {err}"),
                );
                false
            }
            Ok(ms) => {
                let me = env.nodename();
                self.service_status = ms.service_status;
                self.node_status = ms
                    .node_status
                    .get(&me)
                    .copied()
                    .unwrap_or(NodeState::Unknown);
                if !self.shutdown_request {
                    if ms.node_request.get(&me).is_some_and(|r| r.maintenance) {
                        self.mode = LrmMode::Maintenance;
                    } else if ms.disarm.is_some() {
                        self.mode = LrmMode::Disarm;
                    } else if matches!(self.mode, LrmMode::Maintenance | LrmMode::Disarm) {
                        self.mode = LrmMode::Active;
                    }
                }
                true
            }
        }
    }

    fn get_protected_agent_lock(&mut self, env: &mut dyn HaEnv) -> bool {
        let me = env.nodename();
        if !env.get_ha_agent_lock(&me) {
            return false;
        }
        match &self.watchdog {
            Some(handle) => env.watchdog_update(handle),
            None => self.watchdog = Some(env.watchdog_open()),
        }
        true
    }

    fn give_up_watchdog_protection(&mut self, env: &mut dyn HaEnv) {
        if let Some(handle) = self.watchdog.take() {
            env.watchdog_close(&handle);
        }
    }

    /// One iteration; false when the daemon should exit. `status_written` is the
    /// start-up flag "the LRM status was written once" (process-wide in Proxmox VE).
    pub fn do_one_iteration(&mut self, env: &mut dyn HaEnv, status_written: &mut bool) -> bool {
        self.cluster_state_update = env.cluster_state_update();
        self.work(env, status_written)
    }

    fn work(&mut self, env: &mut dyn HaEnv, status_written: &mut bool) -> bool {
        if !*status_written {
            if self.update_lrm_status(env) {
                *status_written = true;
            } else {
                return !self.shutdown_request;
            }
        }
        self.update_service_status(env);
        let me = env.nodename();
        let fence_request = count_fenced_services(&self.service_status, &me) > 0
            || self.node_status == NodeState::Fence;

        match self.state {
            LrmState::WaitForAgentLock => {
                if self.mode != LrmMode::Disarm
                    && !fence_request
                    && self.active_service_count(env) > 0
                    && env.quorate()
                    && self.get_protected_agent_lock(env)
                {
                    self.set_state(env, LrmState::Active);
                }
            }
            LrmState::LostAgentLock => {
                if !fence_request && env.quorate() && self.get_protected_agent_lock(env) {
                    self.set_state(env, LrmState::Active);
                }
            }
            LrmState::Active => {
                if fence_request {
                    env.log(
                        LogLevel::Err,
                        "node need to be fenced - releasing agent_lock",
                    );
                    self.set_state(env, LrmState::LostAgentLock);
                } else if !self.get_protected_agent_lock(env) {
                    self.set_state(env, LrmState::LostAgentLock);
                } else if self.mode == LrmMode::Maintenance {
                    self.set_state(env, LrmState::Maintenance);
                } else if self.mode == LrmMode::Disarm && self.no_workers() {
                    env.log(
                        LogLevel::Info,
                        "HA disarm requested, releasing agent lock and watchdog",
                    );
                    env.release_ha_agent_lock();
                    self.give_up_watchdog_protection(env);
                    self.set_state(env, LrmState::WaitForAgentLock);
                } else if !self.has_configured_service_on_local_node(env)
                    && self.run_workers(env) == 0
                {
                    self.active_idle_rounds += 1;
                    if self.active_idle_rounds > MAX_ACTIVE_IDLE_ROUNDS {
                        env.log(
                            LogLevel::Info,
                            &format!("node had no service configured for {MAX_ACTIVE_IDLE_ROUNDS} rounds, going idle."),
                        );
                        env.release_ha_agent_lock();
                        self.give_up_watchdog_protection(env);
                        self.set_state(env, LrmState::WaitForAgentLock);
                        self.active_idle_rounds = 0;
                    }
                } else {
                    self.active_idle_rounds = 0;
                }
            }
            LrmState::Maintenance => {
                if fence_request {
                    env.log(
                        LogLevel::Err,
                        "node need to be fenced during maintenance mode - releasing agent_lock",
                    );
                    self.set_state(env, LrmState::LostAgentLock);
                } else if self.mode == LrmMode::Disarm
                    && self.active_service_count(env) == 0
                    && self.no_workers()
                {
                    env.log(
                        LogLevel::Info,
                        "HA disarm requested during maintenance, releasing agent lock and watchdog",
                    );
                    env.release_ha_agent_lock();
                    self.give_up_watchdog_protection(env);
                    self.set_state(env, LrmState::WaitForAgentLock);
                } else if self.active_service_count(env) > 0 || self.run_workers(env) > 0 {
                    if !self.get_protected_agent_lock(env) {
                        self.set_state(env, LrmState::LostAgentLock);
                    }
                } else if self.mode != LrmMode::Maintenance {
                    if self.get_protected_agent_lock(env) {
                        self.set_state(env, LrmState::Active);
                    } else {
                        self.set_state(env, LrmState::LostAgentLock);
                    }
                }
            }
            LrmState::Startup => {}
        }

        match self.state {
            LrmState::WaitForAgentLock | LrmState::Startup => {
                if self.shutdown_request {
                    return false;
                }
                self.update_lrm_status(env);
            }
            LrmState::Active => {
                let mut exit = false;
                if self.update_service_status(env) {
                    if self.shutdown_request {
                        if self.mode == LrmMode::Restart {
                            let workers = self.run_workers(env);
                            if self.active_service_count(env) == 0 && workers == 0 {
                                self.give_up_watchdog_protection(env);
                                exit = true;
                                env.release_ha_agent_lock();
                            }
                        } else if self.run_workers(env) == 0 {
                            if self.shutdown_errors == 0 {
                                self.give_up_watchdog_protection(env);
                                env.release_ha_agent_lock();
                            }
                            exit = true;
                        }
                    } else if !self.cluster_state_update {
                        env.log(
                            LogLevel::Notice,
                            "temporary inconsistent cluster state (cfs restart?), skip round",
                        );
                    } else {
                        self.manage_resources(env);
                    }
                }
                self.update_lrm_status(env);
                if exit {
                    return false;
                }
            }
            LrmState::LostAgentLock => {
                if self.shutdown_request {
                    let count = self.active_service_count(env);
                    if count > 0 {
                        env.log(
                            LogLevel::Err,
                            &format!("got shutdown request in state 'lost_agent_lock' - detected {count} running services"),
                        );
                        if self.mode == LrmMode::Restart
                            && env.get_time() - self.state_change_time > 90
                        {
                            env.log(
                                LogLevel::Err,
                                "lost agent lock and restart request for over 90 seconds - giving up!",
                            );
                            return false;
                        }
                    } else {
                        self.give_up_watchdog_protection(env);
                        return false;
                    }
                }
            }
            LrmState::Maintenance => {
                if !self.update_service_status(env) {
                    // Upstream returns undef here, which ends the daemon.
                    return false;
                }
                let mut exit = false;
                if self.active_service_count(env) == 0 && self.run_workers(env) == 0 {
                    self.give_up_watchdog_protection(env);
                    if self.shutdown_request {
                        exit = true;
                    }
                    env.release_ha_agent_lock();
                }
                if !exit {
                    self.manage_resources(env);
                }
                self.update_lrm_status(env);
                if exit {
                    return false;
                }
            }
        }
        true
    }

    fn queue_command(
        &mut self,
        sid: &str,
        uid: Option<String>,
        command: ServiceState,
        target: Option<String>,
        timeout: Option<i64>,
    ) {
        if command != ServiceState::Stopped {
            if let Some(uid) = &uid {
                if self.results.contains_key(uid) {
                    return;
                }
            }
        }
        // A command already running on a worker finishes first.
        if self.running.contains_key(sid) {
            return;
        }
        self.workers.insert(
            sid.to_string(),
            Worker {
                uid,
                command,
                target,
                timeout,
                start_tries: 0,
            },
        );
    }

    fn no_workers(&self) -> bool {
        self.workers.is_empty() && self.running.is_empty()
    }

    fn manage_resources(&mut self, env: &mut dyn HaEnv) -> usize {
        let me = env.nodename();
        let ss = &self.service_status;
        self.restart_tries.retain(|sid, _| ss.contains_key(sid));
        let queue: Vec<(String, ServiceStatus)> = ss
            .iter()
            .filter(|(_, sd)| {
                sd.node == me
                    && sd.uid.is_some()
                    && !matches!(
                        sd.state,
                        ServiceState::Recovery | ServiceState::Freeze | ServiceState::RequestStart
                    )
            })
            .map(|(sid, sd)| (sid.clone(), sd.clone()))
            .collect();
        for (sid, sd) in queue {
            self.queue_command(&sid, sd.uid, sd.state, sd.target, sd.timeout);
        }
        self.run_workers(env)
    }

    /// Runs the queued commands and returns how many are still queued or running. With
    /// `max_workers` 0 (the simulator) each runs inline, in service order. Otherwise, as
    /// Proxmox VE's forked workers do, up to `max_workers` actions run at once on the
    /// environment's workers, the longest-waiting command first; this waits for them for
    /// about 8 seconds and leaves the rest to the next round, so one slow start does not
    /// hold every other service.
    fn run_workers(&mut self, env: &mut dyn HaEnv) -> usize {
        if self.no_workers() {
            return 0;
        }
        let sc = match env.read_service_config() {
            Ok(sc) => sc,
            Err(err) => {
                env.log(LogLevel::Err, &format!("got unexpected error - {err}"));
                return self.workers.len() + self.running.len();
            }
        };
        let max_workers = env.max_workers();
        if max_workers == 0 {
            let workers = std::mem::take(&mut self.workers);
            for (sid, worker) in workers {
                let code = self.exec_resource_agent(env, &sid, sc.get(&sid), &worker);
                self.command_finished(env, &sid, &worker, code, sc.get(&sid));
            }
            return self.workers.len();
        }
        let started = env.get_time();
        loop {
            let mut queued: Vec<(u32, String)> = self
                .workers
                .iter_mut()
                .map(|(sid, w)| {
                    w.start_tries += 1;
                    (w.start_tries, sid.clone())
                })
                .collect();
            queued.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            for (_, sid) in queued {
                if self.running.len() >= max_workers {
                    break;
                }
                let Some(worker) = self.workers.remove(&sid) else {
                    continue;
                };
                match self.prepare_action(env, &sid, sc.get(&sid), &worker) {
                    Step::Done(code) => {
                        self.command_finished(env, &sid, &worker, code, sc.get(&sid))
                    }
                    Step::Act(action) => {
                        if env.begin_service_action(&sid, &action) {
                            self.running.insert(sid, (worker, action));
                        } else {
                            env.log(
                                LogLevel::Err,
                                &format!("starting a worker for {sid} failed"),
                            );
                            self.workers.insert(sid, worker);
                            break;
                        }
                    }
                }
            }
            if self.running.is_empty() || env.get_time() - started > 8 {
                break;
            }
            for (sid, succeeded) in env.finished_service_actions() {
                if let Some((worker, action)) = self.running.remove(&sid) {
                    let code = self.check_action(env, &sid, &action, succeeded);
                    self.command_finished(env, &sid, &worker, code, sc.get(&sid));
                }
            }
        }
        self.workers.len() + self.running.len()
    }

    /// Records the result of a finished command (Proxmox VE's
    /// `resource_command_finished` / `stop_command_finished`).
    fn command_finished(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        worker: &Worker,
        code: i32,
        cd: Option<&ResourceConfig>,
    ) {
        match &worker.uid {
            Some(uid) => {
                let max_restart = cd.map(|cd| cd.max_restart).unwrap_or(0);
                let code =
                    self.handle_service_exitcode(env, sid, worker.command, code, max_restart);
                if code == ETRY_AGAIN {
                    return;
                }
                self.results.insert(
                    uid.clone(),
                    LrmResult {
                        sid: sid.to_string(),
                        state: worker.command,
                        exit_code: code,
                    },
                );
                let valid: std::collections::BTreeSet<&String> = self
                    .service_status
                    .values()
                    .filter_map(|sd| sd.uid.as_ref())
                    .collect();
                self.results.retain(|uid, _| valid.contains(uid));
            }
            None => {
                if code != SUCCESS {
                    self.shutdown_errors += 1;
                }
            }
        }
    }

    fn handle_service_exitcode(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        command: ServiceState,
        code: i32,
        max_restart: u32,
    ) -> i32 {
        if command != ServiceState::Started {
            return code;
        }
        match code {
            SUCCESS => {
                self.restart_tries.insert(sid.to_string(), 0);
                code
            }
            ERROR => {
                let tries = self.restart_tries.entry(sid.to_string()).or_insert(0);
                if *tries >= max_restart {
                    env.log(
                        LogLevel::Err,
                        &format!(
                            "unable to start service {sid} on local node after {tries} retries"
                        ),
                    );
                    *tries = 0;
                    return ERROR;
                }
                *tries += 1;
                env.log(
                    LogLevel::Warning,
                    &format!("restart policy: retry number {tries} for service '{sid}'"),
                );
                ETRY_AGAIN
            }
            other => other,
        }
    }

    /// Runs a command inline: the checks, the action, the check of its outcome.
    fn exec_resource_agent(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        cd: Option<&ResourceConfig>,
        worker: &Worker,
    ) -> i32 {
        match self.prepare_action(env, sid, cd, worker) {
            Step::Done(code) => code,
            Step::Act(action) => {
                let succeeded = match &action {
                    ServiceAction::Start => {
                        env.service_start(sid);
                        true
                    }
                    ServiceAction::Shutdown { timeout } => {
                        env.service_shutdown(sid, *timeout);
                        true
                    }
                    ServiceAction::Migrate { target, online } => {
                        env.service_migrate(sid, target, *online)
                    }
                };
                self.check_action(env, sid, &action, succeeded)
            }
        }
    }

    /// What a command needs (Proxmox VE's `exec_resource_agent` up to the action): a result
    /// when the checks decide it, else the action, logged as it begins.
    fn prepare_action(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        cd: Option<&ResourceConfig>,
        worker: &Worker,
    ) -> Step {
        let kind = service_type(sid);
        if !env.service_type_known(kind) {
            env.log(
                LogLevel::Err,
                &format!("service type '{kind}' not implemented"),
            );
            return Step::Done(EUNKNOWN_SERVICE_TYPE);
        }
        let Some(cd) = cd else {
            env.log(
                LogLevel::Err,
                &format!("missing resource configuration for '{sid}'"),
            );
            return Step::Done(EUNKNOWN_SERVICE);
        };
        if worker.command == ServiceState::Error {
            env.log(
                LogLevel::Err,
                &format!("service {sid} is in an error state and needs manual intervention. Look up 'ERROR RECOVERY' in the documentation."),
            );
            return Step::Done(SUCCESS);
        }
        if cd.node != env.nodename() {
            env.log(LogLevel::Err, &format!("service '{sid}' not on this node"));
            return Step::Done(EWRONG_NODE);
        }
        let running = env.service_is_running(sid);
        match worker.command {
            ServiceState::Started => {
                if running {
                    return Step::Done(SUCCESS);
                }
                env.log(LogLevel::Info, &format!("starting service {sid}"));
                Step::Act(ServiceAction::Start)
            }
            ServiceState::RequestStop | ServiceState::Stopped => {
                if !running {
                    return Step::Done(SUCCESS);
                }
                match worker.timeout {
                    Some(t) => env.log(
                        LogLevel::Info,
                        &format!("stopping service {sid} (timeout={t})"),
                    ),
                    None => env.log(LogLevel::Info, &format!("stopping service {sid}")),
                }
                Step::Act(ServiceAction::Shutdown {
                    timeout: worker.timeout,
                })
            }
            command @ (ServiceState::Migrate
            | ServiceState::Relocate
            | ServiceState::RequestStartBalance) => {
                let Some(target) = worker.target.as_deref() else {
                    env.log(
                        LogLevel::Err,
                        &format!("{command} '{sid}' failed - missing target"),
                    );
                    return Step::Done(EINVALID_PARAMETER);
                };
                if cd.node == target {
                    return Step::Done(SUCCESS);
                }
                if command == ServiceState::RequestStartBalance && running {
                    env.log(
                        LogLevel::Info,
                        &format!("ignoring rebalance-on-start for service {sid} - already running"),
                    );
                    return Step::Done(IGNORED);
                }
                Step::Act(ServiceAction::Migrate {
                    target: target.to_string(),
                    online: command == ServiceState::Migrate,
                })
            }
            other => {
                env.log(LogLevel::Err, &format!("implement me (cmd '{other}')"));
                Step::Done(EUNKNOWN_COMMAND)
            }
        }
    }

    /// The result of a carried-out action: a start or stop is judged by whether the
    /// service runs afterwards, a move by the environment's answer.
    fn check_action(
        &mut self,
        env: &mut dyn HaEnv,
        sid: &str,
        action: &ServiceAction,
        succeeded: bool,
    ) -> i32 {
        match action {
            ServiceAction::Start => {
                if env.service_is_running(sid) {
                    env.log(LogLevel::Info, &format!("service status {sid} started"));
                    SUCCESS
                } else {
                    env.log(LogLevel::Warning, &format!("unable to start service {sid}"));
                    ERROR
                }
            }
            ServiceAction::Shutdown { .. } => {
                if !env.service_is_running(sid) {
                    env.log(LogLevel::Info, &format!("service status {sid} stopped"));
                    SUCCESS
                } else {
                    env.log(
                        LogLevel::Info,
                        &format!("unable to stop service {sid} (still running)"),
                    );
                    ERROR
                }
            }
            ServiceAction::Migrate { .. } => {
                if succeeded {
                    SUCCESS
                } else {
                    env.log(
                        LogLevel::Err,
                        &format!("service {sid} not moved (migration error)"),
                    );
                    ERROR
                }
            }
        }
    }
}
