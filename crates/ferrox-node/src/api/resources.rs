//! `/cluster/resources` and `/cluster/nextid`: the cluster-wide views of guests, nodes and
//! storages, and free guest ids.

use super::*;
use crate::resources::{cluster_rows, JsonArray};
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
    cluster_rows(ctx.state, kind, &may, &mut json);
    Ok(Serialized::trusted(json.finish()))
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
