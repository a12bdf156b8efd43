//! `/cluster/metrics`: the metrics of every member as Proxmox VE 9 exports them
//! (`export`), and the external metric servers (`server`).

use super::*;
use crate::metric_push::STATUS_CFG;
use crate::Node;
use ferrox_api::schema::{int, ABSOLUTE_PATH, BOOL, GROUP_ID, NODE_LIST, STRING};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::cluster::{Metric, MetricServer, MetricsExport};
use ferrox_api_types::Named;
use ferrox_types::section_config::{header_line, property_line};
use ferrox_types::status_config::{self, ServerKind, StatusConfig};
use std::collections::BTreeMap;

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

const MODIFY: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Modify"],
    any: false,
};

fn server_row(node: &Node, s: &status_config::MetricServer) -> MetricServer {
    let mut row = MetricServer {
        id: s.id.clone(),
        kind: s.type_name().into(),
        server: s.server.clone(),
        port: s.port,
        disable: u8::from(s.disable),
        proto: s.proto().into(),
        mtu: s.mtu,
        timeout: s.timeout,
        dropped: node.metrics.pusher.dropped(&s.id),
        ..MetricServer::default()
    };
    match &s.kind {
        ServerKind::Graphite { path, .. } => row.path = Some(path.clone()),
        ServerKind::Influxdb {
            organization,
            bucket,
            api_path_prefix,
            max_body_size,
            verify_certificate,
            ..
        } => {
            row.organization = organization.clone();
            row.bucket = bucket.clone();
            row.api_path_prefix = api_path_prefix.clone();
            row.max_body_size = *max_body_size;
            row.verify_certificate = Some(u8::from(*verify_certificate));
        }
    }
    row
}

fn load_servers(node: &Node) -> Result<(crate::cluster::Document, StatusConfig), ApiError> {
    let doc = node.tree.load(STATUS_CFG);
    let cfg = StatusConfig::parse(&doc.text)
        .map_err(|e| ApiError::internal(format!("{STATUS_CFG}: {e}")))?;
    Ok((doc, cfg))
}

fn servers(ctx: &C<'_>) -> Result<Vec<MetricServer>, ApiError> {
    let (_, cfg) = load_servers(ctx.state)?;
    Ok(cfg
        .order
        .iter()
        .filter_map(|id| cfg.servers.get(id))
        .map(|s| server_row(ctx.state, s))
        .collect())
}

fn read_server(ctx: &C<'_>) -> Result<MetricServer, ApiError> {
    let id = ctx.params.need_str(&param::ID)?;
    let (_, cfg) = load_servers(ctx.state)?;
    let server = cfg
        .servers
        .get(id)
        .ok_or_else(|| ApiError::internal(format!("metric server '{id}' does not exist")))?;
    Ok(server_row(ctx.state, server))
}

/// The settings a request gives, each checked by `status.cfg`'s own rules and named by
/// its parameter when refused.
fn requested_settings(ctx: &C<'_>, kind: &str) -> Result<BTreeMap<&'static str, String>, ApiError> {
    let mut out = BTreeMap::new();
    for p in SETTINGS {
        let value = match &p.ty {
            ParamType::Integer { .. } => ctx.params.int(p).map(|v| v.to_string()),
            ParamType::Boolean => ctx.params.bool(p).map(|b| u8::from(b).to_string()),
            _ => ctx.params.str(p).map(String::from),
        };
        if let Some(value) = value {
            status_config::check_property(kind, p.name, &value).map_err(|e| p.error(e))?;
            out.insert(p.name, value);
        }
    }
    Ok(out)
}

/// Writes `settings` as server `id` of `kind` into `status.cfg` (compare-and-set), through
/// the file's one parser and serializer; nothing is written when that refuses them.
fn store_server(
    node: &Node,
    doc: &crate::cluster::Document,
    mut cfg: StatusConfig,
    id: &str,
    kind: &str,
    settings: &BTreeMap<&'static str, String>,
) -> Result<(), ApiError> {
    let mut section = header_line(kind, id);
    for (key, value) in settings {
        section.push_str(&property_line(key, value));
    }
    let parsed = StatusConfig::parse(&section).map_err(|e| param::ID.error(e.to_string()))?;
    let server = parsed
        .servers
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::internal("metric server section did not parse"))?;
    if !cfg.order.iter().any(|o| o == id) {
        cfg.order.push(id.to_string());
    }
    cfg.servers.insert(id.to_string(), server);
    node.tree.save(doc, &cfg.to_text())?;
    Ok(())
}

