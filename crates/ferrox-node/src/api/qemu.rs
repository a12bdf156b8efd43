//! `/nodes/{node}/qemu`: guests — create, configure (per-key privileges in
//! `guests::perm`), power, migrate, destroy.

use super::nodes::{rrd_params, rrd_rows};
use super::*;
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::rbac;
use ferrox_api::schema::{int, BOOL, STRING};
use ferrox_api::{ApiError, Endpoint, Extra, Method, Param, ParamType, Permission, TaskError};
use ferrox_api_types::nodes::RrdRow;
use ferrox_api_types::qemu::{
    GuestStatus, HaManaged, MigratePreconditions, PendingEntry, SnapshotCommand, SnapshotEntry,
};
use ferrox_api_types::{ConfigMap, Subdir, Upid};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn guest_rrddata(ctx: &C<'_>) -> Result<Vec<RrdRow>, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    ctx.state.guest_config(vmid)?;
    rrd_rows(ctx, &format!("qemu/{vmid}"))
}

fn list_guests(ctx: &C<'_>) -> Result<Vec<GuestStatus>, ApiError> {
    local_node(ctx)?;
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let list = ctx
        .state
        .guests
        .listing()
        .into_iter()
        .filter(|(vmid, _, _)| {
            rbac::check(
                &users,
                caller,
                &format!("/vms/{vmid}"),
                &["VM.Audit"],
                false,
            )
        })
        .map(|(vmid, fixed, info)| Node::guest_summary(vmid, &fixed, info.as_ref()))
        .collect();
    Ok(list)
}

