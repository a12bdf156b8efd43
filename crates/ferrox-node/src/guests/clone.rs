//! Templates, clones and disk moves, as qemu-server does them: `template` turns a stopped
//! guest's disks into read-only base images; `clone` copies a guest (or one of its
//! snapshots) to a new vmid — a full copy of every disk to any storage, or from a template
//! a linked clone whose disks build on the base images; `move_disk` moves one disk to
//! another storage, through the guest's QEMU (a mirror, then the switch) when it runs.

use super::snapshot::{snapshot_disks, SnapshotDisk};
use super::DiskRequest;
use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_qemu::blockjob::{self, MirrorEnd};
use ferrox_types::{GuestConfig, PropertyString, StorageConfig, VolumeId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one disk's mirror may run before it is cancelled.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(3600);

/// A checked `clone` request.
#[derive(Debug, Clone, Default)]
pub struct CloneRequest {
    pub newid: u32,
    pub name: Option<String>,
    pub description: Option<String>,
    pub pool: Option<String>,
    pub snapname: Option<String>,
    pub storage: Option<String>,
    pub format: Option<String>,
    /// Full copies; `None`: full unless the source is a template.
    pub full: Option<bool>,
}

/// What a checked clone will do.
#[derive(Debug, Clone)]
pub struct ClonePlan {
    /// The source's settings (its current config, or the snapshot's).
    pub source: BTreeMap<String, String>,
    pub full: bool,
    pub disks: Vec<SnapshotDisk>,
    /// The source guest's description (the clone keeps it unless given one).
    pub description: Option<String>,
}

/// Keys a clone does not take over: snapshot bookkeeping, the lock, unused disks.
fn clone_skips(key: &str) -> bool {
    matches!(
        key,
        "parent"
            | "snaptime"
            | "vmstate"
            | "snapstate"
            | "runningcpu"
            | "runningmachine"
            | "running-nets-host-mtu"
            | "lock"
            | "template"
            | "description"
    ) || key.starts_with("unused")
}

fn is_template(cfg: &GuestConfig) -> bool {
    cfg.options.get("template").map(String::as_str) == Some("1")
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The settings of a clone: the source's, with new MAC addresses, a new SMBIOS UUID and
/// (if the source had one) a new VM generation id.
pub fn clone_options(
    source: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (key, value) in source.iter().filter(|(k, _)| !clone_skips(k)) {
        let value = if super::is_net_key(key) {
            super::fresh_mac(key, value)?
        } else if key == "vmgenid" {
            new_uuid()
        } else {
            value.clone()
        };
        out.insert(key.clone(), value);
    }
    let smbios = match out.get("smbios1") {
        Some(v) => {
            let mut p =
                PropertyString::parse(v).map_err(|e| ApiError::param("smbios1", e.to_string()))?;
            p.set("uuid", &new_uuid());
            p.to_string()
        }
        None => format!("uuid={}", new_uuid()),
    };
    out.insert("smbios1".into(), smbios);
    Ok(out)
}

impl Node {
    /// Checks a `template` request.
    pub fn check_template(&self, vmid: u32, disk: Option<&str>) -> Result<(), ApiError> {
        let cfg = self.guest_config(vmid)?;
        if let Some(lock) = cfg.options.get("lock") {
            return Err(ApiError::internal(format!("VM is locked ({lock})")));
        }
        if !cfg.snapshots.is_empty() {
            return Err(ApiError::param(
                "vmid",
                "unable to create template, because VM contains snapshots",
            ));
        }
        if is_template(&cfg) && disk.is_none() {
            return Err(ApiError::param(
                "vmid",
                "you can't convert a template to a template",
            ));
        }
        if self.guests.process(vmid).is_some() {
            return Err(ApiError::param(
                "vmid",
                "you can't convert a VM to template if VM is running",
            ));
        }
        if let Some(d) = disk {
            if !snapshot_disks(&cfg.options).iter().any(|s| s.key == d) {
                return Err(ApiError::param(
                    "disk",
                    format!("no disk '{d}' in the config"),
                ));
            }
        }
        Ok(())
    }

    /// The worker of `qmtemplate`: `template: 1`, then each disk becomes a base image.
    pub fn make_template(
        &self,
        vmid: u32,
        disk: Option<&str>,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.check_template(vmid, disk).map_err(|e| e.message)?;
        let storages = self.storage_config()?;
        let mut cfg = (*self.guest_config(vmid)?).clone();
        cfg.options.insert("template".into(), "1".into());
        self.guests.write_config(vmid, &cfg)?;
        for d in snapshot_disks(&cfg.options)
            .into_iter()
            .filter(|d| disk.is_none_or(|only| only == d.key))
        {
            let volume = VolumeId::parse(&d.volid)
                .ok_or_else(|| format!("{}: '{}' is not a storage volume", d.key, d.volid))?;
            if volume.is_base() {
                continue;
            }
            let base = ferrox_storage::open(&storages, &self.opts.node_name, &volume.storage)
                .and_then(|s| s.create_base(&volume))
                .map_err(|e| format!("{}: {e}", d.key))?;
            // The config follows each disk at once: it never names a file that is gone.
            let mut p = PropertyString::parse(&cfg.options[&d.key]).map_err(|e| e.to_string())?;
            p.set_file(&base);
            cfg.options.insert(d.key.clone(), p.to_string());
            self.guests.write_config(vmid, &cfg)?;
            log.log(format!("{}: base image {base}", d.key));
        }
        Ok(())
    }

    /// Checks a clone request (400s naming the parameter) and says what it will copy.
    pub fn check_clone(&self, vmid: u32, req: &CloneRequest) -> Result<ClonePlan, ApiError> {
        let plan = self.clone_plan(vmid, req)?;
        if self.guests.exists(req.newid) {
            return Err(ApiError::param(
                "newid",
                format!(
                    "unable to create VM {}: VM {} already exists",
                    req.newid, req.newid
                ),
            ));
        }
        if let Some(owner) = crate::cluster::vmid_owner(self, req.newid) {
            return Err(ApiError::param(
                "newid",
                format!(
                    "unable to create VM {}: VM {} already exists on node '{owner}'",
                    req.newid, req.newid
                ),
            ));
        }
        if !plan.full {
            for (param, given) in [("storage", &req.storage), ("format", &req.format)] {
                if given.is_some() {
                    return Err(ApiError::param(
                        param,
                        format!("parameter '{param}' not allowed for linked clones"),
                    ));
                }
            }
        }
        let storages = self.storage_config()?;
        if let Some(s) = &req.storage {
            let target = ferrox_storage::open(&storages, &self.opts.node_name, s)
                .map_err(|e| ApiError::param("storage", e.to_string()))?;
            if !target.content().contains("images") {
                return Err(ApiError::param(
                    "storage",
                    format!("storage '{s}' does not support vm images"),
                ));
            }
            check_format(&*target, req.format.as_deref())?;
        }
        for d in &plan.disks {
            let volume = VolumeId::parse(&d.volid).ok_or_else(|| {
                ApiError::param(
                    &d.key,
                    format!("'{}' is not a storage volume: it cannot be cloned", d.volid),
                )
            })?;
            ferrox_storage::open(&storages, &self.opts.node_name, &volume.storage)
                .map_err(|e| ApiError::param(&d.key, e.to_string()))?;
            if !plan.full && !volume.is_base() {
                return Err(ApiError::param(
                    &d.key,
                    format!(
                        "Linked clone feature is not supported for '{}' ({}): only a template's base images can be cloned linked",
                        d.volid, d.key
                    ),
                ));
            }
        }
        if plan.full {
            let copies: Vec<(String, String)> = plan
                .disks
                .iter()
                .filter_map(|d| {
                    let source = d.volid.split_once(':')?.0;
                    let target = req.storage.as_deref().unwrap_or(source);
                    Some((target.to_string(), d.volid.clone()))
                })
                .collect();
            check_space(self, &storages, &copies)?;
        }
        Ok(plan)
    }

    /// Reserves `newid` (`lock: clone`) and copies in a `qmclone` task; a failure removes
    /// every volume the task created and the reservation.
    pub fn clone_guest(
        self: &Arc<Self>,
        vmid: u32,
        req: CloneRequest,
        auth_id: &str,
    ) -> Result<String, ApiError> {
        let newid = req.newid;
        {
            let lock = self.guests.lock(newid);
            let _held = lock.hold();
            self.check_clone(vmid, &req)?;
            let mut reserved = GuestConfig::default();
            reserved.options.insert("lock".into(), "clone".into());
            self.guests.write_config(newid, &reserved)?;
        }
        let node = Arc::clone(self);
        let spawned = self
            .tasks
            .spawn("qmclone", &vmid.to_string(), auth_id, move |log| {
                let mut created = Vec::new();
                let outcome = node.copy_guest(vmid, &req, &mut created, log);
                if let Err(e) = outcome {
                    let storages = node.storage_config()?;
                    for volid in created.iter().rev() {
                        if let Err(f) = ferrox_storage::free(&storages, &node.opts.node_name, volid)
                        {
                            log.warn(format!("could not remove '{volid}': {f}"));
                        }
                    }
                    let _ = node.guests.remove_config(newid);
                    return Err(format!("clone failed: {e}").into());
                }
                if let Some(pool) = &req.pool {
                    crate::guests::access::add_guest(&node, pool, newid).map_err(|e| {
                        format!("adding VM {newid} to pool '{pool}': {}", e.message)
                    })?;
                }
                Ok(())
            });
        if spawned.is_err() {
            let _ = self.guests.remove_config(newid);
        }
        spawned
    }

    fn copy_guest(
        &self,
        vmid: u32,
        req: &CloneRequest,
        created: &mut Vec<String>,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        // The source's lock keeps it from changing (or starting and stopping) meanwhile.
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let plan = self.clone_plan(vmid, req)?;
        let storages = self.storage_config()?;
        log.log(format!(
            "create {} clone of VM {vmid} ({}) as VM {}",
            if plan.full { "full" } else { "linked" },
            req.snapname
                .as_deref()
                .map(|s| format!("snapshot '{s}'"))
                .unwrap_or_else(|| "current state".into()),
            req.newid
        ));
        let mut options = clone_options(&plan.source)?;
        let name = plan
            .source
            .get("name")
            .cloned()
            .unwrap_or_else(|| vmid.to_string());
        options.insert(
            "name".into(),
            req.name.clone().unwrap_or(format!("Copy-of-VM-{name}")),
        );
        let process = self.guests.process(vmid);
        for d in &plan.disks {
            let volid = self.clone_disk(d, &plan, req, &storages, process.as_ref(), log)?;
            created.push(volid.clone());
            let mut p = PropertyString::parse(&options[&d.key]).map_err(|e| e.to_string())?;
            p.set_file(&volid);
            options.insert(d.key.clone(), p.to_string());
            log.log(format!("{}: {volid}", d.key));
        }
        let mut cfg = GuestConfig {
            description: req.description.clone().or(plan.description.clone()),
            ..Default::default()
        };
        for (k, v) in &options {
            cfg.set(k, v).map_err(|e| e.to_string())?;
        }
        self.guests.write_config(req.newid, &cfg)?;
        log.log(format!("VM {} created", req.newid));
        Ok(())
    }

    /// What a clone of guest `vmid` copies: refused while the guest is locked, 400 naming
    /// `snapname` for a snapshot it does not have. Checked before the task and again in it,
    /// under the source's lock (the guest may have changed since).
    fn clone_plan(&self, vmid: u32, req: &CloneRequest) -> Result<ClonePlan, ApiError> {
        let cfg = self.guest_config(vmid)?;
        if let Some(lock) = cfg.options.get("lock") {
            return Err(ApiError::internal(format!("VM is locked ({lock})")));
        }
        let source = match &req.snapname {
            Some(s) => cfg
                .snapshots
                .get(s)
                .ok_or_else(|| {
                    ApiError::param("snapname", format!("snapshot '{s}' does not exist"))
                })?
                .clone(),
            None => cfg.options.clone(),
        };
        Ok(ClonePlan {
            full: req.full.unwrap_or(!is_template(&cfg)),
            disks: snapshot_disks(&source),
            source,
            description: cfg.description.clone(),
        })
    }

    /// One disk of a clone: a linked image on the base, or a full copy (read from the
    /// snapshot, from the stopped image, or mirrored from the running guest).
    fn clone_disk(
        &self,
        d: &SnapshotDisk,
        plan: &ClonePlan,
        req: &CloneRequest,
        storages: &StorageConfig,
        process: Option<&ferrox_qemu::GuestProcess>,
        log: &TaskLog,
    ) -> Result<String, TaskError> {
        let node = &self.opts.node_name;
        let (source, volume) =
            ferrox_storage::open_volume(storages, node, &d.volid).map_err(|e| e.to_string())?;
        if !plan.full {
            return Ok(source
                .clone_image(&volume, req.newid)
                .map_err(|e| format!("{}: {e}", d.key))?);
        }
        // A snapshot is read where its storage keeps it: inside the qcow2 file, or in a
        // btrfs snapshot beside the image.
        let (source_path, source_format, selector) = match &req.snapname {
            Some(snap) => source.snapshot_image(&volume, snap),
            None => source.path(&volume).map(|(p, f)| (p, f, None)),
        }
        .map_err(|e| format!("{}: {e}", d.key))?;
        let (size, _) = ferrox_storage::image_info(&source_path).map_err(|e| e.to_string())?;
        let target_storage = req.storage.as_deref().unwrap_or(&volume.storage);
        let target = ferrox_storage::open(storages, node, target_storage)
            .map_err(|e| format!("storage: {e}"))?;
        let format = ferrox_storage::copy_format(&*target, &source_format, req.format.as_deref());
        let volid = target
            .allocate(req.newid, size, format)
            .map_err(|e| format!("{}: {e}", d.key))?;
        let copied = (|| -> Result<(), String> {
            let (target_path, _) =
                ferrox_storage::resolve(storages, node, &volid).map_err(|e| e.to_string())?;
            match (process, &req.snapname) {
                (Some(p), None) => {
                    let mut qmp = p.qmp().map_err(|e| e.to_string())?;
                    blockjob::mirror(
                        &mut qmp,
                        &format!("drive-{}", d.key),
                        &target_path,
                        format,
                        MirrorEnd::Detach,
                        MIRROR_TIMEOUT,
                        &mut |done, total| {
                            log.log(format!("{}: {} of {} MiB", d.key, done >> 20, total >> 20))
                        },
                    )
                    .map_err(|e| e.to_string())
                }
                _ => ferrox_storage::copy_image(
                    (&source_path, &source_format),
                    selector.as_deref(),
                    (&target_path, format),
                )
                .map_err(|e| e.to_string()),
            }
        })();
        if let Err(e) = copied {
            let _ = ferrox_storage::free(storages, node, &volid);
            return Err(format!("{}: {e}", d.key).into());
        }
        Ok(volid)
    }
}

/// Refuses copies (`(target storage, source volume)`) that cannot fit: per target storage,
/// the bytes its sources take (what a copy writes at least, snapshots not counted) against
/// its free space; 400 naming `storage`. Sparse and compressible data may need less, a
/// growing guest more: this catches the copy that cannot succeed, before anything is made.
fn check_space(
    node: &Node,
    storages: &StorageConfig,
    copies: &[(String, String)],
) -> Result<(), ApiError> {
    let mut needed: BTreeMap<&str, u64> = BTreeMap::new();
    for (target, volid) in copies {
        let (path, _) = ferrox_storage::resolve(storages, &node.opts.node_name, volid)
            .map_err(|e| ApiError::param("storage", e.to_string()))?;
        *needed.entry(target.as_str()).or_default() += ferrox_storage::allocated_bytes(&path);
    }
    for (target, bytes) in needed {
        let avail = ferrox_storage::open(storages, &node.opts.node_name, target)
            .map_err(|e| ApiError::param("storage", e.to_string()))?
            .space()
            .avail;
        if bytes > avail {
            let mib = |b: u64| b.div_ceil(1 << 20);
            return Err(ApiError::param(
                "storage",
                format!(
                    "not enough space on storage '{target}': {} MiB free, the copy writes {} MiB",
                    mib(avail),
                    mib(bytes)
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a requested image format the target storage does not hold, naming `format`.
fn check_format(
    target: &dyn ferrox_storage::Storage,
    format: Option<&str>,
) -> Result<(), ApiError> {
    match format {
        Some(f) if !target.formats().contains(&f) => Err(ApiError::param(
            "format",
            format!(
                "storage '{}' holds {} images, not {f}",
                target.id(),
                target.formats().join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// A checked `move_disk` request.
#[derive(Debug, Clone)]
pub struct MoveDisk {
    pub disk: String,
    pub volid: String,
    pub storage: String,
    pub format: String,
    /// Remove the source image afterwards (else it stays as `unusedN`).
    pub delete: bool,
    pub digest: String,
}

impl Node {
    /// Checks a `move_disk` request: 400s naming `disk`, `storage`, `format`, `digest`
    /// or `delete`.
    pub fn check_move_disk(
        &self,
        vmid: u32,
        disk: &str,
        storage: &str,
        format: Option<&str>,
        delete: bool,
        digest: Option<&str>,
    ) -> Result<MoveDisk, ApiError> {
        let DiskRequest { cfg, volume, .. } = self.check_disk_request(vmid, disk, digest)?;
        let volid = format!("{}:{}", volume.storage, volume.name);
        if volume.is_base() {
            return Err(ApiError::param(
                "disk",
                format!("'{volid}' is a template's base image: it cannot move"),
            ));
        }
        let storages = self.storage_config()?;
        let target = ferrox_storage::open(&storages, &self.opts.node_name, storage)
            .map_err(|e| ApiError::param("storage", e.to_string()))?;
        if !target.content().contains("images") {
            return Err(ApiError::param(
                "storage",
                format!("storage '{storage}' does not support vm images"),
            ));
        }
        check_format(&*target, format)?;
        let format = ferrox_storage::copy_format(&*target, volume.format(), format).to_string();
        if storage != volume.storage {
            check_space(self, &storages, &[(storage.to_string(), volid.clone())])?;
        }
        if storage == volume.storage && format == volume.format() {
            return Err(ApiError::param(
                "storage",
                "you can't move to the same storage with same format",
            ));
        }
        if delete
            && cfg
                .snapshots
                .values()
                .any(|s| snapshot_disks(s).iter().any(|sd| sd.volid == volid))
        {
            return Err(ApiError::param(
                "delete",
                "you can't move a disk with snapshots and delete the source",
            ));
        }
        Ok(MoveDisk {
            disk: disk.to_string(),
            volid,
            storage: storage.to_string(),
            format,
            delete,
            digest: cfg.digest.clone(),
        })
    }

    /// The worker of `qmmove`: copy (or mirror, then switch, when running), then the
    /// config names the new image; the old one is removed or kept as `unusedN`.
    pub fn move_disk(&self, vmid: u32, m: &MoveDisk, log: &TaskLog) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self.guest_config(vmid)?;
        if cfg.digest != m.digest {
            return Err("the configuration changed meanwhile: nothing moved".into());
        }
        let storages = self.storage_config()?;
        let node = &self.opts.node_name;
        let (source_path, source_format) =
            ferrox_storage::resolve(&storages, node, &m.volid).map_err(|e| e.to_string())?;
        let (size, _) = ferrox_storage::image_info(&source_path).map_err(|e| e.to_string())?;
        let volid = ferrox_storage::open(&storages, node, &m.storage)
            .and_then(|s| s.allocate(vmid, size, &m.format))
            .map_err(|e| format!("storage: {e}"))?;
        let moved = (|| -> Result<(), String> {
            let (target_path, _) =
                ferrox_storage::resolve(&storages, node, &volid).map_err(|e| e.to_string())?;
            match self.guests.process(vmid) {
                Some(p) => {
                    let mut qmp = p.qmp().map_err(|e| e.to_string())?;
                    blockjob::mirror(
                        &mut qmp,
                        &format!("drive-{}", m.disk),
                        &target_path,
                        &m.format,
                        MirrorEnd::Pivot,
                        MIRROR_TIMEOUT,
                        &mut |done, total| {
                            log.log(format!("{}: {} of {} MiB", m.disk, done >> 20, total >> 20))
                        },
                    )
                    .map_err(|e| e.to_string())
                }
                None => ferrox_storage::copy_image(
                    (&source_path, &source_format),
                    None,
                    (&target_path, &m.format),
                )
                .map_err(|e| e.to_string()),
            }
        })();
        if let Err(e) = moved {
            // The guest still runs on (or the config still names) the source image.
            let _ = ferrox_storage::free(&storages, node, &volid);
            return Err(format!("moving {} failed: {e}", m.disk).into());
        }
        let mut next = (*cfg).clone();
        let mut p = PropertyString::parse(&cfg.options[&m.disk]).map_err(|e| e.to_string())?;
        p.set_file(&volid);
        next.options.insert(m.disk.clone(), p.to_string());
        if !m.delete {
            let slot = next
                .add_unused(&m.volid)
                .ok_or("no free unusedN slot for the source image")?;
            log.log(format!("{}: the source image stays as {slot}", m.disk));
        }
        self.guests.write_config(vmid, &next)?;
        log.log(format!("{}: moved to {volid}", m.disk));
        if m.delete {
            ferrox_storage::free(&storages, node, &m.volid).map_err(|e| e.to_string())?;
            log.log(format!("removed {}", m.volid));
        }
        Ok(())
    }
}

impl Node {
    /// `PUT .../unlink`: disks leave the config; their images are deleted with `force`
    /// (unless a snapshot still uses them), else kept as `unusedN`.
    pub fn unlink_disks(&self, vmid: u32, keys: &[String], force: bool) -> Result<(), ApiError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self.guest_config(vmid)?;
        if let Some(l) = cfg.options.get("lock") {
            return Err(ApiError::internal(format!("VM is locked ({l})")));
        }
        let running = self.guests.process(vmid).is_some();
        let mut next = (*cfg).clone();
        let mut free = Vec::new();
        for key in keys {
            let value = next
                .options
                .remove(key)
                .filter(|_| super::is_disk_key(key) || key.starts_with("unused"))
                .ok_or_else(|| {
                    ApiError::param("idlist", format!("no disk '{key}' in the config"))
                })?;
            if running && !key.starts_with("unused") {
                return Err(ApiError::param(
                    "idlist",
                    format!("{key}: the VM is running: unplugging disks is not supported, shut it down first"),
                ));
            }
            let p = PropertyString::parse(&value)
                .map_err(|e| ApiError::param("idlist", e.to_string()))?;
            let volid = p.get("file", Some("file")).unwrap_or("").to_string();
            let owned = VolumeId::parse(&volid).and_then(|v| v.owner()) == Some(vmid)
                && p.get("media", None) != Some("cdrom");
            if !owned {
                continue;
            }
            let in_snapshot = cfg
                .snapshots
                .values()
                .any(|s| s.values().any(|v| v.contains(&volid)));
            if force && !in_snapshot {
                free.push(volid);
            } else if !key.starts_with("unused") {
                next.add_unused(&volid)
                    .ok_or_else(|| ApiError::param("idlist", "no free unusedN slot"))?;
            }
        }
        self.guests.write_config(vmid, &next)?;
        let storages = self.storage_config()?;
        for volid in free {
            if let Err(e) = ferrox_storage::free(&storages, &self.opts.node_name, &volid) {
                tracing::warn!("unlink of VM {vmid}: removing {volid}: {e}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_gets_new_identities_and_no_snapshot_bookkeeping() {
        let source = GuestConfig::parse(
            "cores: 2\nlock: backup\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\nparent: s1\nsmbios1: uuid=7b5f1b4e-0000-4000-8000-000000000001\ntemplate: 1\nunused0: local:100/vm-100-disk-1.qcow2\nvmgenid: 7b5f1b4e-0000-4000-8000-000000000002\n",
        )
        .unwrap();
        let cloned = clone_options(&source.options).unwrap();
        assert_eq!(cloned["cores"], "2");
        for gone in ["lock", "parent", "template", "unused0"] {
            assert!(!cloned.contains_key(gone), "{gone}");
        }
        assert!(cloned["net0"].starts_with("virtio=BC:24:11:"));
        assert!(cloned["net0"].ends_with(",bridge=vmbr0"));
        assert_ne!(cloned["net0"], source.options["net0"]);
        assert_ne!(cloned["smbios1"], source.options["smbios1"]);
        assert!(cloned["smbios1"].starts_with("uuid="));
        assert_ne!(cloned["vmgenid"], source.options["vmgenid"]);
    }
}
