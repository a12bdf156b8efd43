//! Moving a guest to another node. Offline: the config changes owner in one store
//! transaction. Online: the target starts QEMU paused, waiting for the stream; the source
//! migrates over QMP; then one store transaction hands the config to the target, and only
//! after it committed does the target run the guest and the source quit. If the hand-over
//! cannot commit (no quorum), the target is killed and the source resumes: the guest runs
//! where its config is, and never on both nodes.
//!
//! Disks on local storage go along (shared/spec/qemu-on-these-machines.md §4): the target
//! allocates new images on the target storage and exports them over NBD; a running source
//! mirrors each disk into its export (`drive-mirror`) until source and copy are equal and
//! every write goes to both, then migrates the RAM; the mirrors end once the source is
//! paused, so the copies are exact; the hand-over names the new images. A stopped guest's
//! images are copied with `qemu-img convert` into `qemu-nbd` exports. The source images
//! are deleted only after the hand-over; any failure before it deletes the copies.
//!
//! A source that fails in the middle (power loss, cut off, fenced) cannot tell the target
//! how it ended, so the target watches each incoming migration itself (`watch_incoming`):
//! while the config sits on the source locked `migrate`, it waits; once the config is its
//! own (handed over, or recovered here by HA) and the source has not resumed the guest, it
//! resumes a copy that received everything and kills one that did not; when the config
//! went anywhere else, it kills the copy and frees its images.

use crate::cluster::store_error;
use crate::guests::{config_path, is_disk_key, IncomingRecord};
use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_api_types::qemu::{LocalDisk, MigratePreconditions, NotAllowed};
use ferrox_qemu::blockjob::{self, MirrorEnd};
use ferrox_qemu::migration::{self, MigrationStats, DEFAULT_MAX_BANDWIDTH};
use ferrox_qemu::{GuestProcess, LaunchSpec};
use ferrox_store::{Expect, Member, Op};
use ferrox_types::{GuestConfig, PropertyString, VolumeId};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A migration that did not converge by then is cancelled (the source keeps running).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a target waits for the source's `resume` once the config is its own.
const RESUME_GRACE: Duration = Duration::from_secs(3);
const INCOMING_POLL: Duration = Duration::from_millis(500);
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// What the checks found out, for the worker.
pub struct MigrationPlan {
    pub vmid: u32,
    pub target: Member,
    pub online: bool,
    /// Bytes per second.
    pub bandwidth: u64,
    /// Disks on local storage, copied to the target.
    pub local_disks: Vec<LocalMove>,
}

/// A local disk that moves with its guest: where it goes and what the target allocates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalMove {
    pub key: String,
    pub volid: String,
    /// The storage on the target.
    pub storage: String,
    pub format: String,
    /// Virtual size in bytes.
    pub size: u64,
}

/// What the target set up for incoming local disks: their new volumes and NBD exports.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IncomingDisks {
    /// Disk key → new volume id.
    pub volumes: BTreeMap<String, String>,
    /// Disk key → NBD URI the source writes into.
    pub exports: BTreeMap<String, String>,
}

/// How long copying a stopped guest's disk to the target may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(3600);

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn storage_volumes(cfg: &GuestConfig) -> Vec<(String, String)> {
    cfg.options
        .iter()
        .filter(|(k, _)| is_disk_key(k))
        .filter_map(|(k, v)| {
            let p = PropertyString::parse(v).ok()?;
            if p.get("media", None) == Some("cdrom") {
                return None;
            }
            let file = p.get("file", Some("file"))?;
            VolumeId::parse(file).map(|_| (k.clone(), file.to_string()))
        })
        .collect()
}

