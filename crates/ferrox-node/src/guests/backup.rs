//! Backups and restores (Proxmox VE's `vzdump` and `qmrestore`): a guest's disks and
//! config into an archive on a storage with `backup` content (format in
//! `ferrox_storage::backup`), and back into a new or the same guest.
//!
//! Modes as vzdump's: `snapshot` copies a running guest's disks as of one instant while it
//! runs (QEMU's `drive-backup` of all disks in one transaction); `suspend` pauses it while
//! the copies start; `stop` shuts it down, copies, and starts it again. A stopped guest's
//! images are read directly. The guest carries `lock: backup` meanwhile.

use super::snapshot::snapshot_disks;
use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_storage::backup::{self, DiskSource, Retention};
use ferrox_types::{GuestConfig, PropertyString, StorageConfig, VolumeId};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long one guest's disk copies may take.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How long `stop` mode waits for a guest to shut down before it is stopped.
const STOP_MODE_SHUTDOWN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMode {
    Snapshot,
    Suspend,
    Stop,
}

impl BackupMode {
    pub fn parse(text: &str) -> Option<BackupMode> {
        match text {
            "snapshot" => Some(BackupMode::Snapshot),
            "suspend" => Some(BackupMode::Suspend),
            "stop" => Some(BackupMode::Stop),
            _ => None,
        }
    }
}

/// A checked `vzdump` request.
#[derive(Debug, Clone)]
pub struct BackupJob {
    pub vmids: Vec<u32>,
    pub storage: String,
    pub mode: BackupMode,
    pub retention: Option<Retention>,
    /// Mark the new archives protected (`protected=1`).
    pub protected: bool,
    /// Whether `max-protected-backups` is unset means unlimited for whoever asked
    /// (Datastore.Allocate on the storage), as Proxmox VE decides it.
    pub may_allocate: bool,
    /// vzdump's `notes-template`, checked.
    pub notes_template: Option<String>,
}

