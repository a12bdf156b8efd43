//! Safety of the whole HA stack under random failures: no service ever runs on two nodes.

use ferrox_sim::{Scenario, Simulator};
use ferrox_types::{DatacenterConfig, ManagerStatus, RequestState, ResourceConfig};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

fn event(nodes: usize) -> impl Strategy<Value = String> {
    let node = (1..=nodes).prop_map(|n| format!("node{n}"));
    prop_oneof![
        (node.clone(), any::<bool>())
            .prop_map(|(n, on)| format!("network {n} {}", if on { "on" } else { "off" })),
        (node.clone(), any::<bool>())
            .prop_map(|(n, on)| format!("power {n} {}", if on { "on" } else { "off" })),
        node.clone().prop_map(|n| format!("reboot {n}")),
        node.clone().prop_map(|n| format!("shutdown {n}")),
        node.clone()
            .prop_map(|n| format!("crm {n} enable-node-maintenance")),
        node.clone()
            .prop_map(|n| format!("crm {n} disable-node-maintenance")),
        (1usize..5, node.clone()).prop_map(|(s, n)| format!("service vm:10{s} migrate {n}")),
        (1usize..5).prop_map(|s| format!("service vm:10{s} stopped")),
        (1usize..5).prop_map(|s| format!("service vm:10{s} started")),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Vec<String>>, Vec<usize>, String)> {
    (3usize..6).prop_flat_map(|nodes| {
        (
            Just(nodes),
            prop::collection::vec(prop::collection::vec(event(nodes), 0..3), 1..6),
            prop::collection::vec(1..=nodes, 4),
            prop::sample::select(vec!["conditional", "freeze", "failover", "migrate"])
                .prop_map(String::from),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn no_service_ever_runs_twice((nodes, events, placement, policy) in scenario()) {
        let node_names: Vec<String> = (1..=nodes).map(|n| format!("node{n}")).collect();
        let mut cmdlist = vec![node_names.iter().map(|n| format!("power {n} on")).collect::<Vec<_>>()];
        cmdlist.extend(events);
        let hardware = node_names
            .iter()
            .map(|n| {
                (n.clone(), ferrox_sim::scenario::NodeHardware {
                    power: false,
                    network: false,
                    maxcpu: Some(24.0),
                    maxmem: Some(128e9),
                    version: "9.0.0~2".into(),
                })
            })
            .collect();
        let services = placement
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("vm:10{}", i + 1), ResourceConfig::new(&format!("node{n}"), RequestState::Started)))
            .collect();
        let datacenter = DatacenterConfig { shutdown_policy: Some(policy), ..Default::default() };
        let scenario = Scenario {
            cmdlist,
            nodes: hardware,
            manager_status: ManagerStatus::default(),
            services,
            running: BTreeMap::new(),
            rules_text: String::new(),
            groups_text: None,
            datacenter,
            static_stats: BTreeMap::new(),
            dynamic_stats: BTreeMap::new(),
        };
        let violations = Rc::new(RefCell::new(Vec::new()));
        let seen = violations.clone();
        let log = Simulator::new(scenario)
            .with_observer(move |obs| {
                let mut holders: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
                for (node, services) in obs.running {
                    for (sid, running) in services {
                        if *running {
                            holders.entry(sid).or_default().push(node);
                        }
                    }
                }
                for (sid, nodes) in holders {
                    if nodes.len() > 1 {
                        seen.borrow_mut().push(format!("{}: {sid} runs on {:?}", obs.time, nodes));
                    }
                }
            })
            .run();
        let violations = violations.borrow();
        prop_assert!(violations.is_empty(), "{:?}\n{}", violations, log);
        // Upstream's simulator stops on command sequences it does not model (e.g. a node
        // powered on while its reboot is pending); that ends the run, it is not unsafe.
        let finished = log.ends_with("exit simulation - done\n") || log.contains("not implemented");
        prop_assert!(finished, "simulation aborted:\n{}", log);
    }
}
