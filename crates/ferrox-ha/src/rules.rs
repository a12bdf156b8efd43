//! Rule checking, transformation and compilation (spec §8.2–§8.6).
//!
//! `transform` drops every rule that conflicts with another (all checks see the same
//! input, then all offenders go at once), then merges connected positive rules, infers the
//! negative rules they imply and widens node affinity rules to whole positive groups.
//! `compile` turns what is left into per-service lookups for node selection.

use ferrox_types::{Affinity, GroupsConfig, Rule, RuleKind, RulesConfig, ServiceConfig};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Per-service view of the enabled rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompiledRules {
    /// sid → node → priority. Non-strict rules list every other node at priority -1.
    pub node_affinity: BTreeMap<String, BTreeMap<String, i64>>,
    pub positive: BTreeMap<String, BTreeSet<String>>,
    pub negative: BTreeMap<String, BTreeSet<String>>,
}

impl CompiledRules {
    pub fn to_json(&self) -> Value {
        let node_affinity: Map<String, Value> = self
            .node_affinity
            .iter()
            .map(|(sid, nodes)| {
                let nodes: Map<String, Value> = nodes
                    .iter()
                    .map(|(n, p)| (n.clone(), json!({ "priority": p })))
                    .collect();
                (sid.clone(), json!({ "nodes": nodes }))
            })
            .collect();
        let relation = |m: &BTreeMap<String, BTreeSet<String>>| -> Value {
            Value::Object(
                m.iter()
                    .map(|(sid, others)| {
                        let o: Map<String, Value> =
                            others.iter().map(|x| (x.clone(), json!(1))).collect();
                        (sid.clone(), Value::Object(o))
                    })
                    .collect(),
            )
        };
        json!({
            "node-affinity": node_affinity,
            "resource-affinity": {
                "positive": relation(&self.positive),
                "negative": relation(&self.negative),
            }
        })
    }
}

fn enabled_of<'a>(rules: &'a RulesConfig, pred: impl Fn(&Rule) -> bool + 'a) -> Vec<&'a Rule> {
    rules
        .ordered()
        .into_iter()
        .filter(|r| r.is_enabled() && pred(r))
        .collect()
}

fn is_node_affinity(r: &Rule) -> bool {
    matches!(r.kind, RuleKind::NodeAffinity { .. })
}

fn is_affinity(r: &Rule, a: Affinity) -> bool {
    r.affinity() == Some(a)
}

fn intersection_count(a: &BTreeSet<String>, b: &BTreeSet<String>) -> usize {
    a.intersection(b).count()
}

/// Connected components of rules over shared resources, in order of their lowest resource
/// id; each component lists its rule ids in the same order.
fn disjoint_resource_sets(rules: &[&Rule]) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let mut sorted: Vec<&Rule> = rules.to_vec();
    sorted.sort_by(|a, b| {
        a.resources
            .iter()
            .next()
            .cmp(&b.resources.iter().next())
            .then(a.id.cmp(&b.id))
    });
    let mut sets: Vec<(Vec<String>, BTreeSet<String>)> = Vec::new();
    for rule in sorted {
        let mut merged_ids = vec![rule.id.clone()];
        let mut merged_res = rule.resources.clone();
        let mut kept = Vec::new();
        let mut first_hit: Option<usize> = None;
        for (i, (ids, res)) in sets.into_iter().enumerate() {
            if res.intersection(&merged_res).next().is_some() {
                first_hit.get_or_insert(i);
                let mut ids = ids;
                ids.append(&mut merged_ids);
                merged_ids = ids;
                merged_res.extend(res);
            } else {
                kept.push((ids, res));
            }
        }
        match first_hit {
            Some(i) => kept.insert(i.min(kept.len()), (merged_ids, merged_res)),
            None => kept.push((merged_ids, merged_res)),
        }
        sets = kept;
    }
    sets
}

