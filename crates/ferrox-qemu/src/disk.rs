//! Disk volumes on `dir` storages: allocation with `qemu-img`, path resolution, listing
//! and freeing. Images live at `<path>/images/<vmid>/vm-<vmid>-disk-<n>.<format>`, as in
//! Proxmox VE, and are named `<storage>:<vmid>/vm-<vmid>-disk-<n>.<format>`.

use crate::QemuError;
use ferrox_types::guest_config::DISK_BUSES;
use ferrox_types::{GuestConfig, PropertyString, StorageConfig, VolumeId};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn config_err(key: &str, message: impl Into<String>) -> QemuError {
    QemuError::Config {
        key: key.to_string(),
        message: message.into(),
    }
}

fn image_dir(path: &str, vmid: u32) -> PathBuf {
    Path::new(path).join("images").join(vmid.to_string())
}

/// The file and format of a volume on a storage usable on `node`, or of a host path
/// (which only root@pam can put into a config: the API checks that).
pub fn resolve(
    storages: &StorageConfig,
    node: &str,
    volid: &str,
) -> Result<(PathBuf, String), String> {
    if volid.starts_with('/') {
        ferrox_types::format::absolute_path(volid)?;
        return Ok((PathBuf::from(volid), "raw".to_string()));
    }
    // The strict parse guarantees the name stays inside the storage (no absolute path,
    // no `..`, a known shape).
    let vol = VolumeId::parse(volid)
        .ok_or_else(|| format!("'{volid}' is not a volume id (storage:name)"))?;
    let storage = storages
        .storages
        .get(&vol.storage)
        .ok_or_else(|| format!("storage '{}' does not exist", vol.storage))?;
    if !storage.is_usable_on(node) {
        return Err(format!(
            "storage '{}' is not available on node '{node}'",
            vol.storage
        ));
    }
    let base = storage
        .path
        .as_deref()
        .ok_or_else(|| format!("storage '{}' has no path", vol.storage))?;
    use ferrox_types::VolumeKind;
    let file_name = vol.name.rsplit('/').next().unwrap_or("");
    // Proxmox VE's folders of a dir storage.
    let path = match vol.kind() {
        Some(VolumeKind::Image { .. }) => Path::new(base).join("images").join(&vol.name),
        Some(VolumeKind::Iso) => Path::new(base).join("template").join(&vol.name),
        Some(VolumeKind::Template) => Path::new(base).join("template/cache").join(file_name),
        Some(_) => Path::new(base).join(&vol.name),
        None => return Err(format!("'{volid}' is not a volume id")),
    };
    Ok((path, vol.format().to_string()))
}

/// Creates a new qcow2 image of `size_gib` GiB for `vmid` on `storage_id`.
pub fn allocate(
    storages: &StorageConfig,
    node: &str,
    storage_id: &str,
    vmid: u32,
    size_gib: u64,
) -> Result<String, String> {
    let storage = storages
        .storages
        .get(storage_id)
        .ok_or_else(|| format!("storage '{storage_id}' does not exist"))?;
    if !storage.is_usable_on(node) {
        return Err(format!(
            "storage '{storage_id}' is not available on node '{node}'"
        ));
    }
    if !storage.content.contains("images") {
        return Err(format!(
            "storage '{storage_id}' does not allow content 'images'"
        ));
    }
    let base = storage
        .path
        .as_deref()
        .ok_or_else(|| format!("storage '{storage_id}' has no path"))?;
    if size_gib == 0 {
        return Err("disk size must be at least 1 GiB".into());
    }
    let dir = image_dir(base, vmid);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let n = (0..)
        .find(|n| {
            !dir.join(format!("vm-{vmid}-disk-{n}.qcow2")).exists()
                && !dir.join(format!("vm-{vmid}-disk-{n}.raw")).exists()
        })
        .unwrap_or(0);
    let file = dir.join(format!("vm-{vmid}-disk-{n}.qcow2"));
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&file)
        .arg(format!("{size_gib}G"))
        .output()
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(format!("{storage_id}:{vmid}/vm-{vmid}-disk-{n}.qcow2"))
}

