//! Whether any valid placement exists for a snapshot, checked before planning: rule sets
//! that contradict themselves, and capacity the guests cannot fit in. Each conflict names
//! the rules or the capacity involved, so that a plan is never attempted (and never
//! "balances around") a state no plan can satisfy.

use crate::plan::UnionFind;
use crate::snapshot::{AffinityKind, Rule, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

const GIB: f64 = (1u64 << 30) as f64;

/// One reason no valid placement exists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "conflict", rename_all = "kebab-case")]
pub enum Conflict {
    /// Guests kept together by positive rules and apart by a strict negative rule.
    TogetherAndApart {
        together: Vec<String>,
        apart: String,
        guests: Vec<String>,
    },
    /// A positive group whose strict node affinity rules share no node.
    NoCommonNode {
        group: Vec<String>,
        rules: Vec<String>,
    },
    /// Guests whose strict rules allow only nodes in maintenance (or being evacuated).
    OnlyUnusableNodes {
        group: Vec<String>,
        nodes: Vec<String>,
        rules: Vec<String>,
    },
    /// A strict negative rule separating more units than there are nodes for them.
    MoreApartThanNodes {
        rule: String,
        units: usize,
        nodes: usize,
    },
    /// A group (or guest) larger than every node it may use.
    TooLarge {
        group: Vec<String>,
        memory: u64,
        largest: u64,
    },
    /// The guests' memory exceeds what the nodes taking guests have.
    Memory { needed: u64, available: u64 },
    /// The guests' configured cores exceed the overcommitted cores.
    Cores { needed: f64, available: f64 },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: &u64| format!("{:.1} GiB", *b as f64 / GIB);
        match self {
            Conflict::TogetherAndApart {
                together,
                apart,
                guests,
            } => write!(
                f,
                "{} are kept together by rule(s) {} and apart by rule '{apart}'",
                guests.join(" and "),
                together
                    .iter()
                    .map(|r| format!("'{r}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Conflict::NoCommonNode { group, rules } => write!(
                f,
                "{} must run together, but their strict node affinity rules {} share no node",
                group.join(", "),
                rules
                    .iter()
                    .map(|r| format!("'{r}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Conflict::OnlyUnusableNodes {
                group,
                nodes,
                rules,
            } => write!(
                f,
                "{} may only run on {} (strict node affinity rule {}), which take no guests now (maintenance or evacuation)",
                group.join(", "),
                nodes.join(", "),
                rules
                    .iter()
                    .map(|r| format!("'{r}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Conflict::MoreApartThanNodes { rule, units, nodes } => write!(
                f,
                "rule '{rule}' keeps {units} guests (or groups) apart, but only {nodes} nodes take guests"
            ),
            Conflict::TooLarge {
                group,
                memory,
                largest,
            } => write!(
                f,
                "{} need {} of memory together, more than the largest node they may use ({})",
                group.join(", "),
                gib(memory),
                gib(largest)
            ),
            Conflict::Memory { needed, available } => write!(
                f,
                "the guests need {} of memory, the nodes taking guests have {}",
                gib(needed),
                gib(available)
            ),
            Conflict::Cores { needed, available } => write!(
                f,
                "the guests have {needed:.1} configured cores, the nodes allow {available:.1} (cpu_overcommit × cores)"
            ),
        }
    }
}

/// Every conflict of `snapshot`; `evacuating` is a node that takes no guests besides those
/// in maintenance. Empty: a valid placement may exist (the checks are necessary
/// conditions, not a proof).
pub fn check(snapshot: &Snapshot, evacuating: Option<&str>) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    let reserve = snapshot.settings.host_memory_reserve;
    let usable: Vec<&crate::snapshot::Node> = snapshot
        .nodes
        .iter()
        .filter(|n| !n.maintenance && Some(n.name.as_str()) != evacuating)
        .collect();
    let names: BTreeSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();

    // Positive groups: the guests joined by positive rules (transitively), each group
    // known by its root guest, with the rules that join it.
    let index: BTreeMap<String, usize> = snapshot
        .guests
        .iter()
        .enumerate()
        .map(|(i, g)| (g.sid(), i))
        .collect();
    let mut groups = UnionFind::new(snapshot.guests.len());
    let positive: Vec<(&String, Vec<usize>)> = snapshot
        .rules
        .iter()
        .filter_map(|rule| match rule {
            Rule::ResourceAffinity {
                id,
                resources,
                affinity: AffinityKind::Positive,
                ..
            } => Some((
                id,
                resources
                    .iter()
                    .filter_map(|s| index.get(s).copied())
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    for (_, members) in &positive {
        for pair in members.windows(2) {
            groups.union(pair[0], pair[1]);
        }
    }
    let root: Vec<usize> = (0..snapshot.guests.len()).map(|i| groups.find(i)).collect();
    let mut joined_by: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (id, members) in &positive {
        if let Some(&first) = members.first() {
            joined_by
                .entry(root[first])
                .or_default()
                .insert(id.to_string());
        }
    }
    let unit_of = |sid: &str| index.get(sid).map(|&i| root[i]);

    // Strict node affinity: the nodes each guest may use, and with which rules.
    let mut allowed: BTreeMap<&str, (BTreeSet<&str>, Vec<String>)> = BTreeMap::new();
    for rule in &snapshot.rules {
        let Rule::NodeAffinity {
            id,
            resources,
            nodes,
            strict: true,
        } = rule
        else {
            continue;
        };
        let rule_nodes: BTreeSet<&str> = nodes
            .keys()
            .map(String::as_str)
            .filter(|n| names.contains(n))
            .collect();
        for sid in resources.iter().filter(|s| index.contains_key(*s)) {
            let entry = allowed
                .entry(sid.as_str())
                .or_insert_with(|| (names.clone(), Vec::new()));
            entry.0 = entry.0.intersection(&rule_nodes).copied().collect();
            entry.1.push(id.clone());
        }
    }

    for rule in &snapshot.rules {
        let Rule::ResourceAffinity {
            id,
            resources,
            affinity: AffinityKind::Negative,
            strict: true,
        } = rule
        else {
            continue;
        };
        let members: Vec<&String> = resources
            .iter()
            .filter(|s| index.contains_key(*s))
            .collect();
        let mut by_unit: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for m in &members {
            if let Some(unit) = unit_of(m) {
                by_unit.entry(unit).or_default().push(m.to_string());
            }
        }
        for (unit, guests) in &by_unit {
            if guests.len() > 1 {
                conflicts.push(Conflict::TogetherAndApart {
                    together: joined_by.get(unit).into_iter().flatten().cloned().collect(),
                    apart: id.clone(),
                    guests: guests.clone(),
                });
            }
        }
        if by_unit.len() > usable.len() {
            conflicts.push(Conflict::MoreApartThanNodes {
                rule: id.clone(),
                units: by_unit.len(),
                nodes: usable.len(),
            });
        }
    }

    // Units: positive groups and lone guests, with their memory and allowed nodes.
    let mut units: BTreeMap<usize, (Vec<String>, u64)> = BTreeMap::new();
    for (i, g) in snapshot.guests.iter().enumerate() {
        let entry = units.entry(root[i]).or_default();
        entry.0.push(g.sid());
        entry.1 += g.memory;
    }
    let largest_anywhere = usable
        .iter()
        .map(|n| n.memory.saturating_sub(reserve))
        .max()
        .unwrap_or(0);
    for (members, memory) in units.values() {
        // Most guests have no strict node rule: no per-unit node set for them.
        if !members.iter().any(|m| allowed.contains_key(m.as_str())) {
            if *memory > largest_anywhere && !usable.is_empty() {
                conflicts.push(Conflict::TooLarge {
                    group: members.clone(),
                    memory: *memory,
                    largest: largest_anywhere,
                });
            }
            continue;
        }
        let mut nodes: BTreeSet<&str> = usable.iter().map(|n| n.name.as_str()).collect();
        let mut rules = Vec::new();
        for m in members {
            if let Some((a, r)) = allowed.get(m.as_str()) {
                nodes = nodes.intersection(a).copied().collect();
                rules.extend(r.iter().cloned());
            }
        }
        rules.sort();
        rules.dedup();
        if nodes.is_empty() && !rules.is_empty() {
            let pinned: BTreeSet<&str> = members
                .iter()
                .filter_map(|m| allowed.get(m.as_str()).map(|(a, _)| a))
                .fold(names.clone(), |acc, a| {
                    acc.intersection(a).copied().collect()
                });
            conflicts.push(if pinned.is_empty() {
                Conflict::NoCommonNode {
                    group: members.clone(),
                    rules,
                }
            } else {
                Conflict::OnlyUnusableNodes {
                    group: members.clone(),
                    nodes: pinned.iter().map(|n| n.to_string()).collect(),
                    rules,
                }
            });
            continue;
        }
        let largest = usable
            .iter()
            .filter(|n| nodes.contains(n.name.as_str()))
            .map(|n| n.memory.saturating_sub(reserve))
            .max()
            .unwrap_or(0);
        if *memory > largest && !nodes.is_empty() {
            conflicts.push(Conflict::TooLarge {
                group: members.clone(),
                memory: *memory,
                largest,
            });
        }
    }

    let needed: u64 = snapshot.guests.iter().map(|g| g.memory).sum();
    let available: u64 = usable
        .iter()
        .map(|n| n.memory.saturating_sub(reserve))
        .sum();
    if needed > available {
        conflicts.push(Conflict::Memory { needed, available });
    }
    let cores: f64 = snapshot.guests.iter().map(|g| g.cores).sum();
    let allowed_cores: f64 =
        snapshot.settings.cpu_overcommit * usable.iter().map(|n| n.cores).sum::<f64>();
    if cores > allowed_cores + 1e-9 {
        conflicts.push(Conflict::Cores {
            needed: cores,
            available: allowed_cores,
        });
    }
    conflicts
}
