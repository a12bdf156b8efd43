//! `/nodes/{node}/lxc`: containers. Ferrox runs no containers yet (a `GuestKind` for them
//! comes later), so the listing is always empty, as on a Proxmox VE node without any.

use super::*;
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::{ApiError, Endpoint, Method, Permission};
use ferrox_api_types::lxc::ContainerStatus;

fn list_containers(ctx: &C<'_>) -> Result<Vec<ContainerStatus>, ApiError> {
    local_node(ctx)?;
    Ok(Vec::new())
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    vec![Endpoint::new(
        Method::Get,
        "/nodes/{node}/lxc",
        "Containers on this node (those the caller may audit).",
        Permission::Authenticated,
        list_containers,
    )
    .params(vec![NODE])]
}
