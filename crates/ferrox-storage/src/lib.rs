//! Storages behind one trait: a plugin per storage type (`dir` first) allocates, frees,
//! lists and locates the volumes of guests and reports its space. `storage.cfg` is parsed
//! by `ferrox-types`; this crate turns a section of it into a plugin.
//!
//! It works on the local file system and its tools (`qemu-img`) only: it knows nothing
//! about guest configs, the cluster or the API. A new storage type is one file here plus
//! its line in `plugin`.

pub mod dir;

use ferrox_types::{Storage as StorageSection, StorageConfig, VolumeId};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage '{0}' does not exist")]
    NotFound(String),
    #[error("storage '{storage}' is not available on node '{node}'")]
    NotOnNode { storage: String, node: String },
    #[error("storage '{storage}' does not allow content '{content}'")]
    Content { storage: String, content: String },
    #[error("storage type '{0}' is not supported yet")]
    UnsupportedType(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(String),
}

/// One image on a storage, as `GET /nodes/{node}/storage/{storage}/content` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub volid: String,
    pub vmid: u32,
    pub format: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// Bytes used on disk.
    pub used: u64,
}

/// Space of a storage, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub used: u64,
    pub avail: u64,
}

/// What every storage type does.
pub trait Storage: Send + Sync {
    fn id(&self) -> &str;
    /// The same content on every node (guests on it can migrate without copying).
    fn shared(&self) -> bool;
    /// Content types it may hold (`images`, `iso`, ...).
    fn content(&self) -> &BTreeSet<String>;
    /// The file (or device) behind a volume of this storage, and its image format.
    fn path(&self, volume: &VolumeId) -> Result<(PathBuf, String), StorageError>;
    /// Creates a new image of `size_gib` GiB for `vmid`; returns its volume id.
    fn allocate(&self, vmid: u32, size_gib: u64) -> Result<String, StorageError>;
    fn free(&self, volume: &VolumeId) -> Result<(), StorageError>;
    /// Guest images, of one guest or all.
    fn list(&self, vmid: Option<u32>) -> Result<Vec<VolumeInfo>, StorageError>;
    fn space(&self) -> Space;
    /// Grows an image to `bytes` (never shrinks: the caller checks). File-backed images
    /// grow with `qemu-img resize`.
    fn resize(&self, volume: &VolumeId, bytes: u64) -> Result<(), StorageError> {
        let (path, format) = self.path(volume)?;
        qemu_img(&["resize", "-f", &format], &path, &[&bytes.to_string()]).map(drop)
    }
    /// Refuses, naming the volume and why, when a volume cannot have snapshots. Every
    /// type refuses unless it says how it snapshots.
    fn check_snapshot(&self, volume: &VolumeId) -> Result<(), StorageError> {
        Err(StorageError::Invalid(format!(
            "snapshots are not possible on storage '{}' (volume '{}:{}')",
            self.id(),
            volume.storage,
            volume.name
        )))
    }
    /// Takes snapshot `name` of a volume no running guest holds (a running guest's
    /// qcow2 images are snapshotted by its QEMU).
    fn snapshot_create(&self, volume: &VolumeId, _name: &str) -> Result<(), StorageError> {
        self.check_snapshot(volume)
    }
    /// Returns a volume no running guest holds to snapshot `name`.
    fn snapshot_rollback(&self, volume: &VolumeId, _name: &str) -> Result<(), StorageError> {
        self.check_snapshot(volume)
    }
    /// Deletes snapshot `name` of a volume no running guest holds.
    fn snapshot_delete(&self, volume: &VolumeId, _name: &str) -> Result<(), StorageError> {
        self.check_snapshot(volume)
    }
    /// Creates the empty raw file that keeps the RAM state of guest `vmid`'s snapshot
    /// `snapshot` (`vm-<vmid>-state-<snapshot>.raw`, as Proxmox VE names it).
    fn allocate_state(&self, vmid: u32, snapshot: &str) -> Result<String, StorageError> {
        let _ = (vmid, snapshot);
        Err(StorageError::Content {
            storage: self.id().to_string(),
            content: "images".into(),
        })
    }
}

