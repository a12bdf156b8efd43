//! Node selection for a service: node affinity, resource affinity and scores (spec §8.1).

use crate::rules::CompiledRules;
use ferrox_crs::{MigrationCandidate, Usage};
use ferrox_types::{ResourceConfig, ServiceState, ServiceStatus};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePreference {
    /// Stay where possible (failback, rule enforcement, maintenance evacuation).
    None,
    /// Pick the best-scored node (recovery, rebalance on start).
    BestScore,
    /// Move on from failed nodes (start failure relocation).
    TryNext,
}

/// The online nodes a service occupies: (current node, migration target) (spec §9.2).
pub fn used_service_nodes(
    online: &BTreeSet<String>,
    sd: &ServiceStatus,
) -> (Option<String>, Option<String>) {
    use ServiceState::*;
    let (counts_current, counts_target) = match sd.state {
        Stopped | RequestStart => (false, false),
        Started | RequestStop | Fence | Freeze | Error | Recovery => (true, false),
        Migrate | Relocate => (true, true),
        RequestStartBalance => (false, true),
    };
    let current = Some(sd.node.clone()).filter(|n| counts_current && online.contains(n));
    let target = sd
        .target
        .clone()
        .filter(|n| counts_target && online.contains(n));
    (current, target)
}

/// (allowed nodes, highest-priority nodes) among the online ones.
pub fn node_affinity(
    rules: &CompiledRules,
    sid: &str,
    online: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let Some(nodes) = rules.node_affinity.get(sid) else {
        return (online.clone(), online.clone());
    };
    let allowed: BTreeSet<String> = nodes
        .keys()
        .filter(|n| online.contains(*n))
        .cloned()
        .collect();
    let top = allowed.iter().map(|n| nodes[n]).max();
    let pri = allowed
        .iter()
        .filter(|n| Some(nodes[*n]) == top)
        .cloned()
        .collect();
    (allowed, pri)
}

/// (how many positive partners each node holds, nodes that hold a negative partner).
pub fn resource_affinity(
    rules: &CompiledRules,
    sid: &str,
    ss: &BTreeMap<String, ServiceStatus>,
    online: &BTreeSet<String>,
) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut together = BTreeMap::new();
    let mut separate = BTreeSet::new();
    for partner in rules.positive.get(sid).into_iter().flatten() {
        let Some(sd) = ss.get(partner) else { continue };
        let (current, target) = used_service_nodes(online, sd);
        if let Some(node) = target.or(current) {
            *together.entry(node).or_insert(0) += 1;
        }
    }
    for partner in rules.negative.get(sid).into_iter().flatten() {
        let Some(sd) = ss.get(partner) else { continue };
        let (current, target) = used_service_nodes(online, sd);
        separate.extend(current);
        separate.extend(target);
    }
    (together, separate)
}

/// Chooses the node a service should run on, or `None` when no node is possible.
/// `scores` is asked only when a choice among several nodes is needed. Nodes in
/// `refused` (they cannot run the service: its CPU model, a bridge it needs) count as offline.
#[allow(clippy::too_many_arguments)]
pub fn select_service_node(
    rules: &CompiledRules,
    usage: &Usage,
    scores: &mut dyn FnMut(&str) -> BTreeMap<String, f64>,
    sid: &str,
    cd: &ResourceConfig,
    sd: &ServiceStatus,
    ss: &BTreeMap<String, ServiceStatus>,
    preference: NodePreference,
    refused: &BTreeMap<String, String>,
) -> Option<String> {
    let online: BTreeSet<String> = usage
        .list_nodes()
        .filter(|n| !refused.contains_key(*n))
        .map(String::from)
        .collect();
    let current = sd.node.as_str();
    let (allowed, mut pri) = node_affinity(rules, sid, &online);
    if pri.is_empty() {
        return None;
    }
    let (together, separate) = resource_affinity(rules, sid, ss, &online);
    if preference == NodePreference::None
        && !cd.failback
        && allowed.contains(current)
        && (together.contains_key(current) || !separate.contains(current))
    {
        return Some(current.to_string());
    }
    if preference == NodePreference::TryNext {
        for failed in sd.failed_nodes.iter().flatten() {
            pri.remove(failed);
        }
    }
    for node in &separate {
        pri.remove(node);
    }
    let mut best: Option<(&String, usize)> = None;
    for (node, count) in &together {
        if pri.contains(node) && best.is_none_or(|(_, c)| *count > c) {
            best = Some((node, *count));
        }
    }
    if let Some((node, _)) = best {
        pri = [node.clone()].into_iter().collect();
    }
    if let Some(fallback) = &sd.maintenance_node {
        if pri.contains(fallback) {
            return Some(fallback.clone());
        }
    }
    if preference == NodePreference::None && pri.contains(current) {
        return Some(current.to_string());
    }
    let scores = scores(sid);
    let mut nodes: Vec<String> = pri.into_iter().collect();
    let score_of = |n: &String| scores.get(n).copied().unwrap_or(0.0);
    nodes.sort_by(|a, b| score_of(a).total_cmp(&score_of(b)).then_with(|| a.cmp(b)));
    if preference == NodePreference::TryNext {
        if let Some(i) = nodes.iter().position(|n| n == current) {
            if i + 1 < nodes.len() {
                return Some(nodes[i + 1].clone());
            }
        }
    }
    nodes.into_iter().next()
}

/// Bundles of started services that can move together, keyed by their leader (the
/// alphabetically first member): a service and its started positive partners, skipped
/// while a partner is moving or the members are split over nodes.
fn stationary_bundles(
    rules: &CompiledRules,
    ss: &BTreeMap<String, ServiceStatus>,
) -> BTreeMap<String, Vec<String>> {
    let mut bundles = BTreeMap::new();
    for (sid, sd) in ss {
        if sd.state != ServiceState::Started {
            continue;
        }
        let mut members = vec![sid.clone()];
        let mut moving_partner = false;
        for partner in rules.positive.get(sid).into_iter().flatten() {
            let Some(psd) = ss.get(partner) else { continue };
            match psd.state {
                ServiceState::Started => members.push(partner.clone()),
                ServiceState::Migrate | ServiceState::Relocate => moving_partner = true,
                _ => {}
            }
        }
        if moving_partner {
            continue;
        }
        let nodes: BTreeSet<&String> = members.iter().map(|m| &ss[m].node).collect();
        if nodes.len() > 1 {
            continue;
        }
        members.sort();
        bundles.insert(members[0].clone(), members);
    }
    bundles
}

/// The moves Proxmox VE's automatic rebalancing considers (spec §9.5): every stationary
/// bundle to every node of its preferred node-affinity class, away from its negative
/// partners and its current node.
pub fn rebalance_candidates(
    rules: &CompiledRules,
    ss: &BTreeMap<String, ServiceStatus>,
    online: &BTreeSet<String>,
) -> Vec<MigrationCandidate> {
    let mut candidates = Vec::new();
    for (leader, members) in stationary_bundles(rules, ss) {
        let (_, mut nodes) = node_affinity(rules, &leader, online);
        let (_, separate) = resource_affinity(rules, &leader, ss, online);
        for n in &separate {
            nodes.remove(n);
        }
        nodes.remove(&ss[&leader].node);
        if nodes.is_empty() {
            continue;
        }
        candidates.push(MigrationCandidate {
            leader,
            resources: members,
            nodes: nodes.into_iter().collect(),
        });
    }
    candidates
}