impl Node {
    /// Every check that can refuse a migration, before anything changes.
    pub fn plan_migration(
        &self,
        vmid: u32,
        target: &str,
        online: bool,
        with_local_disks: bool,
        bwlimit_kib: Option<u64>,
        targetstorage: Option<&ferrox_types::StorageMap>,
    ) -> Result<MigrationPlan, ApiError> {
        if target == self.opts.node_name {
            return Err(ApiError::param(
                "target",
                format!("target is local node '{target}'"),
            ));
        }
        let member = self
            .store
            .status()
            .member_named(target)
            .map(|m| m.member.clone())
            .ok_or_else(|| ApiError::param("target", format!("no such cluster node '{target}'")))?;
        let cfg = self.guest_config(vmid)?;
        if let Some(lock) = cfg.options.get("lock") {
            return Err(ApiError::new(400, format!("VM is locked ({lock})")));
        }
        let running = self.guests.process(vmid).is_some();
        let me = self.opts.node_name.as_str();
        if let Some(refusal) = self
            .cpu_refusals(&cfg, running.then_some(me))?
            .remove(target)
        {
            return Err(ApiError::param("target", refusal.reason));
        }
        if let Some(refusal) = self.bridge_refusal(&cfg, target)? {
            return Err(ApiError::param("target", refusal));
        }
        if running && !online {
            return Err(ApiError::param(
                "online",
                "can't migrate running VM without --online",
            ));
        }
        let storages = self.storage_config()?;
        // A CD image on node-local storage is not on the target (Proxmox VE refuses too).
        for (key, disk) in cfg.disks() {
            let file = disk.get("file", Some("file")).unwrap_or("");
            let local = VolumeId::parse(file)
                .and_then(|v| storages.storages.get(&v.storage))
                .is_some_and(|s| !s.shared);
            if disk.get("media", None) == Some("cdrom") && local {
                return Err(ApiError::param(
                    "target",
                    format!("{key}: can't migrate local cdrom '{file}': put it on shared storage or eject it"),
                ));
            }
        }
        let identity = ferrox_types::StorageMap::default();
        let map = targetstorage.unwrap_or(&identity);
        let mut local_disks = Vec::new();
        for (key, volid) in storage_volumes(&cfg) {
            let Some(id) = VolumeId::parse(&volid).map(|v| v.storage) else {
                continue;
            };
            let storage = storages.storages.get(&id).ok_or_else(|| {
                ApiError::new(400, format!("{key}: storage '{id}' does not exist"))
            })?;
            if storage.shared {
                if !ferrox_storage::is_usable_on(storage, target) {
                    return Err(ApiError::param(
                        "target",
                        format!("{key}: storage '{id}' is not available on node '{target}'"),
                    ));
                }
                continue;
            }
            if running && !with_local_disks {
                return Err(ApiError::param(
                    "with-local-disks",
                    format!(
                        "{key}: can't live-migrate local disk '{volid}' without with-local-disks=1"
                    ),
                ));
            }
            if VolumeId::parse(&volid).is_some_and(|v| v.is_base() || v.base().is_some()) {
                return Err(ApiError::param(
                    "target",
                    format!("{key}: '{volid}' is or builds on a template's base image: it cannot move to another node"),
                ));
            }
            if cfg
                .snapshots
                .values()
                .any(|s| s.values().any(|v| v.contains(&volid)))
            {
                return Err(ApiError::param(
                    "with-local-disks",
                    format!("{key}: local disk '{volid}' has snapshots, which a copy would lose: delete them first"),
                ));
            }
            let to = map.target(&id).to_string();
            let field = if targetstorage.is_some() {
                "targetstorage"
            } else {
                "target"
            };
            match storages.storages.get(&to) {
                Some(t) if ferrox_storage::is_usable_on(t, target) => {
                    if !t.content.contains("images") {
                        return Err(ApiError::param(
                            field,
                            format!("{key}: storage '{to}' does not hold VM images"),
                        ));
                    }
                }
                _ => {
                    return Err(ApiError::param(
                        field,
                        format!("{key}: storage '{to}' is not available on node '{target}'"),
                    ))
                }
            }
            let (path, format) = ferrox_storage::resolve(&storages, me, &volid)
                .map_err(|e| ApiError::param(&key, e.to_string()))?;
            let (size, _) = ferrox_storage::image_info(&path)
                .map_err(|e| ApiError::param(&key, e.to_string()))?;
            local_disks.push(LocalMove {
                key,
                volid,
                storage: to,
                format,
                size,
            });
        }
        if running {
            let answer =
                crate::cluster::peer_resources(self, &member, Some("node")).map_err(|e| {
                    ApiError::param("target", format!("node '{target}' is not reachable: {e}"))
                })?;
            let node = answer.first();
            let free = node
                .and_then(|n| n.maxmem)
                .unwrap_or(0)
                .saturating_sub(node.and_then(|n| n.mem).unwrap_or(0));
            let needed = cfg.memory_mib() * 1024 * 1024;
            if needed > free {
                return Err(ApiError::param(
                    "target",
                    format!(
                        "node '{target}' has not enough free memory: {} free, the VM needs {}",
                        mib(free),
                        mib(needed)
                    ),
                ));
            }
        }
        Ok(MigrationPlan {
            vmid,
            target: member,
            online: running,
            bandwidth: bwlimit_kib
                .or_else(|| self.datacenter_migration_limit())
                .map(|k| k * 1024)
                .unwrap_or(DEFAULT_MAX_BANDWIDTH),
            local_disks,
        })
    }

    /// datacenter.cfg's `bwlimit` for migrations, in KiB/s (Proxmox VE: `migration=`,
    /// else `default=`); applies to migrations that name no limit, HA's among them.
    fn datacenter_migration_limit(&self) -> Option<u64> {
        let entry = self.tree.get("datacenter.cfg")?;
        ferrox_types::DatacenterConfig::parse_cfg(&entry.data)
            .ok()?
            .migration_bwlimit_kib
    }

    /// `GET .../migrate`: where the guest could go now, and why not elsewhere.
    pub fn migration_preconditions(
        &self,
        vmid: u32,
        target: Option<&str>,
    ) -> Result<MigratePreconditions, ApiError> {
        let cfg = self.guest_config(vmid)?;
        let running = self.guests.process(vmid).is_some();
        let storages = self.storage_config()?;
        let local_disks = storage_volumes(&cfg)
            .into_iter()
            .filter(|(_, volid)| {
                VolumeId::parse(volid)
                    .and_then(|v| storages.storages.get(&v.storage).map(|s| !s.shared))
                    .unwrap_or(true)
            })
            .map(|(drivename, volid)| LocalDisk {
                size: ferrox_storage::resolve(&storages, &self.opts.node_name, &volid)
                    .and_then(|(path, _)| ferrox_storage::image_info(&path))
                    .map(|(size, _)| size)
                    .unwrap_or(0),
                drivename,
                volid,
            })
            .collect();
        let mut allowed = Vec::new();
        let mut not_allowed = BTreeMap::new();
        let me = self.opts.node_name.as_str();
        let mut cpu_refusals = self.cpu_refusals(&cfg, running.then_some(me))?;
        for m in crate::cluster::other_members(self) {
            if target.is_some_and(|t| t != m.name) {
                continue;
            }
            if let Some(refusal) = cpu_refusals.remove(&m.name) {
                not_allowed.insert(
                    m.name.clone(),
                    NotAllowed {
                        reason: refusal.reason,
                        missing_cpu_flags: refusal.missing,
                    },
                );
                continue;
            }
            match self.plan_migration(vmid, &m.name, running, true, None, None) {
                Ok(_) => allowed.push(m.name.clone()),
                Err(e) => {
                    let reason = e.errors.values().next().cloned().unwrap_or(e.message);
                    not_allowed.insert(
                        m.name.clone(),
                        NotAllowed {
                            reason,
                            missing_cpu_flags: Vec::new(),
                        },
                    );
                }
            }
        }
        Ok(MigratePreconditions {
            running: u8::from(running),
            allowed_nodes: allowed,
            not_allowed_nodes: not_allowed,
            local_disks,
            local_resources: Vec::new(),
            mapped_resources: Vec::new(),
        })
    }

