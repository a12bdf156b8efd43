//! The node's API, one file per area of `/api2/json` (the file of an endpoint follows from
//! its path): `nodes` (`/nodes`, `/nodes/{node}`), `qemu` (`/nodes/{node}/qemu`), `storage`
//! (`/storage`, `/nodes/{node}/storage`), `resources` (`/cluster/resources`,
//! `/cluster/nextid`), `cluster` (`/cluster/config`, status, options, locks), `ha`
//! (`/cluster/ha`), `pools` (`/pools`), `cpu` (`/cluster/qemu`, the node's CPU capabilities), `console` (a guest's `vncproxy`, `termproxy`, `vncwebsocket`), `crs` (`/cluster/crs`: the balancing plan); `/access`, `/version` and tasks come from
//! `ferrox_api::core`. Each endpoint is declared with its parameters and permission next to
//! its handler.

pub mod backup;
pub mod cluster;
pub mod console;
pub mod cpu;
pub mod crs;
pub mod ha;
pub mod lxc;
pub mod metrics;
pub mod network;
pub mod nodes;
pub mod notifications;
pub mod pools;
pub mod qemu;
pub mod resources;
pub mod sdn;
pub mod storage;
pub mod tasks;

use crate::Node;
use ferrox_api::{ApiError, Ctx, Endpoint};

pub(crate) type C<'a> = Ctx<'a, Node>;

/// Sys.Audit on the node of the path (Proxmox VE's node reads).
pub(crate) const NODE_AUDIT: ferrox_api::Permission = ferrox_api::Permission::Privs {
    path: "/nodes/{node}",
    privs: &["Sys.Audit"],
    any: false,
};
/// Sys.Modify on the node of the path (Proxmox VE's node changes).
pub(crate) const NODE_MODIFY: ferrox_api::Permission = ferrox_api::Permission::Privs {
    path: "/nodes/{node}",
    privs: &["Sys.Modify"],
    any: false,
};

pub(crate) use ferrox_api::schema::common::{NODE, VMID};

pub(crate) fn vmid(ctx: &C<'_>) -> Result<u32, ApiError> {
    Ok(ctx.params.need_int(&VMID)? as u32)
}
pub(crate) fn auth_id(ctx: &C<'_>) -> Result<String, ApiError> {
    Ok(ctx.caller()?.auth_id())
}

/// Every node endpoint plus the common ones.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    let mut list = ferrox_api::core::endpoints::<Node>();
    list.extend(nodes::endpoints());
    list.extend(network::endpoints());
    list.extend(qemu::endpoints());
    list.extend(storage::endpoints());
    list.extend(resources::endpoints());
    list.extend(cluster::endpoints());
    list.extend(ha::endpoints());
    list.extend(pools::endpoints());
    list.extend(lxc::endpoints());
    list.extend(tasks::endpoints());
    list.extend(metrics::endpoints());
    list.extend(backup::endpoints());
    list.extend(sdn::endpoints());
    list.extend(notifications::endpoints());
    list.extend(cpu::endpoints());
    list.extend(console::endpoints());
    list.extend(crs::endpoints());
    list
}