/// Runs `qemu-img <args> <path> <tail>`; its stdout, or its stderr as the error.
pub(crate) fn qemu_img(
    args: &[&str],
    path: &std::path::Path,
    tail: &[&str],
) -> Result<String, StorageError> {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .arg(path)
        .args(tail)
        .output()
        .map_err(|source| StorageError::Io {
            what: "qemu-img".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(StorageError::Tool(format!(
            "qemu-img {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The storage types with a plugin: the one list a new type is added to.
pub const TYPES: &[&str] = &["dir"];

/// Whether `node` can use the storage: enabled there, and of a type with a plugin.
pub fn is_usable_on(section: &StorageSection, node: &str) -> bool {
    section.is_enabled_on(node) && TYPES.contains(&section.storage_type.as_str())
}

/// The plugin of a `storage.cfg` section usable on `node`.
pub fn plugin(section: &StorageSection, node: &str) -> Result<Box<dyn Storage>, StorageError> {
    if !section.is_enabled_on(node) {
        return Err(StorageError::NotOnNode {
            storage: section.id.clone(),
            node: node.to_string(),
        });
    }
    match section.storage_type.as_str() {
        "dir" => Ok(Box::new(dir::DirStorage::new(section)?)),
        other => Err(StorageError::UnsupportedType(other.to_string())),
    }
}

/// The space of a storage on `node` (zero when it has no plugin or is not there).
pub fn space(section: &StorageSection, node: &str) -> Space {
    plugin(section, node).map(|p| p.space()).unwrap_or_default()
}

/// The plugin of storage `id`.
pub fn open(
    storages: &StorageConfig,
    node: &str,
    id: &str,
) -> Result<Box<dyn Storage>, StorageError> {
    let section = storages
        .storages
        .get(id)
        .ok_or_else(|| StorageError::NotFound(id.to_string()))?;
    plugin(section, node)
}

/// The file and format of a volume id, or of a host path (which only root@pam can put into
/// a config: the API checks that).
pub fn resolve(
    storages: &StorageConfig,
    node: &str,
    volid: &str,
) -> Result<(PathBuf, String), StorageError> {
    if volid.starts_with('/') {
        ferrox_types::format::absolute_path(volid).map_err(StorageError::Invalid)?;
        return Ok((PathBuf::from(volid), "raw".to_string()));
    }
    // The strict parse guarantees the name stays inside the storage (no absolute path,
    // no `..`, a known shape).
    let volume = VolumeId::parse(volid).ok_or_else(|| {
        StorageError::Invalid(format!("'{volid}' is not a volume id (storage:name)"))
    })?;
    open(storages, node, &volume.storage)?.path(&volume)
}

/// The plugin of a volume id and the parsed id (a host path is not a storage's volume).
pub fn open_volume(
    storages: &StorageConfig,
    node: &str,
    volid: &str,
) -> Result<(Box<dyn Storage>, VolumeId), StorageError> {
    let volume = VolumeId::parse(volid).ok_or_else(|| {
        StorageError::Invalid(format!("'{volid}' is not a volume id (storage:name)"))
    })?;
    Ok((open(storages, node, &volume.storage)?, volume))
}

/// Grows a volume to `bytes`.
pub fn resize(
    storages: &StorageConfig,
    node: &str,
    volid: &str,
    bytes: u64,
) -> Result<(), StorageError> {
    let (storage, volume) = open_volume(storages, node, volid)?;
    storage.resize(&volume, bytes)
}

/// Deletes a volume.
pub fn free(storages: &StorageConfig, node: &str, volid: &str) -> Result<(), StorageError> {
    let (storage, volume) = open_volume(storages, node, volid)?;
    storage.free(&volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, StorageConfig) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig::parse(&format!(
            "dir: local\n\tpath {}\n\tcontent images,iso\n\ndir: isos\n\tpath {}/iso\n\tcontent iso\n\ndir: other\n\tpath /srv/other\n\tnodes n2\n",
            dir.path().display(),
            dir.path().display()
        ))
        .unwrap();
        (dir, cfg)
    }

    #[test]
    fn a_storage_type_without_a_plugin_is_not_usable() {
        let cfg = StorageConfig::parse(
            "dir: local\n\tpath /var/lib/vz\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n",
        )
        .unwrap();
        assert!(is_usable_on(&cfg.storages["local"], "pve1"));
        assert!(!is_usable_on(&cfg.storages["local-lvm"], "pve1"));
        assert!(cfg.storages["local-lvm"].is_enabled_on("pve1"));
    }

    #[test]
    fn resolve_refuses_bad_volumes() {
        let (_dir, storages) = setup();
        assert!(resolve(&storages, "n1", "nfs:100/vm-100-disk-0.qcow2")
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert!(resolve(&storages, "n1", "local:../../etc/passwd").is_err());
        assert!(resolve(&storages, "n1", "local:/etc/shadow").is_err());
        assert!(resolve(&storages, "n1", "plain").is_err());
    }

    #[test]
    fn volumes_map_to_proxmox_ve_folders() {
        let (dir, storages) = setup();
        let (path, format) = resolve(&storages, "n1", "local:100/vm-100-disk-0.qcow2").unwrap();
        assert_eq!(path, dir.path().join("images/100/vm-100-disk-0.qcow2"));
        assert_eq!(format, "qcow2");
        let (path, _) = resolve(&storages, "n1", "local:iso/debian.iso").unwrap();
        assert_eq!(path, dir.path().join("template/iso/debian.iso"));
        assert_eq!(
            resolve(&storages, "n1", "/dev/null").unwrap(),
            (PathBuf::from("/dev/null"), "raw".to_string())
        );
        assert!(matches!(
            open(&storages, "n1", "other"),
            Err(StorageError::NotOnNode { .. })
        ));
        let isos = open(&storages, "n1", "isos").unwrap();
        assert!(matches!(
            isos.allocate(100, 1),
            Err(StorageError::Content { .. })
        ));
        assert!(open(&storages, "n1", "local").unwrap().space().total > 0);
    }

    fn qemu_io(path: &std::path::Path, command: &str) -> bool {
        std::process::Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", command])
            .arg(path)
            .output()
            .map(|o| {
                o.status.success()
                    && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
            })
            .unwrap_or(false)
    }

    #[test]
    fn qcow2_volumes_snapshot_roll_back_and_forget() {
        if std::process::Command::new("qemu-io")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "SKIPPED qcow2_volumes_snapshot_roll_back_and_forget: no qemu-io (qemu-utils)"
            );
            return;
        }
        let (_dir, storages) = setup();
        let local = open(&storages, "n1", "local").unwrap();
        let volid = local.allocate(100, 1).unwrap();
        let volume = VolumeId::parse(&volid).unwrap();
        let (path, _) = local.path(&volume).unwrap();
        assert!(qemu_io(&path, "write -P 0x11 0 64k"));
        local.snapshot_create(&volume, "s1").unwrap();
        assert!(
            local.snapshot_create(&volume, "s1").is_err(),
            "a name is taken once"
        );
        assert!(qemu_io(&path, "write -P 0x22 0 64k"));
        assert!(qemu_io(&path, "read -P 0x22 0 64k"));
        local.snapshot_rollback(&volume, "s1").unwrap();
        assert!(
            qemu_io(&path, "read -P 0x11 0 64k"),
            "the data of the snapshot is back"
        );
        assert!(!qemu_io(&path, "read -P 0x22 0 64k"));
        assert!(local.snapshot_rollback(&volume, "nope").is_err());
        local.snapshot_delete(&volume, "s1").unwrap();
        local.snapshot_delete(&volume, "s1").unwrap();
        assert!(local.snapshot_rollback(&volume, "s1").is_err(), "deleted");

        let state = local.allocate_state(100, "s1").unwrap();
        assert_eq!(state, "local:100/vm-100-state-s1.raw");
        assert!(local.allocate_state(100, "s1").is_err(), "never overwrites");
        let raw = VolumeId::parse(&state).unwrap();
        let refusal = local.snapshot_create(&raw, "s2").unwrap_err().to_string();
        assert!(
            refusal.contains("raw") && refusal.contains(&state),
            "{refusal}"
        );
    }
}