    /// The worker of `qmigrate`.
    pub fn migrate_guest(
        self: &Arc<Self>,
        plan: MigrationPlan,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let vmid = plan.vmid;
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let started = Instant::now();
        let target = plan.target.name.clone();
        log.log(format!(
            "starting migration of VM {vmid} to node '{target}' ({})",
            plan.target.address
        ));
        let cfg = self.guest_config(vmid)?;
        let mut locked = (*cfg).clone();
        locked.options.insert("lock".into(), "migrate".into());
        let locked = self.guests.write_config(vmid, &locked)?;
        let result = if plan.online {
            self.migrate_online(&plan, &locked, log)
        } else {
            self.migrate_offline(&plan, &locked, log)
        };
        if let Err(e) = result {
            // Still ours: unlock it.
            if let Some(current) = self.guests.config(vmid) {
                let mut unlocked = (*current).clone();
                unlocked.options.remove("lock");
                let _ = self.guests.write_config(vmid, &unlocked);
            }
            return Err(format!("migration aborted: {e}").into());
        }
        let secs = started.elapsed().as_secs();
        log.log(format!(
            "migration finished successfully (duration {:02}:{:02}:{:02})",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ));
        Ok(())
    }

    /// The config changes owner, unlocked, in one transaction; disks that were copied
    /// name their new volumes (`volumes`: disk key → volume id).
    fn hand_over(
        &self,
        vmid: u32,
        target: &str,
        locked: &GuestConfig,
        volumes: &BTreeMap<String, String>,
    ) -> Result<u64, String> {
        let mut moved = locked.clone();
        moved.options.remove("lock");
        for (key, volid) in volumes {
            let value = moved
                .options
                .get(key)
                .ok_or_else(|| format!("{key} vanished from the config"))?;
            let mut p = PropertyString::parse(value).map_err(|e| e.to_string())?;
            p.set_file(volid);
            moved.options.insert(key.clone(), p.to_string());
        }
        let ops = vec![
            Op::Delete {
                path: config_path(&self.opts.node_name, vmid),
                expect: Expect::Digest(locked.digest.clone()),
            },
            Op::Put {
                path: config_path(target, vmid),
                data: moved.to_text(),
                expect: Expect::Absent,
            },
        ];
        let index = self
            .tree
            .txn(ops)
            .map_err(|e| format!("handing the config over: {}", store_error(e).message))?;
        self.guests.refresh(vmid);
        Ok(index)
    }

    /// A stopped guest: local disks are copied into the target's new images, then the
    /// config moves.
    fn migrate_offline(
        &self,
        plan: &MigrationPlan,
        locked: &GuestConfig,
        log: &TaskLog,
    ) -> Result<(), String> {
        let vmid = plan.vmid;
        let target = &plan.target;
        if plan.local_disks.is_empty() {
            log.log("VM is stopped: moving its configuration");
            return self
                .hand_over(vmid, &target.name, locked, &BTreeMap::new())
                .map(drop);
        }
        let answer = self.peer_call(
            target,
            vmid,
            "receive",
            json!({"source": self.opts.node_name, "disks": plan.local_disks}),
        )?;
        let incoming: IncomingDisks = serde_json::from_value(answer)
            .map_err(|e| format!("answer of {}: {e}", target.name))?;
        let abort = |why: String| -> String {
            let volumes: Vec<&String> = incoming.volumes.values().collect();
            let _ = self.peer_call(target, vmid, "abort", json!({ "volumes": volumes }));
            why
        };
        let storages = self.storage_config().map_err(|e| abort(e.message))?;
        for d in &plan.local_disks {
            let started = Instant::now();
            let uri = incoming
                .exports
                .get(&d.key)
                .ok_or_else(|| abort(format!("{}: the target exports no image", d.key)))?;
            let (path, format) = ferrox_storage::resolve(&storages, &self.opts.node_name, &d.volid)
                .map_err(|e| abort(e.to_string()))?;
            log.log(format!(
                "{}: copying {} ({}) to {} on '{}'",
                d.key,
                d.volid,
                mib(d.size),
                incoming
                    .volumes
                    .get(&d.key)
                    .map(String::as_str)
                    .unwrap_or("?"),
                target.name
            ));
            ferrox_storage::copy_image_to_nbd((&path, &format), uri)
                .map_err(|e| abort(format!("{}: {e}", d.key)))?;
            log.log(format!(
                "{}: copied in {} ms",
                d.key,
                started.elapsed().as_millis()
            ));
        }
        self.peer_call(target, vmid, "received", json!({}))
            .map_err(&abort)?;
        self.hand_over(vmid, &target.name, locked, &incoming.volumes)
            .map_err(abort)?;
        self.free_moved_disks(&plan.local_disks, log);
        Ok(())
    }

