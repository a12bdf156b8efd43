//! Node selection invariants over random clusters and rules.

use ferrox_crs::{NodeStats, Placement, ResourceStats, Usage, UsageMode};
use ferrox_ha::placement::{select_service_node, NodePreference};
use ferrox_ha::rules::{compile, transform};
use ferrox_types::{RequestState, ResourceConfig, RulesConfig, ServiceState, ServiceStatus};
use proptest::prelude::*;
use std::collections::BTreeMap;

const NODES: [&str; 5] = ["node1", "node2", "node3", "node4", "node5"];

#[derive(Debug, Clone)]
struct Case {
    online: Vec<bool>,
    /// Nodes of the strict rule for vm:100 and its priorities.
    rule_nodes: Vec<(usize, i64)>,
    current: usize,
    others: Vec<usize>,
    failback: bool,
    preference: u8,
    failed: Vec<usize>,
    static_mode: bool,
    /// Nodes whose CPU cannot run vm:100's model.
    cpu_refused: Vec<bool>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(any::<bool>(), 5),
        prop::collection::vec((0usize..5, 0i64..3), 1..4),
        0usize..5,
        prop::collection::vec(0usize..5, 0..8),
        any::<bool>(),
        0u8..3,
        prop::collection::vec(0usize..5, 0..3),
        any::<bool>(),
        prop::collection::vec(prop::bool::weighted(0.3), 5),
    )
        .prop_map(
            |(
                online,
                rule_nodes,
                current,
                others,
                failback,
                preference,
                failed,
                static_mode,
                cpu_refused,
            )| {
                Case {
                    online,
                    rule_nodes,
                    current,
                    others,
                    failback,
                    preference,
                    failed,
                    static_mode,
                    cpu_refused,
                }
            },
        )
}

proptest! {
    /// A placement never puts a service outside its strict node affinity rule, nor on a
    /// node that cannot run its CPU model.
    #[test]
    fn strict_node_affinity_is_never_violated(c in case()) {
        let nodes: String = c
            .rule_nodes
            .iter()
            .map(|(n, p)| format!("{}:{p}", NODES[*n]))
            .collect::<Vec<_>>()
            .join(",");
        let raw = format!("node-affinity: pin\n\tresources vm:100\n\tnodes {nodes}\n\tstrict 1\n");
        let mut rules = RulesConfig::parse(&raw).unwrap();
        let all: Vec<String> = NODES.iter().map(|s| s.to_string()).collect();
        transform(&mut rules, &all);
        let compiled = compile(&rules, &all);
        let allowed: Vec<&str> = c.rule_nodes.iter().map(|(n, _)| NODES[*n]).collect();

        let mode = if c.static_mode { UsageMode::Static } else { UsageMode::Basic };
        let mut usage = Usage::new(mode);
        for (i, n) in NODES.iter().enumerate() {
            if c.online[i] {
                usage.add_node(n, NodeStats { cpu: 0.0, maxcpu: 16.0, mem: 0.0, maxmem: 64e9 });
            }
        }
        let mut ss = BTreeMap::new();
        for (i, node) in c.others.iter().enumerate() {
            let sid = format!("vm:{}", 200 + i);
            ss.insert(sid.clone(), ServiceStatus::new(ServiceState::Started, NODES[*node]));
            if c.online[*node] {
                usage.add_resource(&sid, ResourceStats::from_static(2.0, 4e9), true, Placement::Stationary(NODES[*node].into()));
            }
        }
        let mut sd = ServiceStatus::new(ServiceState::Started, NODES[c.current]);
        if !c.failed.is_empty() {
            sd.failed_nodes = Some(c.failed.iter().map(|n| NODES[*n].to_string()).collect());
        }
        ss.insert("vm:100".into(), sd.clone());
        let mut cd = ResourceConfig::new(NODES[c.current], RequestState::Started);
        cd.failback = c.failback;
        let preference = [NodePreference::None, NodePreference::BestScore, NodePreference::TryNext][c.preference as usize];
        let usage_ref = &usage;
        let mut scores = |sid: &str| usage_ref.score_nodes_to_start(sid, Some(ResourceStats::from_static(2.0, 4e9))).unwrap();
        let refused: BTreeMap<String, String> = NODES
            .iter()
            .zip(&c.cpu_refused)
            .filter(|(_, r)| **r)
            .map(|(n, _)| (n.to_string(), "lacks avx2".to_string()))
            .collect();
        let chosen = select_service_node(&compiled, &usage, &mut scores, "vm:100", &cd, &sd, &ss, preference, &refused);
        if let Some(node) = chosen {
            prop_assert!(allowed.contains(&node.as_str()), "chose {} outside {:?}", node, allowed);
            prop_assert!(usage.contains_node(&node), "chose offline node {}", node);
            prop_assert!(!refused.contains_key(&node), "chose {} whose CPU cannot run the model", node);
        } else {
            // Nothing chosen only when no allowed node is online and can run the CPU.
            prop_assert!(
                !allowed.iter().any(|n| usage.contains_node(n) && !refused.contains_key(*n))
                    || preference == NodePreference::TryNext
            );
        }
    }
}
