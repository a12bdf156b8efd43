//! `/nodes` and `/nodes/{node}`: the node index, a node's status, metrics and network.

use super::*;
use crate::{host, Node};
use ferrox_api::core::{local_node, PVE_VERSION};
use ferrox_api::schema::STRING;
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission, Reply, Returns};
use serde_json::{json, Value};

pub(super) fn node_entry(node: &Node, with_stats: bool) -> Value {
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
    let others = crate::cluster::other_members(ctx.state);
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

pub(super) fn rrd_params() -> Vec<Param> {
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

pub(super) fn rrd_rows(ctx: &C<'_>, key: &str) -> Result<Reply, ApiError> {
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

fn network(ctx: &C<'_>) -> Result<Reply, ApiError> {
    local_node(ctx)?;
    // Guests get user-mode networking; there are no host bridges to report yet.
    Ok(json!([]).into())
}

const NODE_AUDIT: Permission = Permission::Privs {
    path: "/nodes/{node}",
    privs: &["Sys.Audit"],
    any: false,
};

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let auth = Permission::Authenticated;
    vec![
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
    ]
}