/// Refuses protecting one more backup of `vmid` on a storage than its
/// `max-protected-backups` allows (unset: unlimited for `may_allocate` callers, else 5).
pub fn check_protected_limit(
    storage: &dyn ferrox_storage::Storage,
    section: &ferrox_types::Storage,
    vmid: u32,
    may_allocate: bool,
) -> Result<(), String> {
    let limit = match section
        .other
        .get("max-protected-backups")
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(n) => n,
        None if may_allocate => -1,
        None => 5,
    };
    if limit < 0 {
        return Ok(());
    }
    let protected = storage
        .list_backups(Some(vmid))
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|b| b.protected)
        .count() as i64;
    if protected >= limit {
        return Err(format!(
            "The number of protected backups per guest is limited to {limit} on storage '{}'",
            section.id
        ));
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The disks a backup covers: every disk but CD drives, empty drives and `backup=0`.
fn backed_up_disks(cfg: &GuestConfig) -> Vec<super::snapshot::SnapshotDisk> {
    snapshot_disks(&cfg.options)
        .into_iter()
        .filter(|d| {
            PropertyString::parse(&cfg.options[&d.key])
                .ok()
                .and_then(|p| p.get("backup", None).map(|b| b != "0"))
                .unwrap_or(true)
        })
        .collect()
}

/// Removes a folder of temporary files when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Node {
    /// The worker of `vzdump`: each guest in turn; a failed guest does not stop the others,
    /// but fails the task.
    pub fn run_backup(&self, job: &BackupJob, log: &TaskLog) -> Result<(), TaskError> {
        let mut failed = Vec::new();
        for vmid in &job.vmids {
            log.log(format!("Starting Backup of VM {vmid} (qemu)"));
            let started = Instant::now();
            match self.backup_guest(*vmid, job, log) {
                Ok(volid) => log.log(format!(
                    "Finished Backup of VM {vmid} ({:.1} s): {volid}",
                    started.elapsed().as_secs_f64()
                )),
                Err(e) => {
                    log.warn(format!("Backup of VM {vmid} failed - {e}"));
                    failed.push(vmid.to_string());
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("job errors: backup of VM {} failed", failed.join(", ")).into())
        }
    }

    fn backup_guest(&self, vmid: u32, job: &BackupJob, log: &TaskLog) -> Result<String, String> {
        let lock = self.guests.lock(vmid);
        let held = lock.hold();
        let cfg = self.guest_config(vmid).map_err(|e| e.message)?;
        if let Some(l) = cfg.options.get("lock") {
            return Err(format!("VM is locked ({l})"));
        }
        if cfg.options.get("template").map(String::as_str) == Some("1") {
            log.log("VM is a template: backing up its base images");
        }
        let storages = self.storage_config().map_err(|e| e.message)?;
        let node = self.opts.node_name.clone();
        let target =
            ferrox_storage::open(&storages, &node, &job.storage).map_err(|e| e.to_string())?;
        if job.protected {
            check_protected_limit(
                &*target,
                &storages.storages[&job.storage],
                vmid,
                job.may_allocate,
            )?;
        }
        // Names have a resolution of one second: a second backup of the guest within the
        // same second waits for the next, so no archive is ever replaced.
        let (ctime, name, archive) = loop {
            let ctime = now();
            let name = backup::archive_name(vmid, ctime);
            let archive = target.backup_path(&name).map_err(|e| e.to_string())?;
            if !archive.exists() {
                break (ctime, name, archive);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let scratch = Scratch(PathBuf::from(format!("{}.d", archive.display())));
        std::fs::create_dir_all(&scratch.0).map_err(|e| format!("{}: {e}", scratch.0.display()))?;
        let disks = backed_up_disks(&cfg);
        for d in &disks {
            if VolumeId::parse(&d.volid).is_none() {
                return Err(format!(
                    "{}: '{}' is not a storage volume: it cannot be backed up",
                    d.key, d.volid
                ));
            }
        }
        let mut locked = (*cfg).clone();
        locked.options.insert("lock".into(), "backup".into());
        self.guests
            .write_config(vmid, &locked)
            .map_err(|e| e.message)?;
        let raws: Vec<PathBuf> = disks
            .iter()
            .map(|d| scratch.0.join(format!("{}.raw", d.key)))
            .collect();
        let copied =
            self.copy_disks_for_backup(vmid, &cfg, job.mode, &disks, &raws, &storages, log);
        // The guest is back as it was (running again in stop mode): unlock it.
        if let Some(current) = self.guests.config(vmid) {
            let mut unlocked = (*current).clone();
            unlocked.options.remove("lock");
            let _ = self.guests.write_config(vmid, &unlocked);
        }
        drop(held);
        copied?;
        // The config as it was, without snapshots (their disks are not in the archive).
        let mut archived = (*cfg).clone();
        archived.snapshots.clear();
        archived.options.remove("parent");
        let formats: Vec<String> = disks
            .iter()
            .map(|d| {
                VolumeId::parse(&d.volid)
                    .map(|v| v.format().to_string())
                    .unwrap_or_else(|| "raw".into())
            })
            .collect();
        let sources: Vec<DiskSource<'_>> = disks
            .iter()
            .zip(&raws)
            .zip(&formats)
            .map(|((d, raw), format)| DiskSource {
                key: &d.key,
                volid: &d.volid,
                format,
                raw,
            })
            .collect();
        let started = Instant::now();
        let manifest = backup::write_archive(&archive, vmid, ctime, &archived.to_text(), &sources)
            .map_err(|e| e.to_string())?;
        let data: u64 = manifest.disks.iter().map(|d| d.size).sum();
        let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        log.log(format!(
            "archive {name}: {:.0} MiB of disk data in {secs:.1} s ({:.0} MiB/s), {:.1} MiB compressed",
            mib(data),
            mib(data) / secs,
            mib(size)
        ));
        let volid = format!("{}:backup/{name}", job.storage);
        let notes = match &job.notes_template {
            Some(template) => {
                let vmid_text = vmid.to_string();
                let cluster = self.store.cluster_name().unwrap_or_default();
                let vars = [
                    ("cluster", cluster.as_str()),
                    ("guestname", cfg.name().unwrap_or("")),
                    ("node", node.as_str()),
                    ("vmid", vmid_text.as_str()),
                ];
                Some(backup::notes_from_template(template, &vars)?)
            }
            None => None,
        };
        if notes.is_some() || job.protected {
            let volume = VolumeId::parse(&volid).ok_or("archive name")?;
            target
                .set_attributes(&volume, notes.as_deref(), job.protected.then_some(true))
                .map_err(|e| e.to_string())?;
        }
        if let Some(retention) = &job.retention {
            self.prune_backups(vmid, &job.storage, retention, log)?;
        }
        Ok(volid)
    }

    /// The raw bytes of each disk as of one instant, into `raws`.
    #[allow(clippy::too_many_arguments)]
    fn copy_disks_for_backup(
        &self,
        vmid: u32,
        cfg: &GuestConfig,
        mode: BackupMode,
        disks: &[super::snapshot::SnapshotDisk],
        raws: &[PathBuf],
        storages: &StorageConfig,
        log: &TaskLog,
    ) -> Result<(), String> {
        let node = &self.opts.node_name;
        let offline = |log: &TaskLog| -> Result<(), String> {
            for (d, raw) in disks.iter().zip(raws) {
                let (path, format) =
                    ferrox_storage::resolve(storages, node, &d.volid).map_err(|e| e.to_string())?;
                ferrox_storage::export_raw((&path, &format), raw)
                    .map_err(|e| format!("{}: {e}", d.key))?;
                log.log(format!("{}: {} read", d.key, d.volid));
            }
            Ok(())
        };
        let Some(process) = self.guests.process(vmid) else {
            log.log("VM is stopped: reading its images");
            return offline(log);
        };
        if mode == BackupMode::Stop {
            log.log(format!("stop mode: shutting VM {vmid} down"));
            super::shutdown_process(&process, STOP_MODE_SHUTDOWN, true, log)
                .map_err(|e| e.to_string())?;
            self.guests.mark_stopped(vmid);
            let copied = offline(log);
            log.log(format!("starting VM {vmid} again"));
            let restarted = self
                .launch_guest(vmid, cfg, None, log)
                .map_err(|e| e.to_string());
            copied?;
            return restarted;
        }
        let mut qmp = process.qmp().map_err(|e| e.to_string())?;
        let paused = mode == BackupMode::Suspend;
        if paused {
            qmp.execute("stop", None).map_err(|e| e.to_string())?;
            log.log("suspend mode: VM paused while the copies start");
        }
        let drives: Vec<(String, PathBuf)> = disks
            .iter()
            .zip(raws)
            .map(|(d, raw)| (format!("drive-{}", d.key), raw.clone()))
            .collect();
        let started = ferrox_qemu::blockjob::start_backups(&mut qmp, &drives);
        if paused {
            if let Err(e) = qmp.execute("cont", None) {
                log.warn(format!("resuming VM {vmid}: {e}"));
            }
        }
        let ids = started.map_err(|e| e.to_string())?;
        log.log(format!(
            "{} disk(s): copying as of now while the VM runs",
            ids.len()
        ));
        ferrox_qemu::blockjob::wait_done(&mut qmp, &ids, BACKUP_TIMEOUT, &mut |done, total| {
            log.log(format!("backup: {:.0} of {:.0} MiB", mib(done), mib(total)))
        })
        .map_err(|e| e.to_string())
    }

    /// Removes the backups of `vmid` on `storage` that `retention` does not keep.
    pub fn prune_backups(
        &self,
        vmid: u32,
        storage: &str,
        retention: &Retention,
        log: &TaskLog,
    ) -> Result<(), String> {
        let storages = self.storage_config().map_err(|e| e.message)?;
        let s = ferrox_storage::open(&storages, &self.opts.node_name, storage)
            .map_err(|e| e.to_string())?;
        let entries: Vec<backup::BackupEntry> = s
            .list_backups(Some(vmid))
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|b| backup::BackupEntry {
                volid: b.volid,
                ctime: b.ctime,
                protected: b.protected,
            })
            .collect();
        for volid in backup::prune(&entries, retention) {
            match ferrox_storage::free(&storages, &self.opts.node_name, &volid) {
                Ok(()) => log.log(format!("prune: removed {volid}")),
                Err(e) => log.warn(format!("prune: could not remove {volid}: {e}")),
            }
        }
        Ok(())
    }

    /// Starts a restore (`POST /nodes/{node}/qemu` with `archive`): the vmid is reserved
    /// (`lock: create`, on the existing config when it is replaced) before the task.
    #[allow(clippy::too_many_arguments)]
    pub fn start_restore(
        self: &std::sync::Arc<Self>,
        vmid: u32,
        archive: String,
        storage: Option<String>,
        force: bool,
        unique: bool,
        start: bool,
        auth_id: &str,
    ) -> Result<String, ApiError> {
        let old = {
            let lock = self.guests.lock(vmid);
            let _held = lock.hold();
            self.check_restore(vmid, &archive, force)?;
            let old = self.guests.config(vmid).map(|c| (*c).clone());
            let mut reserved = old.clone().unwrap_or_default();
            reserved.options.insert("lock".into(), "create".into());
            self.guests.write_config(vmid, &reserved)?;
            old
        };
        let node = std::sync::Arc::clone(self);
        let keep = old.clone();
        let spawned = self
            .tasks
            .spawn("qmrestore", &vmid.to_string(), auth_id, move |log| {
                node.restore_guest(vmid, old, &archive, storage.as_deref(), unique, log)?;
                if start {
                    node.start_guest(vmid, log)?;
                }
                Ok(())
            });
        if spawned.is_err() {
            match keep {
                Some(cfg) => {
                    let _ = self.guests.write_config(vmid, &cfg);
                }
                None => {
                    let _ = self.guests.remove_config(vmid);
                }
            }
        }
        spawned
    }

    /// Checks a restore before its task: the archive is a backup on a storage here, and
    /// an existing guest is replaced only with `force` and while stopped.
    pub fn check_restore(&self, vmid: u32, archive: &str, force: bool) -> Result<(), ApiError> {
        let volume = VolumeId::parse(archive)
            .filter(|v| v.kind() == Some(ferrox_types::VolumeKind::Backup))
            .ok_or_else(|| {
                ApiError::param(
                    "archive",
                    format!("'{archive}' is not a backup volume (storage:backup/file)"),
                )
            })?;
        let storages = self.storage_config()?;
        let (path, _) = ferrox_storage::open(&storages, &self.opts.node_name, &volume.storage)
            .and_then(|s| s.path(&volume))
            .map_err(|e| ApiError::param("archive", e.to_string()))?;
        if !path.is_file() {
            return Err(ApiError::param(
                "archive",
                format!("backup '{archive}' does not exist"),
            ));
        }
        if let Some(cfg) = self.guests.config(vmid) {
            if !force {
                return Err(ApiError::param(
                    "vmid",
                    format!("unable to restore VM {vmid} - VM {vmid} already exists (use force=1 to overwrite it)"),
                ));
            }
            if self.guests.process(vmid).is_some() {
                return Err(ApiError::param(
                    "vmid",
                    format!("unable to restore VM {vmid} - VM is running"),
                ));
            }
            if let Some(lock) = cfg.options.get("lock") {
                return Err(ApiError::internal(format!("VM is locked ({lock})")));
            }
        } else if let Some(owner) = crate::cluster::vmid_owner(self, vmid) {
            return Err(ApiError::param(
                "vmid",
                format!("unable to restore VM {vmid} - VM {vmid} exists on node '{owner}'"),
            ));
        }
        Ok(())
    }

    /// The worker of `qmrestore`: unpacks and checks the archive, writes each disk into a
    /// new image (on `storage`, else the storage it came from), then the config. An
    /// existing guest (force) is replaced only when all of that worked; its old images go
    /// last. A failure frees the new images and leaves the guest as it was.
    pub fn restore_guest(
        &self,
        vmid: u32,
        old: Option<GuestConfig>,
        archive: &str,
        storage: Option<&str>,
        unique: bool,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let storages = self.storage_config()?;
        let node = self.opts.node_name.clone();
        let (path, _) =
            ferrox_storage::resolve(&storages, &node, archive).map_err(|e| e.to_string())?;
        let scratch = Scratch(PathBuf::from(format!(
            "{}.restore-{vmid}.d",
            path.display()
        )));
        std::fs::create_dir_all(&scratch.0).map_err(|e| format!("{}: {e}", scratch.0.display()))?;
        let started = Instant::now();
        let unpacked = backup::read_archive(&path, &scratch.0).map_err(|e| e.to_string())?;
        log.log(format!(
            "archive {archive}: backup of VM {} taken at {}, {} disk(s), checked",
            unpacked.manifest.vmid,
            unpacked.manifest.ctime,
            unpacked.manifest.disks.len()
        ));
        let mut cfg = GuestConfig::parse(&unpacked.config).map_err(|e| e.to_string())?;
        cfg.options.remove("lock");
        let mut created: Vec<String> = Vec::new();
        let written = (|| -> Result<(), String> {
            for d in &unpacked.manifest.disks {
                let source_storage = d.volid.split_once(':').map(|(s, _)| s).unwrap_or("");
                let target_storage = storage.unwrap_or(source_storage);
                let volid = ferrox_storage::open(&storages, &node, target_storage)
                    .and_then(|s| {
                        s.allocate(
                            vmid,
                            d.size,
                            ferrox_storage::copy_format(&*s, &d.format, None),
                        )
                    })
                    .map_err(|e| format!("{}: {e}", d.key))?;
                created.push(volid.clone());
                let (target, format) =
                    ferrox_storage::resolve(&storages, &node, &volid).map_err(|e| e.to_string())?;
                ferrox_storage::copy_image(
                    (&unpacked.disks[&d.key], "raw"),
                    None,
                    (&target, &format),
                )
                .map_err(|e| format!("{}: {e}", d.key))?;
                let value = cfg.options.get(&d.key).cloned().unwrap_or_default();
                let mut p = PropertyString::parse(&value).map_err(|e| e.to_string())?;
                p.set_file(&volid);
                cfg.options.insert(d.key.clone(), p.to_string());
                log.log(format!(
                    "{}: restored to {volid} ({:.0} MiB)",
                    d.key,
                    mib(d.size)
                ));
            }
            if unique {
                let keys: Vec<String> = cfg
                    .options
                    .keys()
                    .filter(|k| super::is_net_key(k))
                    .cloned()
                    .collect();
                for k in keys {
                    let v = super::fresh_mac(&k, &cfg.options[&k]).map_err(|e| e.message)?;
                    cfg.options.insert(k, v);
                }
            }
            self.guests
                .write_config(vmid, &cfg)
                .map_err(|e| e.message)?;
            Ok(())
        })();
        if let Err(e) = written {
            for volid in created.iter().rev() {
                let _ = ferrox_storage::free(&storages, &node, volid);
            }
            if let Some(old) = &old {
                let mut back = old.clone();
                back.options.remove("lock");
                let _ = self.guests.write_config(vmid, &back);
            } else {
                let _ = self.guests.remove_config(vmid);
            }
            return Err(format!("unable to restore VM {vmid} - {e}").into());
        }
        if let Some(old) = old {
            let kept: BTreeMap<&str, ()> = created.iter().map(|v| (v.as_str(), ())).collect();
            for volid in super::volumes_of(&old, vmid) {
                if kept.contains_key(volid.as_str()) {
                    continue;
                }
                match ferrox_storage::free(&storages, &node, &volid) {
                    Ok(()) => log.log(format!("removed the replaced guest's {volid}")),
                    Err(e) => log.warn(format!("could not remove {volid}: {e}")),
                }
            }
        }
        let data: u64 = unpacked.manifest.disks.iter().map(|d| d.size).sum();
        let secs = started.elapsed().as_secs_f64().max(0.001);
        log.log(format!(
            "restore of VM {vmid} done: {:.0} MiB in {secs:.1} s ({:.0} MiB/s)",
            mib(data),
            mib(data) / secs
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A dir storage holding backups of VM 100, the first `protected` of them protected.
    fn storage_with_backups(
        dir: &Path,
        limit: Option<&str>,
        count: i64,
        protected: i64,
    ) -> (Box<dyn ferrox_storage::Storage>, ferrox_types::Storage) {
        let mut text = format!("dir: bk\n\tpath {}\n\tcontent backup\n", dir.display());
        if let Some(l) = limit {
            text.push_str(&format!("\tmax-protected-backups {l}\n"));
        }
        let cfg = ferrox_types::StorageConfig::parse(&text).unwrap();
        let section = cfg.storages["bk"].clone();
        let storage = ferrox_storage::plugin(&section, "n1").unwrap();
        for i in 0..count {
            let file = storage
                .backup_path(&backup::archive_name(100, 1_800_000_000 + i * 60))
                .unwrap();
            std::fs::write(&file, b"archive").unwrap();
            if i < protected {
                std::fs::write(format!("{}.protected", file.display()), b"").unwrap();
            }
        }
        (storage, section)
    }

    #[test]
    fn protected_backups_are_limited_as_proxmox_ve_limits_them() {
        let dir = tempfile::tempdir().unwrap();
        let (s, section) = storage_with_backups(dir.path(), Some("2"), 3, 2);
        let e = check_protected_limit(&*s, &section, 100, true).unwrap_err();
        assert!(e.contains("limited to 2 on storage 'bk'"), "{e}");
        // another guest has none protected
        check_protected_limit(&*s, &section, 101, false).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (s, section) = storage_with_backups(dir.path(), None, 6, 5);
        // unset: 5 for ordinary users, unlimited with Datastore.Allocate
        assert!(check_protected_limit(&*s, &section, 100, false).is_err());
        check_protected_limit(&*s, &section, 100, true).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (s, section) = storage_with_backups(dir.path(), Some("-1"), 3, 3);
        check_protected_limit(&*s, &section, 100, false).unwrap();
    }
}
