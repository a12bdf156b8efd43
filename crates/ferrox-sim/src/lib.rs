//! Deterministic virtual-time simulator of an HA cluster.
//!
//! It implements `ferrox_ha::HaEnv` for N virtual nodes (power, network, quorum, locks,
//! watchdogs, service processes), reads scenario directories in Proxmox VE's regression
//! layout and runs them on Proxmox VE's exact time model, producing the same event log.
//! It must stay deterministic: no wall clock, no randomness, no threads.

pub mod command;
mod env;
pub mod scenario;
mod world;

pub use scenario::{Scenario, ScenarioError};

use command::{Command, ServiceAction};
use env::{Daemon, SimEnv};
use ferrox_ha::{Crm, Lrm};
use std::collections::{BTreeMap, VecDeque};
use world::{ShutdownKind, World};

const MAX_SIM_TIME: i64 = 10000;
const WATCHDOG_TIMEOUT: i64 = 60;

#[derive(Default)]
struct Daemons {
    crm: Option<Crm>,
    lrm: Option<Lrm>,
    crm_stop: bool,
    lrm_restart: bool,
}

/// What an observer sees of the simulated cluster after every daemon iteration and
/// every command: for invariant checks in tests.
pub struct Observation<'a> {
    pub time: i64,
    /// node → service → running
    pub running: &'a BTreeMap<String, BTreeMap<String, bool>>,
    pub manager_status: &'a ferrox_types::ManagerStatus,
}

