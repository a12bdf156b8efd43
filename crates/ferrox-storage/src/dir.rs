//! `dir` storages: a directory on a file system. Images live at
//! `<path>/images/<vmid>/vm-<vmid>-disk-<n>.<format>` and are created with `qemu-img`,
//! named `<storage>:<vmid>/vm-<vmid>-disk-<n>.<format>`; ISO images at
//! `<path>/template/iso/`, container templates at `<path>/template/cache/`, as in Proxmox VE.

use crate::{qemu_img, Space, Storage, StorageError, VolumeInfo};
use ferrox_types::{Storage as StorageSection, VolumeId, VolumeKind};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct DirStorage {
    id: String,
    base: PathBuf,
    shared: bool,
    content: BTreeSet<String>,
    /// `preallocation` (checked by the parser; Proxmox VE's default `metadata`).
    preallocation: String,
    /// storage.cfg's `format`. Without it new images are qcow2, not Proxmox VE's raw:
    /// `scsi0: local:4` should give a disk that can have snapshots.
    default_format: String,
}

impl DirStorage {
    pub fn new(section: &StorageSection) -> Result<DirStorage, StorageError> {
        let base = section.path.as_deref().ok_or_else(|| {
            StorageError::Invalid(format!("storage '{}' has no path", section.id))
        })?;
        Ok(DirStorage {
            id: section.id.clone(),
            base: PathBuf::from(base),
            shared: section.shared,
            content: section.content.clone(),
            preallocation: section
                .other
                .get("preallocation")
                .cloned()
                .unwrap_or_else(|| "metadata".into()),
            default_format: section
                .other
                .get("format")
                .cloned()
                .unwrap_or_else(|| "qcow2".into()),
        })
    }

    fn image_dir(&self, vmid: u32) -> PathBuf {
        self.base.join("images").join(vmid.to_string())
    }

    pub(crate) fn check_images(&self) -> Result<(), StorageError> {
        if self.content.contains("images") {
            Ok(())
        } else {
            Err(StorageError::Content {
                storage: self.id.clone(),
                content: "images".into(),
            })
        }
    }

    /// The next free `vm-<vmid>-disk-<n>.<format>` in the guest's folder (created): the
    /// folder, the file name and the volume id.
    pub(crate) fn new_image_name(
        &self,
        vmid: u32,
        format: &str,
    ) -> Result<(PathBuf, String, String), StorageError> {
        let dir = self.image_dir(vmid);
        std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        // A name is taken by a file of any format, or by a btrfs subvolume (which has no
        // extension) of the same disk.
        let taken = |n: u32| {
            ["vm", "base"].iter().any(|kind| {
                let stem = format!("{kind}-{vmid}-disk-{n}");
                dir.join(&stem).exists()
                    || ferrox_types::storage::IMAGE_FORMATS
                        .iter()
                        .any(|f| dir.join(format!("{stem}.{f}")).exists())
            })
        };
        let n = (0..).find(|n| !taken(*n)).unwrap_or(0);
        let file = format!("vm-{vmid}-disk-{n}.{format}");
        let volid = format!("{}:{vmid}/{file}", self.id);
        Ok((dir, file, volid))
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Io { what, source }
}

impl Storage for DirStorage {
    fn id(&self) -> &str {
        &self.id
    }

    fn shared(&self) -> bool {
        self.shared
    }

    fn content(&self) -> &BTreeSet<String> {
        &self.content
    }

    fn default_format(&self) -> &str {
        &self.default_format
    }

    fn snapshots_in_qemu(&self, volume: &VolumeId) -> bool {
        volume.format() == "qcow2"
    }

    fn path(&self, volume: &VolumeId) -> Result<(PathBuf, String), StorageError> {
        let file_name = volume.name.rsplit('/').next().unwrap_or("");
        let path = match volume.kind() {
            Some(VolumeKind::Image { .. }) => self.base.join("images").join(volume.own_file()),
            Some(VolumeKind::Iso) => self.base.join("template").join(&volume.name),
            Some(VolumeKind::Backup) => self.base.join("dump").join(file_name),
            Some(VolumeKind::Template) => self.base.join("template/cache").join(file_name),
            Some(_) => self.base.join(&volume.name),
            None => {
                return Err(StorageError::Invalid(format!(
                    "'{}:{}' is not a volume id",
                    volume.storage, volume.name
                )))
            }
        };
        Ok((path, volume.format().to_string()))
    }

