//! The cluster resource manager daemon: every node runs one; the one holding
//! `ha_manager_lock` is master and runs the `Manager` (spec §3).

use crate::count_fenced_services;
use crate::env::{HaEnv, LogLevel, WatchdogHandle};
use crate::manager::Manager;
use ferrox_types::{DisarmState, NodeState};

const MAX_ACTIVE_IDLE_ROUNDS: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmState {
    Startup,
    WaitForQuorum,
    Master,
    LostManagerLock,
    Slave,
}

impl CrmState {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmState::Startup => "startup",
            CrmState::WaitForQuorum => "wait_for_quorum",
            CrmState::Master => "master",
            CrmState::LostManagerLock => "lost_manager_lock",
            CrmState::Slave => "slave",
        }
    }
}

pub struct Crm {
    state: CrmState,
    manager: Option<Manager>,
    cluster_state_update: bool,
    active_idle_rounds: u32,
    shutdown_request: bool,
    /// Set while the master runs without a watchdog because HA is fully disarmed.
    disarmed: bool,
    watchdog: Option<WatchdogHandle>,
}

impl Crm {
    pub fn new(env: &mut dyn HaEnv) -> Self {
        let mut crm = Crm {
            state: CrmState::Startup,
            manager: None,
            cluster_state_update: false,
            active_idle_rounds: 0,
            shutdown_request: false,
            disarmed: false,
            watchdog: None,
        };
        crm.set_state(env, CrmState::WaitForQuorum);
        crm
    }

    pub fn state(&self) -> CrmState {
        self.state
    }

    pub fn shutdown_request(&mut self, env: &mut dyn HaEnv) {
        if !self.shutdown_request {
            env.log(LogLevel::Info, "server received shutdown request");
        }
        self.shutdown_request = true;
    }

    fn set_state(&mut self, env: &mut dyn HaEnv, state: CrmState) {
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
        self.manager = if state == CrmState::Master {
            Some(Manager::new(env))
        } else {
            None
        };
    }

    fn is_cluster_and_ha_healthy(&self, env: &mut dyn HaEnv) -> bool {
        if !env.quorate() || !self.cluster_state_update {
            return false;
        }
        match env.read_manager_status() {
            Err(err) => {
                env.log(
                    LogLevel::Err,
                    &format!("could not read manager status: {err}"),
                );
                false
            }
            Ok(ms) => count_fenced_services(&ms.service_status, &env.nodename()) == 0,
        }
    }

    fn can_get_active(&self, env: &mut dyn HaEnv, allow_no_service: bool) -> bool {
        if !self.is_cluster_and_ha_healthy(env) {
            return false;
        }
        if allow_no_service {
            return true;
        }
        let Ok(ms) = env.read_manager_status() else {
            return false;
        };
        let Ok(sc) = env.read_service_config() else {
            return false;
        };
        if !sc.is_empty() {
            return true;
        }
        let me = env.nodename();
        let no_other_master = match &ms.master_node {
            None => true,
            Some(master) => ms.node_status.get(master) != Some(&NodeState::Online) || *master == me,
        };
        if !no_other_master {
            return false;
        }
        let stale_maintenance = ms.node_status.iter().any(|(node, state)| {
            *state == NodeState::Maintenance
                && !ms.node_request.get(node).is_some_and(|r| r.maintenance)
        });
        // Peek at the command queue without consuming it.
        let pending_command = env.has_pending_crm_commands();
        stale_maintenance || pending_command || !ms.service_status.is_empty() || ms.disarm.is_some()
    }

    fn allowed_to_get_idle(&self, env: &mut dyn HaEnv) -> bool {
        if !self.is_cluster_and_ha_healthy(env) {
            return false;
        }
        let Ok(ms) = env.read_manager_status() else {
            return false;
        };
        if ms.disarm.is_some() {
            return false;
        }
        let Ok(sc) = env.read_service_config() else {
            return false;
        };
        sc.is_empty() && ms.service_status.is_empty()
    }

