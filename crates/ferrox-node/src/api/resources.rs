//! `/cluster/resources` and `/cluster/nextid`: the cluster-wide views of guests, nodes and
//! storages, and free guest ids.

use super::storage::storage_status;
use super::*;
use crate::guests::{config_dir, parse_config_path, GuestStatic, RunInfo};
use crate::{host, Node};
use ferrox_api::rbac;
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission, Serialized};
use ferrox_api_types::cluster::Resource;

fn cluster_resources(ctx: &C<'_>) -> Result<Serialized<Vec<Resource>>, ApiError> {
    let kind = ctx.params.str("type");
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let may = |path: &str, privs: &[&str], any: bool| rbac::check(&users, caller, path, privs, any);
    let mut json = local_resources(ctx.state, kind, &may);
    let others = crate::cluster::other_members(ctx.state);
    if others.is_empty() {
        return Ok(Serialized::trusted(json));
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
            _ => offline_resources(ctx.state, &member.name),
        };
        for entry in entries.iter().filter(|e| resource_visible(e, kind, &may)) {
            push_row(&mut json, entry);
        }
    }
    json.push(']');
    Ok(Serialized::trusted(json))
}

/// Appends one row to a JSON array being written (`json` starts with `[`).
fn push_row(json: &mut String, row: &Resource) {
    if json.len() > 1 {
        json.push(',');
    }
    // A `Resource` has string keys only: serializing it cannot fail.
    json.push_str(&serde_json::to_string(row).unwrap_or_default());
}

/// Whether a resource from another node passes the `type` filter and the caller's
/// permissions (the same rules as for this node's own resources).
fn resource_visible(
    entry: &Resource,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
) -> bool {
    if kind.is_some_and(|k| k != entry.group()) {
        return false;
    }
    match entry.group() {
        "vm" => entry
            .vmid
            .is_some_and(|v| may(&format!("/vms/{v}"), &["VM.Audit"], false)),
        "storage" => entry.storage.as_ref().is_some_and(|s| {
            may(
                &format!("/storage/{s}"),
                &["Datastore.Audit", "Datastore.AllocateSpace"],
                true,
            )
        }),
        _ => true,
    }
}

/// A guest's row: what its config says, and how it runs when `info` is known.
pub(crate) fn guest_resource(
    vmid: u32,
    node: &str,
    fixed: &GuestStatic,
    status: &str,
    info: Option<&RunInfo>,
) -> Resource {
    let now = ferrox_api::auth::now();
    let live = status != "unknown";
    let counter = |f: fn(&RunInfo) -> u64| live.then(|| info.map_or(0, f));
    Resource {
        id: format!("qemu/{vmid}"),
        kind: "qemu".into(),
        node: Some(node.to_string()),
        status: Some(status.to_string()),
        vmid: Some(vmid),
        name: Some(fixed.name.clone()),
        template: Some(u8::from(fixed.template)),
        uptime: live.then(|| info.map_or(0, |i| (now - i.started).max(0))),
        cpu: live.then(|| info.map_or(0.0, |i| i.cpu)),
        maxcpu: Some(fixed.cpus),
        mem: counter(|i| i.mem),
        memhost: counter(|i| i.mem),
        maxmem: Some(fixed.maxmem),
        disk: live.then_some(0),
        maxdisk: Some(fixed.maxdisk),
        diskread: counter(|i| i.diskread),
        diskwrite: counter(|i| i.diskwrite),
        netin: live.then_some(0),
        netout: live.then_some(0),
        tags: live.then(|| fixed.tags.clone()).flatten(),
        lock: live.then(|| fixed.lock.clone()).flatten(),
        ..Resource::default()
    }
}

/// A node's row; the usage figures only for callers with `Sys.Audit` on the node.
pub(crate) fn node_resource(node: &Node, with_stats: bool) -> Resource {
    let name = &node.opts.node_name;
    let mut row = Resource {
        id: format!("node/{name}"),
        kind: "node".into(),
        node: Some(name.clone()),
        status: Some("online".into()),
        level: Some(String::new()),
        ..Resource::default()
    };
    if with_stats {
        let mem = host::memory();
        let root = host::filesystem(&node.opts.data_dir);
        row.uptime = Some(host::uptime() as i64);
        row.cpu = Some(node.metrics.latest().cpu);
        row.maxcpu = Some(host::cpu_count() as u64);
        row.mem = Some(mem.used());
        row.maxmem = Some(mem.total);
        row.disk = Some(root.used());
        row.maxdisk = Some(root.total);
        row.cgroup_mode = Some(2);
    }
    row
}

