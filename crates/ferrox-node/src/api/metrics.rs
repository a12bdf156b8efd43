//! `/cluster/metrics`: the metrics of every member as Proxmox VE 9 exports them
//! (`export`), and the external metric servers (`server`).

use super::*;
use crate::Node;
use ferrox_api::schema::{int, BOOL, NODE_LIST};
use ferrox_api::{ApiError, Endpoint, Method, Param, Permission};
use ferrox_api_types::cluster::{Metric, MetricServer, MetricsExport};
use ferrox_api_types::Named;

const AUDIT: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Audit"],
    any: false,
};

fn index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    Ok(["server", "export", "prometheus"]
        .iter()
        .map(|n| Named {
            name: n.to_string(),
        })
        .collect())
}

/// The current values of this node and, unless `local-only`, of the other members (or
/// those in `node-list`). No history is kept beyond the current values: `history` and
/// `start-time` only filter them.
fn export(ctx: &C<'_>) -> Result<MetricsExport, ApiError> {
    let node = ctx.state;
    let local_only = ctx.params.bool(&param::LOCAL_ONLY).unwrap_or(false);
    let start = ctx.params.int(&param::START_TIME).unwrap_or(0);
    let wanted: Option<Vec<String>> = ctx.params.str(&param::NODE_LIST).map(|l| {
        ferrox_types::format::split_list(l)
            .map(String::from)
            .collect()
    });
    if let Some(list) = &wanted {
        let members = node.store.status().members;
        let unknown: Vec<&str> = list
            .iter()
            .filter(|n| !members.iter().any(|m| &m.member.name == *n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(param::NODE_LIST.error(format!(
                "Requested node-list contains unknown nodes - {}",
                unknown.join(", ")
            )));
        }
    }
    let included = |name: &str| wanted.as_ref().is_none_or(|l| l.iter().any(|n| n == name));
    let mut data: Vec<Metric> = Vec::new();
    if included(&node.opts.node_name) {
        data.extend(crate::host::metrics::export(node));
    }
    if !local_only || wanted.is_some() {
        for (member, answer) in crate::cluster::ask_members(node, |m| {
            if included(&m.name) {
                crate::cluster::peer_get::<Vec<Metric>>(node, m, "/ferrox/local-metrics")
            } else {
                Ok(Vec::new())
            }
        }) {
            match answer {
                Some(metrics) => data.extend(metrics),
                None => tracing::warn!("metrics export: node '{}' did not answer", member.name),
            }
        }
    }
    data.retain(|m| m.timestamp > start);
    data.sort_by_key(|m| m.timestamp);
    Ok(MetricsExport { data })
}

/// The cluster in Prometheus' text format (prometheus-pve-exporter's names); also served
/// as `GET /metrics` for Prometheus, authenticated like any API call (an API token in
/// `Authorization: PVEAPIToken ...`).
fn prometheus(ctx: &C<'_>) -> Result<String, ApiError> {
    let node = ctx.state;
    let caller = ctx.caller()?;
    let users = node.auth.user_config();
    let may = |path: &str, privs: &[&str], any: bool| {
        ferrox_api::rbac::check(&users, caller, path, privs, any)
    };
    let mut rows: Vec<ferrox_api_types::cluster::Resource> = Vec::new();
    crate::resources::cluster_rows(node, None, &may, &mut rows);
    let status = super::cluster::status_entries(node);
    let onboot: Vec<(String, String, bool)> = crate::cluster::cluster_vmids(node)
        .into_iter()
        .filter(|(vmid, _)| may(&format!("/vms/{vmid}"), &["VM.Audit"], false))
        .map(|(vmid, owner)| {
            let on = node
                .tree
                .get(&crate::guests::config_path(&owner, vmid))
                .and_then(|e| ferrox_types::GuestConfig::parse(&e.data).ok())
                .is_some_and(|c| c.options.get("onboot").map(String::as_str) == Some("1"));
            (format!("qemu/{vmid}"), owner, on)
        })
        .collect();
    use ferrox_api::core::{PVE_RELEASE, PVE_VERSION, REPOID};
    Ok(crate::prometheus::render(&crate::prometheus::Scrape {
        resources: &rows,
        status: &status,
        version: (PVE_VERSION, PVE_RELEASE, REPOID),
        onboot: &onboot,
    }))
}

/// No metric server can be configured yet (issue 13, left): the list is empty.
fn servers(_: &C<'_>) -> Result<Vec<MetricServer>, ApiError> {
    Ok(Vec::new())
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const LOCAL_ONLY: Param = Param::optional(
        "local-only",
        BOOL,
        "Only the metrics of the node answering.",
    );
    pub const NODE_LIST: Param = Param::optional(
        "node-list",
        super::NODE_LIST,
        "Only the metrics of these nodes (comma-separated).",
    );
    pub const START_TIME: Param = Param::optional(
        "start-time",
        int(Some(0), None),
        "Only metrics with a timestamp after this.",
    );
    pub const HISTORY: Param = Param::optional(
        "history",
        BOOL,
        "Also historic values (Ferrox keeps only the current ones).",
    );
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(
            Get,
            "/cluster/metrics",
            "Metrics index.",
            Permission::Authenticated,
            index,
        ),
        Endpoint::new(
            Get,
            "/cluster/metrics/export",
            "Current metrics of the cluster's nodes, guests and storages.",
            AUDIT,
            export,
        )
        .params(vec![
            param::LOCAL_ONLY,
            param::NODE_LIST,
            param::START_TIME,
            param::HISTORY,
        ]),
        Endpoint::new(
            Get,
            "/cluster/metrics/prometheus",
            "The cluster in Prometheus' text format (a Ferrox extension; also GET /metrics).",
            AUDIT,
            prometheus,
        ),
        Endpoint::new(
            Get,
            "/cluster/metrics/server",
            "External metric servers.",
            AUDIT,
            servers,
        ),
    ]
}