/// Checks the enabled rules and returns, per offending rule id, its messages in order.
pub fn check(rules: &RulesConfig, nodes: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |id: &str, msg: String| errors.entry(id.to_string()).or_default().push(msg);
    let node_rules = enabled_of(rules, is_node_affinity);
    let resource_rules = enabled_of(rules, |r| r.affinity().is_some());
    let positive = enabled_of(rules, |r| is_affinity(r, Affinity::Positive));
    let negative = enabled_of(rules, |r| is_affinity(r, Affinity::Negative));

    // A service may be in at most one node affinity rule.
    let mut users: BTreeMap<&String, Vec<&Rule>> = BTreeMap::new();
    for rule in &node_rules {
        for sid in &rule.resources {
            users.entry(sid).or_default().push(rule);
        }
    }
    for (sid, rs) in &users {
        if rs.len() > 1 {
            for r in rs {
                add(
                    &r.id,
                    format!("resource '{sid}' is already used in another node affinity rule"),
                );
            }
        }
    }

    for rule in &resource_rules {
        if rule.resources.len() < 2 {
            add(
                &rule.id,
                "rule is ineffective as there are less than two resources".into(),
            );
        }
    }
    for rule in &negative {
        if rule.resources.len() > nodes.len() {
            add(
                &rule.id,
                "rule defines more resources than available nodes".into(),
            );
        }
    }
    let components = disjoint_resource_sets(&positive);
    for (ids, resources) in &components {
        for neg in &negative {
            if intersection_count(resources, &neg.resources) >= 2 {
                add(
                    &neg.id,
                    "rule shares two or more resources with a positive resource affinity rule"
                        .into(),
                );
                for id in ids {
                    add(
                        id,
                        "rule shares two or more resources with a negative resource affinity rule"
                            .into(),
                    );
                }
            }
        }
    }

    // Resource affinity cannot be combined with prioritised node affinity.
    for rule in &resource_rules {
        let touching: Vec<&&Rule> = node_rules
            .iter()
            .filter(|n| n.resources.intersection(&rule.resources).next().is_some())
            .collect();
        let multi = touching.iter().any(|n| {
            let prios: BTreeSet<i64> = n
                .node_priorities()
                .map(|p| p.values().copied().collect())
                .unwrap_or_default();
            prios.len() > 1
        });
        if multi {
            add(
                &rule.id,
                "resources are in node affinity rules with multiple priorities".into(),
            );
            for n in touching {
                add(&n.id, "resources are in a resource affinity rule and cannot be in a node affinity rule with multiple priorities".into());
            }
        }
    }

    // A positive group may be bound by at most one node affinity rule.
    for (ids, resources) in &components {
        let touching: Vec<&&Rule> = node_rules
            .iter()
            .filter(|n| n.resources.intersection(resources).next().is_some())
            .collect();
        if touching.len() > 1 {
            for id in ids {
                add(id, "resources are in multiple node affinity rules".into());
            }
            for n in touching {
                add(&n.id, "at least one resource is in a positive resource affinity rule and there are other resources in at least one other node affinity rule already".into());
            }
        }
    }

    // Services kept apart need at least as many allowed nodes as there are of them.
    for neg in &negative {
        let touching: Vec<&&Rule> = node_rules
            .iter()
            .filter(|n| n.is_strict() && n.resources.intersection(&neg.resources).next().is_some())
            .collect();
        if touching.is_empty() {
            continue;
        }
        let mut allowed: BTreeSet<&String> = BTreeSet::new();
        let mut constrained: BTreeSet<&String> = BTreeSet::new();
        for n in &touching {
            allowed.extend(n.node_priorities().into_iter().flat_map(|p| p.keys()));
            constrained.extend(n.resources.intersection(&neg.resources));
        }
        if constrained.len() > allowed.len() {
            add(&neg.id, "two or more resources are restricted to less nodes than available to the resources".into());
            for n in touching {
                add(&n.id, "at least one resource is in a negative resource affinity rule and this rule would restrict these to less nodes than available to the resources".into());
            }
        }
    }
    errors
}

fn next_ordinal(rules: &RulesConfig) -> usize {
    // Proxmox VE takes the lowest ordinal plus one, so generated rules share ordinals.
    rules.rules.values().map(|r| r.order).min().unwrap_or(0) + 1
}

fn merge_positive_rules(rules: &mut RulesConfig) {
    let positive = enabled_of(rules, |r| is_affinity(r, Affinity::Positive));
    let components = disjoint_resource_sets(&positive);
    for (ids, resources) in components {
        if ids.len() < 2 {
            continue;
        }
        let order = rules.rules[&ids[0]].order;
        for id in &ids {
            rules.rules.remove(id);
        }
        let id = format!("_merged-{}", ids.join("-"));
        rules.rules.insert(
            id.clone(),
            Rule {
                id,
                kind: RuleKind::ResourceAffinity {
                    affinity: Affinity::Positive,
                },
                resources,
                disable: None,
                comment: None,
                order,
            },
        );
    }
}

fn infer_implicit_negative_rules(rules: &mut RulesConfig) {
    let positive: Vec<Rule> = enabled_of(rules, |r| is_affinity(r, Affinity::Positive))
        .into_iter()
        .cloned()
        .collect();
    let mut separated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for neg in enabled_of(rules, |r| is_affinity(r, Affinity::Negative)) {
        for a in &neg.resources {
            for b in &neg.resources {
                if a != b {
                    separated.entry(a.clone()).or_default().insert(b.clone());
                }
            }
        }
    }
    let order = next_ordinal(rules);
    let mut new_rules = Vec::new();
    for pos in &positive {
        let partners: BTreeSet<String> = pos
            .resources
            .iter()
            .flat_map(|sid| separated.get(sid).cloned().unwrap_or_default())
            .collect();
        for other in partners {
            for sid in &pos.resources {
                if separated.get(sid).is_some_and(|s| s.contains(&other)) {
                    continue;
                }
                let id = format!("_implicit-negative-{}-{}-{}", pos.id, sid, other);
                new_rules.push(Rule {
                    id,
                    kind: RuleKind::ResourceAffinity {
                        affinity: Affinity::Negative,
                    },
                    resources: [sid.clone(), other.clone()].into_iter().collect(),
                    disable: None,
                    comment: None,
                    order,
                });
            }
        }
    }
    for r in new_rules {
        rules.rules.insert(r.id.clone(), r);
    }
}

