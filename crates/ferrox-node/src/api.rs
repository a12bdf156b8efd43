//! The node's API endpoints (nodes, guests, storage, cluster views, metrics), each
//! declared with its parameters and permission next to its handler.

use crate::{host, Node};
use ferrox_api::core::{local_node, PVE_VERSION};
use ferrox_api::rbac;
use ferrox_api::schema::{int, ABSOLUTE_PATH, BOOL, CONTENT_LIST, NODE_LIST, STORAGE_ID, STRING};
use ferrox_api::{
    ApiError, Ctx, Endpoint, Extra, Method, Param, ParamType, Permission, Reply, Returns, TaskError,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

type C<'a> = Ctx<'a, Node>;

fn node_param() -> Param {
    Param::required("node", ParamType::Node, "The cluster node name.")
}
fn vmid_param() -> Param {
    Param::required("vmid", ParamType::VmId, "The (unique) ID of the VM.")
}
fn vmid(ctx: &C<'_>) -> Result<u32, ApiError> {
    Ok(ctx.params.need_int("vmid")? as u32)
}
fn auth_id(ctx: &C<'_>) -> Result<String, ApiError> {
    Ok(ctx.caller()?.auth_id())
}

fn node_entry(node: &Node, with_stats: bool) -> Value {
    let name = &node.opts.node_name;
    let mut v = json!({
        "id": format!("node/{name}"),
        "type": "node",
        "node": name,
        "status": "online",
        "level": "",
        "ssl_fingerprint": node.tls.fingerprint,
    });
    if with_stats {
        let mem = host::memory();
        let root = host::filesystem(&node.opts.data_dir);
        v["uptime"] = json!(host::uptime());
        v["cpu"] = json!(node.metrics.latest().cpu);
        v["maxcpu"] = json!(host::cpu_count());
        v["mem"] = json!(mem.used());
        v["maxmem"] = json!(mem.total);
        v["disk"] = json!(root.used());
        v["maxdisk"] = json!(root.total);
        v["cgroup-mode"] = json!(2);
    }
    v
}

fn list_nodes(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let name = ctx.state.opts.node_name.clone();
    let stats = ctx.has(&format!("/nodes/{name}"), &["Sys.Audit"], false);
    let mut out = vec![node_entry(ctx.state, stats)];
    let others = crate::cluster_api::other_members(ctx.state);
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter()
            .map(|m| {
                scope.spawn(move || crate::cluster::peer_resources(ctx.state, m, Some("node")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    for (m, answer) in others.iter().zip(answers) {
        let mut entry = match answer
            .and_then(Result::ok)
            .and_then(|v| v.into_iter().next())
        {
            Some(e) => e,
            None => json!({
                "id": format!("node/{}", m.name), "type": "node", "node": m.name,
                "status": "offline", "level": "",
            }),
        };
        entry["ssl_fingerprint"] = json!(m.fingerprint);
        if !ctx.has(&format!("/nodes/{}", m.name), &["Sys.Audit"], false) {
            if let Some(o) = entry.as_object_mut() {
                o.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "id" | "type" | "node" | "status" | "level" | "ssl_fingerprint"
                    )
                });
            }
        }
        out.push(entry);
    }
    Ok(json!(out).into())
}

fn node_index(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let dirs = [
        "qemu", "status", "storage", "tasks", "rrddata", "version", "network",
    ];
    Ok(json!(dirs.iter().map(|d| json!({"name": d})).collect::<Vec<_>>()).into())
}

fn node_status(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let mem = host::memory();
    let root = host::filesystem(&ctx.state.opts.data_dir);
    let sample = ctx.state.metrics.latest();
    let (sysname, release, version) = host::kernel();
    let cpus = host::cpu_count();
    Ok(json!({
        "uptime": host::uptime(),
        "idle": 0,
        "loadavg": host::loadavg(),
        "kversion": format!("{sysname} {release} {version}"),
        "current-kernel": {"sysname": sysname, "release": release, "version": version, "machine": std::env::consts::ARCH},
        "boot-info": {"mode": "legacy-bios"},
        "cpuinfo": {"model": host::cpu_model(), "sockets": 1, "cores": cpus, "cpus": cpus, "hvm": "1", "user_hz": 100},
        "cpu": sample.cpu,
        "wait": sample.iowait,
        "memory": {"total": mem.total, "used": mem.used(), "free": mem.free, "available": mem.available},
        "swap": {"total": mem.swap_total, "free": mem.swap_free, "used": mem.swap_total.saturating_sub(mem.swap_free)},
        "ksm": {"shared": 0},
        "rootfs": {"total": root.total, "used": root.used(), "free": root.free, "avail": root.avail},
        "pveversion": format!("pve-manager/{PVE_VERSION}/{}", ferrox_api::core::REPOID),
        "accelerator": ctx.state.accel.as_str(),
    })
    .into())
}

fn rrd_params() -> Vec<Param> {
    vec![
        Param::required(
            "timeframe",
            ParamType::Enum(&["hour", "day", "week", "month", "year", "decade"]),
            "Time frame (60 rows each).",
        ),
        Param::optional(
            "cf",
            ParamType::Enum(&["AVERAGE", "MAX"]),
            "Consolidation function.",
        ),
    ]
}

fn rrd_rows(ctx: &C<'_>, key: &str) -> Result<Reply, ApiError> {
    let timeframe = ctx.params.need_str("timeframe")?;
    let max = ctx.params.str("cf") == Some("MAX");
    let rows = ctx
        .state
        .metrics
        .rows(key, timeframe, max)
        .ok_or_else(|| ApiError::param("timeframe", "unknown timeframe"))?;
    Ok(json!(rows).into())
}

fn node_rrddata(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    rrd_rows(ctx, "node")
}

fn guest_rrddata(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    ctx.state.guest_config(vmid)?;
    rrd_rows(ctx, &format!("qemu/{vmid}"))
}

fn network(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    // Guests get user-mode networking; there are no host bridges to report yet.
    Ok(json!([]).into())
}

fn list_guests(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let list: Vec<Value> = ctx
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
        .map(|(vmid, fixed, info)| Value::Object(Node::guest_summary(vmid, &fixed, info.as_ref())))
        .collect();
    Ok(json!(list).into())
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
        .str("delete")
        .map(|d| {
            d.split([',', ';', ' ', '\0'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    (sets, deletes)
}

fn create_guest(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    // Proxmox VE: VM.Allocate on /vms/{vmid}, or on the pool the guest goes into.
    let pool = ctx.params.str("pool").map(String::from);
    if let Some(pool) = &pool {
        if !ctx.state.auth.user_config().pools.contains_key(pool) {
            return Err(ApiError::param(
                "pool",
                format!("pool '{pool}' does not exist"),
            ));
        }
    }
    let on_pool = pool
        .as_ref()
        .is_some_and(|p| ctx.has(&format!("/pool/{p}"), &["VM.Allocate"], false));
    if !on_pool {
        ctx.require(&format!("/vms/{vmid}"), &["VM.Allocate"], false)?;
    }
    let (sets, _) = config_changes(ctx);
    let target = crate::guest_perm::Target {
        vmid,
        pool: pool.as_deref(),
    };
    crate::guest_perm::check_config_change(ctx, target, None, &sets, &[])?;
    let start = ctx.params.bool("start").unwrap_or(false);
    let upid = ctx
        .state
        .create_guest(vmid, sets, pool, start, &auth_id(ctx)?)?;
    Ok(json!(upid).into())
}

fn guest_index(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    ctx.state.guest_config(vmid(ctx)?)?;
    let dirs = ["config", "pending", "status", "rrddata"];
    Ok(json!(dirs
        .iter()
        .map(|d| json!({"subdir": d}))
        .collect::<Vec<_>>())
    .into())
}

fn get_config(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.guest_config(vmid(ctx)?)?;
    if let Some(snap) = ctx.params.str("snapshot") {
        let section = cfg.snapshots.get(snap).ok_or_else(|| {
            ApiError::param("snapshot", format!("snapshot '{snap}' does not exist"))
        })?;
        return Ok(json!(section).into());
    }
    let mut out = serde_json::Map::new();
    for (k, v) in &cfg.options {
        out.insert(k.clone(), json!(v));
    }
    // Without current=1 pending changes are shown as if applied, as in Proxmox VE.
    if !ctx.params.bool("current").unwrap_or(false) {
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
    Ok(Value::Object(out).into())
}

fn pending(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.guest_config(vmid(ctx)?)?;
    let mut rows: Vec<Value> = cfg
        .options
        .iter()
        .map(|(k, v)| {
            let mut row = json!({"key": k, "value": v});
            if let Some(p) = cfg.pending.get(k) {
                row["pending"] = json!(p);
            }
            row
        })
        .collect();
    for (k, v) in cfg
        .pending
        .iter()
        .filter(|(k, _)| !cfg.options.contains_key(*k) && *k != "delete")
    {
        rows.push(json!({"key": k, "pending": v}));
    }
    Ok(json!(rows).into())
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
    let _held = lock
        .lock()
        .map_err(|_| ApiError::internal("guest lock poisoned"))?;
    let cfg = node.guest_config(vmid)?;
    if let Some(d) = digest {
        if d != cfg.digest {
            return Err(ApiError::param(
                "digest",
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
    crate::guest_perm::root_only_param(ctx, "skiplock")?;
    let current = ctx.state.guest_config(vmid)?;
    let target = crate::guest_perm::Target { vmid, pool: None };
    crate::guest_perm::check_config_change(ctx, target, Some(&current), sets, deletes)
}

fn put_config(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let (sets, deletes) = config_changes(ctx);
    if sets.is_empty() && deletes.is_empty() && ctx.params.str("revert").is_none() {
        return Err(ApiError::new(400, "no options specified"));
    }
    check_config_request(ctx, vmid, &sets, &deletes)?;
    update_config(
        ctx.state,
        vmid,
        &sets,
        &deletes,
        ctx.params.str("digest"),
        ctx.params.bool("skiplock").unwrap_or(false),
    )?;
    Ok(Value::Null.into())
}

fn post_config(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let (sets, deletes) = config_changes(ctx);
    let digest = ctx.params.str("digest").map(String::from);
    let skiplock = ctx.params.bool("skiplock").unwrap_or(false);
    // Checked before the task so that bad input is an API error, not a failed task.
    check_config_request(ctx, vmid, &sets, &deletes)?;
    let node = Arc::clone(ctx.state);
    let upid =
        ctx.state
            .tasks
            .spawn("qmconfig", &vmid.to_string(), &auth_id(ctx)?, move |log| {
                update_config(&node, vmid, &sets, &deletes, digest.as_deref(), skiplock)?;
                log.log(format!("updated the config of VM {vmid}"));
                Ok(())
            })?;
    Ok(json!(upid).into())
}

fn status_index(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    ctx.state.guest_config(vmid(ctx)?)?;
    let dirs = [
        "current", "start", "stop", "shutdown", "reboot", "suspend", "resume",
    ];
    Ok(json!(dirs
        .iter()
        .map(|d| json!({"subdir": d}))
        .collect::<Vec<_>>())
    .into())
}

fn current_status(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let fixed = ctx
        .state
        .guests
        .fixed(vmid)
        .ok_or_else(|| ctx.state.no_such_guest(vmid))?;
    let mut m = Node::guest_summary(vmid, &fixed, ctx.state.guests.run_info(vmid).as_ref());
    // A live answer for a single guest: ask QEMU rather than the collector's cache.
    if let Some(p) = ctx.state.guests.process(vmid) {
        if let Ok(state) = p.status() {
            m.insert("qmpstatus".into(), json!(state.status));
            m.insert("accel".into(), json!(if state.kvm { "kvm" } else { "tcg" }));
        }
    }
    m.insert("ha".into(), json!({"managed": 0}));
    m.insert("agent".into(), json!(0));
    Ok(Value::Object(m).into())
}

fn power_params() -> Vec<Param> {
    vec![
        node_param(),
        vmid_param(),
        Param::optional("skiplock", BOOL, "Ignore locks (root only)."),
    ]
}

fn spawn_power(
    ctx: &C<'_>,
    kind: &str,
    work: impl FnOnce(&Node, u32, &ferrox_api::TaskLog) -> Result<(), TaskError> + Send + 'static,
) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    crate::guest_perm::root_only_param(ctx, "skiplock")?;
    let vmid = vmid(ctx)?;
    ctx.state.guest_config(vmid)?;
    let node = Arc::clone(ctx.state);
    let upid = ctx
        .state
        .tasks
        .spawn(kind, &vmid.to_string(), &auth_id(ctx)?, move |log| {
            work(&node, vmid, log)
        })?;
    Ok(json!(upid).into())
}

/// `POST /storage`: a new `dir` storage, added to the tree's storage.cfg through its one
/// serializer (compare-and-set against the version read).
fn storage_create(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let id = ctx.params.need_str("storage")?;
    let path = ctx.params.need_str("path")?;
    let node = ctx.state;
    let current = node.tree.load("storage.cfg");
    let mut cfg = ferrox_types::StorageConfig::parse(&current.text)
        .map_err(|e| ApiError::internal(format!("storage.cfg: {e}")))?;
    if cfg.storages.contains_key(id) {
        return Err(ApiError::param(
            "storage",
            format!("storage ID '{id}' already defined"),
        ));
    }
    let list = |name: &str| {
        ctx.params.str(name).map(|v| {
            ferrox_types::format::split_list(v)
                .map(String::from)
                .collect::<std::collections::BTreeSet<_>>()
        })
    };
    let storage = ferrox_types::Storage {
        id: id.to_string(),
        storage_type: "dir".into(),
        path: Some(path.to_string()),
        content: list("content").unwrap_or_else(|| {
            ["images", "rootdir"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        shared: ctx.params.bool("shared").unwrap_or(false),
        disable: ctx.params.bool("disable").unwrap_or(false),
        nodes: list("nodes"),
        other: BTreeMap::new(),
    };
    cfg.storages.insert(id.to_string(), storage);
    cfg.order.push(id.to_string());
    let text = cfg.to_text();
    // The serializer's output must read back as the same storages (the one parser).
    ferrox_types::StorageConfig::parse(&text)
        .map_err(|e| ApiError::param("storage", e.to_string()))?;
    std::fs::create_dir_all(path)
        .map_err(|e| ApiError::param("path", format!("cannot create {path}: {e}")))?;
    node.tree.save(&current, &text)?;
    Ok(json!({"storage": id, "type": "dir"}).into())
}

fn migrate_preconditions(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    Ok(ctx
        .state
        .migration_preconditions(vmid, ctx.params.str("target"))?
        .into())
}

fn migrate(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let target = ctx.params.need_str("target")?.to_string();
    if crate::ha_api::is_managed(ctx.state, vmid) {
        // Proxmox VE's `hamigrate`: the HA stack migrates it.
        if ctx.state.store.status().member_named(&target).is_none() {
            return Err(ApiError::param(
                "target",
                format!("no such cluster node '{target}'"),
            ));
        }
        let node = Arc::clone(ctx.state);
        let upid =
            ctx.state
                .tasks
                .spawn("hamigrate", &vmid.to_string(), &auth_id(ctx)?, move |log| {
                    log.log(format!(
                        "Requesting HA migration for VM {vmid} to node {target}"
                    ));
                    Ok(crate::ha_api::queue_crm_command(
                        &node,
                        &format!("migrate vm:{vmid} {target}"),
                    )?)
                })?;
        return Ok(json!(upid).into());
    }
    let plan = ctx.state.plan_migration(
        vmid,
        &target,
        ctx.params.bool("online").unwrap_or(false),
        ctx.params.bool("with-local-disks").unwrap_or(false),
        ctx.params.int("bwlimit").map(|k| k.max(1) as u64),
    )?;
    let node = Arc::clone(ctx.state);
    let upid =
        ctx.state
            .tasks
            .spawn("qmigrate", &vmid.to_string(), &auth_id(ctx)?, move |log| {
                node.migrate_guest(plan, log)
            })?;
    Ok(json!(upid).into())
}

/// Start and stop of an HA-managed guest change its requested state instead (Proxmox
/// VE's `hastart`/`hastop` tasks); the HA stack then acts.
fn ha_request(
    ctx: &C<'_>,
    kind: &str,
    state: ferrox_types::RequestState,
) -> Result<Option<Reply>, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    if !crate::ha_api::is_managed(ctx.state, vmid) {
        return Ok(None);
    }
    let node = Arc::clone(ctx.state);
    let upid = ctx
        .state
        .tasks
        .spawn(kind, &vmid.to_string(), &auth_id(ctx)?, move |log| {
            log.log(format!("Requesting HA {} for VM {vmid}", state.as_str()));
            Ok(crate::ha_api::request_state(&node, vmid, state)?)
        })?;
    Ok(Some(json!(upid).into()))
}

fn start(ctx: &C<'_>) -> Result<Reply, ApiError> {
    if let Some(r) = ha_request(ctx, "hastart", ferrox_types::RequestState::Started)? {
        return Ok(r);
    }
    spawn_power(ctx, "qmstart", |n, v, log| n.start_guest(v, log))
}

fn stop(ctx: &C<'_>) -> Result<Reply, ApiError> {
    if let Some(r) = ha_request(ctx, "hastop", ferrox_types::RequestState::Stopped)? {
        return Ok(r);
    }
    spawn_power(ctx, "qmstop", |n, v, log| n.stop_guest(v, log))
}

fn shutdown(ctx: &C<'_>) -> Result<Reply, ApiError> {
    if let Some(r) = ha_request(ctx, "hastop", ferrox_types::RequestState::Stopped)? {
        return Ok(r);
    }
    let timeout = Duration::from_secs(ctx.params.int("timeout").unwrap_or(180).max(0) as u64);
    let force = ctx.params.bool("forceStop").unwrap_or(false);
    spawn_power(ctx, "qmshutdown", move |n, v, log| {
        n.shutdown_guest(v, timeout, force, log)
    })
}

fn reboot(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let timeout = Duration::from_secs(ctx.params.int("timeout").unwrap_or(180).max(0) as u64);
    let vmid = vmid(ctx)?;
    if ctx.state.guests.process(vmid).is_none() {
        return Err(ApiError::internal(format!("VM {vmid} not running")));
    }
    spawn_power(ctx, "qmreboot", move |n, v, log| {
        n.shutdown_guest(v, timeout, true, log)?;
        n.start_guest(v, log)
    })
}

fn suspend(ctx: &C<'_>) -> Result<Reply, ApiError> {
    if ctx.params.bool("todisk").unwrap_or(false) {
        return Err(ApiError::param(
            "todisk",
            "suspend to disk is not supported yet",
        ));
    }
    spawn_power(ctx, "qmsuspend", |n, v, log| n.pause_guest(v, true, log))
}

fn resume(ctx: &C<'_>) -> Result<Reply, ApiError> {
    spawn_power(ctx, "qmresume", |n, v, log| n.pause_guest(v, false, log))
}

fn destroy(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    crate::guest_perm::root_only_param(ctx, "skiplock")?;
    let vmid = vmid(ctx)?;
    let cfg = ctx.state.guest_config(vmid)?;
    if ctx.state.guests.process(vmid).is_some() {
        return Err(ApiError::param(
            "vmid",
            format!("VM {vmid} is running - destroy failed"),
        ));
    }
    if cfg.options.get("protection").map(String::as_str) == Some("1") {
        return Err(ApiError::param(
            "vmid",
            format!("VM {vmid} is protected - destroy failed"),
        ));
    }
    let node = Arc::clone(ctx.state);
    let upid =
        ctx.state
            .tasks
            .spawn("qmdestroy", &vmid.to_string(), &auth_id(ctx)?, move |log| {
                node.destroy_guest(vmid, log)
            })?;
    Ok(json!(upid).into())
}

fn storage_entry(node: &Node, s: &ferrox_types::Storage) -> Value {
    let space = ferrox_storage::plugin(s, &node.opts.node_name)
        .map(|p| p.space())
        .unwrap_or_default();
    json!({
        "storage": s.id,
        "type": s.storage_type,
        "content": s.content.iter().cloned().collect::<Vec<_>>().join(","),
        "shared": u8::from(s.shared),
        "active": u8::from(s.is_usable_on(&node.opts.node_name)),
        "enabled": u8::from(!s.disable),
        "total": space.total,
        "used": space.used,
        "avail": space.avail,
        "used_fraction": if space.total > 0 { space.used as f64 / space.total as f64 } else { 0.0 },
    })
}

fn storage_visible(ctx: &C<'_>, id: &str) -> bool {
    ctx.has(
        &format!("/storage/{id}"),
        &["Datastore.Audit", "Datastore.AllocateSpace"],
        true,
    )
}

fn node_storages(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.storage_config()?;
    let content = ctx.params.str("content");
    let list: Vec<Value> = cfg
        .storages
        .values()
        .filter(|s| s.is_usable_on(&ctx.state.opts.node_name))
        .filter(|s| ctx.params.str("storage").is_none_or(|id| s.id == id))
        .filter(|s| content.is_none_or(|c| c.split(',').all(|c| s.content.contains(c))))
        .filter(|s| storage_visible(ctx, &s.id))
        .map(|s| storage_entry(ctx.state, s))
        .collect();
    Ok(json!(list).into())
}

fn one_storage<'a>(
    ctx: &C<'_>,
    cfg: &'a ferrox_types::StorageConfig,
) -> Result<&'a ferrox_types::Storage, ApiError> {
    let id = ctx.params.need_str("storage")?;
    cfg.storages
        .get(id)
        .filter(|s| s.is_usable_on(&ctx.state.opts.node_name))
        .ok_or_else(|| ApiError::internal(format!("storage '{id}' does not exist")))
}

fn storage_status(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.storage_config()?;
    Ok(storage_entry(ctx.state, one_storage(ctx, &cfg)?).into())
}

fn storage_content(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.storage_config()?;
    let storage = one_storage(ctx, &cfg)?;
    if ctx.params.str("content").is_some_and(|c| c != "images") {
        // Only disk images are managed so far: ISO and template content is empty.
        return Ok(json!([]).into());
    }
    let vmid = ctx.params.int("vmid").map(|v| v as u32);
    let volumes = ferrox_storage::open(&cfg, &ctx.state.opts.node_name, &storage.id)
        .and_then(|s| s.list(vmid))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let list: Vec<Value> = volumes
        .into_iter()
        .filter(|v| rbac::check(&users, caller, &format!("/vms/{}", v.vmid), &["VM.Audit"], false) || storage_visible(ctx, &storage.id))
        .map(|v| json!({"volid": v.volid, "vmid": v.vmid, "format": v.format, "size": v.size, "used": v.used, "content": "images", "ctime": 0}))
        .collect();
    Ok(json!(list).into())
}

fn storage_config_list(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let cfg = ctx.state.storage_config()?;
    let list: Vec<Value> = cfg
        .storages
        .values()
        .filter(|s| ctx.params.str("type").is_none_or(|t| s.storage_type == t))
        .filter(|s| storage_visible(ctx, &s.id))
        .map(|s| {
            let mut v = json!({
                "storage": s.id, "type": s.storage_type,
                "content": s.content.iter().cloned().collect::<Vec<_>>().join(","),
                "shared": u8::from(s.shared), "digest": cfg.digest,
            });
            if let Some(p) = &s.path {
                v["path"] = json!(p);
            }
            v
        })
        .collect();
    Ok(json!(list).into())
}

fn cluster_resources(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let kind = ctx.params.str("type");
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let may = |path: &str, privs: &[&str], any: bool| rbac::check(&users, caller, path, privs, any);
    let mut json = local_resources(ctx.state, kind, &may);
    let others = crate::cluster_api::other_members(ctx.state);
    if others.is_empty() {
        return Ok(Reply::raw_json(json));
    }
    // Other nodes answer for themselves; a node that does not answer is listed as
    // offline, with its guests (from the store) in state "unknown".
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter()
            .map(|m| scope.spawn(move || crate::cluster::peer_resources(ctx.state, m, kind)))
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    json.pop();
    for (member, answer) in others.iter().zip(answers) {
        let entries = match answer {
            Some(Ok(entries)) => entries,
            _ => crate::cluster_api::offline_resources(ctx.state, &member.name),
        };
        for entry in entries {
            if !resource_visible(&entry, kind, &may) {
                continue;
            }
            if json.len() > 1 {
                json.push(',');
            }
            json.push_str(&entry.to_string());
        }
    }
    json.push(']');
    Ok(Reply::raw_json(json))
}

/// Whether a resource from another node passes the `type` filter and the caller's
/// permissions (the same rules as for this node's own resources).
fn resource_visible(
    entry: &Value,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
) -> bool {
    let t = entry["type"].as_str().unwrap_or("");
    let group = match t {
        "qemu" | "lxc" => "vm",
        other => other,
    };
    if kind.is_some_and(|k| k != group) {
        return false;
    }
    match group {
        "vm" => entry["vmid"]
            .as_u64()
            .is_some_and(|v| may(&format!("/vms/{v}"), &["VM.Audit"], false)),
        "storage" => entry["storage"].as_str().is_some_and(|s| {
            may(
                &format!("/storage/{s}"),
                &["Datastore.Audit", "Datastore.AllocateSpace"],
                true,
            )
        }),
        _ => true,
    }
}

/// This node's own resources (guests, the node, its storages) as a JSON array.
pub fn local_resources(
    node: &Node,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
) -> String {
    let name = &node.opts.node_name;
    let mut json = String::from("[");
    let mut push = |text: String| {
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&text);
    };
    if kind.is_none_or(|k| k == "vm") {
        let now = ferrox_api::auth::now();
        for (vmid, st, info) in node.guests.listing() {
            if !may(&format!("/vms/{vmid}"), &["VM.Audit"], false) {
                continue;
            }
            let entry = VmResource {
                id: format!("qemu/{vmid}"),
                kind: "qemu",
                vmid,
                node: name,
                status: if info.is_some() { "running" } else { "stopped" },
                template: u8::from(st.template),
                uptime: info.as_ref().map_or(0, |i| (now - i.started).max(0)),
                maxcpu: st.cpus,
                cpu: info.as_ref().map_or(0.0, |i| i.cpu),
                mem: info.as_ref().map_or(0, |i| i.mem),
                memhost: info.as_ref().map_or(0, |i| i.mem),
                diskread: info.as_ref().map_or(0, |i| i.diskread),
                diskwrite: info.as_ref().map_or(0, |i| i.diskwrite),
                disk: 0,
                netin: 0,
                netout: 0,
                name: &st.name,
                maxmem: st.maxmem,
                maxdisk: st.maxdisk,
                tags: st.tags.as_deref(),
                lock: st.lock.as_deref(),
            };
            push(serde_json::to_string(&entry).unwrap_or_default());
        }
    }
    if kind.is_none_or(|k| k == "node") {
        let stats = may(&format!("/nodes/{name}"), &["Sys.Audit"], false);
        let mut entry = node_entry(node, stats);
        if let Some(o) = entry.as_object_mut() {
            o.remove("ssl_fingerprint");
        }
        push(entry.to_string());
    }
    if kind.is_none_or(|k| k == "storage") {
        let cfg = node.storage_config().unwrap_or_default();
        for s in cfg.storages.values().filter(|s| s.is_usable_on(name)) {
            if !may(
                &format!("/storage/{}", s.id),
                &["Datastore.Audit", "Datastore.AllocateSpace"],
                true,
            ) {
                continue;
            }
            let e = storage_entry(node, s);
            push(json!({
                "id": format!("storage/{name}/{}", s.id), "type": "storage", "storage": s.id,
                "node": name, "status": "available", "plugintype": s.storage_type,
                "content": e["content"], "shared": e["shared"], "disk": e["used"], "maxdisk": e["total"],
            }).to_string());
        }
    }
    json.push(']');
    json
}

/// A guest in `/cluster/resources`, serialized without building a `Value` (10 000 guests
/// must answer in milliseconds).
#[derive(serde::Serialize)]
struct VmResource<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    vmid: u32,
    node: &'a str,
    status: &'static str,
    template: u8,
    uptime: i64,
    maxcpu: u64,
    cpu: f64,
    mem: u64,
    memhost: u64,
    diskread: u64,
    diskwrite: u64,
    disk: u64,
    netin: u64,
    netout: u64,
    name: &'a str,
    maxmem: u64,
    maxdisk: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<&'a str>,
}

fn next_id(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let used: std::collections::BTreeSet<u32> = crate::cluster_api::cluster_vmids(ctx.state)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    if let Some(v) = ctx.params.int("vmid") {
        if used.contains(&(v as u32)) {
            return Err(ApiError::param("vmid", format!("VM {v} already exists")));
        }
        return Ok(json!(v.to_string()).into());
    }
    let free = (100u32..1_000_000)
        .find(|v| !used.contains(v))
        .ok_or_else(|| ApiError::internal("unable to get any free VMID in range [100, 999999]"))?;
    Ok(json!(free.to_string()).into())
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
const NODE_AUDIT: Permission = Permission::Privs {
    path: "/nodes/{node}",
    privs: &["Sys.Audit"],
    any: false,
};
const STORAGE_AUDIT: Permission = Permission::Privs {
    path: "/storage/{storage}",
    privs: &["Datastore.Audit", "Datastore.AllocateSpace"],
    any: true,
};

fn config_update_params() -> Vec<Param> {
    vec![
        node_param(),
        vmid_param(),
        Param::optional("delete", STRING, "Settings to delete (comma list)."),
        Param::optional("revert", STRING, "Pending changes to revert (comma list)."),
        Param::optional(
            "digest",
            ParamType::String { max_len: Some(40) },
            "Refuse the change if the config's SHA-1 digest differs (concurrent edit).",
        ),
        Param::optional("skiplock", BOOL, "Ignore locks."),
        Param::optional("force", BOOL, "Force physical removal (ignored)."),
        Param::optional("background_delay", int(Some(1), Some(30)), "Ignored."),
    ]
}

/// Every node endpoint plus the common ones.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let mut list = ferrox_api::core::endpoints::<Node>();
    let auth = Permission::Authenticated;
    list.extend([
        Endpoint::new(
            Get,
            "/nodes",
            "Cluster node index.",
            auth.clone(),
            Returns::Array,
            list_nodes,
        ),
        Endpoint::new(
            Get,
            "/nodes/{node}",
            "Node index.",
            auth.clone(),
            Returns::Array,
            node_index,
        )
        .params(vec![node_param()]),
        Endpoint::new(
            Get,
            "/nodes/{node}/status",
            "Node status.",
            NODE_AUDIT,
            Returns::Object,
            node_status,
        )
        .params(vec![node_param()]),
        Endpoint::new(
            Get,
            "/nodes/{node}/rrddata",
            "Node metrics (round-robin).",
            NODE_AUDIT,
            Returns::Array,
            node_rrddata,
        )
        .params([vec![node_param()], rrd_params()].concat()),
        Endpoint::new(
            Get,
            "/nodes/{node}/network",
            "Network interfaces.",
            auth.clone(),
            Returns::Array,
            network,
        )
        .params(vec![
            node_param(),
            Param::optional("type", STRING, "Only this interface type."),
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu",
            "Virtual machine index.",
            auth.clone(),
            Returns::Array,
            list_guests,
        )
        .params(vec![
            node_param(),
            Param::optional("full", BOOL, "More details."),
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu",
            "Create a virtual machine.",
            Permission::Handler(
                "VM.Allocate on /vms/{vmid}, or on /pool/{pool} when 'pool' is given",
            ),
            Returns::Task,
            create_guest,
        )
        .extra(Extra::GuestConfigKeys)
        .params(vec![
            node_param(),
            vmid_param(),
            Param::optional("start", BOOL, "Start the VM once created."),
            Param::optional(
                "pool",
                ferrox_api::schema::POOL_ID,
                "Add the VM to this pool.",
            ),
            Param::optional("storage", STRING, "Default storage (ignored)."),
            Param::optional("unique", BOOL, "Ignored."),
            Param::optional(
                "ha-managed",
                BOOL,
                "Not supported on a single node yet (ignored).",
            ),
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}",
            "Directory index.",
            auth.clone(),
            Returns::Array,
            guest_index,
        )
        .params(vec![node_param(), vmid_param()]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/config",
            "VM configuration (with pending changes unless current=1).",
            VM_AUDIT,
            Returns::Object,
            get_config,
        )
        .params(vec![
            node_param(),
            vmid_param(),
            Param::optional("current", BOOL, "Without pending changes."),
            Param::optional("snapshot", STRING, "The config of this snapshot."),
        ]),
        Endpoint::new(
            Put,
            "/nodes/{node}/qemu/{vmid}/config",
            "Set VM options (synchronous).",
            VM_CONFIG,
            Returns::Null,
            put_config,
        )
        .extra(Extra::GuestConfigKeys)
        .params(config_update_params()),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/config",
            "Set VM options (as a task).",
            VM_CONFIG,
            Returns::Task,
            post_config,
        )
        .extra(Extra::GuestConfigKeys)
        .params(config_update_params()),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/pending",
            "Config with pending changes.",
            VM_AUDIT,
            Returns::Array,
            pending,
        )
        .params(vec![node_param(), vmid_param()]),
        Endpoint::new(
            Delete,
            "/nodes/{node}/qemu/{vmid}",
            "Destroy a stopped VM and its disks.",
            VM_ALLOCATE,
            Returns::Task,
            destroy,
        )
        .params(vec![
            node_param(),
            vmid_param(),
            Param::optional(
                "purge",
                BOOL,
                "Remove from jobs and HA (nothing to do yet).",
            ),
            Param::optional(
                "destroy-unreferenced-disks",
                BOOL,
                "Also remove disks not referenced by the config (they always are).",
            ),
            Param::optional("skiplock", BOOL, "Ignore locks."),
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/rrddata",
            "VM metrics (round-robin).",
            VM_AUDIT,
            Returns::Array,
            guest_rrddata,
        )
        .params([vec![node_param(), vmid_param()], rrd_params()].concat()),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/status",
            "Directory index.",
            auth.clone(),
            Returns::Array,
            status_index,
        )
        .params(vec![node_param(), vmid_param()]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/status/current",
            "VM status.",
            VM_AUDIT,
            Returns::Object,
            current_status,
        )
        .params(vec![node_param(), vmid_param()]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/migrate",
            "Migration preconditions: the nodes the VM can migrate to now, and why not others.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Migrate"],
                any: false,
            },
            Returns::Object,
            migrate_preconditions,
        )
        .params(vec![
            node_param(),
            vmid_param(),
            Param::optional("target", ParamType::Node, "Only this target."),
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/migrate",
            "Migrate the VM to another cluster node.",
            Permission::Privs {
                path: "/vms/{vmid}",
                privs: &["VM.Migrate"],
                any: false,
            },
            Returns::Task,
            migrate,
        )
        .params(vec![
            node_param(),
            vmid_param(),
            Param::required("target", ParamType::Node, "Target node."),
            Param::optional("online", BOOL, "Live migration of a running VM."),
            Param::optional(
                "with-local-disks",
                BOOL,
                "Also move disks on local storage (not supported yet).",
            ),
            Param::optional("bwlimit", int(Some(0), None), "Bandwidth limit in KiB/s."),
            Param::optional("force", BOOL, "Ignored."),
            Param::optional(
                "migration_type",
                ParamType::Enum(&["secure", "insecure"]),
                "Ignored.",
            ),
            Param::optional("migration_network", STRING, "Ignored."),
            Param::optional("targetstorage", STRING, "Not supported yet."),
            Param::optional("with-conntrack-state", BOOL, "Ignored."),
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/start",
            "Start the VM.",
            VM_POWER,
            Returns::Task,
            start,
        )
        .params(
            [
                power_params(),
                vec![
                    Param::optional("timeout", int(Some(0), None), "Ignored."),
                    Param::optional("machine", STRING, "Ignored."),
                ],
            ]
            .concat(),
        ),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/stop",
            "Stop the VM at once (like pulling the plug).",
            VM_POWER,
            Returns::Task,
            stop,
        )
        .params(
            [
                power_params(),
                vec![
                    Param::optional("timeout", int(Some(0), None), "Ignored."),
                    Param::optional("overrule-shutdown", BOOL, "Ignored."),
                    Param::optional("keepActive", BOOL, "Ignored."),
                ],
            ]
            .concat(),
        ),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/shutdown",
            "ACPI shutdown, with a timeout.",
            VM_POWER,
            Returns::Task,
            shutdown,
        )
        .params(
            [
                power_params(),
                vec![
                    Param::optional(
                        "timeout",
                        int(Some(0), None),
                        "Seconds to wait (default 180).",
                    ),
                    Param::optional(
                        "forceStop",
                        BOOL,
                        "Stop the VM if it has not shut down by the timeout.",
                    ),
                    Param::optional("keepActive", BOOL, "Ignored."),
                ],
            ]
            .concat(),
        ),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/reboot",
            "Shut down and start again.",
            VM_POWER,
            Returns::Task,
            reboot,
        )
        .params(vec![
            node_param(),
            vmid_param(),
            Param::optional(
                "timeout",
                int(Some(0), None),
                "Shutdown timeout (default 180).",
            ),
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/suspend",
            "Pause the VM.",
            VM_POWER,
            Returns::Task,
            suspend,
        )
        .params(
            [
                power_params(),
                vec![
                    Param::optional("todisk", BOOL, "Suspend to disk (not supported yet)."),
                    Param::optional("statestorage", STRING, "Ignored."),
                ],
            ]
            .concat(),
        ),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/status/resume",
            "Resume a paused VM.",
            VM_POWER,
            Returns::Task,
            resume,
        )
        .params(
            [
                power_params(),
                vec![Param::optional("nocheck", BOOL, "Ignored.")],
            ]
            .concat(),
        ),
        Endpoint::new(
            Get,
            "/nodes/{node}/storage",
            "Storages usable on this node.",
            auth.clone(),
            Returns::Array,
            node_storages,
        )
        .params(vec![
            node_param(),
            Param::optional(
                "content",
                STRING,
                "Only storages allowing these content types.",
            ),
            Param::optional("storage", STRING, "Only this storage."),
            Param::optional("enabled", BOOL, "Ignored."),
            Param::optional("target", STRING, "Ignored."),
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/storage/{storage}/status",
            "Storage status.",
            STORAGE_AUDIT,
            Returns::Object,
            storage_status,
        )
        .params(vec![
            node_param(),
            Param::required("storage", STRING, "Storage id."),
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/storage/{storage}/content",
            "Volumes on a storage.",
            auth.clone(),
            Returns::Array,
            storage_content,
        )
        .params(vec![
            node_param(),
            Param::required("storage", STRING, "Storage id."),
            Param::optional("content", STRING, "Only this content type."),
            Param::optional("vmid", ParamType::VmId, "Only volumes of this VM."),
        ]),
        Endpoint::new(
            Get,
            "/storage",
            "Storage configuration.",
            auth.clone(),
            Returns::Array,
            storage_config_list,
        )
        .params(vec![Param::optional(
            "type",
            STRING,
            "Only this storage type.",
        )]),
        Endpoint::new(
            Post,
            "/storage",
            "Create a storage (type dir).",
            Permission::Privs {
                path: "/storage",
                privs: &["Datastore.Allocate"],
                any: false,
            },
            Returns::Object,
            storage_create,
        )
        .params(vec![
            Param::required("storage", STORAGE_ID, "The storage identifier."),
            Param::required("type", ParamType::Enum(&["dir"]), "Storage type."),
            Param::required("path", ABSOLUTE_PATH, "File system path."),
            Param::optional("content", CONTENT_LIST, "Allowed content types."),
            Param::optional("nodes", NODE_LIST, "Nodes the storage is available on."),
            Param::optional("shared", BOOL, "The same content on every node."),
            Param::optional("disable", BOOL, "Disable the storage."),
        ]),
        Endpoint::new(
            Get,
            "/cluster/resources",
            "Resources of the cluster (VMs, nodes, storage).",
            auth.clone(),
            Returns::Array,
            cluster_resources,
        )
        .params(vec![Param::optional(
            "type",
            ParamType::Enum(&["vm", "storage", "node", "sdn"]),
            "Only this kind.",
        )]),
        Endpoint::new(
            Get,
            "/cluster/nextid",
            "The next free VM id (as a string).",
            auth,
            Returns::String,
            next_id,
        )
        .params(vec![Param::optional(
            "vmid",
            ParamType::VmId,
            "Check that this id is free.",
        )]),
    ]);
    list.extend(crate::cluster_api::endpoints());
    list.extend(crate::ha_api::endpoints());
    list.extend(crate::pools_api::endpoints());
    list
}