    /// After a hand-over: the source images of copied disks are not any guest's now.
    fn free_moved_disks(&self, disks: &[LocalMove], log: &TaskLog) {
        let Ok(storages) = self.storage_config() else {
            return;
        };
        for d in disks {
            match ferrox_storage::free(&storages, &self.opts.node_name, &d.volid) {
                Ok(()) => log.log(format!("removed source image {}", d.volid)),
                Err(e) => log.warn(format!("could not remove source image {}: {e}", d.volid)),
            }
        }
    }

    fn peer_call(
        &self,
        member: &Member,
        vmid: u32,
        action: &str,
        body: Value,
    ) -> Result<Value, String> {
        let answer = self
            .peers
            .request(
                member,
                "POST",
                &format!("/ferrox/migrate/{vmid}/{action}"),
                body.to_string().as_bytes(),
                PEER_TIMEOUT,
            )
            .map_err(|e| e.to_string())?;
        let result: Result<Value, String> = serde_json::from_slice(&answer)
            .map_err(|e| format!("answer of {}: {e}", member.name))?;
        result
    }

    fn migrate_online(
        &self,
        plan: &MigrationPlan,
        locked: &GuestConfig,
        log: &TaskLog,
    ) -> Result<(), String> {
        let vmid = plan.vmid;
        let target = &plan.target;
        let source = self
            .guests
            .process(vmid)
            .ok_or_else(|| format!("VM {vmid} stopped running"))?;
        let incoming = self.peer_call(
            target,
            vmid,
            "incoming",
            json!({"source": self.opts.node_name, "disks": plan.local_disks}),
        )?;
        let uri = incoming["uri"].as_str().unwrap_or("").to_string();
        let disks: IncomingDisks =
            serde_json::from_value(incoming["disks"].clone()).unwrap_or_default();
        log.log(format!(
            "started VM {vmid} on node '{}', waiting for the migration stream at {uri}",
            target.name
        ));
        log.log(format!(
            "migration bandwidth limit {}/s",
            mib(plan.bandwidth)
        ));
        let abort = |why: String| -> String {
            let volumes: Vec<&String> = disks.volumes.values().collect();
            let _ = self.peer_call(target, vmid, "abort", json!({ "volumes": volumes }));
            why
        };
        let mut qmp = source.qmp().map_err(|e| abort(e.to_string()))?;
        let jobs = self
            .mirror_local_disks(&mut qmp, plan, &disks, log)
            .map_err(abort)?;
        let migrated = migration::migrate(
            &mut qmp,
            &uri,
            plan.bandwidth,
            MIGRATION_TIMEOUT,
            Duration::from_secs(1),
            &mut |s: &MigrationStats| {
                log.log(format!(
                    "migration {}, transferred {} of {} VM-state, remaining {}, {:.0} Mbit/s, expected downtime {} ms",
                    s.status,
                    mib(s.transferred),
                    mib(s.total),
                    mib(s.remaining),
                    s.mbps,
                    s.expected_downtime_ms
                ))
            },
        );
        let stats = match migrated {
            Ok(stats) => stats,
            Err(e) => {
                // The source runs on; its disks stop being copied.
                blockjob::cancel(&mut qmp, &jobs);
                return Err(abort(e.to_string()));
            }
        };
        let completed_at = Instant::now();
        // The source is paused now: ending the mirrors leaves exact copies on the target.
        if !jobs.is_empty() {
            if let Err(e) = blockjob::finish(&mut qmp, &jobs, MirrorEnd::Detach) {
                blockjob::cancel(&mut qmp, &jobs);
                let outcome = match qmp.execute("cont", None) {
                    Ok(_) => "VM resumed on the source".to_string(),
                    Err(c) => format!("the source QEMU does not answer ({c}): VM stopped"),
                };
                return Err(abort(format!("ending the disk mirrors: {e}; {outcome}")));
            }
            log.log(format!("{} local disk(s) copied", jobs.len()));
        }
        // QEMU allows one QMP client per socket: let go, so others can see `postmigrate`.
        drop(qmp);
        log.log(format!(
            "migration completed: transferred {} in {} ms, {} dirty-sync passes, downtime {} ms",
            mib(stats.transferred),
            stats.total_time_ms,
            stats.dirty_sync_count,
            stats.downtime_ms
        ));
        let index = match self.hand_over(vmid, &target.name, locked, &disks.volumes) {
            Ok(index) => index,
            Err(e) => {
                // The guest must run where its config is: here. Kill the copy, resume.
                let _ = abort(String::new());
                let _ = source.resume();
                return Err(format!("{e}; VM resumed on the source"));
            }
        };
        let resumed = self.peer_call(target, vmid, "resume", json!({ "index": index }));
        let handover_ms = completed_at.elapsed().as_millis();
        if let Err(e) = resumed {
            // The config is the target's: this copy may never run again, and the target
            // resumes its own once it sees the hand-over (`watch_incoming`).
            let _ = source.stop();
            let _ = std::fs::remove_file(&source.qmp_socket);
            self.guests.mark_stopped(vmid);
            return Err(format!(
                "the config is on '{}' but the VM could not be resumed there: {e}; the target resumes it when it sees the hand-over",
                target.name
            ));
        }
        let _ = source.stop();
        let _ = std::fs::remove_file(&source.qmp_socket);
        self.guests.mark_stopped(vmid);
        log.log(format!(
            "VM {vmid} running on '{}': downtime {} ms (QEMU {} ms + hand-over {} ms)",
            target.name,
            stats.downtime_ms as u128 + handover_ms,
            stats.downtime_ms,
            handover_ms
        ));
        self.free_moved_disks(&plan.local_disks, log);
        Ok(())
    }

