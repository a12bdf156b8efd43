//! `storage.cfg`: storages in Proxmox VE's section-config format. Ferrox runs `dir`
//! storages; other types are read and kept (so a copied file reads) but not usable yet.

use crate::section_config::{self, parse_bool, SectionConfigError};
use std::collections::{BTreeMap, BTreeSet};

/// What a storage may hold.
pub const CONTENT_TYPES: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub id: String,
    /// `dir`, `lvmthin`, `nfs`, ...
    pub storage_type: String,
    pub path: Option<String>,
    pub content: BTreeSet<String>,
    pub shared: bool,
    pub disable: bool,
    /// Nodes the storage is available on; `None` means all.
    pub nodes: Option<BTreeSet<String>>,
    /// Properties Ferrox does not interpret, kept for writing back.
    pub other: BTreeMap<String, String>,
}

impl Storage {
    pub fn is_usable_on(&self, node: &str) -> bool {
        !self.disable
            && self.storage_type == "dir"
            && self.nodes.as_ref().is_none_or(|n| n.contains(node))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConfig {
    pub storages: BTreeMap<String, Storage>,
    /// Ids in file order, for writing back in the same order.
    pub order: Vec<String>,
    pub digest: String,
}

fn invalid(id: &str, message: String) -> SectionConfigError {
    SectionConfigError::Invalid {
        id: id.to_string(),
        message,
    }
}

impl StorageConfig {
    pub fn parse(raw: &str) -> Result<StorageConfig, SectionConfigError> {
        let mut cfg = StorageConfig {
            digest: section_config::digest(raw),
            ..Default::default()
        };
        for section in section_config::parse(raw)? {
            let id = section.id.clone();
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                || !id.starts_with(|c: char| c.is_ascii_alphabetic())
            {
                return Err(invalid(
                    &id,
                    "storage id must start with a letter and use letters, digits, '-', '_', '.'"
                        .into(),
                ));
            }
            let mut storage = Storage {
                id: id.clone(),
                storage_type: section.section_type.clone(),
                path: None,
                content: BTreeSet::new(),
                shared: false,
                disable: false,
                nodes: None,
                other: BTreeMap::new(),
            };
            for (key, value) in &section.properties {
                match key.as_str() {
                    "path" => {
                        if !value.starts_with('/') {
                            return Err(invalid(
                                &id,
                                format!("property 'path': '{value}' is not an absolute path"),
                            ));
                        }
                        storage.path = Some(value.clone());
                    }
                    "content" => {
                        for c in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                            if !CONTENT_TYPES.contains(&c) {
                                return Err(invalid(
                                    &id,
                                    format!("property 'content': unknown content type '{c}'"),
                                ));
                            }
                            storage.content.insert(c.to_string());
                        }
                    }
                    "shared" => storage.shared = parse_bool(&id, key, value)?,
                    "disable" => storage.disable = parse_bool(&id, key, value)?,
                    "nodes" => {
                        storage.nodes = Some(
                            value
                                .split(',')
                                .map(str::trim)
                                .filter(|n| !n.is_empty())
                                .map(String::from)
                                .collect(),
                        )
                    }
                    _ => {
                        storage.other.insert(key.clone(), value.clone());
                    }
                }
            }
            if storage.storage_type == "dir" && storage.path.is_none() {
                return Err(invalid(
                    &id,
                    "missing property 'path' (required for dir storages)".into(),
                ));
            }
            if cfg.storages.insert(id.clone(), storage).is_some() {
                return Err(invalid(&id, "storage defined twice".into()));
            }
            cfg.order.push(id);
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for id in &self.order {
            let s = &self.storages[id];
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("{}: {}\n", s.storage_type, s.id));
            if let Some(p) = &s.path {
                out.push_str(&format!("\tpath {p}\n"));
            }
            if !s.content.is_empty() {
                out.push_str(&format!(
                    "\tcontent {}\n",
                    s.content.iter().cloned().collect::<Vec<_>>().join(",")
                ));
            }
            if s.shared {
                out.push_str("\tshared 1\n");
            }
            if s.disable {
                out.push_str("\tdisable 1\n");
            }
            if let Some(n) = &s.nodes {
                out.push_str(&format!(
                    "\tnodes {}\n",
                    n.iter().cloned().collect::<Vec<_>>().join(",")
                ));
            }
            for (k, v) in &s.other {
                out.push_str(&format!("\t{k} {v}\n"));
            }
        }
        out
    }
}

/// A volume id `storage:name`, e.g. `local:100/vm-100-disk-0.qcow2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId {
    pub storage: String,
    pub name: String,
}

impl VolumeId {
    pub fn parse(text: &str) -> Option<VolumeId> {
        let (storage, name) = text.split_once(':')?;
        (!storage.is_empty() && !name.is_empty()).then(|| VolumeId {
            storage: storage.to_string(),
            name: name.to_string(),
        })
    }

    /// The owning vmid of an image volume (`100/vm-100-disk-0.qcow2` → 100).
    pub fn owner(&self) -> Option<u32> {
        self.name.split_once('/')?.0.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent backup,iso,vztmpl\n\nlvmthin: local-lvm\n\tcontent images,rootdir\n\tthinpool data\n\tvgname pve\n\ndir: shared-nfs\n\tpath /mnt/pve/shared\n\tcontent images\n\tshared 1\n\tnodes pve1,pve2\n";

    #[test]
    fn parses_and_round_trips() {
        let cfg = StorageConfig::parse(SAMPLE).unwrap();
        assert_eq!(cfg.order, ["local", "local-lvm", "shared-nfs"]);
        let local = &cfg.storages["local"];
        assert!(local.content.contains("iso") && local.is_usable_on("anynode"));
        assert!(!cfg.storages["local-lvm"].is_usable_on("pve1"));
        let shared = &cfg.storages["shared-nfs"];
        assert!(shared.shared && shared.is_usable_on("pve2") && !shared.is_usable_on("pve3"));
        assert_eq!(cfg.storages["local-lvm"].other["vgname"], "pve");
        assert_eq!(cfg.to_text(), SAMPLE);
    }

    #[test]
    fn errors_name_storage_and_property() {
        let e = StorageConfig::parse("dir: local\n\tcontent images\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'local'") && e.contains("path"), "{e}");
        let e = StorageConfig::parse("dir: local\n\tpath /x\n\tcontent movies\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("content") && e.contains("movies"), "{e}");
        let e = StorageConfig::parse("dir: local\n\tpath relative\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("path"), "{e}");
    }

    #[test]
    fn volume_ids() {
        let v = VolumeId::parse("local:100/vm-100-disk-0.qcow2").unwrap();
        assert_eq!(v.storage, "local");
        assert_eq!(v.owner(), Some(100));
        assert!(VolumeId::parse("nocolon").is_none());
    }
}