fn token_path(id: &str) -> String {
    format!("priv/metricserver/{id}.pw")
}

fn store_token(node: &Node, id: &str, token: Option<&str>) -> Result<(), ApiError> {
    let result = match token {
        Some(t) => node.tree.put(&token_path(id), t, ferrox_store::Expect::Any),
        None => node.tree.delete(&token_path(id), ferrox_store::Expect::Any),
    };
    result.map(drop).map_err(crate::cluster::store_error)
}

fn create_server(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::ID)?;
    let kind = ctx.params.need_str(&param::TYPE)?;
    status_config::server_id(id).map_err(|e| param::ID.error(e))?;
    let (doc, cfg) = load_servers(ctx.state)?;
    if cfg.servers.contains_key(id) {
        return Err(param::ID.error(format!("metric server '{id}' already exists")));
    }
    let settings = requested_settings(ctx, kind)?;
    for required in [&param::SERVER, &param::PORT] {
        if !settings.contains_key(required.name) {
            return Err(required.error("property is missing and it is not optional"));
        }
    }
    let token = ctx.params.str(&param::TOKEN);
    if token.is_some() && kind != "influxdb" {
        return Err(param::TOKEN.error("only InfluxDB servers take a token"));
    }
    store_server(ctx.state, &doc, cfg, id, kind, &settings)?;
    if let Some(t) = token {
        store_token(ctx.state, id, Some(t))?;
    }
    Ok(())
}

fn update_server(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::ID)?;
    let (doc, cfg) = load_servers(ctx.state)?;
    doc.check_digest(ctx.params.str(&param::DIGEST))?;
    let current = cfg
        .servers
        .get(id)
        .ok_or_else(|| ApiError::internal(format!("metric server '{id}' does not exist")))?;
    let kind = current.type_name();
    // The current settings, as the file has them, then the request's over them.
    let section = StatusConfig {
        servers: BTreeMap::from([(id.to_string(), current.clone())]),
        order: vec![id.to_string()],
        digest: String::new(),
    }
    .to_text();
    let mut settings: BTreeMap<&'static str, String> = BTreeMap::new();
    for line in section.lines().skip(1) {
        if let Some((key, value)) = line.trim().split_once(' ') {
            if let Some(p) = SETTINGS.iter().find(|p| p.name == key) {
                settings.insert(p.name, value.to_string());
            }
        }
    }
    if let Some(deleted) = ctx.params.str(&param::DELETE) {
        for key in ferrox_types::format::split_list(deleted) {
            if matches!(key, "server" | "port") {
                return Err(param::DELETE.error(format!("'{key}' cannot be deleted")));
            }
            if key == "token" {
                continue;
            }
            if !SETTINGS.iter().any(|p| p.name == key) {
                return Err(param::DELETE.error(format!("unknown property '{key}'")));
            }
            settings.remove(key);
        }
    }
    settings.extend(requested_settings(ctx, kind)?);
    store_server(ctx.state, &doc, cfg.clone(), id, kind, &settings)?;
    if let Some(t) = ctx.params.str(&param::TOKEN) {
        store_token(ctx.state, id, Some(t))?;
    } else if ctx
        .params
        .str(&param::DELETE)
        .is_some_and(|d| ferrox_types::format::split_list(d).any(|k| k == "token"))
    {
        store_token(ctx.state, id, None)?;
    }
    Ok(())
}

fn delete_server(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::ID)?;
    let (doc, mut cfg) = load_servers(ctx.state)?;
    if cfg.servers.remove(id).is_none() {
        return Err(ApiError::internal(format!(
            "metric server '{id}' does not exist"
        )));
    }
    cfg.order.retain(|o| o != id);
    ctx.state.tree.save(&doc, &cfg.to_text())?;
    if ctx.state.tree.get(&token_path(id)).is_some() {
        store_token(ctx.state, id, None)?;
    }
    Ok(())
}

