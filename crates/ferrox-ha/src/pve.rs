//! The single rebalancing move Proxmox VE 9.2 would make for a CRS snapshot, computed with
//! the same candidate selection and scoring the HA manager (and so the simulator) uses.

use crate::placement::rebalance_candidates;
use crate::rules::{compile, transform};
use ferrox_crs::snapshot::{AffinityKind, Mode, Rule as SnapshotRule, Snapshot};
use ferrox_crs::{
    NodeStats, Placement, RebalanceChoice, ResourceStats, Usage, UsageError, UsageMode,
};
use ferrox_types::{
    Affinity, RebalanceMethod, Rule, RuleKind, RulesConfig, ServiceState, ServiceStatus,
};
use std::collections::{BTreeMap, BTreeSet};

/// What Proxmox VE's balancer decides for one round.
#[derive(Debug, Clone, PartialEq)]
pub struct PveDecision {
    pub imbalance: f64,
    pub threshold: f64,
    pub margin: f64,
    /// The move, if the imbalance is over the threshold and a move gains the margin.
    pub choice: Option<RebalanceChoice>,
    /// Rules Proxmox VE would drop as invalid, with its messages.
    pub dropped_rules: Vec<String>,
}

fn rules_config(snapshot: &Snapshot) -> RulesConfig {
    let mut rules = BTreeMap::new();
    for (i, rule) in snapshot.rules.iter().enumerate() {
        let (kind, disable) = match rule {
            SnapshotRule::NodeAffinity { nodes, strict, .. } => (
                RuleKind::NodeAffinity {
                    nodes: nodes.clone(),
                    strict: Some(*strict),
                },
                None,
            ),
            SnapshotRule::ResourceAffinity {
                affinity, strict, ..
            } => (
                RuleKind::ResourceAffinity {
                    affinity: match affinity {
                        AffinityKind::Positive => Affinity::Positive,
                        AffinityKind::Negative => Affinity::Negative,
                    },
                },
                // Proxmox VE has no soft resource affinity: leave soft ones out.
                (!strict).then_some(true),
            ),
        };
        rules.insert(
            rule.id().to_string(),
            Rule {
                id: rule.id().to_string(),
                kind,
                resources: rule.resources().iter().cloned().collect(),
                disable,
                comment: None,
                order: i + 1,
            },
        );
    }
    RulesConfig {
        rules,
        digest: String::new(),
    }
}

/// Proxmox VE's choice with its default threshold (0.3) and margin (0.1). HA-managed
/// guests are the candidates; every guest counts as load. Nodes in maintenance are left
/// out, as Proxmox VE leaves out nodes that are not online.
pub fn single_move(
    snapshot: &Snapshot,
    method: RebalanceMethod,
) -> Result<PveDecision, UsageError> {
    let defaults = ferrox_types::CrsSettings::default();
    let mode = match snapshot.settings.mode {
        Mode::Static => UsageMode::Static,
        Mode::Dynamic => UsageMode::Dynamic,
    };
    let mut usage = Usage::new(mode);
    let online: BTreeSet<String> = snapshot
        .nodes
        .iter()
        .filter(|n| !n.maintenance)
        .map(|n| n.name.clone())
        .collect();
    for node in snapshot.nodes.iter().filter(|n| online.contains(&n.name)) {
        let stats = match mode {
            UsageMode::Dynamic => NodeStats {
                cpu: node.cpu_usage,
                maxcpu: node.cores,
                mem: node.memory_usage as f64,
                maxmem: node.memory as f64,
            },
            _ => NodeStats {
                cpu: 0.0,
                maxcpu: node.cores,
                mem: 0.0,
                maxmem: node.memory as f64,
            },
        };
        usage.add_node(&node.name, stats);
    }
    let mut ss = BTreeMap::new();
    for guest in &snapshot.guests {
        if !online.contains(&guest.node) {
            continue;
        }
        let stats = match mode {
            UsageMode::Dynamic => ResourceStats {
                cpu: guest.cpu.now,
                maxcpu: guest.cores,
                mem: guest.memory_used.now,
                maxmem: guest.memory as f64,
            },
            _ => ResourceStats::from_static(guest.cores, guest.memory as f64),
        };
        usage.add_resource(
            &guest.sid(),
            stats,
            true,
            Placement::Stationary(guest.node.clone()),
        );
        if guest.ha_managed {
            ss.insert(
                guest.sid(),
                ServiceStatus::new(ServiceState::Started, &guest.node),
            );
        }
    }
    let nodes: Vec<String> = snapshot.nodes.iter().map(|n| n.name.clone()).collect();
    let mut rules = rules_config(snapshot);
    let dropped_rules = transform(&mut rules, &nodes);
    let compiled = compile(&rules, &nodes);
    let imbalance = usage.imbalance();
    let mut decision = PveDecision {
        imbalance,
        threshold: defaults.auto_rebalance_threshold,
        margin: defaults.auto_rebalance_margin,
        choice: None,
        dropped_rules,
    };
    if imbalance > decision.threshold {
        let candidates = rebalance_candidates(&compiled, &ss, &online);
        decision.choice = usage
            .auto_rebalance_choice(&candidates, method, decision.margin)?
            .map(|(_, choice)| choice);
    }
    Ok(decision)
}
