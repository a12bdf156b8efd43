//! Ferrox's domain model and its on-disk formats.
//!
//! This crate owns the one parser and serializer of every format the cluster shares: the
//! Proxmox-VE-style section-config files (`ha/rules.cfg`, `ha/groups.cfg`), the HA resource
//! configuration, the HA manager and LRM status documents and the `datacenter.cfg` CRS
//! settings. It holds data and validation only: no IO, no scheduling or HA decisions.

pub mod groups;
pub mod ha;
pub mod perl_json;
pub mod rules;
pub mod section_config;

pub use groups::{Group, GroupsConfig};
pub use ha::*;
pub use rules::{Affinity, Rule, RuleKind, RulesConfig};
pub use section_config::{digest, Section, SectionConfigError};