/// The settings of a metric server a request may give (`status.cfg`'s properties).
const SETTINGS: &[Param] = &[
    param::SERVER,
    param::PORT,
    param::PROTO,
    param::PATH,
    param::ORGANIZATION,
    param::BUCKET,
    param::API_PATH_PREFIX,
    param::MAX_BODY_SIZE,
    param::VERIFY_CERTIFICATE,
    param::MTU,
    param::TIMEOUT,
    param::DISABLE,
];

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
    pub const ID: Param = Param::required(
        "id",
        ParamType::Format {
            name: "pve-configid",
            check: status_config::server_id,
        },
        "The metric server's id.",
    );
    pub const TYPE: Param = Param::required(
        "type",
        ParamType::Enum(&["influxdb", "graphite"]),
        "Plugin type.",
    );
    pub const SERVER: Param = Param::optional(
        "server",
        ParamType::Format {
            name: "address",
            check: ferrox_types::domains::server_name,
        },
        "Server name or address.",
    );
    pub const PORT: Param = Param::optional("port", int(Some(1), Some(65535)), "Server port.");
    pub const PROTO: Param = Param::optional(
        "proto",
        ParamType::Enum(&["udp", "tcp", "http", "https"]),
        "Protocol: udp or tcp (graphite), udp, http or https (influxdb).",
    );
    pub const PATH: Param = Param::optional(
        "path",
        ParamType::Format {
            name: "graphite-path",
            check: status_config::graphite_path,
        },
        "Graphite: the root of every metric path (default proxmox).",
    );
    pub const ORGANIZATION: Param = Param::optional(
        "organization",
        GROUP_ID,
        "InfluxDB over HTTP: the organization (default proxmox).",
    );
    pub const BUCKET: Param = Param::optional(
        "bucket",
        GROUP_ID,
        "InfluxDB over HTTP: the bucket (default proxmox).",
    );
    pub const TOKEN: Param = Param::optional(
        "token",
        ParamType::String { max_len: Some(512) },
        "InfluxDB over HTTP: the API token (kept in priv/, never shown).",
    );
    pub const API_PATH_PREFIX: Param = Param::optional(
        "api-path-prefix",
        ABSOLUTE_PATH,
        "InfluxDB over HTTP: a path before /api/v2 (a reverse proxy).",
    );
    pub const MAX_BODY_SIZE: Param = Param::optional(
        "max-body-size",
        int(Some(1), None),
        "InfluxDB over HTTP: the largest request body in bytes (default 25 000 000).",
    );
    pub const VERIFY_CERTIFICATE: Param = Param::optional(
        "verify-certificate",
        BOOL,
        "InfluxDB over HTTPS: check the server's certificate (default 1).",
    );
    pub const MTU: Param = Param::optional(
        "mtu",
        int(Some(512), Some(65536)),
        "UDP: the datagram size (default 1500).",
    );
    pub const TIMEOUT: Param = Param::optional(
        "timeout",
        int(Some(1), Some(3600)),
        "TCP/HTTP: seconds to connect and send (default 1).",
    );
    pub const DISABLE: Param = Param::optional("disable", BOOL, "Do not push to this server.");
    pub const DELETE: Param =
        Param::optional("delete", STRING, "Settings to remove (comma-separated).");
    pub const DIGEST: Param = Param::optional(
        "digest",
        STRING,
        "Refuse the change if status.cfg changed since this digest.",
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
        Endpoint::new(
            Get,
            "/cluster/metrics/server/{id}",
            "One external metric server.",
            AUDIT,
            read_server,
        )
        .params(vec![param::ID]),
        Endpoint::new(
            Post,
            "/cluster/metrics/server/{id}",
            "Add an external metric server.",
            MODIFY,
            create_server,
        )
        .params(
            [
                vec![param::ID, param::TYPE, param::TOKEN],
                SETTINGS.to_vec(),
            ]
            .concat(),
        ),
        Endpoint::new(
            Put,
            "/cluster/metrics/server/{id}",
            "Change an external metric server.",
            MODIFY,
            update_server,
        )
        .params(
            [
                vec![param::ID, param::TOKEN, param::DELETE, param::DIGEST],
                SETTINGS.to_vec(),
            ]
            .concat(),
        ),
        Endpoint::new(
            Delete,
            "/cluster/metrics/server/{id}",
            "Remove an external metric server.",
            MODIFY,
            delete_server,
        )
        .params(vec![param::ID]),
    ]
}
