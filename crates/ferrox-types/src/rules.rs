//! `ha/rules.cfg`: node affinity and resource affinity rules (spec §8.2, §8.3).

use crate::section_config::invalid;
use crate::section_config::{self, parse_bool, SectionConfigError};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Positive,
    Negative,
}

impl Affinity {
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::Positive => "positive",
            Affinity::Negative => "negative",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Preferred (or, when strict, allowed) nodes with priorities; higher is preferred.
    NodeAffinity {
        nodes: BTreeMap<String, i64>,
        strict: Option<bool>,
    },
    /// Keep the resources together (positive) or apart (negative).
    ResourceAffinity { affinity: Affinity },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    pub resources: BTreeSet<String>,
    /// Present means disabled, whatever the value (as in Proxmox VE).
    pub disable: Option<bool>,
    pub comment: Option<String>,
    /// The rule's ordinal: its position in the file, or derived for generated rules.
    pub order: usize,
}

impl Rule {
    pub fn is_enabled(&self) -> bool {
        self.disable.is_none()
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            RuleKind::NodeAffinity { .. } => "node-affinity",
            RuleKind::ResourceAffinity { .. } => "resource-affinity",
        }
    }

    pub fn is_strict(&self) -> bool {
        matches!(
            self.kind,
            RuleKind::NodeAffinity {
                strict: Some(true),
                ..
            }
        )
    }

    pub fn affinity(&self) -> Option<Affinity> {
        match self.kind {
            RuleKind::ResourceAffinity { affinity } => Some(affinity),
            _ => None,
        }
    }

    pub fn node_priorities(&self) -> Option<&BTreeMap<String, i64>> {
        match &self.kind {
            RuleKind::NodeAffinity { nodes, .. } => Some(nodes),
            _ => None,
        }
    }

    /// The rule as Proxmox VE's rules checker prints it.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), json!(self.type_name()));
        let resources: Map<String, Value> = self
            .resources
            .iter()
            .map(|r| (r.clone(), json!(1)))
            .collect();
        obj.insert("resources".into(), Value::Object(resources));
        match &self.kind {
            RuleKind::NodeAffinity { nodes, strict } => {
                let nodes: Map<String, Value> = nodes
                    .iter()
                    .map(|(n, p)| (n.clone(), json!({ "priority": p })))
                    .collect();
                obj.insert("nodes".into(), Value::Object(nodes));
                if let Some(strict) = strict {
                    obj.insert("strict".into(), json!(u8::from(*strict)));
                }
            }
            RuleKind::ResourceAffinity { affinity } => {
                obj.insert("affinity".into(), json!(affinity.as_str()));
            }
        }
        if let Some(disable) = self.disable {
            obj.insert("disable".into(), json!(u8::from(disable)));
        }
        if let Some(comment) = &self.comment {
            obj.insert("comment".into(), json!(comment));
        }
        Value::Object(obj)
    }
}

