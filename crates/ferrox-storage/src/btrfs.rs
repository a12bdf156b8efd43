//! `btrfs` storages, laid out as Proxmox VE's btrfs plugin lays them out: a directory
//! storage on a btrfs file system whose raw images each live in a subvolume,
//! `<path>/images/<vmid>/vm-<vmid>-disk-<n>/disk.raw`, still named
//! `<storage>:<vmid>/vm-<vmid>-disk-<n>.raw`. A snapshot is a read-only btrfs snapshot of
//! that subvolume beside it (`vm-<vmid>-disk-<n>@<snapshot>`), a linked clone a writable
//! one; ISO images and backups are plain files as on `dir`.
//!
//! Images are raw only (as in Proxmox VE: a qcow2 file on btrfs would copy-on-write twice).

use crate::dir::{filesystem_space, DirStorage};
use crate::{BackupInfo, Space, Storage, StorageError, VolumeInfo};
use ferrox_types::{Storage as StorageSection, VolumeId, VolumeKind};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `statfs` magic of btrfs.
const BTRFS_MAGIC: i64 = 0x9123_683e;

pub struct BtrfsStorage {
    /// Everything that is not a raw image is kept as a `dir` storage keeps it.
    dir: DirStorage,
    base: PathBuf,
    /// `nocow`: new image files get the NOCOW attribute (no data checksums, as Proxmox VE
    /// warns).
    nocow: bool,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> StorageError {
    let what = what.to_string();
    move |source| StorageError::Io { what, source }
}

/// Runs `btrfs -q <args>`; its stderr is the error.
fn btrfs(args: &[&std::ffi::OsStr]) -> Result<(), StorageError> {
    let out = Command::new("btrfs")
        .arg("-q")
        .args(args)
        .output()
        .map_err(io("btrfs (install btrfs-progs)"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(StorageError::Tool(format!(
        "btrfs {} failed: {}",
        args.iter()
            .take(2)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn subvolume(args: &[&str], paths: &[&Path]) -> Result<(), StorageError> {
    let mut all: Vec<&std::ffi::OsStr> = vec!["subvolume".as_ref()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    all.push("--".as_ref());
    all.extend(paths.iter().map(|p| p.as_os_str()));
    btrfs(&all)
}

impl BtrfsStorage {
    /// Refuses a path that is not on btrfs, as Proxmox VE does when it activates the
    /// storage.
    pub fn new(section: &StorageSection) -> Result<BtrfsStorage, StorageError> {
        let dir = DirStorage::new(section)?;
        let base = PathBuf::from(section.path.as_deref().unwrap_or_default());
        check_btrfs(&base).map_err(|e| {
            StorageError::Invalid(format!("storage '{}' is not usable: {e}", section.id))
        })?;
        Ok(BtrfsStorage {
            dir,
            base,
            nocow: section.other.get("nocow").is_some_and(|v| v == "1"),
        })
    }

    /// The subvolume of a raw image: its volume name without `.raw`.
    fn subvolume_of(&self, volume: &VolumeId) -> Result<PathBuf, StorageError> {
        let own = volume.own_file();
        match (volume.kind(), own.strip_suffix(".raw")) {
            (Some(VolumeKind::Image { .. }), Some(stem)) => Ok(self.base.join("images").join(stem)),
            _ => Err(StorageError::Invalid(format!(
                "'{}:{}' is not a raw image (btrfs storage '{}' holds raw images only)",
                volume.storage,
                volume.name,
                self.id()
            ))),
        }
    }

    fn is_raw_image(volume: &VolumeId) -> bool {
        matches!(volume.kind(), Some(VolumeKind::Image { .. })) && volume.format() == "raw"
    }

    fn snapshot_of(subvol: &Path, name: &str) -> PathBuf {
        let mut s = subvol.as_os_str().to_owned();
        s.push(format!("@{name}"));
        PathBuf::from(s)
    }

    /// The snapshots of a subvolume (`<subvol>@<name>` beside it).
    fn snapshots(subvol: &Path) -> Vec<PathBuf> {
        let (Some(dir), Some(stem)) = (subvol.parent(), subvol.file_name()) else {
            return Vec::new();
        };
        let prefix = format!("{}@", stem.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// A new subvolume holding an empty raw file of `bytes` (sparse); removed again when
    /// the file cannot be made.
    fn create_image(&self, subvol: &Path, bytes: u64) -> Result<(), StorageError> {
        if subvol.exists() {
            return Err(StorageError::Invalid(format!(
                "disk image '{}' already exists",
                subvol.display()
            )));
        }
        subvolume(&["create"], &[subvol])?;
        let file = subvol.join("disk.raw");
        let made = (|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .map_err(io(file.display()))?;
            if self.nocow {
                // Only takes effect while the file is empty.
                rustix::fs::ioctl_setflags(&f, rustix::fs::IFlags::NOCOW)
                    .map_err(|e| io(format!("{}: NOCOW", file.display()))(e.into()))?;
            }
            f.set_len(bytes).map_err(io(file.display()))
        })();
        if made.is_err() {
            let _ = subvolume(&["delete"], &[subvol]);
        }
        made
    }
}

/// Refuses a path that is not on a btrfs file system.
pub fn check_btrfs(path: &Path) -> Result<(), String> {
    let fs = rustix::fs::statfs(path).map_err(|e| format!("'{}': {e}", path.display()))?;
    if fs.f_type as i64 != BTRFS_MAGIC {
        return Err(format!("'{}' is not a btrfs file system", path.display()));
    }
    Ok(())
}

impl Storage for BtrfsStorage {
    fn id(&self) -> &str {
        self.dir.id()
    }

    fn shared(&self) -> bool {
        self.dir.shared()
    }

    fn content(&self) -> &BTreeSet<String> {
        self.dir.content()
    }

    fn default_format(&self) -> &str {
        "raw"
    }

    fn formats(&self) -> &[&'static str] {
        &["raw"]
    }

    fn path(&self, volume: &VolumeId) -> Result<(PathBuf, String), StorageError> {
        if Self::is_raw_image(volume) {
            return Ok((self.subvolume_of(volume)?.join("disk.raw"), "raw".into()));
        }
        self.dir.path(volume)
    }

    fn allocate(&self, vmid: u32, bytes: u64, format: &str) -> Result<String, StorageError> {
        self.dir.check_images()?;
        if format != "raw" {
            return Err(StorageError::Invalid(format!(
                "format '{format}' is not possible on btrfs storage '{}' (raw only)",
                self.id()
            )));
        }
        if bytes == 0 {
            return Err(StorageError::Invalid("a disk needs a size above 0".into()));
        }
        let (dir, file, volid) = self.dir.new_image_name(vmid, "raw")?;
        let stem = file.strip_suffix(".raw").unwrap_or(&file);
        self.create_image(&dir.join(stem), bytes)?;
        Ok(volid)
    }

    fn allocate_state(&self, vmid: u32, snapshot: &str) -> Result<String, StorageError> {
        self.dir.check_images()?;
        let volid = format!("{}:{vmid}/vm-{vmid}-state-{snapshot}.raw", self.id());
        let volume = VolumeId::parse(&volid)
            .ok_or_else(|| StorageError::Invalid(format!("'{snapshot}' makes no volume name")))?;
        let subvol = self.subvolume_of(&volume)?;
        if let Some(parent) = subvol.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent.display()))?;
        }
        self.create_image(&subvol, 0)?;
        Ok(volid)
    }

    /// With its snapshots, and the guest's folder when it is left empty.
    fn free(&self, volume: &VolumeId) -> Result<(), StorageError> {
        if !Self::is_raw_image(volume) {
            return self.dir.free(volume);
        }
        let subvol = self.subvolume_of(volume)?;
        if !subvol.exists() {
            return Err(io(subvol.display())(std::io::ErrorKind::NotFound.into()));
        }
        let mut all = Self::snapshots(&subvol);
        all.push(subvol.clone());
        let paths: Vec<&Path> = all.iter().map(PathBuf::as_path).collect();
        subvolume(&["delete"], &paths)?;
        if let Some(dir) = subvol.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    /// A linked clone on btrfs is a snapshot, independent of its base once taken.
    fn check_free(&self, volume: &VolumeId) -> Result<(), StorageError> {
        if Self::is_raw_image(volume) {
            return Ok(());
        }
        self.dir.check_free(volume)
    }

    /// Renames the subvolume `vm-…` to `base-…` and makes it read-only.
    fn create_base(&self, volume: &VolumeId) -> Result<String, StorageError> {
        if volume.is_base() || volume.base().is_some() {
            return Err(StorageError::Invalid(format!(
                "'{}:{}' is a base image or builds on one",
                volume.storage, volume.name
            )));
        }
        let subvol = self.subvolume_of(volume)?;
        let new = VolumeId {
            storage: volume.storage.clone(),
            name: volume.name.replacen("/vm-", "/base-", 1),
        };
        let new_subvol = self.subvolume_of(&new)?;
        if new_subvol.exists() {
            return Err(StorageError::Invalid(format!(
                "'{}' exists already",
                new_subvol.display()
            )));
        }
        std::fs::rename(&subvol, &new_subvol).map_err(io(subvol.display()))?;
        btrfs(&[
            "property".as_ref(),
            "set".as_ref(),
            new_subvol.as_os_str(),
            "ro".as_ref(),
            "true".as_ref(),
        ])?;
        Ok(format!("{}:{}", new.storage, new.name))
    }

    /// A writable snapshot of the base's subvolume. Named as an ordinary image: unlike a
    /// qcow2 clone it does not need its base any more (as in Proxmox VE).
    fn clone_image(&self, base: &VolumeId, vmid: u32) -> Result<String, StorageError> {
        if !base.is_base() {
            return Err(StorageError::Invalid(format!(
                "linked clones need a base image (a template's disk); '{}:{}' is not one",
                base.storage, base.name
            )));
        }
        self.dir.check_images()?;
        let source = self.subvolume_of(base)?;
        let (dir, file, volid) = self.dir.new_image_name(vmid, "raw")?;
        let stem = file.strip_suffix(".raw").unwrap_or(&file);
        subvolume(&["snapshot"], &[&source, &dir.join(stem)])?;
        Ok(volid)
    }

    fn list(&self, vmid: Option<u32>) -> Result<Vec<VolumeInfo>, StorageError> {
        let mut out = self.dir.list(vmid)?;
        let Ok(dirs) = std::fs::read_dir(self.base.join("images")) else {
            return Ok(out);
        };
        for dir in dirs.flatten() {
            let Some(owner) = dir.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if vmid.is_some_and(|v| v != owner) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Snapshots (`@`) and the temporary subvolume of a rollback are not images.
                let volid = format!("{}:{owner}/{name}.raw", self.id());
                let Some(volume) = VolumeId::parse(&volid).filter(|_| !name.contains(['@', '.']))
                else {
                    continue;
                };
                let Ok(meta) = std::fs::metadata(entry.path().join("disk.raw")) else {
                    continue;
                };
                use std::os::unix::fs::MetadataExt;
                out.push(VolumeInfo {
                    volid: format!("{}:{}", volume.storage, volume.name),
                    vmid: owner,
                    format: "raw".into(),
                    size: meta.len(),
                    used: meta.blocks() * 512,
                });
            }
        }
        out.sort_by(|a, b| a.volid.cmp(&b.volid));
        Ok(out)
    }

    fn space(&self) -> Space {
        filesystem_space(&self.base)
    }

    fn check_snapshot(&self, volume: &VolumeId) -> Result<(), StorageError> {
        self.subvolume_of(volume).map(drop)
    }

    fn snapshot_image(
        &self,
        volume: &VolumeId,
        name: &str,
    ) -> Result<(PathBuf, String, Option<String>), StorageError> {
        let snapshot = Self::snapshot_of(&self.subvolume_of(volume)?, name);
        Ok((snapshot.join("disk.raw"), "raw".into(), None))
    }

    /// Safe while the guest runs: btrfs snapshots are atomic, and the caller pauses the
    /// guest (QEMU flushes its writes when it stops).
    fn snapshot_create(&self, volume: &VolumeId, name: &str) -> Result<(), StorageError> {
        let subvol = self.subvolume_of(volume)?;
        let snapshot = Self::snapshot_of(&subvol, name);
        if snapshot.exists() {
            return Err(StorageError::Invalid(format!(
                "'{}:{}' already has a snapshot '{name}'",
                volume.storage, volume.name
            )));
        }
        subvolume(&["snapshot", "-r"], &[&subvol, &snapshot])
    }

    /// A writable copy of the snapshot takes the image's place in one `RENAME_EXCHANGE`,
    /// so the image is never missing, whatever fails (as Proxmox VE does it).
    fn snapshot_rollback(&self, volume: &VolumeId, name: &str) -> Result<(), StorageError> {
        let subvol = self.subvolume_of(volume)?;
        let snapshot = Self::snapshot_of(&subvol, name);
        if !snapshot.exists() {
            return Err(StorageError::Invalid(format!(
                "'{}:{}' has no snapshot '{name}'",
                volume.storage, volume.name
            )));
        }
        let mut tmp = subvol.as_os_str().to_owned();
        tmp.push(format!(".tmp.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        subvolume(&["snapshot"], &[&snapshot, &tmp])?;
        let exchanged = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &subvol,
            rustix::fs::RenameFlags::EXCHANGE,
        );
        // After the exchange `tmp` holds the state rolled away from; before, the copy.
        let _ = subvolume(&["delete"], &[&tmp]);
        exchanged.map_err(|e| io(subvol.display())(e.into()))
    }

    /// Deleting what is not there is done: a half-taken snapshot is cleaned up this way.
    fn snapshot_delete(&self, volume: &VolumeId, name: &str) -> Result<(), StorageError> {
        let snapshot = Self::snapshot_of(&self.subvolume_of(volume)?, name);
        if !snapshot.exists() {
            return Ok(());
        }
        subvolume(&["delete"], &[&snapshot])
    }

    fn iso_path(&self, file: &str) -> Result<PathBuf, StorageError> {
        self.dir.iso_path(file)
    }

    fn list_isos(&self) -> Result<Vec<(String, u64, i64)>, StorageError> {
        self.dir.list_isos()
    }

    fn backup_path(&self, file: &str) -> Result<PathBuf, StorageError> {
        self.dir.backup_path(file)
    }

    fn list_backups(&self, vmid: Option<u32>) -> Result<Vec<BackupInfo>, StorageError> {
        self.dir.list_backups(vmid)
    }

    fn attributes(&self, volume: &VolumeId) -> Result<crate::VolumeAttributes, StorageError> {
        self.dir.attributes(volume)
    }

    fn set_attributes(
        &self,
        volume: &VolumeId,
        notes: Option<&str>,
        protected: Option<bool>,
    ) -> Result<(), StorageError> {
        self.dir.set_attributes(volume, notes, protected)
    }
}

/// A btrfs file system on a loop device for tests and benchmarks, unmounted and removed
/// when dropped.
#[cfg(any(test, feature = "test-support"))]
pub mod scratch {
    /// Whether `path` is the root of a btrfs subvolume (btrfs gives each one inode 256).
    pub fn is_subvolume(path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == 256)
    }

    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct ScratchBtrfs {
        dir: PathBuf,
        mount: PathBuf,
    }

    fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    impl ScratchBtrfs {
        /// A fresh file system of `mib` MiB (btrfs needs about 110 at least); the error says
        /// what this machine lacks (root, btrfs-progs, loop devices).
        pub fn create(mib: u64) -> Result<ScratchBtrfs, String> {
            if !rustix::process::geteuid().is_root() {
                return Err("mounting a loop device needs root".into());
            }
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ferrox-btrfs-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mount = dir.join("mnt");
            std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
            let scratch = ScratchBtrfs { dir, mount };
            let image = scratch.dir.join("fs.img");
            std::fs::File::create(&image)
                .and_then(|f| f.set_len(mib << 20))
                .map_err(|e| e.to_string())?;
            run("mkfs.btrfs", &["-q".as_ref(), image.as_os_str()])
                .map_err(|e| format!("{e} (apt-get install btrfs-progs)"))?;
            run(
                "mount",
                &[
                    "-o".as_ref(),
                    "loop".as_ref(),
                    image.as_os_str(),
                    scratch.mount.as_os_str(),
                ],
            )?;
            Ok(scratch)
        }

        /// Where it is mounted.
        pub fn path(&self) -> &Path {
            &self.mount
        }
    }

    impl Drop for ScratchBtrfs {
        fn drop(&mut self) {
            // The loop device goes with the mount (autoclear); lazily if still busy.
            if run("umount", &[self.mount.as_os_str()]).is_err() {
                let _ = run("umount", &["-l".as_ref(), self.mount.as_os_str()]);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scratch::{is_subvolume, ScratchBtrfs};
    use super::*;
    use ferrox_types::StorageConfig;

    fn scratch() -> Option<ScratchBtrfs> {
        match ScratchBtrfs::create(256) {
            Ok(fs) => Some(fs),
            Err(e) => {
                eprintln!("SKIPPED: no btrfs to test on: {e}");
                None
            }
        }
    }

    fn storage(path: &Path) -> Box<dyn Storage> {
        let cfg = StorageConfig::parse(&format!(
            "btrfs: fast\n\tpath {}\n\tcontent images,iso,backup\n",
            path.display()
        ))
        .unwrap();
        crate::plugin(&cfg.storages["fast"], "n1").unwrap()
    }

    fn volume(volid: &str) -> VolumeId {
        VolumeId::parse(volid).unwrap()
    }

    fn write(path: &Path, byte: u8) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(&[byte; 4096], 0).unwrap();
    }

    fn first_byte(path: &Path) -> u8 {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 1];
        std::fs::File::open(path)
            .unwrap()
            .read_exact_at(&mut b, 0)
            .unwrap();
        b[0]
    }

    #[test]
    fn a_path_that_is_not_btrfs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        if check_btrfs(dir.path()).is_ok() {
            eprintln!("SKIPPED: the temporary folder is on btrfs itself");
            return;
        }
        let cfg = StorageConfig::parse(&format!("btrfs: fast\n\tpath {}\n", dir.path().display()))
            .unwrap();
        let e = crate::plugin(&cfg.storages["fast"], "n1")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a btrfs file system"), "{e}");
    }

    #[test]
    fn raw_images_live_in_subvolumes_with_snapshots_beside_them() {
        let Some(fs) = scratch() else { return };
        let fast = storage(fs.path());
        let e = fast
            .allocate(100, 1 << 20, "qcow2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("raw only"), "{e}");

        let volid = fast.allocate(100, 8 << 20, fast.default_format()).unwrap();
        assert_eq!(volid, "fast:100/vm-100-disk-0.raw");
        let disk = volume(&volid);
        let subvol = fs.path().join("images/100/vm-100-disk-0");
        assert!(is_subvolume(&subvol));
        let (file, format) = fast.path(&disk).unwrap();
        assert_eq!(
            (file.clone(), format.as_str()),
            (subvol.join("disk.raw"), "raw")
        );
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 8 << 20);
        assert!(!fast.snapshots_in_qemu(&disk));
        // the next disk does not take the subvolume's name
        assert_eq!(
            fast.allocate(100, 1 << 20, "raw").unwrap(),
            "fast:100/vm-100-disk-1.raw"
        );

        write(&file, 0x11);
        fast.snapshot_create(&disk, "first").unwrap();
        assert!(is_subvolume(
            &fs.path().join("images/100/vm-100-disk-0@first")
        ));
        let e = fast
            .snapshot_create(&disk, "first")
            .unwrap_err()
            .to_string();
        assert!(e.contains("already has a snapshot 'first'"), "{e}");
        write(&file, 0x22);
        let (snap_file, _, selector) = fast.snapshot_image(&disk, "first").unwrap();
        assert_eq!((first_byte(&snap_file), selector), (0x11, None));
        // snapshots are not images
        let listed: Vec<String> = fast
            .list(Some(100))
            .unwrap()
            .into_iter()
            .map(|v| v.volid)
            .collect();
        assert_eq!(
            listed,
            ["fast:100/vm-100-disk-0.raw", "fast:100/vm-100-disk-1.raw"]
        );

        fast.snapshot_rollback(&disk, "first").unwrap();
        assert_eq!(first_byte(&file), 0x11);
        let leftovers: Vec<_> = std::fs::read_dir(fs.path().join("images/100"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let e = fast
            .snapshot_rollback(&disk, "nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no snapshot 'nope'"), "{e}");

        fast.snapshot_delete(&disk, "first").unwrap();
        fast.snapshot_delete(&disk, "first").unwrap();
        assert!(!fs.path().join("images/100/vm-100-disk-0@first").exists());

        // freeing takes the snapshots along
        fast.snapshot_create(&disk, "again").unwrap();
        fast.free(&disk).unwrap();
        assert!(!subvol.exists() && !fs.path().join("images/100/vm-100-disk-0@again").exists());
    }

    #[test]
    fn templates_are_read_only_subvolumes_and_clones_writable_snapshots() {
        let Some(fs) = scratch() else { return };
        let fast = storage(fs.path());
        let disk = volume(&fast.allocate(100, 4 << 20, "raw").unwrap());
        write(&fast.path(&disk).unwrap().0, 0x5a);
        let base = fast.create_base(&disk).unwrap();
        assert_eq!(base, "fast:100/base-100-disk-0.raw");
        let base = volume(&base);
        let base_file = fast.path(&base).unwrap().0;
        assert_eq!(first_byte(&base_file), 0x5a);
        assert!(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&base_file)
                .is_err(),
            "a base image is read-only"
        );
        let clone = fast.clone_image(&base, 101).unwrap();
        assert_eq!(clone, "fast:101/vm-101-disk-0.raw");
        let clone_file = fast.path(&volume(&clone)).unwrap().0;
        assert_eq!(first_byte(&clone_file), 0x5a);
        write(&clone_file, 0x01);
        assert_eq!(
            first_byte(&base_file),
            0x5a,
            "the clone writes its own copy"
        );
        // an independent snapshot: the base may go while the clone stays
        fast.check_free(&base).unwrap();
        fast.free(&base).unwrap();
        assert_eq!(first_byte(&clone_file), 0x01);
        let e = fast
            .clone_image(&volume(&clone), 102)
            .unwrap_err()
            .to_string();
        assert!(e.contains("need a base image"), "{e}");
    }
}
