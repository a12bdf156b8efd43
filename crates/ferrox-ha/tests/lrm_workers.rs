//! The LRM runs service actions concurrently, up to `max_workers`, on the environment's
//! workers (Proxmox VE forks them): one slow start does not hold the other services, no
//! more than `max_workers` actions run at once, and a result is reported once the action
//! finished. A fake environment with a clock stands in for the node; each begun action
//! takes a set number of seconds.

use ferrox_crs::{NodeStats, ResourceStats, UsageMode};
use ferrox_ha::{
    EnvResult, HaEnv, LogLevel, Lrm, NodeInfo, ResourceChange, ServiceAction, WatchdogHandle,
};
use ferrox_types::{
    DatacenterConfig, GroupsConfig, LrmStatus, ManagerStatus, RequestState, ResourceConfig,
    RulesConfig, ServiceConfig, ServiceStatus,
};
use std::collections::BTreeMap;

const ME: &str = "node1";

struct FakeNode {
    now: i64,
    max_workers: usize,
    services: ServiceConfig,
    manager: ManagerStatus,
    lrm_status: Option<LrmStatus>,
    running: BTreeMap<String, bool>,
    /// Seconds each service's start takes.
    start_takes: BTreeMap<String, i64>,
    /// Begun actions: sid → when they finish.
    busy: BTreeMap<String, i64>,
    most_at_once: usize,
    log: Vec<String>,
}

impl FakeNode {
    fn new(max_workers: usize, start_takes: &[(&str, i64)]) -> FakeNode {
        let mut services = ServiceConfig::new();
        let mut manager = ManagerStatus::default();
        for (i, (sid, _)) in start_takes.iter().enumerate() {
            services.insert(
                sid.to_string(),
                ResourceConfig::new(ME, RequestState::Started),
            );
            let status: ServiceStatus = serde_json::from_value(serde_json::json!({
                "state": "started", "node": ME, "uid": format!("uid{i}"),
            }))
            .expect("service status");
            manager.service_status.insert(sid.to_string(), status);
        }
        FakeNode {
            now: 1_000,
            max_workers,
            services,
            manager,
            lrm_status: None,
            running: BTreeMap::new(),
            start_takes: start_takes
                .iter()
                .map(|(s, t)| (s.to_string(), *t))
                .collect(),
            busy: BTreeMap::new(),
            most_at_once: 0,
            log: Vec::new(),
        }
    }

    fn result_of(&self, uid: &str) -> Option<i32> {
        self.lrm_status
            .as_ref()
            .and_then(|s| s.results.get(uid))
            .map(|r| r.exit_code)
    }
}

impl HaEnv for FakeNode {
    fn nodename(&self) -> String {
        ME.to_string()
    }
    fn get_time(&self) -> i64 {
        self.now
    }
    fn log(&mut self, level: LogLevel, msg: &str) {
        self.log
            .push(format!("{} {} {msg}", self.now, level.short()));
    }
    fn quorate(&self) -> bool {
        true
    }
    fn get_node_info(&self) -> BTreeMap<String, NodeInfo> {
        BTreeMap::from([(ME.to_string(), NodeInfo { online: true })])
    }
    fn cluster_state_update(&mut self) -> bool {
        true
    }
    fn node_version(&self, _: &str) -> Option<String> {
        None
    }
    fn is_node_shutdown(&self) -> (bool, bool) {
        (false, false)
    }
    fn read_manager_status(&self) -> EnvResult<ManagerStatus> {
        Ok(self.manager.clone())
    }
    fn write_manager_status(&mut self, status: &ManagerStatus) -> EnvResult<()> {
        self.manager = status.clone();
        Ok(())
    }
    fn read_lrm_status(&self, _: &str) -> EnvResult<LrmStatus> {
        Ok(self.lrm_status.clone().unwrap_or_default())
    }
    fn write_lrm_status(&mut self, status: &LrmStatus) -> EnvResult<()> {
        self.lrm_status = Some(status.clone());
        Ok(())
    }
    fn read_service_config(&self) -> EnvResult<ServiceConfig> {
        Ok(self.services.clone())
    }
    fn update_resource_config(&mut self, _: &str, _: ResourceChange) -> EnvResult<()> {
        Ok(())
    }
    fn read_rules_config(&self) -> EnvResult<RulesConfig> {
        Ok(RulesConfig::default())
    }
    fn write_rules_config(&mut self, _: &RulesConfig) -> EnvResult<()> {
        Ok(())
    }
    fn read_groups_config(&self) -> EnvResult<Option<GroupsConfig>> {
        Ok(None)
    }
    fn delete_groups_config(&mut self) -> EnvResult<()> {
        Ok(())
    }
    fn read_crm_commands(&mut self) -> EnvResult<Vec<String>> {
        Ok(Vec::new())
    }
    fn has_pending_crm_commands(&self) -> bool {
        false
    }
    fn datacenter_config(&self) -> EnvResult<DatacenterConfig> {
        Ok(DatacenterConfig::default())
    }
    fn get_ha_manager_lock(&mut self) -> bool {
        false
    }
    fn release_ha_manager_lock(&mut self) -> bool {
        true
    }
    fn get_ha_agent_lock(&mut self, _: &str) -> bool {
        true
    }
    fn release_ha_agent_lock(&mut self) -> bool {
        true
    }
    fn watchdog_open(&mut self) -> WatchdogHandle {
        WatchdogHandle("wd".into())
    }
    fn watchdog_update(&mut self, _: &WatchdogHandle) {}
    fn watchdog_close(&mut self, _: &WatchdogHandle) {}
    fn node_usage_stats(&mut self, _: UsageMode) -> Result<BTreeMap<String, NodeStats>, String> {
        Ok(BTreeMap::new())
    }
    fn service_usage_stats(&mut self, _: UsageMode, _: &str) -> Option<ResourceStats> {
        None
    }
    fn service_type_known(&self, kind: &str) -> bool {
        kind == "vm"
    }
    fn service_is_running(&mut self, sid: &str) -> bool {
        self.running.get(sid).copied().unwrap_or(false)
    }
    fn service_start(&mut self, sid: &str) {
        // Inline: the whole start happens now, holding everything else.
        self.now += self.start_takes[sid];
        self.running.insert(sid.to_string(), true);
    }
    fn service_shutdown(&mut self, sid: &str, _: Option<i64>) {
        self.running.insert(sid.to_string(), false);
    }
    fn service_migrate(&mut self, _: &str, _: &str, _: bool) -> bool {
        false
    }
    fn service_remove_locks(&mut self, _: &str, _: &[&str]) -> Option<String> {
        None
    }
    fn steal_service(&mut self, _: &str, _: &str, _: &str) {}

