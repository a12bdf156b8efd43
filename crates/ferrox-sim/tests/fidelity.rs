//! Each simulator command changes exactly what Proxmox VE's simulated hardware
//! (`PVE::HA::Sim::Hardware::sim_hardware_cmd`) changes, and refuses what it refuses.

use ferrox_sim::scenario::NodeHardware;
use ferrox_sim::{Scenario, Simulator};
use ferrox_types::{DatacenterConfig, ManagerStatus, RequestState, ResourceConfig};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Three powered nodes; vm:101 on node1, ignored and running; vm:102 on node2, started.
fn scenario(commands: &[&str]) -> Scenario {
    let nodes: BTreeMap<String, NodeHardware> = (1..=3)
        .map(|n| {
            (
                format!("node{n}"),
                NodeHardware {
                    power: false,
                    network: false,
                    maxcpu: Some(24.0),
                    maxmem: Some(128e9),
                    version: "9.0.0~2".into(),
                },
            )
        })
        .collect();
    let mut cmdlist = vec![vec![
        "power node1 on".to_string(),
        "power node2 on".to_string(),
        "power node3 on".to_string(),
    ]];
    cmdlist.extend(commands.iter().map(|c| vec![c.to_string()]));
    Scenario {
        cmdlist,
        nodes,
        manager_status: ManagerStatus::default(),
        services: BTreeMap::from([
            (
                "vm:101".to_string(),
                ResourceConfig::new("node1", RequestState::Ignored),
            ),
            (
                "vm:102".to_string(),
                ResourceConfig::new("node2", RequestState::Started),
            ),
        ]),
        running: BTreeMap::from([(
            "node1".to_string(),
            BTreeMap::from([("vm:101".to_string(), true)]),
        )]),
        rules_text: String::new(),
        groups_text: None,
        datacenter: DatacenterConfig::default(),
        static_stats: BTreeMap::new(),
        dynamic_stats: BTreeMap::new(),
    }
}

/// The log and, at the end, where each service runs.
fn run(commands: &[&str]) -> (String, BTreeMap<String, BTreeMap<String, bool>>) {
    let last = Rc::new(RefCell::new(BTreeMap::new()));
    let seen = last.clone();
    let log = Simulator::new(scenario(commands))
        .with_observer(move |obs| *seen.borrow_mut() = obs.running.clone())
        .run();
    let running = last.borrow().clone();
    (log, running)
}

fn runs(running: &BTreeMap<String, BTreeMap<String, bool>>, node: &str, sid: &str) -> bool {
    running
        .get(node)
        .and_then(|s| s.get(sid))
        .copied()
        .unwrap_or(false)
}

#[test]
fn a_manual_migrate_moves_the_configuration_only() {
    let (log, running) = run(&["service vm:101 manual-migrate node2"]);
    assert!(log.ends_with("exit simulation - done\n"), "{log}");
    // Still where it ran; not on the new node, whose LRM leaves an ignored service alone.
    assert!(runs(&running, "node1", "vm:101"), "{running:?}\n{log}");
    assert!(!runs(&running, "node2", "vm:101"), "{running:?}\n{log}");
    assert!(!log.contains("starting service vm:101"), "{log}");
    // Once HA manages it again, the new node's LRM starts it there.
    let (log, running) = run(&[
        "service vm:101 manual-migrate node2",
        "service vm:101 started",
    ]);
    assert!(runs(&running, "node2", "vm:101"), "{running:?}\n{log}");
    assert!(log.contains("node2/lrm: starting service vm:101"), "{log}");
}

#[test]
fn a_manual_migrate_of_a_managed_service_is_refused() {
    let (log, _) = run(&["service vm:102 manual-migrate node3"]);
    assert!(
        log.contains("manual-migrate of 'vm:102' requires the service to be ignored"),
        "{log}"
    );
}

#[test]
fn service_commands_on_unknown_or_duplicate_services_abort_as_upstream() {
    for (command, message) in [
        (
            "service vm:102 add node1",
            "resource ID 'vm:102' already defined",
        ),
        ("service vm:109 delete", "no such service 'vm:109'"),
        (
            "service vm:109 set-static-stats maxcpu 2",
            "no such service 'vm:109'",
        ),
        (
            "service vm:109 set-dynamic-stats cpu 1",
            "no such service 'vm:109'",
        ),
        ("service vm:109 started", "no such service 'vm:109'"),
        ("service vm:109 lock", "no such service 'vm:109'"),
    ] {
        let (log, _) = run(&[command]);
        assert!(
            log.contains(message) && !log.ends_with("exit simulation - done\n"),
            "{command}:\n{log}"
        );
    }
}

#[test]
fn a_deleted_service_keeps_running_where_it_ran() {
    // The configuration goes; the guest's run state is the node's (upstream keeps
    // `service_status_<node>`), and no LRM touches an unconfigured service.
    let (log, running) = run(&["service vm:102 delete"]);
    assert!(log.ends_with("exit simulation - done\n"), "{log}");
    assert!(runs(&running, "node2", "vm:102"), "{running:?}\n{log}");
    assert!(!log.contains("stopping service vm:102"), "{log}");
}

#[test]
fn an_added_service_runs_as_the_command_says() {
    let (log, running) = run(&["service vm:103 add node3 stopped 1"]);
    assert!(log.ends_with("exit simulation - done\n"), "{log}");
    // Added running but requested stopped: node3's LRM stops it.
    assert!(log.contains("node3/lrm: stopping service vm:103"), "{log}");
    assert!(!runs(&running, "node3", "vm:103"), "{running:?}");
}