/// `node1:2,node2` (priority 0 is written without one), as in `rules.cfg`.
pub fn node_list(nodes: &BTreeMap<String, i64>) -> String {
    nodes
        .iter()
        .map(|(n, p)| {
            if *p == 0 {
                n.clone()
            } else {
                format!("{n}:{p}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A parsed rules file: rules by id, and the digest of the text it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesConfig {
    pub rules: BTreeMap<String, Rule>,
    pub digest: String,
}

fn is_service_id(text: &str) -> bool {
    match text.split_once(':') {
        Some((t, name)) => {
            !t.is_empty()
                && t.chars().all(|c| c.is_ascii_lowercase())
                && !name.is_empty()
                && !name.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Parses a `node[:priority],...` list.
pub fn parse_node_priorities(
    id: &str,
    value: &str,
) -> Result<BTreeMap<String, i64>, SectionConfigError> {
    let mut nodes = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, priority) = match item.split_once(':') {
            Some((n, p)) => {
                let p = p.parse::<i64>().map_err(|_| {
                    invalid(
                        id,
                        format!("property 'nodes': bad priority '{p}' for node '{n}'"),
                    )
                })?;
                (n, p)
            }
            None => (item, 0),
        };
        if name.is_empty() {
            return Err(invalid(id, "property 'nodes': empty node name".into()));
        }
        nodes.insert(name.to_string(), priority);
    }
    if nodes.is_empty() {
        return Err(invalid(id, "property 'nodes': no node given".into()));
    }
    Ok(nodes)
}

impl RulesConfig {
    pub fn parse(raw: &str) -> Result<Self, SectionConfigError> {
        let mut rules = BTreeMap::new();
        for (index, section) in section_config::parse(raw)?.into_iter().enumerate() {
            let id = section.id.clone();
            let mut resources = None;
            let mut nodes = None;
            let mut strict = None;
            let mut affinity = None;
            let mut disable = None;
            let mut comment = None;
            for (key, value) in &section.properties {
                match key.as_str() {
                    "resources" => {
                        let set: BTreeSet<String> = value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        if let Some(bad) = set.iter().find(|s| !is_service_id(s)) {
                            return Err(invalid(
                                &id,
                                format!("property 'resources': '{bad}' is not a resource id"),
                            ));
                        }
                        resources = Some(set);
                    }
                    "nodes" => nodes = Some(parse_node_priorities(&id, value)?),
                    "strict" => strict = Some(parse_bool(&id, key, value)?),
                    "affinity" => {
                        affinity = Some(match value.as_str() {
                            "positive" => Affinity::Positive,
                            "negative" => Affinity::Negative,
                            other => {
                                return Err(invalid(
                                    &id,
                                    format!(
                                "property 'affinity': '{other}' is not 'positive' or 'negative'"
                            ),
                                ))
                            }
                        })
                    }
                    "disable" => disable = Some(parse_bool(&id, key, value)?),
                    "comment" => comment = Some(crate::text::decode_text(value)),
                    other => return Err(invalid(&id, format!("unknown property '{other}'"))),
                }
            }
            let resources =
                resources.ok_or_else(|| invalid(&id, "missing property 'resources'".into()))?;
            let kind = match section.section_type.as_str() {
                "node-affinity" => {
                    if affinity.is_some() {
                        return Err(invalid(
                            &id,
                            "property 'affinity' not allowed in node-affinity rule".into(),
                        ));
                    }
                    RuleKind::NodeAffinity {
                        nodes: nodes
                            .ok_or_else(|| invalid(&id, "missing property 'nodes'".into()))?,
                        strict,
                    }
                }
                "resource-affinity" => {
                    if nodes.is_some() || strict.is_some() {
                        return Err(invalid(
                            &id,
                            "properties 'nodes' and 'strict' not allowed in resource-affinity rule"
                                .into(),
                        ));
                    }
                    RuleKind::ResourceAffinity {
                        affinity: affinity
                            .ok_or_else(|| invalid(&id, "missing property 'affinity'".into()))?,
                    }
                }
                other => return Err(invalid(&id, format!("unknown rule type '{other}'"))),
            };
            if rules.contains_key(&id) {
                return Err(invalid(&id, "rule id defined twice".into()));
            }
            rules.insert(
                id.clone(),
                Rule {
                    id,
                    kind,
                    resources,
                    disable,
                    comment,
                    order: index + 1,
                },
            );
        }
        Ok(RulesConfig {
            rules,
            digest: section_config::digest(raw),
        })
    }

    /// `{digest, ids, order}` as Proxmox VE's rules checker prints the config.
    pub fn to_json(&self) -> Value {
        let ids: Map<String, Value> = self
            .rules
            .iter()
            .map(|(id, r)| (id.clone(), r.to_json()))
            .collect();
        let order: Map<String, Value> = self
            .rules
            .iter()
            .map(|(id, r)| (id.clone(), json!(r.order)))
            .collect();
        json!({ "digest": self.digest, "ids": ids, "order": order })
    }

    /// The rules as section-config text, in rule order.
    pub fn to_section_text(&self) -> String {
        let mut out = String::new();
        for rule in self.ordered() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&crate::section_config::header_line(
                rule.type_name(),
                &rule.id,
            ));
            let resources: Vec<&str> = rule.resources.iter().map(String::as_str).collect();
            out.push_str(&crate::section_config::property_line(
                "resources",
                &resources.join(","),
            ));
            match &rule.kind {
                RuleKind::NodeAffinity { nodes, strict } => {
                    out.push_str(&crate::section_config::property_line(
                        "nodes",
                        &node_list(nodes),
                    ));
                    if let Some(strict) = strict {
                        out.push_str(&format!("\tstrict {}\n", u8::from(*strict)));
                    }
                }
                RuleKind::ResourceAffinity { affinity } => {
                    out.push_str(&format!("\taffinity {}\n", affinity.as_str()));
                }
            }
            if let Some(disable) = rule.disable {
                out.push_str(&format!("\tdisable {}\n", u8::from(disable)));
            }
            if let Some(comment) = &rule.comment {
                // Proxmox VE encodes rule comments (`encode_text`).
                out.push_str(&crate::section_config::property_line(
                    "comment",
                    &crate::text::encode_text(comment),
                ));
            }
        }
        out
    }

    /// Rules in file order (ties by id), as Proxmox VE iterates them.
    pub fn ordered(&self) -> Vec<&Rule> {
        let mut rules: Vec<&Rule> = self.rules.values().collect();
        rules.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_rule_types() {
        let cfg = RulesConfig::parse(
            "node-affinity: a\n\tresources vm:1,vm:2\n\tnodes n1:2,n2\n\tstrict 1\n\nresource-affinity: b\n\tresources vm:1,vm:3\n\taffinity negative\n\tdisable\n",
        )
        .unwrap();
        let a = &cfg.rules["a"];
        assert!(a.is_strict());
        assert_eq!(a.node_priorities().unwrap()["n1"], 2);
        assert_eq!(a.node_priorities().unwrap()["n2"], 0);
        assert!(!cfg.rules["b"].is_enabled());
        assert_eq!(cfg.rules["b"].order, 2);
    }

    #[test]
    fn errors_name_rule_and_property() {
        let err =
            RulesConfig::parse("resource-affinity: x\n\tresources vm:1\n\taffinity sideways\n")
                .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'x'") && text.contains("affinity"), "{text}");
        let err = RulesConfig::parse("node-affinity: y\n\tresources vm:1\n\tnodes n1:high\n")
            .unwrap_err();
        assert!(err.to_string().contains("nodes"));
    }
}
