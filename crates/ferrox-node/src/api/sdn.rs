//! `/cluster/sdn`: software-defined networks. None can be configured yet, so the zone
//! and VNet listings are empty.

use super::*;
use crate::Node;
use ferrox_api::{ApiError, Endpoint, Method, Permission};
use ferrox_api_types::{ConfigMap, Named};

fn index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    Ok(["vnets", "zones"]
        .iter()
        .map(|n| Named {
            name: n.to_string(),
        })
        .collect())
}

fn empty(_: &C<'_>) -> Result<Vec<ConfigMap>, ApiError> {
    Ok(Vec::new())
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let filtered =
        || Permission::Handler("any user; only entries with SDN.Audit or SDN.Allocate on them");
    vec![
        Endpoint::new(
            Get,
            "/cluster/sdn",
            "SDN index.",
            Permission::Authenticated,
            index,
        ),
        Endpoint::new(Get, "/cluster/sdn/vnets", "SDN VNets.", filtered(), empty),
        Endpoint::new(Get, "/cluster/sdn/zones", "SDN zones.", filtered(), empty),
    ]
}
