//! `/nodes` and `/nodes/{node}`: the node index, a node's status, metrics and network.

use super::*;
use crate::resources::{node_resource, offline_node};
use crate::{host, Node};
use ferrox_api::core::{local_node, PVE_VERSION};
use ferrox_api::schema::STRING;
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::cluster::Resource;
use ferrox_api_types::nodes::{
    BootInfo, CpuInfo, Kernel, Ksm, Memory, NetworkInterface, NodeStatus, RrdRow, Space,
};
use ferrox_api_types::Named;

fn list_nodes(ctx: &C<'_>) -> Result<Vec<Resource>, ApiError> {
    let name = ctx.state.opts.node_name.clone();
    let stats = ctx.has(&format!("/nodes/{name}"), &["Sys.Audit"], false);
    let mut own = node_resource(ctx.state, stats);
    own.ssl_fingerprint = Some(ctx.state.tls.fingerprint.clone());
    let mut out = vec![own];
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
        let answered = answer
            .and_then(Result::ok)
            .and_then(|v| v.into_iter().next());
        let mut entry = match answered {
            Some(e) if ctx.has(&format!("/nodes/{}", m.name), &["Sys.Audit"], false) => e,
            // Without Sys.Audit: that the node exists and whether it is up, no figures.
            Some(e) => Resource {
                status: e.status,
                ..offline_node(&m.name)
            },
            None => offline_node(&m.name),
        };
        entry.ssl_fingerprint = Some(m.fingerprint.clone());
        out.push(entry);
    }
    Ok(out)
}

fn node_index(ctx: &C<'_>) -> Result<Vec<Named>, ApiError> {
    local_node(ctx)?;
    let dirs = [
        "qemu", "status", "storage", "tasks", "rrddata", "version", "network",
    ];
    Ok(dirs
        .iter()
        .map(|d| Named {
            name: d.to_string(),
        })
        .collect())
}

fn node_status(ctx: &C<'_>) -> Result<NodeStatus, ApiError> {
    local_node(ctx)?;
    let mem = host::memory();
    let root = host::filesystem(&ctx.state.opts.data_dir);
    let sample = ctx.state.metrics.latest();
    let (sysname, release, version) = host::kernel();
    let cpus = host::cpu_count();
    let cpus = cpus as u32;
    Ok(NodeStatus {
        uptime: host::uptime(),
        idle: 0,
        loadavg: host::loadavg().to_vec(),
        kversion: format!("{sysname} {release} {version}"),
        current_kernel: Kernel {
            sysname,
            release,
            version,
            machine: std::env::consts::ARCH.into(),
        },
        boot_info: BootInfo {
            mode: "legacy-bios".into(),
        },
        cpuinfo: CpuInfo {
            model: host::cpu_model(),
            sockets: 1,
            cores: cpus,
            cpus,
            hvm: "1".into(),
            user_hz: 100,
        },
        cpu: sample.cpu,
        wait: sample.iowait,
        memory: Memory {
            total: mem.total,
            used: mem.used(),
            free: mem.free,
            available: mem.available,
        },
        swap: Space {
            total: mem.swap_total,
            used: mem.swap_total.saturating_sub(mem.swap_free),
            free: mem.swap_free,
            avail: None,
        },
        ksm: Ksm { shared: 0 },
        rootfs: Space {
            total: root.total,
            used: root.used(),
            free: root.free,
            avail: Some(root.avail),
        },
        pveversion: format!("pve-manager/{PVE_VERSION}/{}", ferrox_api::core::REPOID),
        accelerator: ctx.state.accel.as_str().into(),
    })
}

pub(super) fn rrd_params() -> Vec<Param> {
    vec![param::TIMEFRAME, param::CF]
}

pub(super) fn rrd_rows(ctx: &C<'_>, key: &str) -> Result<Vec<RrdRow>, ApiError> {
    let timeframe = ctx.params.need_str(&param::TIMEFRAME)?;
    let max = ctx.params.str(&param::CF) == Some("MAX");
    ctx.state
        .metrics
        .rows(key, timeframe, max)
        .ok_or_else(|| param::TIMEFRAME.error("unknown timeframe"))
}

fn node_rrddata(ctx: &C<'_>) -> Result<Vec<RrdRow>, ApiError> {
    local_node(ctx)?;
    rrd_rows(ctx, "node")
}

fn network(ctx: &C<'_>) -> Result<Vec<NetworkInterface>, ApiError> {
    local_node(ctx)?;
    // Guests get user-mode networking; there are no host bridges to report yet.
    Ok(Vec::new())
}

const NODE_AUDIT: Permission = Permission::Privs {
    path: "/nodes/{node}",
    privs: &["Sys.Audit"],
    any: false,
};

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const TIMEFRAME: Param = Param::required(
        "timeframe",
        ParamType::Enum(&["hour", "day", "week", "month", "year", "decade"]),
        "Time frame (60 rows each).",
    );
    pub const CF: Param = Param::optional(
        "cf",
        ParamType::Enum(&["AVERAGE", "MAX"]),
        "Consolidation function.",
    );
    pub const TYPE: Param = Param::optional("type", STRING, "Only this interface type.");
}

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
            list_nodes,
        ),
        Endpoint::new(
            Get,
            "/nodes/{node}",
            "Node index.",
            auth.clone(),
            node_index,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/status",
            "Node status.",
            NODE_AUDIT,
            node_status,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/rrddata",
            "Node metrics (round-robin).",
            NODE_AUDIT,
            node_rrddata,
        )
        .params([vec![NODE], rrd_params()].concat()),
        Endpoint::new(
            Get,
            "/nodes/{node}/network",
            "Network interfaces.",
            auth.clone(),
            network,
        )
        .params(vec![NODE, param::TYPE]),
    ]
}
