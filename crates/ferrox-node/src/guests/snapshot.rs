//! `/nodes/{node}/qemu/{vmid}/snapshot`: a guest's snapshots as Proxmox VE keeps them.
//! Each is a section of the guest's config holding its settings at that time; its disks get
//! a snapshot of the same name (qcow2 internal snapshots: taken by the storage when the
//! guest is stopped, by its QEMU in one transaction when it runs; btrfs snapshots of raw
//! images by the storage, the guest paused meanwhile); with `vmstate=1` a
//! running guest's RAM and device state goes into a raw state volume, and a rollback to it
//! resumes the guest where it was.
//!
//! Every change holds the guest's lock and marks the config (`lock: snapshot`, `rollback`,
//! `snapshot-delete`) while it works, so HA, migration and config edits keep off.

use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_qemu::qmp::QmpError;
use ferrox_qemu::GuestProcess;
use ferrox_types::guest_config::{check_snapshot_name, is_disk_key};
use ferrox_types::{GuestConfig, PropertyString, StorageConfig};
use serde_json::json;
use std::collections::BTreeMap;

/// A disk a snapshot covers: its config key and volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDisk {
    pub key: String,
    pub volid: String,
}

/// The disks a snapshot of `options` covers: every disk but CD drives and empty drives.
pub fn snapshot_disks(options: &BTreeMap<String, String>) -> Vec<SnapshotDisk> {
    options
        .iter()
        .filter(|(k, _)| is_disk_key(k))
        .filter_map(|(key, value)| {
            let p = PropertyString::parse(value).ok()?;
            let volid = p.get("file", Some("file"))?;
            (p.get("media", None) != Some("cdrom") && volid != "none").then(|| SnapshotDisk {
                key: key.clone(),
                volid: volid.to_string(),
            })
        })
        .collect()
}

