//! `/cluster/resources` and `/cluster/nextid`: the cluster-wide views of guests, nodes and
//! storages, and free guest ids.

use super::nodes::node_entry;
use super::storage::storage_entry;
use super::*;
use crate::Node;
use ferrox_api::rbac;
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission, Reply, Returns};
use serde_json::{json, Value};

fn cluster_resources(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let kind = ctx.params.str("type");
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let may = |path: &str, privs: &[&str], any: bool| rbac::check(&users, caller, path, privs, any);
    let mut json = local_resources(ctx.state, kind, &may);
    let others = crate::cluster::other_members(ctx.state);
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
            _ => crate::api::cluster::offline_resources(ctx.state, &member.name),
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
    let used: std::collections::BTreeSet<u32> = crate::cluster::cluster_vmids(ctx.state)
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
    ]
}