fn propagate_node_affinity(rules: &mut RulesConfig) {
    let positive: Vec<BTreeSet<String>> = enabled_of(rules, |r| is_affinity(r, Affinity::Positive))
        .into_iter()
        .map(|r| r.resources.clone())
        .collect();
    for rule in rules
        .rules
        .values_mut()
        .filter(|r| r.is_enabled() && is_node_affinity(r))
    {
        for group in &positive {
            if rule.resources.intersection(group).next().is_some() {
                rule.resources.extend(group.iter().cloned());
            }
        }
    }
}

/// Drops conflicting rules and applies the transforms. Returns the drop messages.
pub fn transform(rules: &mut RulesConfig, nodes: &[String]) -> Vec<String> {
    let errors = check(rules, nodes);
    let mut log = Vec::new();
    for (id, messages) in &errors {
        rules.rules.remove(id);
        for msg in messages {
            log.push(format!("Drop rule '{id}', because {msg}."));
        }
    }
    merge_positive_rules(rules);
    infer_implicit_negative_rules(rules);
    propagate_node_affinity(rules);
    log
}

pub fn compile(rules: &RulesConfig, nodes: &[String]) -> CompiledRules {
    let mut compiled = CompiledRules::default();
    for rule in enabled_of(rules, |_| true) {
        match &rule.kind {
            RuleKind::NodeAffinity {
                nodes: prios,
                strict,
            } => {
                let mut map = prios.clone();
                if *strict != Some(true) {
                    for n in nodes {
                        map.entry(n.clone()).or_insert(-1);
                    }
                }
                for sid in &rule.resources {
                    compiled.node_affinity.insert(sid.clone(), map.clone());
                }
            }
            RuleKind::ResourceAffinity { affinity } => {
                let target = match affinity {
                    Affinity::Positive => &mut compiled.positive,
                    Affinity::Negative => &mut compiled.negative,
                };
                for a in &rule.resources {
                    for b in &rule.resources {
                        if a != b {
                            target.entry(a.clone()).or_default().insert(b.clone());
                        }
                    }
                }
            }
        }
    }
    compiled
}

/// Turns every legacy HA group that a resource references into a node affinity rule
/// `ha-group-<group>` (spec §8.6).
pub fn migrate_groups_to_rules(
    rules: &mut RulesConfig,
    groups: &GroupsConfig,
    services: &ServiceConfig,
) {
    let mut members: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (sid, cd) in services {
        if let Some(g) = cd.group.as_deref() {
            if groups.groups.contains_key(g) {
                members.entry(g).or_default().insert(sid.clone());
            }
        }
    }
    let first_order = rules.rules.values().map(|r| r.order).max().unwrap_or(0) + 1;
    for (order, (gid, resources)) in (first_order..).zip(members) {
        let group = &groups.groups[gid];
        let id = format!("ha-group-{gid}");
        rules.rules.insert(
            id.clone(),
            Rule {
                id,
                kind: RuleKind::NodeAffinity {
                    nodes: group.nodes.clone(),
                    strict: Some(group.restricted),
                },
                resources,
                disable: None,
                comment: Some(
                    group
                        .comment
                        .clone()
                        .unwrap_or_else(|| format!("Generated from HA group '{gid}'.")),
                ),
                order,
            },
        );
    }
}

/// The rules checker's report for a rules file, in the format of Proxmox VE's
/// `test_rules_config.pl`: dropped rules, the canonical config, the compiled rules.
pub fn check_report(
    raw: &str,
    nodes: &[String],
) -> Result<String, ferrox_types::SectionConfigError> {
    use ferrox_types::perl_json::to_string_pretty;
    let mut rules = RulesConfig::parse(raw)?;
    let mut out = String::from("--- Log ---\n");
    for msg in transform(&mut rules, nodes) {
        out.push_str(&msg);
        out.push('\n');
    }
    out.push_str("--- Config ---\n");
    out.push_str(&to_string_pretty(&rules.to_json()));
    out.push_str("--- Compiled Config ---\n");
    out.push_str(&to_string_pretty(&compile(&rules, nodes).to_json()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["node1".into(), "node2".into(), "node3".into()]
    }

    #[test]
    fn non_strict_rules_list_other_nodes_at_minus_one() {
        let cfg =
            RulesConfig::parse("node-affinity: a\n\tresources vm:1\n\tnodes node1:2\n").unwrap();
        let c = compile(&cfg, &nodes());
        assert_eq!(c.node_affinity["vm:1"]["node1"], 2);
        assert_eq!(c.node_affinity["vm:1"]["node3"], -1);
    }

    #[test]
    fn conflicting_positive_and_negative_rules_are_dropped() {
        let mut cfg = RulesConfig::parse(
            "resource-affinity: p\n\tresources vm:1,vm:2\n\taffinity positive\n\nresource-affinity: n\n\tresources vm:1,vm:2\n\taffinity negative\n",
        )
        .unwrap();
        let log = transform(&mut cfg, &nodes());
        assert_eq!(log.len(), 2);
        assert!(cfg.rules.is_empty());
    }
}