    /// Mirrors every local disk into its NBD export on the target until all are in sync;
    /// returns the job ids.
    fn mirror_local_disks(
        &self,
        qmp: &mut ferrox_qemu::Qmp,
        plan: &MigrationPlan,
        disks: &IncomingDisks,
        log: &TaskLog,
    ) -> Result<Vec<String>, String> {
        let mut jobs = Vec::new();
        for d in &plan.local_disks {
            let export = disks
                .exports
                .get(&d.key)
                .ok_or_else(|| format!("{}: the target exports no image", d.key))?;
            log.log(format!(
                "{}: mirroring {} ({}) to {} on '{}'",
                d.key,
                d.volid,
                mib(d.size),
                disks.volumes.get(&d.key).map(String::as_str).unwrap_or("?"),
                plan.target.name
            ));
            match blockjob::start_mirror(qmp, &format!("drive-{}", d.key), export, "raw") {
                Ok(id) => jobs.push(id),
                Err(e) => {
                    blockjob::cancel(qmp, &jobs);
                    return Err(format!("{}: {e}", d.key));
                }
            }
        }
        if jobs.is_empty() {
            return Ok(jobs);
        }
        let started = Instant::now();
        blockjob::wait_ready(qmp, &jobs, COPY_TIMEOUT, &mut |done, total| {
            log.log(format!("disk mirror: {} of {}", mib(done), mib(total)))
        })
        .map_err(|e| e.to_string())?;
        log.log(format!(
            "disk mirrors in sync after {} ms",
            started.elapsed().as_millis()
        ));
        Ok(jobs)
    }

    // ---- the target side (peer requests) --------------------------------------------

    /// The address this node serves migration streams and NBD exports on.
    fn stream_host(&self) -> String {
        let member = self.store.member().clone();
        member
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or(member.address.clone())
    }

    /// Refuses to receive a guest this node already has.
    fn check_not_here(&self, vmid: u32) -> Result<(), String> {
        if self.guests.config(vmid).is_some() {
            return Err(format!(
                "VM {vmid} already exists on '{}'",
                self.opts.node_name
            ));
        }
        if self.guests.process(vmid).is_some() {
            return Err(format!("a QEMU process for VM {vmid} already runs here"));
        }
        Ok(())
    }

    /// New images for incoming local disks on their target storages (key → volume id);
    /// all or nothing.
    fn allocate_incoming(
        &self,
        vmid: u32,
        disks: &[LocalMove],
    ) -> Result<BTreeMap<String, String>, String> {
        let storages = self.storage_config().map_err(|e| e.message)?;
        let mut volumes = BTreeMap::new();
        for d in disks {
            let allocated = ferrox_storage::open(&storages, &self.opts.node_name, &d.storage)
                .and_then(|s| {
                    s.allocate(
                        vmid,
                        d.size,
                        ferrox_storage::copy_format(&*s, &d.format, None),
                    )
                });
            match allocated {
                Ok(volid) => {
                    volumes.insert(d.key.clone(), volid);
                }
                Err(e) => {
                    self.free_incoming(vmid, volumes.values());
                    return Err(format!("{}: allocating on '{}': {e}", d.key, d.storage));
                }
            }
        }
        Ok(volumes)
    }