/// The row of a member that does not answer.
pub(crate) fn offline_node(name: &str) -> Resource {
    Resource {
        id: format!("node/{name}"),
        kind: "node".into(),
        node: Some(name.to_string()),
        status: Some("offline".into()),
        level: Some(String::new()),
        ..Resource::default()
    }
}

/// A storage's row on this node.
pub(crate) fn storage_resource(node: &Node, s: &ferrox_types::Storage) -> Resource {
    let name = &node.opts.node_name;
    let status = storage_status(node, s);
    Resource {
        id: format!("storage/{name}/{}", s.id),
        kind: "storage".into(),
        node: Some(name.clone()),
        status: Some("available".into()),
        storage: Some(s.id.clone()),
        plugintype: Some(s.storage_type.clone()),
        content: Some(status.content),
        shared: Some(status.shared),
        disk: Some(status.used),
        maxdisk: Some(status.total),
        ..Resource::default()
    }
}

/// What `/cluster/resources` shows for a node that does not answer: the node offline,
/// its guests (from the store) in state `unknown`.
pub fn offline_resources(node: &Node, name: &str) -> Vec<Resource> {
    let mut out = vec![offline_node(name)];
    for (path, entry) in node.tree.list(&config_dir(name)) {
        let Some((_, vmid)) = parse_config_path(&path) else {
            continue;
        };
        let Ok(cfg) = ferrox_types::GuestConfig::parse(&entry.data) else {
            continue;
        };
        let fixed = GuestStatic::of(vmid, &cfg);
        out.push(guest_resource(vmid, name, &fixed, "unknown", None));
    }
    out
}

/// This node's own resources (guests, the node, its storages) as a JSON array.
pub fn local_resources(
    node: &Node,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
) -> String {
    let name = &node.opts.node_name;
    let mut json = String::from("[");
    if kind.is_none_or(|k| k == "vm") {
        for (vmid, fixed, info) in node.guests.listing() {
            if !may(&format!("/vms/{vmid}"), &["VM.Audit"], false) {
                continue;
            }
            let status = if info.is_some() { "running" } else { "stopped" };
            let row = guest_resource(vmid, name, &fixed, status, info.as_ref());
            push_row(&mut json, &row);
        }
    }
    if kind.is_none_or(|k| k == "node") {
        let stats = may(&format!("/nodes/{name}"), &["Sys.Audit"], false);
        push_row(&mut json, &node_resource(node, stats));
    }
    if kind.is_none_or(|k| k == "storage") {
        let cfg = node.storage_config().unwrap_or_default();
        for s in cfg
            .storages
            .values()
            .filter(|s| ferrox_storage::is_usable_on(s, name))
        {
            if may(
                &format!("/storage/{}", s.id),
                &["Datastore.Audit", "Datastore.AllocateSpace"],
                true,
            ) {
                push_row(&mut json, &storage_resource(node, s));
            }
        }
    }
    json.push(']');
    json
}

fn next_id(ctx: &C<'_>) -> Result<String, ApiError> {
    let used: std::collections::BTreeSet<u32> = crate::cluster::cluster_vmids(ctx.state)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    if let Some(v) = ctx.params.int("vmid") {
        if used.contains(&(v as u32)) {
            return Err(ApiError::param("vmid", format!("VM {v} already exists")));
        }
        return Ok(v.to_string());
    }
    let free = (100u32..1_000_000)
        .find(|v| !used.contains(v))
        .ok_or_else(|| ApiError::internal("unable to get any free VMID in range [100, 999999]"))?;
    Ok(free.to_string())
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let auth = Permission::Authenticated;
    vec![
        Endpoint::new(
            Get,
            "/cluster/resources",
            "Resources of the cluster (VMs, nodes, storage).",
            auth.clone(),
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
            next_id,
        )
        .params(vec![Param::optional(
            "vmid",
            ParamType::VmId,
            "Check that this id is free.",
        )]),
    ]
}