    fn allocate(&self, vmid: u32, bytes: u64, format: &str) -> Result<String, StorageError> {
        self.check_images()?;
        if bytes == 0 {
            return Err(StorageError::Invalid("a disk needs a size above 0".into()));
        }
        if !ferrox_types::storage::IMAGE_FORMATS.contains(&format) {
            return Err(StorageError::Invalid(format!(
                "format '{format}' is not one of qcow2, raw, vmdk"
            )));
        }
        let (dir, file, volid) = self.new_image_name(vmid, format)?;
        // As Proxmox VE: `metadata` means nothing to a raw image; vmdk takes none.
        let preallocation = match (format, self.preallocation.as_str()) {
            ("vmdk", _) | ("raw", "metadata") => "off",
            (_, p) => p,
        };
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .args(
                (preallocation != "off")
                    .then(|| format!("preallocation={preallocation}"))
                    .map(|o| vec!["-o".to_string(), o])
                    .unwrap_or_default(),
            )
            .arg(dir.join(&file))
            .arg(bytes.to_string())
            .output()
            .map_err(io("qemu-img"))?;
        if !out.status.success() {
            return Err(StorageError::Tool(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(volid)
    }

    fn free(&self, volume: &VolumeId) -> Result<(), StorageError> {
        self.check_free(volume)?;
        let (path, _) = self.path(volume)?;
        if volume.kind() == Some(VolumeKind::Backup) {
            if protected_marker(&path).exists() {
                return Err(StorageError::Invalid(format!(
                    "backup '{}:{}' is protected",
                    volume.storage, volume.name
                )));
            }
            let _ = std::fs::remove_file(notes_file(&path));
        }
        std::fs::remove_file(&path).map_err(io(path.display().to_string()))
    }

    fn iso_path(&self, file: &str) -> Result<PathBuf, StorageError> {
        if !self.content.contains("iso") {
            return Err(StorageError::Content {
                storage: self.id.clone(),
                content: "iso".into(),
            });
        }
        let volume = VolumeId {
            storage: self.id.clone(),
            name: format!("iso/{file}"),
        };
        if volume.kind() != Some(VolumeKind::Iso) {
            return Err(StorageError::Invalid(format!(
                "'{file}' is not an ISO image name (a file name ending in .iso or .img)"
            )));
        }
        let dir = self.base.join("template/iso");
        std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        Ok(dir.join(file))
    }

    fn list_isos(&self) -> Result<Vec<(String, u64, i64)>, StorageError> {
        let Ok(entries) = std::fs::read_dir(self.base.join("template/iso")) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(String, u64, i64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let volid = format!("{}:iso/{name}", self.id);
                VolumeId::parse(&volid).filter(|v| v.kind() == Some(VolumeKind::Iso))?;
                let meta = e.metadata().ok()?;
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                Some((volid, meta.len(), mtime))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn backup_path(&self, file: &str) -> Result<PathBuf, StorageError> {
        if !self.content.contains("backup") {
            return Err(StorageError::Content {
                storage: self.id.clone(),
                content: "backup".into(),
            });
        }
        let dir = self.base.join("dump");
        std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        Ok(dir.join(file))
    }

    fn list_backups(&self, vmid: Option<u32>) -> Result<Vec<crate::BackupInfo>, StorageError> {
        let Ok(entries) = std::fs::read_dir(self.base.join("dump")) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<crate::BackupInfo> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (owner, ctime) = crate::backup::parse_archive_name(&name)?;
                if vmid.is_some_and(|v| v != owner) {
                    return None;
                }
                Some(crate::BackupInfo {
                    volid: format!("{}:backup/{name}", self.id),
                    vmid: owner,
                    ctime,
                    size: e.metadata().map(|m| m.len()).unwrap_or(0),
                    protected: protected_marker(&e.path()).exists(),
                })
            })
            .collect();
        out.sort_by_key(|b| (b.ctime, b.volid.clone()));
        Ok(out)
    }

    fn check_free(&self, volume: &VolumeId) -> Result<(), StorageError> {
        if !volume.is_base() {
            return Ok(());
        }
        let clones: Vec<String> = self
            .list(None)?
            .into_iter()
            .filter(|v| {
                VolumeId::parse(&v.volid).is_some_and(|c| c.base() == Some(volume.name.as_str()))
            })
            .map(|v| v.volid)
            .collect();
        if clones.is_empty() {
            return Ok(());
        }
        Err(StorageError::Invalid(format!(
            "base volume '{}:{}' is still in use by linked clones: {}",
            volume.storage,
            volume.name,
            clones.join(", ")
        )))
    }

    /// Renames `vm-<vmid>-…` to `base-<vmid>-…` and makes it read-only, as Proxmox VE's
    /// `create_base` does.
    fn create_base(&self, volume: &VolumeId) -> Result<String, StorageError> {
        if volume.is_base() || volume.base().is_some() {
            return Err(StorageError::Invalid(format!(
                "'{}:{}' is a base image or builds on one",
                volume.storage, volume.name
            )));
        }
        let (path, _) = self.path(volume)?;
        let based = volume.name.replacen("/vm-", "/base-", 1);
        let new = VolumeId {
            storage: volume.storage.clone(),
            name: based,
        };
        let (new_path, _) = self.path(&new)?;
        if new_path.exists() {
            return Err(StorageError::Invalid(format!(
                "'{}' exists already",
                new_path.display()
            )));
        }
        std::fs::rename(&path, &new_path).map_err(io(path.display().to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&new_path, std::fs::Permissions::from_mode(0o444))
            .map_err(io(new_path.display().to_string()))?;
        Ok(format!("{}:{}", new.storage, new.name))
    }

    /// A qcow2 image whose backing file is the base, by a path relative to the clone's
    /// folder (`../100/base-100-disk-0.qcow2`), as Proxmox VE writes it.
    fn clone_image(&self, base: &VolumeId, vmid: u32) -> Result<String, StorageError> {
        if !base.is_base() {
            return Err(StorageError::Invalid(format!(
                "linked clones need a base image (a template's disk); '{}:{}' is not one",
                base.storage, base.name
            )));
        }
        self.check_images()?;
        let (dir, file, _) = self.new_image_name(vmid, "qcow2")?;
        let backing = format!("../{}", base.name);
        let out = Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                base.format(),
                "-b",
                &backing,
            ])
            .arg(dir.join(&file))
            .output()
            .map_err(io("qemu-img"))?;
        if !out.status.success() {
            return Err(StorageError::Tool(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(format!("{}:{}/{vmid}/{file}", self.id, base.name))
    }

    fn list(&self, vmid: Option<u32>) -> Result<Vec<VolumeInfo>, StorageError> {
        let images = self.base.join("images");
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&images) else {
            return Ok(out);
        };
        let mut dirs: Vec<_> = dirs.filter_map(Result::ok).collect();
        dirs.sort_by_key(|d| d.file_name());
        for dir in dirs {
            let Some(owner) = dir.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if vmid.is_some_and(|v| v != owner) {
                continue;
            }
            let mut files: Vec<_> = std::fs::read_dir(dir.path())
                .map_err(io(dir.path().display().to_string()))?
                .filter_map(Result::ok)
                .collect();
            files.sort_by_key(|f| f.file_name());
            for file in files {
                // Folders are not images of a dir storage (btrfs keeps raw images in them).
                if file.file_type().map_or(true, |t| t.is_dir()) {
                    continue;
                }
                let name = file.file_name().to_string_lossy().to_string();
                let info = Command::new("qemu-img")
                    .args(["info", "--output=json", "-U"])
                    .arg(file.path())
                    .output()
                    .map_err(io("qemu-img"))?;
                let v: Value = serde_json::from_slice(&info.stdout).unwrap_or(Value::Null);
                // A linked clone is listed under its full name, base first.
                let base = v["backing-filename"]
                    .as_str()
                    .and_then(|b| b.strip_prefix("../"))
                    .map(|b| format!("{b}/"))
                    .unwrap_or_default();
                out.push(VolumeInfo {
                    volid: format!("{}:{base}{owner}/{name}", self.id),
                    vmid: owner,
                    format: v["format"].as_str().unwrap_or("raw").to_string(),
                    size: v["virtual-size"].as_u64().unwrap_or(0),
                    used: v["actual-size"].as_u64().unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    fn space(&self) -> Space {
        filesystem_space(&self.base)
    }

    /// qcow2 images keep internal snapshots; raw and vmdk files cannot (as in Proxmox VE).
    fn check_snapshot(&self, volume: &VolumeId) -> Result<(), StorageError> {
        match volume.format() {
            "qcow2" => Ok(()),
            format => Err(StorageError::Invalid(format!(
                "snapshots are not possible on {format} image '{}:{}' (dir storage '{}' snapshots qcow2 images only)",
                volume.storage, volume.name, self.id
            ))),
        }
    }

    fn snapshot_create(&self, volume: &VolumeId, name: &str) -> Result<(), StorageError> {
        self.check_snapshot(volume)?;
        let (path, _) = self.path(volume)?;
        // qemu-img would add a second snapshot with the same tag.
        if has_internal_snapshot(&path, name)? {
            return Err(StorageError::Invalid(format!(
                "'{}:{}' already has a snapshot '{name}'",
                volume.storage, volume.name
            )));
        }
        qemu_img(&["snapshot", "-c", name], &path, &[]).map(drop)
    }

    fn snapshot_rollback(&self, volume: &VolumeId, name: &str) -> Result<(), StorageError> {
        self.check_snapshot(volume)?;
        let (path, _) = self.path(volume)?;
        qemu_img(&["snapshot", "-a", name], &path, &[]).map(drop)
    }

    fn snapshot_delete(&self, volume: &VolumeId, name: &str) -> Result<(), StorageError> {
        self.check_snapshot(volume)?;
        let (path, _) = self.path(volume)?;
        // Deleting what is not there is done: a half-taken snapshot is cleaned up this way.
        if !has_internal_snapshot(&path, name)? {
            return Ok(());
        }
        qemu_img(&["snapshot", "-d", name], &path, &[]).map(drop)
    }

    /// `<archive>.notes` and `<archive>.protected` beside a backup, as Proxmox VE keeps
    /// them.
    fn attributes(&self, volume: &VolumeId) -> Result<crate::VolumeAttributes, StorageError> {
        if volume.kind() != Some(VolumeKind::Backup) {
            return Ok(crate::VolumeAttributes::default());
        }
        let (path, _) = self.path(volume)?;
        Ok(crate::VolumeAttributes {
            notes: std::fs::read_to_string(notes_file(&path))
                .ok()
                .filter(|n| !n.is_empty()),
            protected: protected_marker(&path).exists(),
        })
    }

    fn set_attributes(
        &self,
        volume: &VolumeId,
        notes: Option<&str>,
        protected: Option<bool>,
    ) -> Result<(), StorageError> {
        if volume.kind() != Some(VolumeKind::Backup) {
            return Err(StorageError::Invalid(format!(
                "only backups have notes and protection ('{}:{}')",
                volume.storage, volume.name
            )));
        }
        let (path, _) = self.path(volume)?;
        if !path.exists() {
            return Err(io(path.display().to_string())(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        if let Some(notes) = notes {
            let file = notes_file(&path);
            if notes.is_empty() {
                match std::fs::remove_file(&file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io(file.display().to_string())(e))
                    }
                    _ => {}
                }
            } else {
                // Written whole or not at all.
                let tmp = PathBuf::from(format!("{}.tmp", file.display()));
                std::fs::write(&tmp, notes)
                    .and_then(|()| std::fs::rename(&tmp, &file))
                    .map_err(io(file.display().to_string()))?;
            }
        }
        match protected {
            Some(true) => {
                let marker = protected_marker(&path);
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&marker)
                    .map_err(io(marker.display().to_string()))?;
            }
            Some(false) => match std::fs::remove_file(protected_marker(&path)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(path.display().to_string())(e))
                }
                _ => {}
            },
            None => {}
        }
        Ok(())
    }

    fn allocate_state(&self, vmid: u32, snapshot: &str) -> Result<String, StorageError> {
        self.check_images()?;
        let dir = self.image_dir(vmid);
        std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        let volid = format!("{}:{vmid}/vm-{vmid}-state-{snapshot}.raw", self.id);
        let volume = VolumeId::parse(&volid)
            .ok_or_else(|| StorageError::Invalid(format!("'{snapshot}' makes no volume name")))?;
        let (path, _) = self.path(&volume)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(path.display().to_string()))?;
        Ok(volid)
    }
}

/// Proxmox VE keeps a backup's notes in `<archive>.notes` beside it.
fn notes_file(archive: &Path) -> PathBuf {
    PathBuf::from(format!("{}.notes", archive.display()))
}

/// Proxmox VE marks a protected backup with `<archive>.protected` beside it.
fn protected_marker(archive: &Path) -> PathBuf {
    PathBuf::from(format!("{}.protected", archive.display()))
}

/// Whether a qcow2 file has an internal snapshot tagged `name` (`qemu-img snapshot -l`
/// prints a header, then `ID TAG VM-SIZE ...` rows).
fn has_internal_snapshot(path: &Path, name: &str) -> Result<bool, StorageError> {
    let list = qemu_img(&["snapshot", "-l", "-U"], path, &[])?;
    Ok(list
        .lines()
        .skip(2)
        .any(|l| l.split_whitespace().nth(1) == Some(name)))
}

/// Total, used and available bytes of the file system holding `path`.
pub fn filesystem_space(path: &Path) -> Space {
    match rustix::fs::statvfs(path) {
        Ok(s) => {
            let total = s.f_blocks * s.f_frsize;
            let free = s.f_bfree * s.f_frsize;
            Space {
                total,
                used: total.saturating_sub(free),
                avail: s.f_bavail * s.f_frsize,
            }
        }
        Err(_) => Space::default(),
    }
}
