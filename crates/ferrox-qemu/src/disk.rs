//! A guest's disks on its storages: turning creation syntax (`scsi0: local:4`) into
//! allocated volumes through the storage plugins (`ferrox-storage`), all or nothing.

use crate::QemuError;
use ferrox_types::{GuestConfig, PropertyString, StorageConfig};

fn config_err(key: &str, message: impl Into<String>) -> QemuError {
    QemuError::Config {
        key: key.to_string(),
        message: message.into(),
    }
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
            if !ferrox_types::guest_config::is_disk_key(key) {
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
            // As Proxmox VE: the drive's `format`, else the storage's default; the
            // format is in the new volume's name, so the option goes.
            let requested = p.get("format", None).map(str::to_string);
            if let Some(f) = &requested {
                if !ferrox_types::storage::IMAGE_FORMATS.contains(&f.as_str()) {
                    return Err(config_err(
                        key,
                        format!("format '{f}' is not one of qcow2, raw, vmdk"),
                    ));
                }
            }
            let volid = ferrox_storage::open(storages, node, storage)
                .and_then(|s| {
                    let format = requested.as_deref().unwrap_or(s.default_format());
                    s.allocate(vmid, size_gib << 30, format)
                })
                .map_err(|e| config_err(key, e.to_string()))?;
            created.push(volid.clone());
            p.remove("format");
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
                let _ = ferrox_storage::free(storages, node, &volid);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

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
        let mut cfg = GuestConfig::parse(
            "scsi0: local:2\nvirtio1: local:1,cache=writeback\nvirtio2: local:1,format=raw\nmemory: 512\n",
        )
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
        assert_eq!(
            cfg.options["virtio2"],
            "local:100/vm-100-disk-2.raw,size=1G"
        );
        let local = ferrox_storage::open(&storages, "n1", "local").unwrap();
        let vols = local.list(Some(100)).unwrap();
        assert_eq!(vols.len(), 3);
        assert_eq!(vols[0].size, 2 << 30);
        assert_eq!(vols[0].format, "qcow2");
        let (path, format) =
            ferrox_storage::resolve(&storages, "n1", "local:100/vm-100-disk-0.qcow2").unwrap();
        assert!(path.exists() && format == "qcow2");
        ferrox_storage::free(&storages, "n1", "local:100/vm-100-disk-0.qcow2").unwrap();
        assert_eq!(local.list(None).unwrap().len(), 2);
        let mut bad = GuestConfig::parse("scsi0: local:1,format=qed\n").unwrap();
        let e = allocate_new_disks(&mut bad, &storages, "n1", 101).unwrap_err();
        assert!(
            e.to_string().contains("scsi0") && e.to_string().contains("qed"),
            "{e}"
        );
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
        let local = ferrox_storage::open(&storages, "n1", "local").unwrap();
        assert!(local.list(None).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