    /// Frees images allocated for an incoming guest that did not arrive (only images of
    /// `vmid`, and never while its config is ours).
    fn free_incoming<'a>(&self, vmid: u32, volumes: impl Iterator<Item = &'a String>) {
        if self.guests.config(vmid).is_some() {
            return;
        }
        let Ok(storages) = self.storage_config() else {
            return;
        };
        for volid in volumes {
            if VolumeId::parse(volid).and_then(|v| v.owner()) == Some(vmid) {
                let _ = ferrox_storage::free(&storages, &self.opts.node_name, volid);
            }
        }
    }

    fn nbd_pid_file(&self, vmid: u32, key: &str) -> std::path::PathBuf {
        self.guests.run_dir.join(format!("{vmid}-{key}.nbd.pid"))
    }

    /// Stops every `qemu-nbd` serving an incoming disk of `vmid`.
    fn stop_nbd_servers(&self, vmid: u32) {
        let prefix = format!("{vmid}-");
        let Ok(entries) = std::fs::read_dir(&self.guests.run_dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".nbd.pid") {
                ferrox_qemu::nbd::stop(&e.path());
            }
        }
    }

    /// Starts QEMU for `vmid` paused, waiting for the migration stream; with local disks,
    /// on new images exported over NBD for the source's mirrors. Returns the stream's URI
    /// and the disks' exports.
    pub fn prepare_incoming(
        self: &Arc<Self>,
        vmid: u32,
        source: &str,
        disks: Vec<LocalMove>,
    ) -> Result<Value, String> {
        // Not while an earlier incoming copy of this guest is being concluded.
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.check_not_here(vmid)?;
        let path = config_path(source, vmid);
        let entry = self
            .tree
            .get(&path)
            .ok_or_else(|| format!("{path} does not exist"))?;
        let mut cfg = GuestConfig::parse(&entry.data).map_err(|e| e.to_string())?;
        let host = self.stream_host();
        let free_port = || {
            std::net::TcpListener::bind((host.as_str(), 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("no free port on {host}: {e}"))
        };
        let uri = format!("tcp:{host}:{}", free_port()?);
        let volumes = self.allocate_incoming(vmid, &disks)?;
        for (key, volid) in &volumes {
            let mut p =
                PropertyString::parse(cfg.options.get(key).map(String::as_str).unwrap_or(""))
                    .map_err(|e| e.to_string())?;
            p.set_file(volid);
            cfg.options.insert(key.clone(), p.to_string());
        }
        let started = (|| -> Result<(GuestProcess, BTreeMap<String, String>), String> {
            let storages = self.storage_config().map_err(|e| e.message)?;
            let node = self.opts.node_name.clone();
            let resolve = move |volid: &str| {
                ferrox_storage::resolve(&storages, &node, volid).map_err(|e| e.to_string())
            };
            let cpu_models = self.custom_cpu_models().map_err(|e| e.message)?;
            let spec = LaunchSpec {
                vmid,
                accel: self.guest_accel(&cfg),
                run_dir: &self.guests.run_dir,
                resolve: &resolve,
                incoming: Some(&uri),
                cpu_models: &cpu_models,
                net_mode: self.opts.net_mode,
                paused: true,
            };
            let args = ferrox_qemu::command_line(&self.with_bridge_mtus(&cfg), &spec)
                .map_err(|e| e.to_string())?;
            let process = GuestProcess::start(&self.opts.qemu_binary, &args, &spec)
                .map_err(|e| format!("starting the incoming VM: {e}"))?;
            let exported = (|| -> Result<BTreeMap<String, String>, String> {
                let mut qmp = process.qmp().map_err(|e| e.to_string())?;
                self.plug_guest_taps(vmid, &cfg, &mut qmp, None)?;
                migration::set_capabilities(&mut qmp).map_err(|e| e.to_string())?;
                let mut exports = BTreeMap::new();
                if disks.is_empty() {
                    return Ok(exports);
                }
                let port = free_port()?;
                qmp.execute(
                    "nbd-server-start",
                    Some(json!({"addr": {"type": "inet",
                        "data": {"host": host, "port": port.to_string()}}})),
                )
                .map_err(|e| format!("nbd-server-start: {e}"))?;
                let blocks = qmp
                    .execute("query-block", None)
                    .map_err(|e| e.to_string())?;
                for d in &disks {
                    let device = format!("drive-{}", d.key);
                    let node_name = blocks
                        .as_array()
                        .and_then(|b| b.iter().find(|b| b["device"] == device.as_str()))
                        .and_then(|b| b["inserted"]["node-name"].as_str())
                        .ok_or_else(|| format!("{}: no block node in the incoming VM", d.key))?;
                    qmp.execute(
                        "block-export-add",
                        Some(json!({"type": "nbd", "id": device, "node-name": node_name,
                            "writable": true, "name": device})),
                    )
                    .map_err(|e| format!("{}: block-export-add: {e}", d.key))?;
                    exports.insert(
                        d.key.clone(),
                        format!("nbd:{host}:{port}:exportname={device}"),
                    );
                }
                Ok(exports)
            })();
            match exported {
                Ok(exports) => Ok((process, exports)),
                Err(e) => {
                    let _ = process.stop();
                    Err(e)
                }
            }
        })();
        match started {
            Ok((process, exports)) => {
                self.watch_incoming(vmid, source, volumes.values().cloned().collect());
                Ok(json!({
                    "uri": uri,
                    "pid": process.pid,
                    "disks": IncomingDisks { volumes, exports },
                }))
            }
            Err(e) => {
                self.free_incoming(vmid, volumes.values());
                Err(e)
            }
        }
    }

    /// For a stopped guest's local disks: new images served by `qemu-nbd` for the
    /// source's copies.
    pub fn receive_disks(
        self: &Arc<Self>,
        vmid: u32,
        source: &str,
        disks: Vec<LocalMove>,
    ) -> Result<Value, String> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.check_not_here(vmid)?;
        let host = self.stream_host();
        let volumes = self.allocate_incoming(vmid, &disks)?;
        let served = (|| -> Result<BTreeMap<String, String>, String> {
            let storages = self.storage_config().map_err(|e| e.message)?;
            let mut exports = BTreeMap::new();
            for d in &disks {
                let volid = &volumes[&d.key];
                let (path, format) =
                    ferrox_storage::resolve(&storages, &self.opts.node_name, volid)
                        .map_err(|e| e.to_string())?;
                let port = std::net::TcpListener::bind((host.as_str(), 0))
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("no free port on {host}: {e}"))?
                    .port();
                let name = format!("drive-{}", d.key);
                ferrox_qemu::nbd::serve(
                    &path,
                    &format,
                    &host,
                    port,
                    &name,
                    &self.nbd_pid_file(vmid, &d.key),
                )?;
                exports.insert(d.key.clone(), format!("nbd://{host}:{port}/{name}"));
            }
            Ok(exports)
        })();
        match served {
            Ok(exports) => {
                self.watch_incoming(vmid, source, volumes.values().cloned().collect());
                Ok(json!(IncomingDisks { volumes, exports }))
            }
            Err(e) => {
                self.stop_nbd_servers(vmid);
                self.free_incoming(vmid, volumes.values());
                Err(e)
            }
        }
    }

    /// The source has copied every disk: the servers stop (flushing the images).
    pub fn disks_received(&self, vmid: u32) -> Result<Value, String> {
        self.stop_nbd_servers(vmid);
        Ok(Value::Null)
    }

    /// Runs the migrated guest once its config is ours: the source committed the
    /// hand-over at log `index`, which this node may not have applied yet.
    pub fn resume_incoming(&self, vmid: u32, index: u64) -> Result<Value, String> {
        if !self.tree.wait_applied(index) {
            return Err(format!(
                "the hand-over (log index {index}) did not arrive here in time"
            ));
        }
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.guests.incoming_ends(vmid, None);
        self.resume_handed_over(vmid)
    }

    /// Runs the incoming copy of a guest whose config is ours (`cont` on one that runs
    /// already changes nothing). The caller holds the guest's lock.
    fn resume_handed_over(&self, vmid: u32) -> Result<Value, String> {
        self.guests.refresh(vmid);
        if self.guests.config(vmid).is_none() {
            return Err(format!("VM {vmid}'s config has not been handed over"));
        }
        let process = self
            .guests
            .process(vmid)
            .ok_or_else(|| format!("no incoming QEMU process for VM {vmid}"))?;
        // The mirrors of the source are done: no more writes come over NBD.
        if let Ok(mut qmp) = process.qmp() {
            let _ = qmp.execute("nbd-server-stop", None);
        }
        process.resume().map_err(|e| e.to_string())?;
        let state = process.status().map_err(|e| e.to_string())?;
        let accel = if state.kvm {
            ferrox_qemu::Accelerator::Kvm
        } else {
            ferrox_qemu::Accelerator::Tcg
        };
        self.guests
            .mark_running(vmid, process.pid, accel, &state.status);
        Ok(json!({"status": state.status}))
    }

    /// Kills an incoming copy after a failed or cancelled migration (QEMU usually exits
    /// by itself then) and frees the images made for it. Never touches a guest whose
    /// config is ours.
    pub fn abort_incoming(&self, vmid: u32, volumes: Vec<String>) -> Result<Value, String> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        if self.guests.config(vmid).is_some() {
            return Err(format!("VM {vmid} belongs to this node; not stopping it"));
        }
        self.guests.incoming_ends(vmid, None);
        self.discard_incoming(vmid, &volumes);
        Ok(Value::Null)
    }

    /// Kills an incoming copy, stops its NBD servers and frees the images made for it
    /// (unless the config is ours). The caller holds the guest's lock.
    fn discard_incoming(&self, vmid: u32, volumes: &[String]) {
        if let Some(p) = self.guests.process(vmid) {
            let _ = p.stop();
            let _ = std::fs::remove_file(&p.qmp_socket);
        }
        self.guests.mark_stopped(vmid);
        self.stop_nbd_servers(vmid);
        self.free_incoming(vmid, volumes.iter());
    }

    /// Watches an incoming migration from `source` until the source concludes it, or,
    /// when the source cannot (it failed), concludes it from where the config went.
    fn watch_incoming(self: &Arc<Self>, vmid: u32, source: &str, volumes: Vec<String>) {
        let record = IncomingRecord {
            source: source.to_string(),
            volumes,
        };
        let number = self.guests.incoming_begins(vmid, &record);
        let node = Arc::clone(self);
        let IncomingRecord { source, volumes } = record;
        let watcher = std::thread::Builder::new()
            .name(format!("incoming-{vmid}"))
            .spawn(move || {
                let mut ours_since: Option<Instant> = None;
                loop {
                    std::thread::sleep(INCOMING_POLL);
                    if !node.guests.incoming_open(vmid, number) {
                        return;
                    }
                    let owner = crate::cluster::vmid_owner(&node, vmid);
                    let ours = owner.as_deref() == Some(node.opts.node_name.as_str());
                    if owner.as_deref() == Some(source.as_str())
                        && node.config_lock_on(&source, vmid).as_deref() == Some("migrate")
                    {
                        ours_since = None;
                        continue;
                    }
                    // The source's `resume` waits for the hand-over to arrive here: give
                    // it time once it has.
                    if ours && ours_since.get_or_insert_with(Instant::now).elapsed() < RESUME_GRACE
                    {
                        continue;
                    }
                    let lock = node.guests.lock(vmid);
                    let _held = lock.hold();
                    if !node.guests.incoming_ends(vmid, Some(number)) {
                        return;
                    }
                    node.conclude_incoming(vmid, &source, ours, &volumes);
                    return;
                }
            });
        if let Err(e) = watcher {
            tracing::error!("VM {vmid}: cannot watch the incoming migration: {e}");
        }
    }

    /// The end of an incoming migration its source did not conclude. The caller holds
    /// the guest's lock.
    fn conclude_incoming(&self, vmid: u32, source: &str, ours: bool, volumes: &[String]) {
        self.guests.refresh(vmid);
        if !ours {
            tracing::warn!(
                "VM {vmid}: the migration from '{source}' ended without it (its config is not on the way here any more): discarding the incoming copy"
            );
            self.discard_incoming(vmid, volumes);
            return;
        }
        self.stop_nbd_servers(vmid);
        let Some(process) = self.guests.process(vmid) else {
            // An offline migration: its images are in place with the config.
            return;
        };
        // An incoming QEMU is `inmigrate` until it received the whole state, then
        // `paused`; a failed stream ends the process. QMP serves one client at a time:
        // ask again before taking silence for an incomplete copy.
        let mut state = process.status();
        for _ in 0..3 {
            if state.is_ok() || !ferrox_qemu::process::pid_alive(process.pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            state = process.status();
        }
        match state {
            // Resumed already: by the source's call, which a previous daemon process
            // answered before it ended.
            Ok(state) if state.status == "running" => {}
            Ok(state) if state.status == "paused" => match self.resume_handed_over(vmid) {
                Ok(_) => tracing::warn!(
                    "VM {vmid}: the config is here (handed over, or recovered here) but '{source}' did not resume the guest: resumed the complete copy"
                ),
                Err(e) => tracing::error!("VM {vmid}: resuming the handed-over guest: {e}"),
            },
            state => {
                tracing::warn!(
                    "VM {vmid}: the config is here but the migration from '{source}' did not complete ({}): stopping the incomplete copy",
                    state.map(|s| s.status).unwrap_or_else(|e| e.to_string())
                );
                let _ = process.stop();
                let _ = std::fs::remove_file(&process.qmp_socket);
                self.guests.mark_stopped(vmid);
            }
        }
    }

    /// At daemon start: a config of ours still locked `migrate` belongs to a migration the
    /// previous daemon process was running when it died (migrations run inside it). The
    /// guest stays here: a copy that still runs, or that finished streaming (`postmigrate`),
    /// runs on; the lock goes, and the target, seeing the config here unlocked, discards
    /// its copy (`watch_incoming`). Retried in the background until the store takes the
    /// writes (it may have no leader yet).
    pub fn settle_interrupted_migrations(self: &Arc<Self>) {
        let node = Arc::clone(self);
        // Incoming migrations the previous process watched go on being watched.
        for (vmid, record) in self.guests.incoming_left() {
            tracing::warn!(
                "VM {vmid}: watching again the incoming migration from '{}' the previous daemon process left",
                record.source
            );
            self.watch_incoming(vmid, &record.source, record.volumes);
        }
        let settle = move || {
            node.stop_handed_over_sources();
            for _ in 0..120 {
                let pending: Vec<u32> = node
                    .guests
                    .listing()
                    .into_iter()
                    .filter(|(_, fixed, _)| fixed.lock.as_deref() == Some("migrate"))
                    .map(|(vmid, _, _)| vmid)
                    .collect();
                if pending.is_empty() {
                    return;
                }
                for vmid in pending {
                    if let Err(e) = node.settle_interrupted_migration(vmid) {
                        tracing::warn!("VM {vmid}: interrupted migration: {e}");
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("settle-migrations".into())
            .spawn(settle)
        {
            tracing::error!("cannot settle interrupted migrations: {e}");
        }
    }

    /// A source copy that finished streaming (`postmigrate`) whose config is no longer
    /// ours: the previous daemon died after the hand-over, before it quit the copy.
    fn stop_handed_over_sources(&self) {
        for found in GuestProcess::all(&self.guests.run_dir) {
            let vmid = found.vmid;
            if self.guests.config(vmid).is_some() {
                continue;
            }
            let lock = self.guests.lock(vmid);
            let _held = lock.hold();
            if let Some(process) = self.guests.process(vmid) {
                if process.status().is_ok_and(|s| s.status == "postmigrate") {
                    let _ = process.stop();
                    self.guests.mark_stopped(vmid);
                    tracing::warn!(
                        "VM {vmid}: stopped the source copy of a migration handed over before the previous daemon process ended"
                    );
                }
            }
        }
    }

    fn settle_interrupted_migration(&self, vmid: u32) -> Result<(), String> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self
            .guests
            .config(vmid)
            .ok_or_else(|| "the config is gone".to_string())?;
        if cfg.options.get("lock").map(String::as_str) != Some("migrate") {
            return Ok(());
        }
        let process = self.guests.process(vmid);
        if let Some(process) = &process {
            let _ = process.qmp().and_then(|mut q| {
                // A stream still going (QEMU migrates on without its daemon) ends here.
                q.execute("migrate_cancel", None)?;
                Ok(())
            });
        }
        let mut unlocked = (*cfg).clone();
        unlocked.options.remove("lock");
        self.guests
            .write_config(vmid, &unlocked)
            .map_err(|e| e.message)?;
        tracing::warn!(
            "VM {vmid}: unlocked the migration the previous daemon process left unfinished; the guest stays on this node"
        );
        // A copy that finished streaming waits paused; the target's copy took over the
        // disks' write locks, which it gives up when it sees the config here unlocked and
        // discards itself (`watch_incoming`). Until then `cont` is refused.
        let Some(process) = process else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while process.status().is_ok_and(|s| s.status == "postmigrate") {
            match process.resume() {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("the source copy stays paused: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        Ok(())
    }

    /// The `lock` of guest `vmid`'s config on `owner`.
    fn config_lock_on(&self, owner: &str, vmid: u32) -> Option<String> {
        let entry = self.tree.get(&config_path(owner, vmid))?;
        GuestConfig::parse(&entry.data)
            .ok()?
            .options
            .get("lock")
            .cloned()
    }
}