/// Splits a config request into keys to set and keys to delete.
fn config_changes(ctx: &C<'_>) -> (BTreeMap<String, String>, Vec<String>) {
    let control = [
        "node",
        "vmid",
        "delete",
        "revert",
        "digest",
        "skiplock",
        "force",
        "start",
        "pool",
        "storage",
        "unique",
        "archive",
        "ha-managed",
        "live-restore",
        "bwlimit",
        "background_delay",
        "purge",
    ];
    let sets = ctx
        .params
        .0
        .iter()
        .filter(|(k, _)| !control.contains(&k.as_str()))
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    let deletes = ctx
        .params
        .str(&param::DELETE)
        .map(|d| {
            d.split([',', ';', ' ', '\0'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    (sets, deletes)
}

fn create_guest(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    // Proxmox VE: VM.Allocate on /vms/{vmid}, or on the pool the guest goes into.
    let pool = ctx.params.str(&param::POOL).map(String::from);
    if let Some(pool) = &pool {
        if !ctx.state.auth.user_config().pools.contains_key(pool) {
            return Err(param::POOL.error(format!("pool '{pool}' does not exist")));
        }
    }
    let on_pool = pool
        .as_ref()
        .is_some_and(|p| ctx.has(&format!("/pool/{p}"), &["VM.Allocate"], false));
    if !on_pool {
        ctx.require(&format!("/vms/{vmid}"), &["VM.Allocate"], false)?;
    }
    if let Some(archive) = ctx.params.str(&param::ARCHIVE) {
        return restore(ctx, vmid, archive, pool.as_deref());
    }
    let (sets, _) = config_changes(ctx);
    let target = crate::guests::perm::Target {
        vmid,
        pool: pool.as_deref(),
    };
    crate::guests::perm::check_config_change(ctx, target, None, &sets, &[])?;
    let start = ctx.params.bool(&param::START).unwrap_or(false);
    let upid = ctx
        .state
        .create_guest(vmid, sets, pool, start, &auth_id(ctx)?)?;
    Ok(Upid(upid))
}

/// `POST /nodes/{node}/qemu` with `archive`: a restore. Besides VM.Allocate (checked by
/// the caller), Proxmox VE checks the archive's access (Datastore.AllocateSpace on its
/// storage and VM.Backup on the guest it came from) and Datastore.AllocateSpace on the
/// target storage.
fn restore(ctx: &C<'_>, vmid: u32, archive: &str, pool: Option<&str>) -> Result<Upid, ApiError> {
    if pool.is_some() {
        return Err(param::POOL.error("a restore goes into no pool yet: add it afterwards"));
    }
    let volume = ferrox_types::VolumeId::parse(archive)
        .ok_or_else(|| param::ARCHIVE.error(format!("'{archive}' is not a volume id")))?;
    let owner = volume
        .name
        .strip_prefix("backup/")
        .and_then(ferrox_storage::backup::parse_archive_name)
        .map(|(owner, _)| owner)
        .ok_or_else(|| param::ARCHIVE.error(format!("'{archive}' is not a backup archive")))?;
    ctx.require(
        &format!("/storage/{}", volume.storage),
        &["Datastore.AllocateSpace"],
        false,
    )?;
    ctx.require(&format!("/vms/{owner}"), &["VM.Backup"], false)?;
    // The restored cards join their bridges: SDN.Use on them, as Proxmox VE's
    // check_restore_permissions.
    if !crate::guests::perm::is_root(ctx) {
        let storages = ctx.state.storage_config()?;
        let (path, _) = ferrox_storage::resolve(&storages, &ctx.state.opts.node_name, archive)
            .map_err(|e| param::ARCHIVE.error(e.to_string()))?;
        let text = ferrox_storage::backup::archive_config(&path)
            .map_err(|e| param::ARCHIVE.error(e.to_string()))?;
        let cfg = ferrox_types::GuestConfig::parse(&text)
            .map_err(|e| param::ARCHIVE.error(format!("its configuration: {e}")))?;
        crate::guests::perm::check_bridges_of(ctx, &cfg.options)?;
    }
    let storage = ctx.params.str(&param::STORAGE).map(String::from);
    if let Some(s) = &storage {
        ctx.require(
            &format!("/storage/{s}"),
            &["Datastore.AllocateSpace"],
            false,
        )?;
    }
    let upid = ctx.state.start_restore(
        vmid,
        archive.to_string(),
        storage,
        ctx.params.bool(&param::RESTORE_FORCE).unwrap_or(false),
        ctx.params.bool(&param::UNIQUE).unwrap_or(false),
        ctx.params.bool(&param::START).unwrap_or(false),
        &auth_id(ctx)?,
    )?;
    Ok(Upid(upid))
}

fn guest_index(ctx: &C<'_>) -> Result<Vec<Subdir>, ApiError> {
    local_node(ctx)?;
    ctx.state.guest_config(vmid(ctx)?)?;
    Ok(Subdir::list(&[
        "config", "pending", "status", "rrddata", "snapshot",
    ]))
}

fn get_config(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.guest_config(vmid(ctx)?)?;
    if let Some(snap) = ctx.params.str(&param::SNAPSHOT) {
        let section = cfg
            .snapshots
            .get(snap)
            .ok_or_else(|| param::SNAPSHOT.error(format!("snapshot '{snap}' does not exist")))?;
        return Ok(section.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
    }
    let mut out = ConfigMap::new();
    for (k, v) in &cfg.options {
        out.insert(k.clone(), json!(v));
    }
    // Without current=1 pending changes are shown as if applied, as in Proxmox VE.
    if !ctx.params.bool(&param::CURRENT).unwrap_or(false) {
        for (k, v) in &cfg.pending {
            if k != "delete" {
                out.insert(k.clone(), json!(v));
            }
        }
    }
    if let Some(d) = &cfg.description {
        out.insert("description".into(), json!(d));
    }
    out.insert("digest".into(), json!(cfg.digest));
    Ok(out)
}

fn pending(ctx: &C<'_>) -> Result<Vec<PendingEntry>, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.guest_config(vmid(ctx)?)?;
    let mut rows: Vec<PendingEntry> = cfg
        .options
        .iter()
        .map(|(k, v)| PendingEntry {
            key: k.clone(),
            value: Some(v.clone()),
            pending: cfg.pending.get(k).cloned(),
        })
        .collect();
    for (k, v) in cfg
        .pending
        .iter()
        .filter(|(k, _)| !cfg.options.contains_key(*k) && *k != "delete")
    {
        rows.push(PendingEntry {
            key: k.clone(),
            value: None,
            pending: Some(v.clone()),
        });
    }
    Ok(rows)
}

/// Checks and applies a config change; the shared part of PUT and POST.
fn update_config(
    node: &Node,
    vmid: u32,
    sets: &BTreeMap<String, String>,
    deletes: &[String],
    digest: Option<&str>,
    skiplock: bool,
) -> Result<(), ApiError> {
    let lock = node.guests.lock(vmid);
    let _held = lock.hold();
    let cfg = node.guest_config(vmid)?;
    if let Some(d) = digest {
        if d != cfg.digest {
            return Err(param::DIGEST.error(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    if let Some(l) = cfg.options.get("lock").filter(|_| !skiplock) {
        return Err(ApiError::internal(format!("VM is locked ({l})")));
    }
    let next = node.apply_config_changes(vmid, &cfg, sets, deletes)?;
    node.guests.write_config(vmid, &next)?;
    Ok(())
}

/// The checks PUT and POST share before anything changes: root-only parameters and the
/// privilege of every key.
fn check_config_request(
    ctx: &C<'_>,
    vmid: u32,
    sets: &BTreeMap<String, String>,
    deletes: &[String],
) -> Result<(), ApiError> {
    crate::guests::perm::root_only_param(ctx, &param::SKIPLOCK)?;
    let current = ctx.state.guest_config(vmid)?;
    let target = crate::guests::perm::Target { vmid, pool: None };
    crate::guests::perm::check_config_change(ctx, target, Some(&current), sets, deletes)
}

fn put_config(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let (sets, deletes) = config_changes(ctx);
    if sets.is_empty() && deletes.is_empty() && ctx.params.str(&param::REVERT).is_none() {
        return Err(ApiError::new(400, "no options specified"));
    }
    check_config_request(ctx, vmid, &sets, &deletes)?;
    update_config(
        ctx.state,
        vmid,
        &sets,
        &deletes,
        ctx.params.str(&param::DIGEST),
        ctx.params.bool(&param::SKIPLOCK).unwrap_or(false),
    )?;
    Ok(())
}

fn post_config(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let (sets, deletes) = config_changes(ctx);
    let digest = ctx.params.str(&param::DIGEST).map(String::from);
    let skiplock = ctx.params.bool(&param::SKIPLOCK).unwrap_or(false);
    // Checked before the task so that bad input is an API error, not a failed task.
    check_config_request(ctx, vmid, &sets, &deletes)?;
    guest_task(ctx, "qmconfig", vmid, move |node, log| {
        update_config(node, vmid, &sets, &deletes, digest.as_deref(), skiplock)?;
        log.log(format!("updated the config of VM {vmid}"));
        Ok(())
    })
}

fn status_index(ctx: &C<'_>) -> Result<Vec<Subdir>, ApiError> {
    local_node(ctx)?;
    ctx.state.guest_config(vmid(ctx)?)?;
    Ok(Subdir::list(&[
        "current", "start", "stop", "shutdown", "reboot", "suspend", "resume",
    ]))
}

fn current_status(ctx: &C<'_>) -> Result<GuestStatus, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let fixed = ctx
        .state
        .guests
        .fixed(vmid)
        .ok_or_else(|| ctx.state.no_such_guest(vmid))?;
    let mut status = Node::guest_summary(vmid, &fixed, ctx.state.guests.run_info(vmid).as_ref());
    // A live answer for a single guest: ask QEMU rather than the collector's cache.
    if let Some(p) = ctx.state.guests.process(vmid) {
        if let Ok(state) = p.status() {
            status.qmpstatus = state.status;
            status.accel = Some(if state.kvm { "kvm" } else { "tcg" }.into());
        }
    }
    status.ha = Some(HaManaged { managed: 0 });
    status.agent = Some(0);
    Ok(status)
}

fn power_params() -> Vec<Param> {
    vec![NODE, VMID, param::SKIPLOCK]
}

/// Runs `work` as task `kind` of guest `vmid`, on behalf of the caller.
fn guest_task(
    ctx: &C<'_>,
    kind: &str,
    vmid: u32,
    work: impl FnOnce(&Arc<Node>, &ferrox_api::TaskLog) -> Result<(), TaskError> + Send + 'static,
) -> Result<Upid, ApiError> {
    let node = Arc::clone(ctx.state);
    let upid = ctx
        .state
        .tasks
        .spawn(kind, &vmid.to_string(), &auth_id(ctx)?, move |log| {
            work(&node, log)
        })?;
    Ok(Upid(upid))
}

fn spawn_power(
    ctx: &C<'_>,
    kind: &str,
    work: impl FnOnce(&Node, u32, &ferrox_api::TaskLog) -> Result<(), TaskError> + Send + 'static,
) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    crate::guests::perm::root_only_param(ctx, &param::SKIPLOCK)?;
    let vmid = vmid(ctx)?;
    ctx.state.guest_config(vmid)?;
    guest_task(ctx, kind, vmid, move |node, log| work(node, vmid, log))
}

fn migrate_preconditions(ctx: &C<'_>) -> Result<MigratePreconditions, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    ctx.state
        .migration_preconditions(vmid, ctx.params.str(&param::TARGET_FILTER))
}

fn migrate(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let target = ctx.params.need_str(&param::TARGET)?.to_string();
    if crate::api::ha::is_managed(ctx.state, vmid) {
        // Proxmox VE's `hamigrate`: the HA stack migrates it.
        if ctx.state.store.status().member_named(&target).is_none() {
            return Err(param::TARGET.error(format!("no such cluster node '{target}'")));
        }
        let node = Arc::clone(ctx.state);
        let upid =
            ctx.state
                .tasks
                .spawn("hamigrate", &vmid.to_string(), &auth_id(ctx)?, move |log| {
                    log.log(format!(
                        "Requesting HA migration for VM {vmid} to node {target}"
                    ));
                    Ok(crate::api::ha::queue_crm_command(
                        &node,
                        &format!("migrate vm:{vmid} {target}"),
                    )?)
                })?;
        return Ok(Upid(upid));
    }
    let map = ctx
        .params
        .str(&param::TARGETSTORAGE)
        .map(ferrox_types::StorageMap::parse)
        .transpose()
        .map_err(|e| param::TARGETSTORAGE.error(e))?;
    let plan = ctx.state.plan_migration(
        vmid,
        &target,
        ctx.params.bool(&param::ONLINE).unwrap_or(false),
        ctx.params.bool(&param::WITH_LOCAL_DISKS).unwrap_or(false),
        ctx.params.int(&param::BWLIMIT).map(|k| k.max(1) as u64),
        map.as_ref(),
    )?;
    // Proxmox VE: Datastore.AllocateSpace on every storage the disks land on.
    let mut targets: Vec<&str> = plan
        .local_disks
        .iter()
        .map(|d| d.storage.as_str())
        .collect();
    targets.dedup();
    for s in targets {
        ctx.require(
            &format!("/storage/{s}"),
            &["Datastore.AllocateSpace"],
            false,
        )?;
    }
    guest_task(ctx, "qmigrate", vmid, move |node, log| {
        node.migrate_guest(plan, log)
    })
}

/// Start and stop of an HA-managed guest change its requested state instead (Proxmox
/// VE's `hastart`/`hastop` tasks); the HA stack then acts.
fn ha_request(
    ctx: &C<'_>,
    kind: &str,
    state: ferrox_types::RequestState,
) -> Result<Option<Upid>, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    if !crate::api::ha::is_managed(ctx.state, vmid) {
        return Ok(None);
    }
    guest_task(ctx, kind, vmid, move |node, log| {
        log.log(format!("Requesting HA {} for VM {vmid}", state.as_str()));
        Ok(crate::api::ha::request_state(node, vmid, state)?)
    })
    .map(Some)
}

fn start(ctx: &C<'_>) -> Result<Upid, ApiError> {
    if let Some(r) = ha_request(ctx, "hastart", ferrox_types::RequestState::Started)? {
        return Ok(r);
    }
    spawn_power(ctx, "qmstart", |n, v, log| n.start_guest(v, log))
}

fn stop(ctx: &C<'_>) -> Result<Upid, ApiError> {
    if let Some(r) = ha_request(ctx, "hastop", ferrox_types::RequestState::Stopped)? {
        return Ok(r);
    }
    spawn_power(ctx, "qmstop", |n, v, log| n.stop_guest(v, log))
}

fn shutdown(ctx: &C<'_>) -> Result<Upid, ApiError> {
    if let Some(r) = ha_request(ctx, "hastop", ferrox_types::RequestState::Stopped)? {
        return Ok(r);
    }
    let timeout = Duration::from_secs(
        ctx.params
            .int(&param::SHUTDOWN_TIMEOUT)
            .unwrap_or(180)
            .max(0) as u64,
    );
    let force = ctx.params.bool(&param::FORCESTOP).unwrap_or(false);
    spawn_power(ctx, "qmshutdown", move |n, v, log| {
        n.shutdown_guest(v, timeout, force, log)
    })
}

fn reboot(ctx: &C<'_>) -> Result<Upid, ApiError> {
    let timeout =
        Duration::from_secs(ctx.params.int(&param::REBOOT_TIMEOUT).unwrap_or(180).max(0) as u64);
    let vmid = vmid(ctx)?;
    if ctx.state.guests.process(vmid).is_none() {
        return Err(ApiError::internal(format!("VM {vmid} not running")));
    }
    spawn_power(ctx, "qmreboot", move |n, v, log| {
        n.shutdown_guest(v, timeout, true, log)?;
        n.start_guest(v, log)
    })
}

fn suspend(ctx: &C<'_>) -> Result<Upid, ApiError> {
    if ctx.params.bool(&param::TODISK).unwrap_or(false) {
        return Err(param::TODISK.error("suspend to disk is not supported yet"));
    }
    spawn_power(ctx, "qmsuspend", |n, v, log| n.pause_guest(v, true, log))
}

fn resume(ctx: &C<'_>) -> Result<Upid, ApiError> {
    spawn_power(ctx, "qmresume", |n, v, log| n.pause_guest(v, false, log))
}

fn resize(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    crate::guests::perm::root_only_param(ctx, &param::SKIPLOCK)?;
    let checked = ctx.state.check_resize(
        vmid,
        ctx.params.need_str(&param::DISK)?,
        ctx.params.need_str(&param::SIZE)?,
        ctx.params.str(&param::DIGEST),
    )?;
    guest_task(ctx, "resize", vmid, move |node, log| {
        node.resize_disk(vmid, &checked, log)
    })
}

fn snapname<'a>(ctx: &'a C<'_>) -> Result<&'a str, ApiError> {
    ctx.params.need_str(&param::SNAPNAME)
}

fn list_snapshots(ctx: &C<'_>) -> Result<Vec<SnapshotEntry>, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let cfg = ctx.state.guest_config(vmid)?;
    let mut rows: Vec<SnapshotEntry> = cfg
        .snapshots
        .iter()
        .map(|(name, s)| SnapshotEntry {
            name: name.clone(),
            description: s.get("description").cloned().unwrap_or_default(),
            parent: s.get("parent").cloned(),
            snaptime: Some(s.get("snaptime").and_then(|t| t.parse().ok()).unwrap_or(0)),
            vmstate: Some(u8::from(s.contains_key("vmstate"))),
            snapstate: s.get("snapstate").cloned(),
            running: None,
            digest: None,
        })
        .collect();
    rows.push(SnapshotEntry {
        name: "current".into(),
        description: "You are here!".into(),
        parent: cfg.options.get("parent").cloned(),
        snaptime: None,
        vmstate: None,
        snapstate: None,
        running: Some(u8::from(ctx.state.guests.process(vmid).is_some())),
        digest: Some(cfg.digest.clone()),
    });
    Ok(rows)
}

fn create_snapshot(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let name = snapname(ctx)?.to_string();
    ctx.state.check_snapshot_create(vmid, &name)?;
    let vmstate = ctx.params.bool(&param::VMSTATE).unwrap_or(false);
    let description = ctx
        .params
        .str(&param::SNAPSHOT_DESCRIPTION)
        .map(String::from);
    guest_task(ctx, "qmsnapshot", vmid, move |node, log| {
        node.create_snapshot(vmid, &name, vmstate, description.as_deref(), log)
    })
}

fn snapshot_index(ctx: &C<'_>) -> Result<Vec<SnapshotCommand>, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.guest_config(vmid(ctx)?)?;
    crate::guests::snapshot::existing(&cfg, snapname(ctx)?)?;
    Ok(["rollback", "config"]
        .iter()
        .map(|c| SnapshotCommand { cmd: c.to_string() })
        .collect())
}

fn snapshot_config(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.guest_config(vmid(ctx)?)?;
    let section = crate::guests::snapshot::existing(&cfg, snapname(ctx)?)?;
    Ok(section.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn update_snapshot_config(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let Some(description) = ctx.params.str(&param::SNAPSHOT_DESCRIPTION) else {
        return Ok(());
    };
    ctx.state
        .set_snapshot_description(vmid(ctx)?, snapname(ctx)?, description)
}

fn rollback_snapshot(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let name = snapname(ctx)?.to_string();
    let start = ctx.params.bool(&param::ROLLBACK_START).unwrap_or(false);
    // The worker starts the guest itself: a user with VM.Snapshot.Rollback only must not
    // power it on as a side effect (as Proxmox VE checks).
    if start {
        ctx.require(&format!("/vms/{vmid}"), &["VM.PowerMgmt"], false)?;
    }
    ctx.state.check_snapshot_rollback(vmid, &name)?;
    guest_task(ctx, "qmrollback", vmid, move |node, log| {
        node.rollback_snapshot(vmid, &name, start, log)
    })
}

fn delete_snapshot(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let name = snapname(ctx)?.to_string();
    let force = ctx.params.bool(&param::SNAPSHOT_FORCE).unwrap_or(false);
    ctx.state.check_snapshot_delete(vmid, &name)?;
    guest_task(ctx, "qmdelsnapshot", vmid, move |node, log| {
        node.delete_snapshot(vmid, &name, force, log)
    })
}

fn template(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let disk = ctx.params.str(&param::TEMPLATE_DISK).map(String::from);
    ctx.state.check_template(vmid, disk.as_deref())?;
    guest_task(ctx, "qmtemplate", vmid, move |node, log| {
        node.make_template(vmid, disk.as_deref(), log)
    })
}

fn clone(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    ctx.require(&format!("/vms/{vmid}"), &["VM.Clone"], false)?;
    let newid = ctx.params.need_int(&param::NEWID)? as u32;
    let pool = ctx.params.str(&param::POOL).map(String::from);
    if let Some(target) = ctx.params.str(&param::CLONE_TARGET) {
        if target != ctx.state.opts.node_name && target != "localhost" {
            return Err(param::CLONE_TARGET
                .error("cloning to another node is not supported yet: clone here, then migrate"));
        }
    }
    // Proxmox VE: VM.Clone on the source (the endpoint's check), VM.Allocate on the new
    // vmid or its pool, Datastore.AllocateSpace on every storage the copy lands on.
    if let Some(p) = &pool {
        if !ctx.state.auth.user_config().pools.contains_key(p) {
            return Err(param::POOL.error(format!("pool '{p}' does not exist")));
        }
    }
    let on_pool = pool
        .as_ref()
        .is_some_and(|p| ctx.has(&format!("/pool/{p}"), &["VM.Allocate"], false));
    if !on_pool {
        ctx.require(&format!("/vms/{newid}"), &["VM.Allocate"], false)?;
    }
    let req = crate::guests::clone::CloneRequest {
        newid,
        name: ctx.params.str(&param::CLONE_NAME).map(String::from),
        description: ctx
            .params
            .str(&param::SNAPSHOT_DESCRIPTION)
            .map(String::from),
        pool,
        snapname: ctx.params.str(&param::CLONE_SNAPNAME).map(String::from),
        storage: ctx.params.str(&param::CLONE_STORAGE).map(String::from),
        format: ctx.params.str(&param::FORMAT).map(String::from),
        full: ctx.params.bool(&param::FULL_CLONE),
    };
    let plan = ctx.state.check_clone(vmid, &req)?;
    let mut storages: Vec<String> = plan
        .disks
        .iter()
        .filter_map(|d| d.volid.split_once(':').map(|(s, _)| s.to_string()))
        .map(|s| req.storage.clone().unwrap_or(s))
        .collect();
    storages.dedup();
    for s in storages {
        ctx.require(
            &format!("/storage/{s}"),
            &["Datastore.AllocateSpace"],
            false,
        )?;
    }
    // The copy's cards stay on the source's bridges (Proxmox VE's check_bridge_access).
    let source = ctx.state.guest_config(vmid)?;
    let copied = req
        .snapname
        .as_ref()
        .and_then(|snap| source.snapshots.get(snap))
        .unwrap_or(&source.options);
    crate::guests::perm::check_bridges_of(ctx, copied)?;
    Ok(Upid(ctx.state.clone_guest(vmid, req, &auth_id(ctx)?)?))
}

fn unlink(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let keys: Vec<String> = ferrox_types::format::split_list(ctx.params.need_str(&param::IDLIST)?)
        .map(String::from)
        .collect();
    ctx.state.unlink_disks(
        vmid(ctx)?,
        &keys,
        ctx.params.bool(&param::UNLINK_FORCE).unwrap_or(false),
    )
}

fn move_disk(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    ctx.require(&format!("/vms/{vmid}"), &["VM.Config.Disk"], false)?;
    let storage = ctx.params.need_str(&param::MOVE_STORAGE)?;
    ctx.require(
        &format!("/storage/{storage}"),
        &["Datastore.AllocateSpace"],
        false,
    )?;
    let checked = ctx.state.check_move_disk(
        vmid,
        ctx.params.need_str(&param::MOVE_DISK)?,
        storage,
        ctx.params.str(&param::FORMAT),
        ctx.params.bool(&param::MOVE_DELETE).unwrap_or(false),
        ctx.params.str(&param::DIGEST),
    )?;
    guest_task(ctx, "qmmove", vmid, move |node, log| {
        node.move_disk(vmid, &checked, log)
    })
}

fn destroy(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    crate::guests::perm::root_only_param(ctx, &param::SKIPLOCK)?;
    let vmid = vmid(ctx)?;
    let cfg = ctx.state.guest_config(vmid)?;
    if ctx.state.guests.process(vmid).is_some() {
        return Err(VMID.error(format!("VM {vmid} is running - destroy failed")));
    }
    if cfg.options.get("protection").map(String::as_str) == Some("1") {
        return Err(VMID.error(format!("VM {vmid} is protected - destroy failed")));
    }
    guest_task(ctx, "qmdestroy", vmid, move |node, log| {
        node.destroy_guest(vmid, log)
    })
}

const VM_AUDIT: Permission = Permission::Privs {
    path: "/vms/{vmid}",
    privs: &["VM.Audit"],
    any: false,
};
const VM_POWER: Permission = Permission::Privs {
    path: "/vms/{vmid}",
    privs: &["VM.PowerMgmt"],
    any: false,
};
const VM_SNAPSHOT: Permission = Permission::Privs {
    path: "/vms/{vmid}",
    privs: &["VM.Snapshot"],
    any: false,
};
const VM_ALLOCATE: Permission = Permission::Privs {
    path: "/vms/{vmid}",
    privs: &["VM.Allocate"],
    any: false,
};
const VM_CONFIG: Permission = Permission::Privs {
    path: "/vms/{vmid}",
    privs: &[
        "VM.Config.Disk",
        "VM.Config.CDROM",
        "VM.Config.CPU",
        "VM.Config.Memory",
        "VM.Config.Network",
        "VM.Config.HWType",
        "VM.Config.Options",
        "VM.Config.Cloudinit",
    ],
    any: true,
};
fn config_update_params() -> Vec<Param> {
    vec![
        NODE,
        VMID,
        param::DELETE,
        param::REVERT,
        param::DIGEST,
        param::SKIPLOCK,
        param::FORCE,
        param::BACKGROUND_DELAY,
    ]
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const SKIPLOCK: Param = Param::optional("skiplock", BOOL, "Ignore locks (root only).");
    pub const DISK: Param = Param::required(
        "disk",
        ParamType::Enum(&[
            "ide0", "ide1", "ide2", "ide3", "sata0", "sata1", "sata2", "sata3", "sata4", "sata5",
            "scsi0", "scsi1", "scsi2", "scsi3", "scsi4", "scsi5", "scsi6", "scsi7", "scsi8",
            "scsi9", "scsi10", "scsi11", "scsi12", "scsi13", "scsi14", "scsi15", "scsi16",
            "scsi17", "scsi18", "scsi19", "scsi20", "scsi21", "scsi22", "scsi23", "scsi24",
            "scsi25", "scsi26", "scsi27", "scsi28", "scsi29", "scsi30", "virtio0", "virtio1",
            "virtio2", "virtio3", "virtio4", "virtio5", "virtio6", "virtio7", "virtio8", "virtio9",
            "virtio10", "virtio11", "virtio12", "virtio13", "virtio14", "virtio15",
        ]),
        "The disk to grow.",
    );
    pub const SIZE: Param = Param::required(
        "size",
        STRING,
        "The new size: '+<n>[KMGT]' grows by, '<n>[KMGT]' grows to (never shrinks).",
    );
    pub const DELETE: Param = Param::optional("delete", STRING, "Settings to delete (comma list).");
    pub const REVERT: Param =
        Param::optional("revert", STRING, "Pending changes to revert (comma list).");
    pub const DIGEST: Param = Param::optional(
        "digest",
        ParamType::String { max_len: Some(40) },
        "Refuse the change if the config's SHA-1 digest differs (concurrent edit).",
    );
    pub const FORCE: Param = Param::optional("force", BOOL, "Force physical removal (ignored).");
    pub const IGNORED_FORCE: Param = Param::optional("force", BOOL, "Ignored.");
    pub const BACKGROUND_DELAY: Param =
        Param::optional("background_delay", int(Some(1), Some(30)), "Ignored.");
    pub const FULL: Param = Param::optional("full", BOOL, "More details.");
    pub const START: Param = Param::optional("start", BOOL, "Start the VM once created.");
    pub const POOL: Param = Param::optional(
        "pool",
        ferrox_api::schema::POOL_ID,
        "Add the VM to this pool.",
    );
    pub const STORAGE: Param = Param::optional(
        "storage",
        ferrox_api::schema::STORAGE_ID,
        "Restore the disks of an archive to this storage.",
    );
    pub const UNIQUE: Param =
        Param::optional("unique", BOOL, "Give a restored guest new MAC addresses.");
    pub const ARCHIVE: Param = Param::optional(
        "archive",
        STRING,
        "Restore this backup archive (storage:backup/file).",
    );
    pub const RESTORE_FORCE: Param = Param::optional(
        "force",
        BOOL,
        "Allow a restore to overwrite an existing (stopped) VM.",
    );
    pub const HA_MANAGED: Param = Param::optional(
        "ha-managed",
        BOOL,
        "Not supported on a single node yet (ignored).",
    );
    pub const CURRENT: Param = Param::optional("current", BOOL, "Without pending changes.");
    pub const SNAPSHOT: Param = Param::optional("snapshot", STRING, "The config of this snapshot.");
    pub const PURGE: Param = Param::optional(
        "purge",
        BOOL,
        "Remove from jobs and HA (nothing to do yet).",
    );
    pub const DESTROY_UNREFERENCED_DISKS: Param = Param::optional(
        "destroy-unreferenced-disks",
        BOOL,
        "Also remove disks not referenced by the config (they always are).",
    );
    pub const TARGET_FILTER: Param =
        Param::optional("target", ParamType::Node, "Only this target.");
    pub const TARGET: Param = Param::required("target", ParamType::Node, "Target node.");
    pub const ONLINE: Param = Param::optional("online", BOOL, "Live migration of a running VM.");
    pub const WITH_LOCAL_DISKS: Param = Param::optional(
        "with-local-disks",
        BOOL,
        "Live-migrate disks on local storage too (NBD + mirror).",
    );
    pub const BWLIMIT: Param =
        Param::optional("bwlimit", int(Some(0), None), "Bandwidth limit in KiB/s.");
    pub const MIGRATION_TYPE: Param = Param::optional(
        "migration_type",
        ParamType::Enum(&["secure", "insecure"]),
        "Ignored.",
    );
    pub const MIGRATION_NETWORK: Param = Param::optional("migration_network", STRING, "Ignored.");
    pub const TARGETSTORAGE: Param = Param::optional(
        "targetstorage",
        STRING,
        "Where local disks go: 'src:dst' pairs, one storage for all, or '1' for each to the same storage id.",
    );
    pub const WITH_CONNTRACK_STATE: Param =
        Param::optional("with-conntrack-state", BOOL, "Ignored.");
    pub const TIMEOUT: Param = Param::optional("timeout", int(Some(0), None), "Ignored.");
    pub const SHUTDOWN_TIMEOUT: Param = Param::optional(
        "timeout",
        int(Some(0), None),
        "Seconds to wait (default 180).",
    );
    pub const REBOOT_TIMEOUT: Param = Param::optional(
        "timeout",
        int(Some(0), None),
        "Shutdown timeout (default 180).",
    );
    pub const MACHINE: Param = Param::optional("machine", STRING, "Ignored.");
    pub const OVERRULE_SHUTDOWN: Param = Param::optional("overrule-shutdown", BOOL, "Ignored.");
    pub const KEEPACTIVE: Param = Param::optional("keepActive", BOOL, "Ignored.");
    pub const FORCESTOP: Param = Param::optional(
        "forceStop",
        BOOL,
        "Stop the VM if it has not shut down by the timeout.",
    );
    pub const TODISK: Param =
        Param::optional("todisk", BOOL, "Suspend to disk (not supported yet).");
    pub const STATESTORAGE: Param = Param::optional("statestorage", STRING, "Ignored.");
    pub const NOCHECK: Param = Param::optional("nocheck", BOOL, "Ignored.");
    const DISK_NAMES: &[&str] = &[
        "ide0", "ide1", "ide2", "ide3", "sata0", "sata1", "sata2", "sata3", "sata4", "sata5",
        "scsi0", "scsi1", "scsi2", "scsi3", "scsi4", "scsi5", "scsi6", "scsi7", "scsi8", "scsi9",
        "scsi10", "scsi11", "scsi12", "scsi13", "scsi14", "scsi15", "scsi16", "scsi17", "scsi18",
        "scsi19", "scsi20", "scsi21", "scsi22", "scsi23", "scsi24", "scsi25", "scsi26", "scsi27",
        "scsi28", "scsi29", "scsi30", "virtio0", "virtio1", "virtio2", "virtio3", "virtio4",
        "virtio5", "virtio6", "virtio7", "virtio8", "virtio9", "virtio10", "virtio11", "virtio12",
        "virtio13", "virtio14", "virtio15",
    ];
    pub const TEMPLATE_DISK: Param = Param::optional(
        "disk",
        ParamType::Enum(DISK_NAMES),
        "Convert only this disk to a base image.",
    );
    pub const MOVE_DISK: Param =
        Param::required("disk", ParamType::Enum(DISK_NAMES), "The disk to move.");
    pub const MOVE_STORAGE: Param =
        Param::required("storage", ferrox_api::schema::STORAGE_ID, "Target storage.");
    pub const MOVE_DELETE: Param = Param::optional(
        "delete",
        BOOL,
        "Delete the original disk after a successful copy (else it stays as unusedN).",
    );
    pub const FORMAT: Param = Param::optional(
        "format",
        ParamType::Enum(&["raw", "qcow2", "vmdk"]),
        "Target disk format.",
    );
    pub const IDLIST: Param = Param::required(
        "idlist",
        STRING,
        "The disks to remove from the config (comma list).",
    );
    pub const UNLINK_FORCE: Param = Param::optional(
        "force",
        BOOL,
        "Delete the images too (not those a snapshot uses).",
    );
    pub const NEWID: Param = Param::required("newid", ParamType::VmId, "VMID for the clone.");
    pub const CLONE_NAME: Param = Param::optional(
        "name",
        ferrox_api::schema::DNS_NAME,
        "Set a name for the new VM.",
    );
    pub const CLONE_SNAPNAME: Param = Param::optional(
        "snapname",
        ferrox_api::schema::SNAPSHOT_NAME,
        "Clone the VM as it was at this snapshot.",
    );
    pub const CLONE_STORAGE: Param = Param::optional(
        "storage",
        ferrox_api::schema::STORAGE_ID,
        "Target storage for full clone.",
    );
    pub const FULL_CLONE: Param = Param::optional(
        "full",
        BOOL,
        "Create a full copy of all disks (always for a normal VM; a template's clone is linked by default).",
    );
    pub const CLONE_TARGET: Param = Param::optional(
        "target",
        ParamType::Node,
        "Target node (only this node yet).",
    );
    pub const SNAPNAME: Param = Param::required(
        "snapname",
        ferrox_api::schema::SNAPSHOT_NAME,
        "The name of the snapshot.",
    );
    pub const VMSTATE: Param = Param::optional(
        "vmstate",
        BOOL,
        "Save the RAM of a running VM too (a rollback resumes it).",
    );
    pub const SNAPSHOT_DESCRIPTION: Param = Param::optional(
        "description",
        ParamType::Text {
            max_len: Some(8192),
        },
        "A textual description or comment.",
    );
    pub const ROLLBACK_START: Param = Param::optional(
        "start",
        BOOL,
        "Start the VM after the rollback (a snapshot with RAM always resumes it).",
    );
    pub const SNAPSHOT_FORCE: Param = Param::optional(
        "force",
        BOOL,
        "Remove the snapshot from the config even if removing a disk's snapshot fails.",
    );
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let auth = Permission::Authenticated;
    vec![
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu",
            "Virtual machine index.",
            auth.clone(),
            list_guests,
        )
        .params(vec![NODE, param::FULL]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu",
            "Create a virtual machine.",
            Permission::Handler(
                "VM.Allocate on /vms/{vmid}, or on /pool/{pool} when 'pool' is given",
            ),
            create_guest,
        )
        .extra(Extra::GuestConfigKeys)
        .params(vec![
            NODE,
            VMID,
            param::START,
            param::POOL,
            param::STORAGE,
            param::UNIQUE,
            param::HA_MANAGED,
            param::ARCHIVE,
            param::RESTORE_FORCE,
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}",
            "Directory index.",
            auth.clone(),
            guest_index,
        )
        .params(vec![NODE, VMID]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/config",
            "VM configuration (with pending changes unless current=1).",
            VM_AUDIT,
            get_config,
        )
        .params(vec![NODE, VMID, param::CURRENT, param::SNAPSHOT]),
        Endpoint::new(
            Put,
            "/nodes/{node}/qemu/{vmid}/config",
            "Set VM options (synchronous).",
            VM_CONFIG,
            put_config,
        )
        .extra(Extra::GuestConfigKeys)
        .params(config_update_params()),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/config",
            "Set VM options (as a task).",
            VM_CONFIG,
            post_config,
        )
        .extra(Extra::GuestConfigKeys)
        .params(config_update_params()),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/pending",
            "Config with pending changes.",
            VM_AUDIT,
            pending,
        )
        .params(vec![NODE, VMID]),
        Endpoint::new(
            Delete,
            "/nodes/{node}/qemu/{vmid}",
            "Destroy a stopped VM and its disks.",
            VM_ALLOCATE,
            destroy,
        )
        .params(vec![
            NODE,
            VMID,
            param::PURGE,
            param::DESTROY_UNREFERENCED_DISKS,
            param::SKIPLOCK,
        ]),
        Endpoint::new(
            Put,
            "/nodes/{node}/qemu/{vmid}/resize",
            "Grow a disk of the VM (running or not).",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Config.Disk"],
                any: false,
            },
            resize,
        )
        .params(vec![
            NODE,
            VMID,
            param::DISK,
            param::SIZE,
            param::DIGEST,
            param::SKIPLOCK,
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/template",
            "Create a Template: the disks become read-only base images.",
            VM_ALLOCATE,
            template,
        )
        .params(vec![NODE, VMID, param::TEMPLATE_DISK]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/clone",
            "Create a copy of virtual machine/template.",
            Permission::Handler(
                "VM.Clone on /vms/{vmid}; VM.Allocate on /vms/{newid} or on /pool/{pool}; Datastore.AllocateSpace on every storage the copy lands on",
            ),
            clone,
        )
        .params(vec![
            NODE,
            VMID,
            param::NEWID,
            param::CLONE_NAME,
            param::SNAPSHOT_DESCRIPTION,
            param::POOL,
            param::CLONE_SNAPNAME,
            param::CLONE_STORAGE,
            param::FORMAT,
            param::FULL_CLONE,
            param::CLONE_TARGET,
            param::BWLIMIT,
        ]),
        Endpoint::new(
            Put,
            "/nodes/{node}/qemu/{vmid}/unlink",
            "Unlink (and with force delete) disks of a stopped VM.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Config.Disk"],
                any: false,
            },
            unlink,
        )
        .params(vec![NODE, VMID, param::IDLIST, param::UNLINK_FORCE]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/move_disk",
            "Move a disk to another storage (live through QEMU when the VM runs).",
            Permission::Handler(
                "VM.Config.Disk on /vms/{vmid} and Datastore.AllocateSpace on /storage/{storage}",
            ),
            move_disk,
        )
        .params(vec![
            NODE,
            VMID,
            param::MOVE_DISK,
            param::MOVE_STORAGE,
            param::FORMAT,
            param::MOVE_DELETE,
            param::DIGEST,
            param::BWLIMIT,
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/snapshot",
            "List all snapshots (and 'current', the VM as it is).",
            VM_AUDIT,
            list_snapshots,
        )
        .params(vec![NODE, VMID]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/snapshot",
            "Snapshot a VM: its disks, and with vmstate=1 the RAM of a running VM.",
            VM_SNAPSHOT,
            create_snapshot,
        )
        .params(vec![
            NODE,
            VMID,
            param::SNAPNAME,
            param::VMSTATE,
            param::SNAPSHOT_DESCRIPTION,
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}",
            "Directory index.",
            auth.clone(),
            snapshot_index,
        )
        .params(vec![NODE, VMID, param::SNAPNAME]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
            "Get snapshot configuration.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Snapshot", "VM.Snapshot.Rollback", "VM.Audit"],
                any: true,
            },
            snapshot_config,
        )
        .params(vec![NODE, VMID, param::SNAPNAME]),
        Endpoint::new(
            Put,
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
            "Update snapshot metadata (its description).",
            VM_SNAPSHOT,
            update_snapshot_config,
        )
        .params(vec![
            NODE,
            VMID,
            param::SNAPNAME,
            param::SNAPSHOT_DESCRIPTION,
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback",
            "Rollback VM state to specified snapshot.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Snapshot", "VM.Snapshot.Rollback"],
                any: true,
            },
            rollback_snapshot,
        )
        .params(vec![NODE, VMID, param::SNAPNAME, param::ROLLBACK_START]),
        Endpoint::new(
            Delete,
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}",
            "Delete a VM snapshot.",
            VM_SNAPSHOT,
            delete_snapshot,
        )
        .params(vec![NODE, VMID, param::SNAPNAME, param::SNAPSHOT_FORCE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/rrddata",
            "VM metrics (round-robin).",
            VM_AUDIT,
            guest_rrddata,
        )
        .params([vec![NODE, VMID], rrd_params()].concat()),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/status",
            "Directory index.",
            auth.clone(),
            status_index,
        )
        .params(vec![NODE, VMID]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/status/current",
            "VM status.",
            VM_AUDIT,
            current_status,
        )
        .params(vec![NODE, VMID]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/migrate",
            "Migration preconditions: the nodes the VM can migrate to now, and why not others.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Migrate"],
                any: false,
            },
            migrate_preconditions,
        )
        .params(vec![NODE, VMID, param::TARGET_FILTER]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/migrate",
            "Migrate the VM to another cluster node.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Migrate"],
                any: false,
            },
            migrate,
        )
        .params(vec![
            NODE,
            VMID,
            param::TARGET,
            param::ONLINE,
            param::WITH_LOCAL_DISKS,
            param::BWLIMIT,
            param::IGNORED_FORCE,
            param::MIGRATION_TYPE,
            param::MIGRATION_NETWORK,
            param::TARGETSTORAGE,
            param::WITH_CONNTRACK_STATE,
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/start",
            "Start the VM.",
            VM_POWER,
            start,
        )
        .params([power_params(), vec![param::TIMEOUT, param::MACHINE]].concat()),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/stop",
            "Stop the VM at once (like pulling the plug).",
            VM_POWER,
            stop,
        )
        .params(
            [
                power_params(),
                vec![param::TIMEOUT, param::OVERRULE_SHUTDOWN, param::KEEPACTIVE],
            ]
            .concat(),
        ),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/shutdown",
            "ACPI shutdown, with a timeout.",
            VM_POWER,
            shutdown,
        )
        .params(
            [
                power_params(),
                vec![param::SHUTDOWN_TIMEOUT, param::FORCESTOP, param::KEEPACTIVE],
            ]
            .concat(),
        ),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/reboot",
            "Shut down and start again.",
            VM_POWER,
            reboot,
        )
        .params(vec![NODE, VMID, param::REBOOT_TIMEOUT]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/suspend",
            "Pause the VM.",
            VM_POWER,
            suspend,
        )
        .params([power_params(), vec![param::TODISK, param::STATESTORAGE]].concat()),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/resume",
            "Resume a paused VM.",
            VM_POWER,
            resume,
        )
        .params([power_params(), vec![param::NOCHECK]].concat()),
    ]
}