/// Turns creation syntax (`scsi0: local:4`, 4 GiB on `local`) into allocated volumes.
/// On failure every volume this call created is removed and the config is unchanged.
pub fn allocate_new_disks(
    cfg: &mut GuestConfig,
    storages: &StorageConfig,
    node: &str,
    vmid: u32,
) -> Result<(), QemuError> {
    let mut created: Vec<String> = Vec::new();
    let mut updated = cfg.options.clone();
    let result = (|| {
        for (key, value) in cfg.options.iter() {
            if !DISK_BUSES.iter().any(|b| {
                key.strip_prefix(b)
                    .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
            }) {
                continue;
            }
            let mut p = PropertyString::parse(value).map_err(|e| config_err(key, e.to_string()))?;
            let file = p.get("file", Some("file")).unwrap_or("").to_string();
            let Some((storage, size)) = file.split_once(':') else {
                continue;
            };
            let Ok(size_gib) = size.parse::<u64>() else {
                continue;
            };
            let volid = allocate(storages, node, storage, vmid, size_gib)
                .map_err(|e| config_err(key, e))?;
            created.push(volid.clone());
            p.items[0] = (None, volid);
            p.set("size", &format!("{size_gib}G"));
            updated.insert(key.clone(), p.to_string());
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            cfg.options = updated;
            Ok(())
        }
        Err(e) => {
            for volid in created {
                let _ = free(storages, node, &volid);
            }
            Err(e)
        }
    }
}

/// Deletes a volume.
pub fn free(storages: &StorageConfig, node: &str, volid: &str) -> Result<(), String> {
    let (path, _) = resolve(storages, node, volid)?;
    std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))
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

/// Lists the images of a storage (optionally of one guest).
pub fn list(
    storages: &StorageConfig,
    node: &str,
    storage_id: &str,
    vmid: Option<u32>,
) -> Result<Vec<VolumeInfo>, String> {
    let storage = storages
        .storages
        .get(storage_id)
        .ok_or_else(|| format!("storage '{storage_id}' does not exist"))?;
    if !storage.is_usable_on(node) {
        return Err(format!(
            "storage '{storage_id}' is not available on node '{node}'"
        ));
    }
    let images = Path::new(storage.path.as_deref().unwrap_or("/")).join("images");
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
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .collect();
        files.sort_by_key(|f| f.file_name());
        for file in files {
            let name = file.file_name().to_string_lossy().to_string();
            let info = Command::new("qemu-img")
                .args(["info", "--output=json", "-U"])
                .arg(file.path())
                .output()
                .map_err(|e| format!("qemu-img: {e}"))?;
            let v: Value = serde_json::from_slice(&info.stdout).unwrap_or(Value::Null);
            out.push(VolumeInfo {
                volid: format!("{storage_id}:{owner}/{name}"),
                vmid: owner,
                format: v["format"].as_str().unwrap_or("raw").to_string(),
                size: v["virtual-size"].as_u64().unwrap_or(0),
                used: v["actual-size"].as_u64().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str) -> (PathBuf, StorageConfig) {
        let dir = std::env::temp_dir().join(format!("ferrox-disk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = StorageConfig::parse(&format!(
            "dir: local\n\tpath {}\n\tcontent images,iso\n\ndir: isos\n\tpath {}/iso\n\tcontent iso\n",
            dir.display(),
            dir.display()
        ))
        .unwrap();
        (dir, cfg)
    }

    #[test]
    fn allocates_lists_and_frees_with_qemu_img() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            eprintln!("SKIPPED: qemu-img not installed (apt-get install qemu-utils)");
            return;
        }
        let (dir, storages) = setup("alloc");
        let mut cfg =
            GuestConfig::parse("scsi0: local:2\nvirtio1: local:1,cache=writeback\nmemory: 512\n")
                .unwrap();
        allocate_new_disks(&mut cfg, &storages, "n1", 100).unwrap();
        assert_eq!(
            cfg.options["scsi0"],
            "local:100/vm-100-disk-0.qcow2,size=2G"
        );
        assert_eq!(
            cfg.options["virtio1"],
            "local:100/vm-100-disk-1.qcow2,cache=writeback,size=1G"
        );
        let vols = list(&storages, "n1", "local", Some(100)).unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0].size, 2 << 30);
        assert_eq!(vols[0].format, "qcow2");
        let (path, format) = resolve(&storages, "n1", "local:100/vm-100-disk-0.qcow2").unwrap();
        assert!(path.exists() && format == "qcow2");
        free(&storages, "n1", "local:100/vm-100-disk-0.qcow2").unwrap();
        assert_eq!(list(&storages, "n1", "local", None).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn failed_allocation_leaves_nothing_behind() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            eprintln!("SKIPPED: qemu-img not installed (apt-get install qemu-utils)");
            return;
        }
        let (dir, storages) = setup("fail");
        let mut cfg = GuestConfig::parse("scsi0: local:1\nscsi1: isos:1\n").unwrap();
        let before = cfg.clone();
        match allocate_new_disks(&mut cfg, &storages, "n1", 101) {
            Err(QemuError::Config { key, message }) => {
                assert_eq!(key, "scsi1");
                assert!(message.contains("content 'images'"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg, before);
        assert!(list(&storages, "n1", "local", None).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn resolve_refuses_bad_volumes() {
        let (dir, storages) = setup("resolve");
        assert!(resolve(&storages, "n1", "nfs:100/vm-100-disk-0.qcow2")
            .unwrap_err()
            .contains("does not exist"));
        assert!(resolve(&storages, "n1", "local:../../etc/passwd").is_err());
        assert!(resolve(&storages, "n1", "local:/etc/shadow").is_err());
        assert!(resolve(&storages, "n1", "plain").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
