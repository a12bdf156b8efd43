//! Ferrox's domain model and its on-disk formats.
//!
//! This crate owns the one parser and serializer of every format the cluster shares: the
//! Proxmox-VE-style section-config files (`ha/rules.cfg`, `ha/groups.cfg`, `storage.cfg`),
//! guest configs (`qemu-server/<vmid>.conf`), `user.cfg`, property strings, task ids (UPIDs), the HA
//! resource configuration, the HA manager and LRM status documents, the
//! `datacenter.cfg` CRS settings, a node's network `interfaces`, guests' network cards and
//! the SDN files. It holds data and validation only: no IO, no scheduling or HA decisions.

pub mod calendar;
pub mod console;
pub mod cpu;
pub mod domains;
pub mod format;
pub mod fsutil;
pub mod groups;
pub mod guest_config;
pub mod ha;
pub mod ha_config;
pub mod jobs_config;
pub mod network;
pub mod notifications;
pub mod perl_json;
pub mod property_string;
pub mod rules;
pub mod sdn;
pub mod section_config;
pub mod status_config;
pub mod storage;
pub mod text;
pub mod tfa_config;
pub mod upid;
pub mod user_config;

pub use groups::{Group, GroupsConfig};
pub use guest_config::{GuestConfig, GuestConfigError};
pub use ha::*;
pub use ha_config::{HaResource, HaResources};
pub use property_string::{PropertyString, PropertyStringError};
pub use rules::{Affinity, Rule, RuleKind, RulesConfig};
pub use section_config::{digest, Section, SectionConfigError};
pub use storage::{DiskSource, Storage, StorageConfig, StorageMap, VolumeId, VolumeKind};
pub use upid::{Upid, UpidError};
pub use user_config::{UserConfig, UserConfigError};

/// Parses a size such as `4G`, `512M`, `8GiB`, `1T` or plain bytes into bytes (binary
/// units, as Proxmox VE uses them).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 4G, 512M)"))?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    Ok((value * factor as f64).round() as u64)
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("4G"), Ok(4 << 30));
        assert_eq!(super::parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(super::parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(super::parse_size("100"), Ok(100));
        assert!(super::parse_size("four").is_err());
        assert!(super::parse_size("4X").is_err());
    }
}