type Observer = Box<dyn FnMut(&Observation<'_>)>;

/// A simulation run; `run` returns the event log.
pub struct Simulator {
    world: World,
    observer: Option<Observer>,
    daemons: BTreeMap<String, Daemons>,
    cmdlist: VecDeque<Vec<String>>,
    skip_crm: u32,
    skip_lrm: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SimulationAborted(String);

impl Simulator {
    pub fn new(scenario: Scenario) -> Self {
        let daemons = scenario
            .nodes
            .keys()
            .map(|n| (n.clone(), Daemons::default()))
            .collect();
        let cmdlist = scenario.cmdlist.clone().into();
        Simulator {
            world: World::new(scenario),
            observer: None,
            daemons,
            cmdlist,
            skip_crm: 0,
            skip_lrm: 0,
        }
    }

    /// Calls `observer` after every daemon iteration and every command.
    pub fn with_observer(mut self, observer: impl FnMut(&Observation<'_>) + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    fn observe(&mut self) {
        if let Some(observer) = self.observer.as_mut() {
            observer(&Observation {
                time: self.world.time,
                running: &self.world.running,
                manager_status: &self.world.manager_status,
            });
        }
    }

    /// Runs the scenario to its end and returns the log in `log.expect` format.
    pub fn run(mut self) -> String {
        self.world.log_hw("info", "hardware", "starting simulation");
        match self.main_loop() {
            Ok(()) => self
                .world
                .log_hw("info", "hardware", "exit simulation - done"),
            Err(err) => self
                .world
                .log_hw("err", "hardware", &format!("exit simulation - {err} ")),
        }
        self.world.take_log()
    }

    fn env(&mut self, node: &str, daemon: Daemon) -> SimEnv<'_> {
        SimEnv::new(&mut self.world, node, daemon)
    }

    fn new_crm(&mut self, node: &str) -> Crm {
        Crm::new(&mut self.env(node, Daemon::Crm))
    }

    fn new_lrm(&mut self, node: &str) -> Lrm {
        Lrm::new(&mut self.env(node, Daemon::Lrm))
    }

    fn main_loop(&mut self) -> Result<(), SimulationAborted> {
        let nodes: Vec<String> = self.daemons.keys().cloned().collect();
        let mut loop_count: u64 = 0;
        let mut last_cmd: i64 = 0;
        let mut next_cmd_at: i64 = 0;
        loop {
            let start = self.world.time;
            let looptime = (2 * nodes.len() as i64).max(20);
            if looptime >= 60 {
                return Err(SimulationAborted(
                    "unable to simulate so many nodes. You need to increase watchdog/lock timeouts.".into(),
                ));
            }
            for (index, node) in nodes.iter().enumerate() {
                self.iterate_crm(node, index == 0)?;
                self.observe();
                self.iterate_lrm(node, index == 0)?;
                self.observe();
                self.check_watchdogs(&nodes);
                self.observe();
            }
            self.skip_crm = self.skip_crm.saturating_sub(1);
            self.skip_lrm = self.skip_lrm.saturating_sub(1);
            if self.world.time - start < looptime {
                self.world.time = start + looptime;
            }
            if self.world.time > MAX_SIM_TIME {
                return Err(SimulationAborted(format!(
                    "simulation exceeded maximum time ({MAX_SIM_TIME}) - force end"
                )));
            }
            self.world.sync_clocks();
            if self.world.time < next_cmd_at {
                continue;
            }
            if loop_count.is_multiple_of(5) {
                match self.cmdlist.pop_front() {
                    None => {
                        if self.world.time - last_cmd > 500 {
                            return Ok(());
                        }
                    }
                    Some(batch) => {
                        for cmd in batch {
                            last_cmd = self.world.time;
                            if let Some(secs) = cmd.strip_prefix("delay ") {
                                self.world
                                    .log_hw("info", "cmdlist", &format!("execute {cmd}"));
                                next_cmd_at =
                                    self.world.time + secs.trim().parse::<i64>().unwrap_or(0);
                            } else {
                                self.hardware_cmd(&cmd, "cmdlist")?;
                            }
                            self.observe();
                        }
                    }
                }
            }
            loop_count += 1;
        }
    }

    fn iterate_crm(&mut self, node: &str, first: bool) -> Result<(), SimulationAborted> {
        let Some(mut crm) = self.daemons.get_mut(node).and_then(|d| d.crm.take()) else {
            return Ok(());
        };
        let mut exited = false;
        if self.skip_crm > 0 {
            if first {
                self.world.log_hw("info", "run-loop", "skipping CRM round");
            }
        } else {
            let mut env = self.env(node, Daemon::Crm);
            env.loop_start();
            exited = !crm.do_one_iteration(&mut env);
            env.loop_end();
        }
        self.world.advance_to_clock(node, Daemon::Crm);
        if !exited {
            self.daemons.get_mut(node).expect("node").crm = Some(crm);
            return Ok(());
        }
        self.env(node, Daemon::Crm)
            .log_daemon("info", "exit (loop end)");
        let d = self.daemons.get_mut(node).expect("node");
        let crm_stop = std::mem::take(&mut d.crm_stop);
        match self.world.node(node).shutdown {
            Some(ShutdownKind::Reboot) => {
                self.hardware_cmd(&format!("power {node} off"), "reboot")?;
                self.hardware_cmd(&format!("power {node} on"), "reboot")?;
            }
            Some(ShutdownKind::Shutdown) => {
                self.hardware_cmd(&format!("power {node} off"), "shutdown")?
            }
            None if !crm_stop => {
                return Err(SimulationAborted(
                    "unexpected CRM exit - not implemented".into(),
                ))
            }
            None => {}
        }
        Ok(())
    }

    fn iterate_lrm(&mut self, node: &str, first: bool) -> Result<(), SimulationAborted> {
        let Some(mut lrm) = self.daemons.get_mut(node).and_then(|d| d.lrm.take()) else {
            return Ok(());
        };
        let mut exited = false;
        if self.skip_lrm > 0 {
            if first {
                self.world.log_hw("info", "run-loop", "skipping LRM round");
            }
        } else {
            let mut written = self.world.lrm_status_written;
            let mut env = self.env(node, Daemon::Lrm);
            env.loop_start();
            exited = !lrm.do_one_iteration(&mut env, &mut written);
            env.loop_end();
            self.world.lrm_status_written = written;
        }
        self.world.advance_to_clock(node, Daemon::Lrm);
        if !exited {
            self.daemons.get_mut(node).expect("node").lrm = Some(lrm);
            return Ok(());
        }
        self.env(node, Daemon::Lrm)
            .log_daemon("info", "exit (loop end)");
        let restart = std::mem::take(&mut self.daemons.get_mut(node).expect("node").lrm_restart);
        if restart {
            let lrm = self.new_lrm(node);
            self.daemons.get_mut(node).expect("node").lrm = Some(lrm);
            return Ok(());
        }
        match self.world.node(node).shutdown {
            Some(kind) => self.hardware_cmd(&format!("crm {node} stop"), kind.as_str()),
            None => Err(SimulationAborted(
                "unexpected LRM exit - not implemented".into(),
            )),
        }
    }

    fn check_watchdogs(&mut self, nodes: &[String]) {
        for node in nodes {
            if self.world.expire_watchdogs(node, WATCHDOG_TIMEOUT) {
                // "power off" cannot fail for a known node.
                let _ = self.hardware_cmd(&format!("power {node} off"), "watchdog");
                self.world.log_hw(
                    "info",
                    "hardware",
                    &format!("server '{node}' stopped by poweroff (watchdog)"),
                );
                let d = self.daemons.get_mut(node).expect("node");
                d.crm = None;
                d.lrm = None;
            }
        }
    }

    fn hardware_cmd(&mut self, text: &str, source: &str) -> Result<(), SimulationAborted> {
        let cmd = Command::parse(text, &self.world.hardware_nodes())
            .map_err(|e| SimulationAborted(format!("{text}: {e}")))?;
        self.world
            .log_hw("info", source, &format!("execute {text}"));
        match cmd {
            Command::Delay(_) => {}
            Command::SkipRound { crm, rounds } => {
                if crm {
                    self.skip_crm += rounds;
                } else {
                    self.skip_lrm += rounds;
                }
            }
            Command::Power { node, on } => self.power(&node, on),
            Command::Network { node, on } => self.world.node_mut(&node).network = on,
            Command::Cfs { node, rw, works } => {
                let hw = self.world.node_mut(&node);
                if rw {
                    hw.cfs_rw = works;
                } else {
                    hw.cfs_update = works;
                }
            }
            Command::SetVersion { node, version } => self.world.node_mut(&node).version = version,
            Command::Reboot(node) | Command::Shutdown(node) => {
                let kind = if text.starts_with("reboot") {
                    ShutdownKind::Reboot
                } else {
                    ShutdownKind::Shutdown
                };
                self.world.node_mut(&node).shutdown = Some(kind);
                self.lrm_shutdown_request(&node);
            }
            Command::RestartLrm(node) => {
                if self.daemons[&node].lrm.is_some() {
                    self.daemons.get_mut(&node).expect("node").lrm_restart = true;
                    self.lrm_shutdown_request(&node);
                }
            }
            Command::CrmStop(node) => {
                if let Some(mut crm) = self.daemons.get_mut(&node).and_then(|d| d.crm.take()) {
                    crm.shutdown_request(&mut self.env(&node, Daemon::Crm));
                    let d = self.daemons.get_mut(&node).expect("node");
                    d.crm_stop = true;
                    d.crm = Some(crm);
                }
            }
            Command::CrmStart(node) => {
                if self.daemons[&node].crm.is_none() {
                    let crm = self.new_crm(&node);
                    self.daemons.get_mut(&node).expect("node").crm = Some(crm);
                }
            }
            Command::CrmQueue(cmd) => self.world.crm_commands.push(cmd),
            Command::Service { sid, action } => self.service_cmd(&sid, action)?,
        }
        Ok(())
    }

    fn lrm_shutdown_request(&mut self, node: &str) {
        if let Some(mut lrm) = self.daemons.get_mut(node).and_then(|d| d.lrm.take()) {
            lrm.shutdown_request(&mut self.env(node, Daemon::Lrm));
            self.daemons.get_mut(node).expect("node").lrm = Some(lrm);
        }
    }

    fn power(&mut self, node: &str, on: bool) {
        if self.world.node(node).power != on {
            if on {
                if self.daemons[node].crm.is_none() {
                    let crm = self.new_crm(node);
                    self.daemons.get_mut(node).expect("node").crm = Some(crm);
                }
                if self.daemons[node].lrm.is_none() {
                    let lrm = self.new_lrm(node);
                    self.daemons.get_mut(node).expect("node").lrm = Some(lrm);
                }
                let d = self.daemons.get_mut(node).expect("node");
                d.lrm_restart = false;
                let hw = self.world.node_mut(node);
                hw.cfs_rw = true;
                hw.cfs_update = true;
            } else {
                if self
                    .daemons
                    .get_mut(node)
                    .expect("node")
                    .crm
                    .take()
                    .is_some()
                {
                    self.env(node, Daemon::Crm)
                        .log_daemon("info", "killed by poweroff");
                }
                if self
                    .daemons
                    .get_mut(node)
                    .expect("node")
                    .lrm
                    .take()
                    .is_some()
                {
                    self.env(node, Daemon::Lrm)
                        .log_daemon("info", "killed by poweroff");
                }
                self.world.remove_watchdogs(node);
                self.world.running.insert(node.to_string(), BTreeMap::new());
            }
        }
        let hw = self.world.node_mut(node);
        hw.power = on;
        hw.network = on;
        hw.shutdown = None;
    }

    fn service_cmd(&mut self, sid: &str, action: ServiceAction) -> Result<(), SimulationAborted> {
        const MIB: f64 = 1024.0 * 1024.0;
        let w = &mut self.world;
        let missing = || SimulationAborted(format!("no such service '{sid}'"));
        match action {
            ServiceAction::SetState(state) => {
                w.services.get_mut(sid).ok_or_else(missing)?.state = state
            }
            ServiceAction::Queue(cmd) => w.crm_commands.push(cmd),
            ServiceAction::Add {
                node,
                state,
                running,
            } => {
                if w.services.contains_key(sid) {
                    return Err(SimulationAborted(format!(
                        "resource ID '{sid}' already defined"
                    )));
                }
                w.services.insert(
                    sid.to_string(),
                    ferrox_types::ResourceConfig::new(&node, state),
                );
                w.running
                    .entry(node)
                    .or_default()
                    .insert(sid.to_string(), running);
            }
            // The service's run state stays with its node, as on Proxmox VE's simulated
            // hardware: a deleted service that ran keeps running there, unmanaged.
            ServiceAction::Delete => {
                w.services.remove(sid).ok_or_else(missing)?;
                w.static_stats.remove(sid);
            }
            ServiceAction::Lock(name) => {
                w.services.get_mut(sid).ok_or_else(missing)?.lock = Some(name)
            }
            ServiceAction::Unlock(name) => {
                let cd = w.services.get_mut(sid).ok_or_else(missing)?;
                if name.is_none() || cd.lock == name {
                    cd.lock = None;
                }
            }
            ServiceAction::SetStaticStats { maxcpu, maxmem_mib } => {
                w.services.get(sid).ok_or_else(missing)?;
                let entry = w.static_stats.entry(sid.to_string()).or_insert((0.0, 0.0));
                if let Some(c) = maxcpu {
                    entry.0 = c;
                }
                if let Some(m) = maxmem_mib {
                    entry.1 = m * MIB;
                }
            }
            ServiceAction::SetDynamicStats { cpu, mem_mib } => {
                w.services.get(sid).ok_or_else(missing)?;
                let entry = w.dynamic_stats.entry(sid.to_string()).or_insert((0.0, 0.0));
                if let Some(c) = cpu {
                    entry.0 = c;
                }
                if let Some(m) = mem_mib {
                    entry.1 = m * MIB;
                }
            }
            ServiceAction::ManualMigrate(node) => {
                let ignored_mode = w
                    .manager_status
                    .disarm
                    .is_some_and(|d| d.mode == ferrox_types::DisarmMode::Ignore);
                let cd = w.services.get_mut(sid).ok_or_else(missing)?;
                if cd.state != ferrox_types::RequestState::Ignored && !ignored_mode {
                    return Err(SimulationAborted(format!(
                        "manual-migrate of '{sid}' requires the service to be ignored or HA disarmed in ignore mode"
                    )));
                }
                // The configuration moves, the guest does not: it still runs (or not)
                // where it was, and runs on the new node only once that node's LRM
                // starts it (Proxmox VE's `change_service_location`).
                cd.node = node;
            }
        }
        Ok(())
    }
}

/// Loads and runs a scenario directory.
pub fn run_dir(dir: &std::path::Path) -> Result<String, ScenarioError> {
    Ok(Simulator::new(Scenario::load(dir)?).run())
}
