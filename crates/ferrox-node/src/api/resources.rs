//! `/cluster/resources` and `/cluster/nextid`: the cluster-wide views of guests, nodes and
//! storages, and free guest ids.

use super::*;
use crate::resources::{hide_pool, local_rows, offline_resources, JsonArray};
use crate::Node;
use ferrox_api::rbac;
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission, Serialized};
use ferrox_api_types::cluster::Resource;

fn cluster_resources(ctx: &C<'_>) -> Result<Serialized<Vec<Resource>>, ApiError> {
    let kind = ctx.params.str(&param::TYPE);
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let may = |path: &str, privs: &[&str], any: bool| rbac::check(&users, caller, path, privs, any);
    let mut json = JsonArray::new();
    local_rows(ctx.state, kind, &may, &mut json);
    // Other nodes answer for themselves; a node that does not answer is listed as
    // offline, with its guests (from the store) in state "unknown".
    let answers = crate::cluster::ask_members(ctx.state, |m| {
        crate::cluster::peer_resources(ctx.state, m, kind)
    });
    for (member, answer) in answers {
        let entries = answer.unwrap_or_else(|| offline_resources(ctx.state, &member.name));
        for mut entry in entries
            .into_iter()
            .filter(|e| resource_visible(e, kind, &may))
        {
            hide_pool(&mut entry, &may);
            json.push(&entry);
        }
    }
    Ok(Serialized::trusted(json.finish()))
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

fn next_id(ctx: &C<'_>) -> Result<String, ApiError> {
    let used: std::collections::BTreeSet<u32> = crate::cluster::cluster_vmids(ctx.state)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    if let Some(v) = ctx.params.int(&param::VMID) {
        if used.contains(&(v as u32)) {
            return Err(param::VMID.error(format!("VM {v} already exists")));
        }
        return Ok(v.to_string());
    }
    let free = (100u32..1_000_000)
        .find(|v| !used.contains(v))
        .ok_or_else(|| ApiError::internal("unable to get any free VMID in range [100, 999999]"))?;
    Ok(free.to_string())
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const TYPE: Param = Param::optional(
        "type",
        ParamType::Enum(&["vm", "storage", "node", "sdn"]),
        "Only this kind.",
    );
    pub const VMID: Param = Param::optional("vmid", ParamType::VmId, "Check that this id is free.");
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
        .params(vec![param::TYPE]),
        Endpoint::new(
            Get,
            "/cluster/nextid",
            "The next free VM id (as a string).",
            auth,
            next_id,
        )
        .params(vec![param::VMID]),
    ]
}
