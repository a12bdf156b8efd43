//! Storages behind one trait: a plugin per storage type (`dir` first) allocates, frees,
//! lists and locates the volumes of guests and reports its space. `storage.cfg` is parsed
//! by `ferrox-types`; this crate turns a section of it into a plugin.
//!
//! It works on the local file system and its tools (`qemu-img`) only: it knows nothing
//! about guest configs, the cluster or the API. A new storage type is one file here plus
//! its line in `plugin`.

pub mod backup;
pub mod btrfs;
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

/// A backup archive on a storage, as `GET .../content` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub volid: String,
    pub vmid: u32,
    pub ctime: i64,
    pub size: u64,
    pub protected: bool,
}

/// What a volume carries besides its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeAttributes {
    pub notes: Option<String>,
    pub protected: bool,
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
    /// Creates a new image of `bytes` in `format` for `vmid`; returns its volume id.
    fn allocate(&self, vmid: u32, bytes: u64, format: &str) -> Result<String, StorageError>;
    fn free(&self, volume: &VolumeId) -> Result<(), StorageError>;
    /// Refuses to free a volume something else still needs (a base image with linked
    /// clones), naming what needs it.
    fn check_free(&self, volume: &VolumeId) -> Result<(), StorageError> {
        let _ = volume;
        Ok(())
    }
    /// Turns a guest image into a read-only base image of a template; returns its new id.
    fn create_base(&self, volume: &VolumeId) -> Result<String, StorageError> {
        Err(StorageError::Invalid(format!(
            "storage '{}' cannot make base images ('{}:{}')",
            self.id(),
            volume.storage,
            volume.name
        )))
    }
    /// A linked clone of base image `base` for guest `vmid`: a new image that reads
    /// what it has not written from the base. Returns its volume id.
    fn clone_image(&self, base: &VolumeId, vmid: u32) -> Result<String, StorageError> {
        let _ = vmid;
        Err(StorageError::Invalid(format!(
            "storage '{}' cannot make linked clones of '{}:{}'",
            self.id(),
            base.storage,
            base.name
        )))
    }
    /// The format of a new image when the request names none: storage.cfg's `format`,
    /// else the type's own default.
    fn default_format(&self) -> &str;
    /// The image formats it holds.
    fn formats(&self) -> &[&'static str] {
        ferrox_types::storage::IMAGE_FORMATS
    }
    /// Whether a running guest's QEMU takes this volume's snapshots (qcow2 internal
    /// snapshots, one QMP transaction); otherwise the storage takes them while the guest
    /// is paused.
    fn snapshots_in_qemu(&self, volume: &VolumeId) -> bool {
        let _ = volume;
        false
    }
    /// Where snapshot `name` of a volume is read from: a file, its format, and the
    /// internal snapshot to select in it (qcow2), if any.
    fn snapshot_image(
        &self,
        volume: &VolumeId,
        name: &str,
    ) -> Result<(PathBuf, String, Option<String>), StorageError> {
        self.check_snapshot(volume)?;
        let (path, format) = self.path(volume)?;
        Ok((path, format, Some(name.to_string())))
    }
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
    /// Where ISO image `file` goes (needs `iso` content).
    fn iso_path(&self, file: &str) -> Result<PathBuf, StorageError> {
        let _ = file;
        Err(StorageError::Content {
            storage: self.id().to_string(),
            content: "iso".into(),
        })
    }
    /// ISO images: volume id, size, modification time.
    fn list_isos(&self) -> Result<Vec<(String, u64, i64)>, StorageError> {
        Ok(Vec::new())
    }
    /// Where backup archive `file` goes (needs `backup` content).
    fn backup_path(&self, file: &str) -> Result<PathBuf, StorageError> {
        let _ = file;
        Err(StorageError::Content {
            storage: self.id().to_string(),
            content: "backup".into(),
        })
    }
    /// Backup archives, of one guest or all, oldest first.
    fn list_backups(&self, vmid: Option<u32>) -> Result<Vec<BackupInfo>, StorageError> {
        let _ = vmid;
        Ok(Vec::new())
    }
    /// The notes and protection of a volume (only backups have them).
    fn attributes(&self, volume: &VolumeId) -> Result<VolumeAttributes, StorageError> {
        let _ = volume;
        Ok(VolumeAttributes::default())
    }
    /// Sets (`Some`, empty removes) the notes and the protection of a backup.
    fn set_attributes(
        &self,
        volume: &VolumeId,
        notes: Option<&str>,
        protected: Option<bool>,
    ) -> Result<(), StorageError> {
        let _ = (notes, protected);
        Err(StorageError::Invalid(format!(
            "only backups have notes and protection ('{}:{}')",
            volume.storage, volume.name
        )))
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

/// The format of a copy of a `source`-format image on `target`: the one asked for, else
/// the source's when the target holds it, else the target's default (as Proxmox VE
/// resolves it).
pub fn copy_format<'a>(
    target: &'a dyn Storage,
    source: &'a str,
    requested: Option<&'a str>,
) -> &'a str {
    match requested {
        Some(f) => f,
        None if target.formats().contains(&source) => source,
        None => target.default_format(),
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
pub const TYPES: &[&str] = &["dir", "btrfs"];

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
        "btrfs" => Ok(Box::new(btrfs::BtrfsStorage::new(section)?)),
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

/// Copies the data of image `source` (as it was at its internal snapshot `snapshot`, if
/// given) into the existing image `target`, converting the format (`qemu-img convert -n`).
pub fn copy_image(
    source: (&std::path::Path, &str),
    snapshot: Option<&str>,
    target: (&std::path::Path, &str),
) -> Result<(), StorageError> {
    // -U: the source may be held by a running guest (its snapshot does not change).
    let mut args = vec!["convert", "-U", "-n", "-f", source.1, "-O", target.1];
    let selector = snapshot.map(|s| format!("snapshot.name={s}"));
    if let Some(selector) = &selector {
        args.extend(["-l", selector.as_str()]);
    }
    qemu_img(&args, source.0, &[&target.0.to_string_lossy()]).map(drop)
}

/// The guest-visible bytes of image `source` as a new sparse raw file `target`.
pub fn export_raw(
    source: (&std::path::Path, &str),
    target: &std::path::Path,
) -> Result<(), StorageError> {
    qemu_img(
        &["convert", "-U", "-f", source.1, "-O", "raw"],
        source.0,
        &[&target.to_string_lossy()],
    )
    .map(drop)
}

/// Copies image `source` into an NBD export (`nbd://host:port/name`) of an image of the
/// same size: an offline migration's disk copy.
pub fn copy_image_to_nbd(source: (&std::path::Path, &str), uri: &str) -> Result<(), StorageError> {
    qemu_img(
        &["convert", "-n", "-f", source.1, "-O", "raw"],
        source.0,
        &[uri],
    )
    .map(drop)
}

/// Bytes an image file takes on its file system (what a full copy writes at least).
pub fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Virtual size and format of an image file, as `qemu-img info` reports them.
pub fn image_info(path: &std::path::Path) -> Result<(u64, String), StorageError> {
    let out = qemu_img(&["info", "--output=json", "-U"], path, &[])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| StorageError::Tool(format!("qemu-img info: {e}")))?;
    Ok((
        v["virtual-size"].as_u64().unwrap_or(0),
        v["format"].as_str().unwrap_or("raw").to_string(),
    ))
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
            isos.allocate(100, 1 << 30, "qcow2"),
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
        let volid = local.allocate(100, 1 << 30, "qcow2").unwrap();
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

    #[test]
    fn base_images_linked_clones_and_copies() {
        if std::process::Command::new("qemu-io")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED base_images_linked_clones_and_copies: no qemu-io (qemu-utils)");
            return;
        }
        let (_dir, storages) = setup();
        let local = open(&storages, "n1", "local").unwrap();
        let volid = local.allocate(100, 1 << 30, "qcow2").unwrap();
        let (path, _) = local.path(&VolumeId::parse(&volid).unwrap()).unwrap();
        assert!(qemu_io(&path, "write -P 0x33 0 64k"));
        let base = local
            .create_base(&VolumeId::parse(&volid).unwrap())
            .unwrap();
        assert_eq!(base, "local:100/base-100-disk-0.qcow2");
        let base = VolumeId::parse(&base).unwrap();
        assert!(!path.exists());
        assert!(local.create_base(&base).is_err(), "a base image stays one");

        let linked = local.clone_image(&base, 101).unwrap();
        assert_eq!(
            linked,
            "local:100/base-100-disk-0.qcow2/101/vm-101-disk-0.qcow2"
        );
        let linked = VolumeId::parse(&linked).unwrap();
        let (linked_path, format) = local.path(&linked).unwrap();
        assert_eq!(format, "qcow2");
        assert!(
            qemu_io(&linked_path, "read -P 0x33 0 64k"),
            "reads the base"
        );
        assert!(qemu_io(&linked_path, "write -P 0x44 0 64k"));
        let (base_path, _) = local.path(&base).unwrap();
        assert!(
            qemu_io(&base_path, "read -P 0x33 0 64k"),
            "the base is untouched"
        );
        let listed: Vec<String> = local
            .list(Some(101))
            .unwrap()
            .into_iter()
            .map(|v| v.volid)
            .collect();
        assert_eq!(listed, vec![format!("local:{}", linked.name)]);
        let refusal = local.free(&base).unwrap_err().to_string();
        assert!(
            refusal.contains("in use by linked clones") && refusal.contains("101/vm-101"),
            "{refusal}"
        );
        assert!(
            local.clone_image(&linked, 102).is_err(),
            "only a base can be cloned linked"
        );

        // a full copy into a raw image of the same size
        let full = local.allocate(102, 1 << 30, "raw").unwrap();
        let (full_path, full_format) = local.path(&VolumeId::parse(&full).unwrap()).unwrap();
        copy_image((&linked_path, "qcow2"), None, (&full_path, &full_format)).unwrap();
        assert_eq!(
            image_info(&full_path).unwrap(),
            (1 << 30, "raw".to_string())
        );
        let raw_read = std::process::Command::new("qemu-io")
            .args(["-f", "raw", "-c", "read -P 0x44 0 64k"])
            .arg(&full_path)
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&raw_read.stdout).contains("verification failed"));

        local.free(&linked).unwrap();
        local.free(&base).unwrap();
    }

    #[test]
    fn images_are_preallocated_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig::parse(&format!(
            "dir: full\n\tpath {0}/full\n\tcontent images\n\tpreallocation full\n\ndir: thin\n\tpath {0}/thin\n\tcontent images\n\tpreallocation off\n",
            dir.path().display()
        ))
        .unwrap();
        let used = |storage: &str, format: &str| {
            let s = open(&cfg, "n1", storage).unwrap();
            let volid = s.allocate(100, 8 << 20, format).unwrap();
            let (path, _) = s.path(&VolumeId::parse(&volid).unwrap()).unwrap();
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).unwrap().blocks() * 512
        };
        assert!(used("full", "raw") >= 8 << 20, "full writes every byte");
        assert!(used("full", "qcow2") >= 8 << 20);
        assert!(used("thin", "raw") < 1 << 20, "off allocates nothing");
    }
}