    fn max_workers(&self) -> usize {
        self.max_workers
    }
    fn begin_service_action(&mut self, sid: &str, action: &ServiceAction) -> bool {
        assert_eq!(*action, ServiceAction::Start);
        assert!(!self.busy.contains_key(sid), "{sid} begun twice");
        self.busy
            .insert(sid.to_string(), self.now + self.start_takes[sid]);
        self.most_at_once = self.most_at_once.max(self.busy.len());
        true
    }
    fn finished_service_actions(&mut self) -> Vec<(String, bool)> {
        self.now += 1;
        let done: Vec<String> = self
            .busy
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in &done {
            self.busy.remove(sid);
            self.running.insert(sid.clone(), true);
        }
        done.into_iter().map(|sid| (sid, true)).collect()
    }
}

/// Iterations of the LRM, 10 s apart, until `done` or 20 rounds.
fn run(env: &mut FakeNode, done: impl Fn(&FakeNode) -> bool) -> usize {
    let mut lrm = Lrm::new(env);
    let mut written = false;
    for round in 1..=20 {
        assert!(lrm.do_one_iteration(env, &mut written));
        env.lrm_status = Some(env.read_lrm_status(ME).expect("status"));
        if done(env) {
            return round;
        }
        env.now += 10;
    }
    panic!("not done after 20 rounds:\n{}", env.log.join("\n"));
}

#[test]
fn a_slow_start_does_not_hold_the_other_services() {
    // vm:100 takes 60 s to start; the others 2 s each.
    let takes = [("vm:100", 60), ("vm:101", 2), ("vm:102", 2), ("vm:103", 2)];
    let mut env = FakeNode::new(2, &takes);
    let mut lrm = Lrm::new(&mut env);
    let mut written = false;
    let mut first_round_done = None;
    for round in 1..=20 {
        assert!(lrm.do_one_iteration(&mut env, &mut written));
        let quick_started = ["vm:101", "vm:102", "vm:103"]
            .iter()
            .all(|s| env.running.get(*s) == Some(&true));
        if quick_started && first_round_done.is_none() {
            first_round_done = Some((round, env.running.get("vm:100").copied()));
        }
        if env.result_of("uid0").is_some() {
            break;
        }
        env.now += 10;
    }
    let (round, slow) = first_round_done.expect("the quick services started");
    // The LRM takes the agent lock in its first round and acts from then on: the quick
    // services are running while the slow one is still starting.
    assert!(round <= 3, "quick services waited until round {round}");
    assert_ne!(slow, Some(true), "the slow start finished first?");
    assert!(
        env.most_at_once <= 2,
        "{} actions at once",
        env.most_at_once
    );
    assert!(env.most_at_once == 2, "never ran two at once");
    // Every start is reported, each once, as a success.
    for uid in ["uid0", "uid1", "uid2", "uid3"] {
        assert_eq!(env.result_of(uid), Some(0), "{uid}\n{}", env.log.join("\n"));
    }
    let started = |sid: &str| {
        env.log
            .iter()
            .filter(|l| l.ends_with(&format!("service status {sid} started")))
            .count()
    };
    for (sid, _) in takes {
        assert_eq!(started(sid), 1, "{sid}\n{}", env.log.join("\n"));
    }
}

#[test]
fn without_workers_each_start_runs_inline_in_service_order() {
    // The simulator's way (max_workers 0): one start after the other, the slow one first.
    let takes = [("vm:100", 60), ("vm:101", 2)];
    let mut env = FakeNode::new(0, &takes);
    let rounds = run(&mut env, |e| {
        e.result_of("uid0").is_some() && e.result_of("uid1").is_some()
    });
    assert!(rounds <= 3);
    let starting: Vec<&String> = env
        .log
        .iter()
        .filter(|l| l.contains("starting service"))
        .collect();
    assert_eq!(starting.len(), 2);
    assert!(starting[0].ends_with("vm:100") && starting[1].ends_with("vm:101"));
    // The quick one began only once the slow one had finished.
    let at = |l: &str| l.split(' ').next().and_then(|t| t.parse::<i64>().ok());
    assert!(at(starting[1]) >= at(starting[0]).map(|t| t + 60));
}