    fn get_protected_manager_lock(&mut self, env: &mut dyn HaEnv) -> bool {
        if !env.get_ha_manager_lock() {
            return false;
        }
        if let Some(handle) = &self.watchdog {
            env.watchdog_update(handle);
        } else if !self.disarmed {
            let disarmed = env
                .read_manager_status()
                .ok()
                .and_then(|ms| ms.disarm)
                .is_some_and(|d| d.state == DisarmState::Disarmed);
            if disarmed {
                env.log(
                    LogLevel::Info,
                    "taking over as disarmed master, skipping watchdog",
                );
                self.disarmed = true;
            } else {
                self.watchdog = Some(env.watchdog_open());
            }
        }
        true
    }

    fn give_up_watchdog_protection(&mut self, env: &mut dyn HaEnv) {
        if let Some(handle) = self.watchdog.take() {
            env.watchdog_close(&handle);
        }
    }

    /// One iteration; false when the daemon should exit.
    pub fn do_one_iteration(&mut self, env: &mut dyn HaEnv) -> bool {
        self.cluster_state_update = env.cluster_state_update();
        self.work(env)
    }

    fn work(&mut self, env: &mut dyn HaEnv) -> bool {
        match self.state {
            CrmState::WaitForQuorum => {
                if self.can_get_active(env, false) {
                    if self.get_protected_manager_lock(env) {
                        self.set_state(env, CrmState::Master);
                    } else {
                        self.set_state(env, CrmState::Slave);
                    }
                }
            }
            CrmState::Slave => {
                if self.can_get_active(env, false) {
                    if self.get_protected_manager_lock(env) {
                        self.set_state(env, CrmState::Master);
                    }
                } else {
                    self.set_state(env, CrmState::WaitForQuorum);
                }
            }
            CrmState::LostManagerLock => {
                if self.can_get_active(env, true) && self.get_protected_manager_lock(env) {
                    self.set_state(env, CrmState::Master);
                }
            }
            CrmState::Master => {
                if !self.get_protected_manager_lock(env) {
                    self.set_state(env, CrmState::LostManagerLock);
                } else if !self.allowed_to_get_idle(env) {
                    self.active_idle_rounds = 0;
                } else {
                    self.active_idle_rounds += 1;
                    if self.active_idle_rounds > MAX_ACTIVE_IDLE_ROUNDS {
                        self.active_idle_rounds = 0;
                        env.log(
                            LogLevel::Info,
                            &format!("cluster had no service configured for {MAX_ACTIVE_IDLE_ROUNDS} rounds, going idle."),
                        );
                        env.release_ha_manager_lock();
                        self.give_up_watchdog_protection(env);
                        self.set_state(env, CrmState::WaitForQuorum);
                    }
                }
            }
            CrmState::Startup => {}
        }

        match self.state {
            CrmState::WaitForQuorum | CrmState::Startup => {
                if self.shutdown_request {
                    return false;
                }
            }
            CrmState::Master => {
                if self.shutdown_request {
                    self.give_up_watchdog_protection(env);
                    env.log(LogLevel::Info, "voluntary release CRM lock");
                    if !env.release_ha_manager_lock() {
                        env.log(
                            LogLevel::Notice,
                            "CRM lock release failed, let the lock timeout",
                        );
                    }
                    return false;
                }
                if !self.cluster_state_update {
                    env.log(
                        LogLevel::Notice,
                        "temporary inconsistent cluster state (cfs restart?), skip round",
                    );
                    return true;
                }
                let Some(manager) = self.manager.as_mut() else {
                    return true;
                };
                match manager.manage(env) {
                    Err(err) => env.log(LogLevel::Err, &format!("got unexpected error - {err}")),
                    Ok(outcome) => {
                        if outcome.fully_disarmed && !self.disarmed {
                            env.log(
                                LogLevel::Info,
                                "HA stack fully disarmed, releasing CRM watchdog",
                            );
                            self.give_up_watchdog_protection(env);
                            self.disarmed = true;
                        } else if !outcome.fully_disarmed && self.disarmed {
                            env.log(LogLevel::Info, "re-arming HA stack");
                            self.disarmed = false;
                        }
                    }
                }
            }
            CrmState::LostManagerLock => {
                self.give_up_watchdog_protection(env);
                if self.shutdown_request {
                    return false;
                }
                self.set_state(env, CrmState::WaitForQuorum);
            }
            CrmState::Slave => {
                if self.shutdown_request {
                    return false;
                }
            }
        }
        true
    }
}
