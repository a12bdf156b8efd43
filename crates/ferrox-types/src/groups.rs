//! `ha/groups.cfg`: the legacy HA groups that Proxmox VE 9 migrates to node affinity rules.

use crate::rules::parse_node_priorities;
use crate::section_config::{self, parse_bool, SectionConfigError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub nodes: BTreeMap<String, i64>,
    pub restricted: bool,
    pub nofailback: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupsConfig {
    pub groups: BTreeMap<String, Group>,
    pub digest: String,
}

impl GroupsConfig {
    pub fn parse(raw: &str) -> Result<Self, SectionConfigError> {
        let mut groups = BTreeMap::new();
        for section in section_config::parse(raw)? {
            let id = section.id.clone();
            if section.section_type != "group" {
                return Err(SectionConfigError::Invalid {
                    id,
                    message: format!("unknown section type '{}'", section.section_type),
                });
            }
            let mut group = Group {
                id: id.clone(),
                nodes: BTreeMap::new(),
                restricted: false,
                nofailback: false,
                comment: None,
            };
            for (key, value) in &section.properties {
                match key.as_str() {
                    "nodes" => group.nodes = parse_node_priorities(&id, value)?,
                    "restricted" => group.restricted = parse_bool(&id, key, value)?,
                    "nofailback" => group.nofailback = parse_bool(&id, key, value)?,
                    "comment" => group.comment = Some(value.clone()),
                    other => {
                        return Err(SectionConfigError::Invalid {
                            id,
                            message: format!("unknown property '{other}'"),
                        })
                    }
                }
            }
            groups.insert(id, group);
        }
        Ok(GroupsConfig {
            groups,
            digest: section_config::digest(raw),
        })
    }
}
