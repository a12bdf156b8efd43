//! Moving a guest to another node. Offline: the config changes owner in one store
//! transaction. Online: the target starts QEMU paused, waiting for the stream; the source
//! migrates over QMP; then one store transaction hands the config to the target, and only
//! after it committed does the target run the guest and the source quit. If the hand-over
//! cannot commit (no quorum), the target is killed and the source resumes: the guest runs
//! where its config is, and never on both nodes.

use crate::cluster::store_error;
use crate::guests::{config_path, is_disk_key};
use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_api_types::qemu::{LocalDisk, MigratePreconditions, NotAllowed};
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
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// What the checks found out, for the worker.
pub struct MigrationPlan {
    pub vmid: u32,
    pub target: Member,
    pub online: bool,
    /// Bytes per second.
    pub bandwidth: u64,
}

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
        if running && !online {
            return Err(ApiError::param(
                "online",
                "can't migrate running VM without --online",
            ));
        }
        let storages = self.storage_config()?;
        for (key, volid) in storage_volumes(&cfg) {
            let Some(id) = VolumeId::parse(&volid).map(|v| v.storage) else {
                continue;
            };
            let storage = storages.storages.get(&id).ok_or_else(|| {
                ApiError::new(400, format!("{key}: storage '{id}' does not exist"))
            })?;
            if !ferrox_storage::is_usable_on(storage, target) {
                return Err(ApiError::param(
                    "target",
                    format!("{key}: storage '{id}' is not available on node '{target}'"),
                ));
            }
            if !storage.shared {
                let why = if with_local_disks {
                    "migrating local disks (NBD + mirror) is not supported yet"
                } else {
                    "local disks need --with-local-disks, which is not supported yet"
                };
                return Err(ApiError::param(
                    "with-local-disks",
                    format!("{key}: can't migrate local disk '{volid}': {why}; put it on shared storage"),
                ));
            }
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
                .map(|k| k * 1024)
                .unwrap_or(DEFAULT_MAX_BANDWIDTH),
        })
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
            .map(|(drivename, volid)| LocalDisk { drivename, volid })
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
            match self.plan_migration(vmid, &m.name, running, false, None) {
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
        let _held = lock
            .lock()
            .map_err(|_| TaskError::from("guest lock poisoned"))?;
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
            log.log("VM is stopped: moving its configuration");
            self.hand_over(vmid, &target, &locked).map(|_| ())
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

    /// The config changes owner, unlocked, in one transaction.
    fn hand_over(&self, vmid: u32, target: &str, locked: &GuestConfig) -> Result<u64, String> {
        let mut moved = locked.clone();
        moved.options.remove("lock");
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
            json!({"source": self.opts.node_name}),
        )?;
        let uri = incoming["uri"].as_str().unwrap_or("").to_string();
        log.log(format!(
            "started VM {vmid} on node '{}', waiting for the migration stream at {uri}",
            target.name
        ));
        log.log(format!(
            "migration bandwidth limit {}/s",
            mib(plan.bandwidth)
        ));
        let abort = |why: String| -> String {
            let _ = self.peer_call(target, vmid, "abort", json!({}));
            why
        };
        let mut qmp = source.qmp().map_err(|e| abort(e.to_string()))?;
        let stats = migration::migrate(
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
        )
        .map_err(|e| abort(e.to_string()))?;
        let completed_at = Instant::now();
        // QEMU allows one QMP client per socket: let go, so others can see `postmigrate`.
        drop(qmp);
        log.log(format!(
            "migration completed: transferred {} in {} ms, {} dirty-sync passes, downtime {} ms",
            mib(stats.transferred),
            stats.total_time_ms,
            stats.dirty_sync_count,
            stats.downtime_ms
        ));
        let index = match self.hand_over(vmid, &target.name, locked) {
            Ok(index) => index,
            Err(e) => {
                // The guest must run where its config is: here. Kill the copy, resume.
                let _ = self.peer_call(target, vmid, "abort", json!({}));
                let _ = source.resume();
                return Err(format!("{e}; VM resumed on the source"));
            }
        };
        let resumed = self.peer_call(target, vmid, "resume", json!({ "index": index }));
        let handover_ms = completed_at.elapsed().as_millis();
        if let Err(e) = resumed {
            return Err(format!(
                "the config is on '{}' but the VM could not be resumed there: {e}; the source copy is left paused",
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
        Ok(())
    }

    // ---- the target side (peer requests) --------------------------------------------

    /// Starts QEMU for `vmid` paused, waiting for the migration stream; returns its URI.
    pub fn prepare_incoming(&self, vmid: u32, source: &str) -> Result<Value, String> {
        if self.guests.config(vmid).is_some() {
            return Err(format!(
                "VM {vmid} already exists on '{}'",
                self.opts.node_name
            ));
        }
        if self.guests.process(vmid).is_some() {
            return Err(format!("a QEMU process for VM {vmid} already runs here"));
        }
        let path = config_path(source, vmid);
        let entry = self
            .tree
            .get(&path)
            .ok_or_else(|| format!("{path} does not exist"))?;
        let cfg = GuestConfig::parse(&entry.data).map_err(|e| e.to_string())?;
        let member = self.store.member().clone();
        let host = member
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or(member.address.clone());
        let port = std::net::TcpListener::bind((host.as_str(), 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on {host}: {e}"))?
            .port();
        let uri = format!("tcp:{host}:{port}");
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
        };
        let args = ferrox_qemu::command_line(&cfg, &spec).map_err(|e| e.to_string())?;
        let process = GuestProcess::start(&self.opts.qemu_binary, &args, &spec)
            .map_err(|e| format!("starting the incoming VM: {e}"))?;
        let mut qmp = process.qmp().map_err(|e| e.to_string())?;
        migration::set_capabilities(&mut qmp).map_err(|e| e.to_string())?;
        Ok(json!({"uri": uri, "pid": process.pid}))
    }

    /// Runs the migrated guest once its config is ours: the source committed the
    /// hand-over at log `index`, which this node may not have applied yet.
    pub fn resume_incoming(&self, vmid: u32, index: u64) -> Result<Value, String> {
        if !self.tree.wait_applied(index) {
            return Err(format!(
                "the hand-over (log index {index}) did not arrive here in time"
            ));
        }
        self.guests.refresh(vmid);
        if self.guests.config(vmid).is_none() {
            return Err(format!("VM {vmid}'s config has not been handed over"));
        }
        let process = self
            .guests
            .process(vmid)
            .ok_or_else(|| format!("no incoming QEMU process for VM {vmid}"))?;
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
    /// by itself then). Never touches a guest whose config is ours.
    pub fn abort_incoming(&self, vmid: u32) -> Result<Value, String> {
        if self.guests.config(vmid).is_some() {
            return Err(format!("VM {vmid} belongs to this node; not stopping it"));
        }
        if let Some(p) = self.guests.process(vmid) {
            let _ = p.stop();
            let _ = std::fs::remove_file(&p.qmp_socket);
        }
        self.guests.mark_stopped(vmid);
        Ok(Value::Null)
    }
}