/// The QEMU block device of a disk key (`-drive id=drive-<key>`).
fn device(key: &str) -> String {
    format!("drive-{key}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A QMP error that says the snapshot is not there (deleting it again is done).
fn is_missing_snapshot(e: &QmpError) -> bool {
    matches!(e, QmpError::Command { desc, .. } if desc.contains("does not exist"))
}

fn locked(cfg: &GuestConfig) -> Result<(), ApiError> {
    match cfg.options.get("lock") {
        Some(lock) => Err(ApiError::internal(format!("VM is locked ({lock})"))),
        None => Ok(()),
    }
}

fn is_template(cfg: &GuestConfig) -> bool {
    cfg.options.get("template").map(String::as_str) == Some("1")
}

impl Node {
    /// Checks a snapshot request before its task: 400s naming `snapname`, or the disk
    /// that cannot have snapshots.
    pub fn check_snapshot_create(&self, vmid: u32, name: &str) -> Result<(), ApiError> {
        check_snapshot_name(name).map_err(|e| ApiError::param("snapname", e))?;
        let cfg = self.guest_config(vmid)?;
        locked(&cfg)?;
        if is_template(&cfg) {
            return Err(ApiError::param(
                "vmid",
                "you can't take a snapshot if it's a template",
            ));
        }
        if cfg.snapshots.contains_key(name) {
            return Err(ApiError::param(
                "snapname",
                format!("snapshot name '{name}' already used"),
            ));
        }
        let storages = self.storage_config()?;
        self.check_disks_snapshot(&storages, &cfg.options)
    }

    fn check_disks_snapshot(
        &self,
        storages: &StorageConfig,
        options: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        for disk in snapshot_disks(options) {
            let checked = ferrox_storage::open_volume(storages, &self.opts.node_name, &disk.volid)
                .and_then(|(storage, volume)| storage.check_snapshot(&volume));
            if let Err(e) = checked {
                return Err(ApiError::param(
                    &disk.key,
                    format!("cannot snapshot '{}': {e}", disk.volid),
                ));
            }
        }
        Ok(())
    }

    /// Checks a rollback request before its task. A running guest is only rolled back
    /// to a snapshot with its RAM (it resumes from there); to a disk-only snapshot it is
    /// refused instead of silently stopped.
    pub fn check_snapshot_rollback(&self, vmid: u32, name: &str) -> Result<(), ApiError> {
        let cfg = self.guest_config(vmid)?;
        let snap = existing(&cfg, name)?;
        locked(&cfg)?;
        if let Some(state) = snap.get("snapstate") {
            return Err(ApiError::param(
                "snapname",
                format!("unable to rollback to incomplete snapshot (snapstate = {state})"),
            ));
        }
        if self.guests.process(vmid).is_some() && !snap.contains_key("vmstate") {
            return Err(ApiError::param(
                "snapname",
                format!(
                    "VM {vmid} is running and snapshot '{name}' has no RAM state: shut the VM down first"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a delete request before its task: the snapshot exists and no other
    /// snapshot builds on it.
    pub fn check_snapshot_delete(&self, vmid: u32, name: &str) -> Result<(), ApiError> {
        let cfg = self.guest_config(vmid)?;
        existing(&cfg, name)?;
        locked(&cfg)?;
        let children = cfg.snapshot_children(name);
        if !children.is_empty() {
            return Err(ApiError::param(
                "snapname",
                format!(
                    "snapshot '{name}' has children ({}): delete them first",
                    children.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The worker of `qmsnapshot`.
    pub fn create_snapshot(
        &self,
        vmid: u32,
        name: &str,
        vmstate: bool,
        description: Option<&str>,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.check_snapshot_create(vmid, name)
            .map_err(|e| e.message)?;
        let cfg = self.guest_config(vmid)?;
        let storages = self.storage_config()?;
        let node = self.opts.node_name.clone();
        let process = self.guests.process(vmid);
        let disks = snapshot_disks(&cfg.options);

        // The RAM state goes where Proxmox VE puts it: `vmstatestorage`, else the first
        // disk's storage.
        let state = match (&process, vmstate) {
            (Some(_), true) => {
                let storage = cfg
                    .options
                    .get("vmstatestorage")
                    .cloned()
                    .or_else(|| {
                        disks
                            .first()
                            .and_then(|d| d.volid.split_once(':'))
                            .map(|(s, _)| s.to_string())
                    })
                    .ok_or("no storage for the RAM state: set 'vmstatestorage'")?;
                let volid = ferrox_storage::open(&storages, &node, &storage)
                    .and_then(|s| s.allocate_state(vmid, name))
                    .map_err(|e| format!("RAM state volume: {e}"))?;
                Some(volid)
            }
            _ => None,
        };

        let mut next = (*cfg).clone();
        let mut section = cfg.snapshot_section();
        section.insert("snapstate".into(), "prepare".into());
        section.insert("snaptime".into(), now().to_string());
        if let Some(d) = description.filter(|d| !d.is_empty()) {
            section.insert("description".into(), d.to_string());
        }
        if let Some(volid) = &state {
            section.insert("vmstate".into(), volid.clone());
        }
        next.snapshots.insert(name.to_string(), section);
        next.options.insert("lock".into(), "snapshot".into());
        self.guests.write_config(vmid, &next)?;
        log.log(format!(
            "snapshot '{name}' of VM {vmid}: {} disk(s){}",
            disks.len(),
            if state.is_some() { " and its RAM" } else { "" }
        ));

        let taken = match &process {
            Some(p) => self.snapshot_running(p, &disks, name, &storages, state.as_deref(), log),
            None => disks.iter().try_for_each(|d| {
                ferrox_storage::open_volume(&storages, &node, &d.volid)
                    .and_then(|(s, v)| s.snapshot_create(&v, name))
                    .map_err(|e| format!("{}: {e}", d.key))
            }),
        };
        if let Err(e) = taken {
            log.warn(format!("snapshot failed: {e}; removing what was taken"));
            self.drop_snapshot_parts(vmid, name, &disks, state.as_deref(), &storages, log);
            let mut back = (*self.guest_config(vmid)?).clone();
            back.snapshots.remove(name);
            back.options.remove("lock");
            self.guests.write_config(vmid, &back)?;
            return Err(e.into());
        }

        let mut done = (*self.guest_config(vmid)?).clone();
        if let Some(snap) = done.snapshots.get_mut(name) {
            snap.remove("snapstate");
        }
        done.options.remove("lock");
        done.options.insert("parent".into(), name.to_string());
        self.guests.write_config(vmid, &done)?;
        log.log(format!("snapshot '{name}' taken"));
        Ok(())
    }

    /// Snapshots a running guest's disks: qcow2 images in one QMP transaction (atomic
    /// across disks), others (btrfs) by their storage while the guest is paused, so that
    /// all disks show the same moment. With a state volume the guest is paused, its disks
    /// snapshotted and its RAM saved, then it runs on.
    fn snapshot_running(
        &self,
        process: &GuestProcess,
        disks: &[SnapshotDisk],
        name: &str,
        storages: &StorageConfig,
        state: Option<&str>,
        log: &TaskLog,
    ) -> Result<(), String> {
        let mut qmp = process.qmp().map_err(|e| e.to_string())?;
        let was_running = qmp
            .execute("query-status", None)
            .map_err(|e| e.to_string())?["running"]
            .as_bool()
            .unwrap_or(false);
        let node = &self.opts.node_name;
        let mut in_qemu = Vec::new();
        let mut by_storage = Vec::new();
        for d in disks {
            let (storage, volume) = ferrox_storage::open_volume(storages, node, &d.volid)
                .map_err(|e| format!("{}: {e}", d.key))?;
            if storage.snapshots_in_qemu(&volume) {
                in_qemu.push(d);
            } else {
                by_storage.push((d, storage, volume));
            }
        }
        // A stopped QEMU has flushed its writes to the images.
        let pause = (state.is_some() || !by_storage.is_empty()) && was_running;
        if pause {
            qmp.execute("stop", None).map_err(|e| e.to_string())?;
        }
        let result = (|| {
            for (d, storage, volume) in &by_storage {
                storage
                    .snapshot_create(volume, name)
                    .map_err(|e| format!("{}: {e}", d.key))?;
            }
            let actions: Vec<_> = in_qemu
                .iter()
                .map(|d| {
                    json!({"type": "blockdev-snapshot-internal-sync",
                           "data": {"device": device(&d.key), "name": name}})
                })
                .collect();
            if !actions.is_empty() {
                qmp.execute("transaction", Some(json!({ "actions": actions })))
                    .map_err(|e| format!("disk snapshots: {e}"))?;
            }
            if let Some(volid) = state {
                let (path, _) = ferrox_storage::resolve(storages, &self.opts.node_name, volid)
                    .map_err(|e| e.to_string())?;
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let stats = ferrox_qemu::migration::save_state(&mut qmp, &file, &mut |s| {
                    log.log(format!(
                        "saving RAM: {} of {} MiB",
                        s.transferred >> 20,
                        s.total >> 20
                    ))
                })
                .map_err(|e| format!("saving RAM: {e}"))?;
                file.sync_all()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                log.log(format!(
                    "RAM saved: {} MiB in {} ms",
                    stats.transferred >> 20,
                    stats.total_time_ms
                ));
            }
            Ok(())
        })();
        if pause {
            if let Err(e) = qmp.execute("cont", None) {
                log.warn(format!("resuming VM after the snapshot: {e}"));
            }
        }
        result
    }

    /// Removes the disk snapshots `name` and its state volume, as far as they exist:
    /// cleanup after a failed snapshot, and the work of a delete.
    fn drop_snapshot_parts(
        &self,
        vmid: u32,
        name: &str,
        disks: &[SnapshotDisk],
        state: Option<&str>,
        storages: &StorageConfig,
        log: &TaskLog,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(volid) = state {
            if let Err(e) = ferrox_storage::free(storages, &self.opts.node_name, volid) {
                let gone = matches!(&e, ferrox_storage::StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
                if !gone {
                    errors.push(format!("vmstate: {e}"));
                }
            }
        }
        // A disk the running QEMU holds is changed through it; others by the storage.
        let running = self.guests.process(vmid);
        let current = self
            .guests
            .config(vmid)
            .map(|c| snapshot_disks(&c.options))
            .unwrap_or_default();
        let mut qmp = running.as_ref().and_then(|p| p.qmp().ok());
        let node = &self.opts.node_name;
        for disk in disks {
            let in_qemu = ferrox_storage::open_volume(storages, node, &disk.volid)
                .is_ok_and(|(s, v)| s.snapshots_in_qemu(&v));
            let held = current
                .iter()
                .find(|c| c.volid == disk.volid)
                .filter(|_| in_qemu);
            let result = match (held, qmp.as_mut()) {
                (Some(held), Some(qmp)) => qmp
                    .execute(
                        "blockdev-snapshot-delete-internal-sync",
                        Some(json!({"device": device(&held.key), "name": name})),
                    )
                    .map(drop)
                    .or_else(|e| {
                        if is_missing_snapshot(&e) {
                            Ok(())
                        } else {
                            Err(e.to_string())
                        }
                    }),
                _ => ferrox_storage::open_volume(storages, node, &disk.volid)
                    .and_then(|(s, v)| s.snapshot_delete(&v, name))
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => log.log(format!("{}: snapshot '{name}' removed", disk.key)),
                Err(e) => errors.push(format!("{}: {e}", disk.key)),
            }
        }
        errors
    }

    /// The worker of `qmrollback`.
    pub fn rollback_snapshot(
        &self,
        vmid: u32,
        name: &str,
        start: bool,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.check_snapshot_rollback(vmid, name)
            .map_err(|e| e.message)?;
        let cfg = self.guest_config(vmid)?;
        let storages = self.storage_config()?;
        let snap = cfg.snapshots[name].clone();
        let disks = snapshot_disks(&snap);
        // Open the state before anything changes: a missing file refuses the rollback.
        let state = match snap.get("vmstate") {
            Some(volid) => {
                let (path, _) = ferrox_storage::resolve(&storages, &self.opts.node_name, volid)
                    .map_err(|e| format!("vmstate: {e}"))?;
                Some(std::fs::File::open(&path).map_err(|e| format!("vmstate {volid}: {e}"))?)
            }
            None => None,
        };

        let mut next = (*cfg).clone();
        next.options.insert("lock".into(), "rollback".into());
        self.guests.write_config(vmid, &next)?;
        if let Some(p) = self.guests.process(vmid) {
            log.log(format!(
                "stopping VM {vmid}: its RAM is replaced by the snapshot's"
            ));
            p.stop().map_err(|e| e.to_string())?;
            self.guests.mark_stopped(vmid);
        }
        for d in &disks {
            // On failure the `rollback` lock stays, as in Proxmox VE: the disks may be
            // half rolled back, and the guest must not start like that.
            ferrox_storage::open_volume(&storages, &self.opts.node_name, &d.volid)
                .and_then(|(s, v)| s.snapshot_rollback(&v, name))
                .map_err(|e| format!("{}: {e} (the VM stays locked)", d.key))?;
            log.log(format!("{}: rolled back to '{name}'", d.key));
        }
        let current = self.guest_config(vmid)?;
        let mut back = current
            .rolled_back(name)
            .ok_or_else(|| format!("snapshot '{name}' vanished"))?;
        back.options.remove("lock");
        let back = self.guests.write_config(vmid, &back)?;
        log.log(format!("VM {vmid} config rolled back to '{name}'"));
        match (&state, start) {
            (Some(file), _) => self.launch_guest(vmid, &back, Some(file), log),
            (None, true) => self.launch_guest(vmid, &back, None, log),
            (None, false) => Ok(()),
        }
    }

    /// The worker of `qmdelsnapshot`. With `force` the snapshot leaves the config even when
    /// removing a disk's snapshot fails.
    pub fn delete_snapshot(
        &self,
        vmid: u32,
        name: &str,
        force: bool,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.check_snapshot_delete(vmid, name)
            .map_err(|e| e.message)?;
        let cfg = self.guest_config(vmid)?;
        let storages = self.storage_config()?;
        let snap = cfg.snapshots[name].clone();
        let mut next = (*cfg).clone();
        next.options.insert("lock".into(), "snapshot-delete".into());
        if let Some(s) = next.snapshots.get_mut(name) {
            s.insert("snapstate".into(), "delete".into());
        }
        self.guests.write_config(vmid, &next)?;

        let errors = self.drop_snapshot_parts(
            vmid,
            name,
            &snapshot_disks(&snap),
            snap.get("vmstate").map(String::as_str),
            &storages,
            log,
        );
        let mut done = (*self.guest_config(vmid)?).clone();
        done.options.remove("lock");
        if !errors.is_empty() && !force {
            // `snapstate: delete` stays: the snapshot cannot be rolled back to any more,
            // and deleting it again finishes the job.
            self.guests.write_config(vmid, &done)?;
            return Err(errors.join("; ").into());
        }
        for e in &errors {
            log.warn(format!("{e} (forced: removed from the config anyway)"));
        }
        done.remove_snapshot(name);
        self.guests.write_config(vmid, &done)?;
        log.log(format!("snapshot '{name}' deleted"));
        Ok(())
    }

    /// Sets a snapshot's description (`PUT .../snapshot/{snapname}/config`).
    pub fn set_snapshot_description(
        &self,
        vmid: u32,
        name: &str,
        description: &str,
    ) -> Result<(), ApiError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self.guest_config(vmid)?;
        existing(&cfg, name)?;
        locked(&cfg)?;
        let mut next = (*cfg).clone();
        if let Some(s) = next.snapshots.get_mut(name) {
            if description.is_empty() {
                s.remove("description");
            } else {
                s.insert("description".into(), description.to_string());
            }
        }
        self.guests.write_config(vmid, &next)?;
        Ok(())
    }
}

/// The section of snapshot `name`, or a 400 naming `snapname`.
pub fn existing<'a>(
    cfg: &'a GuestConfig,
    name: &str,
) -> Result<&'a BTreeMap<String, String>, ApiError> {
    cfg.snapshots
        .get(name)
        .ok_or_else(|| ApiError::param("snapname", format!("snapshot '{name}' does not exist")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_cover_disks_but_not_cd_drives() {
        let cfg = GuestConfig::parse(
            "ide2: local:iso/debian.iso,media=cdrom\nide3: none,media=cdrom\nnet0: virtio=BC:24:11:00:00:01\nscsi0: local:100/vm-100-disk-0.qcow2,size=4G\nvirtio1: local:100/vm-100-disk-1.qcow2,size=1G\n",
        )
        .unwrap();
        let keys: Vec<_> = snapshot_disks(&cfg.options)
            .into_iter()
            .map(|d| d.key)
            .collect();
        assert_eq!(keys, vec!["scsi0", "virtio1"]);
    }
}
