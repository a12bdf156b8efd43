//! `/nodes` and `/nodes/{node}`: the node index, a node's status, metrics and network.

use super::*;
use crate::resources::{node_resource, offline_node, Facts};
use crate::{host, Node};
use ferrox_api::core::{local_node, PVE_VERSION};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::cluster::Resource;
use ferrox_api_types::nodes::{
    AptUpdate, BootInfo, CpuInfo, Dns, Kernel, Ksm, MachineType, Memory, NodeStatus, NodeTime,
    ReplicationJob, RrdRow, Space, Subscription,
};
use ferrox_api_types::Named;

fn list_nodes(ctx: &C<'_>) -> Result<Vec<Resource>, ApiError> {
    let name = ctx.state.opts.node_name.clone();
    let stats = ctx.has(&format!("/nodes/{name}"), &["Sys.Audit"], false);
    let facts = Facts::load(ctx.state);
    let mut own = node_resource(ctx.state, stats, &facts);
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
                ..offline_node(&m.name, &facts)
            },
            None => offline_node(&m.name, &facts),
        };
        entry.ssl_fingerprint = Some(m.fingerprint.clone());
        out.push(entry);
    }
    Ok(out)
}

fn node_index(ctx: &C<'_>) -> Result<Vec<Named>, ApiError> {
    local_node(ctx)?;
    let dirs = [
        "qemu",
        "lxc",
        "status",
        "storage",
        "tasks",
        "rrddata",
        "version",
        "network",
        "subscription",
        "apt",
        "capabilities",
        "replication",
        "time",
        "dns",
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

/// No subscription: Ferrox is not licensed per socket. `serverid` (a stable id of this
/// host) only for those with `Sys.Audit` on the node, as Proxmox VE does.
fn subscription(ctx: &C<'_>) -> Result<Subscription, ApiError> {
    local_node(ctx)?;
    let audit = ctx.has(
        &format!("/nodes/{}", ctx.state.opts.node_name),
        &["Sys.Audit"],
        false,
    );
    let serverid = audit.then(|| {
        use sha2::Digest;
        let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let hash = sha2::Sha256::digest(id.trim().as_bytes());
        hash[..16].iter().map(|b| format!("{b:02X}")).collect()
    });
    Ok(Subscription {
        status: "notfound".into(),
        message: Some("There is no subscription key".into()),
        url: Some("https://www.proxmox.com/en/proxmox-virtual-environment/pricing".into()),
        serverid,
        ..Subscription::default()
    })
}

/// Ferrox is not installed from Proxmox VE's package repositories: there are no package
/// updates to list.
fn apt_updates(ctx: &C<'_>) -> Result<Vec<AptUpdate>, ApiError> {
    local_node(ctx)?;
    Ok(Vec::new())
}

/// The machine types of QEMU, read once per daemon (the binary does not change under it).
fn qemu_machines(node: &Node) -> Result<&'static Vec<MachineType>, ApiError> {
    static MACHINES: std::sync::OnceLock<Vec<MachineType>> = std::sync::OnceLock::new();
    if let Some(m) = MACHINES.get() {
        return Ok(m);
    }
    let machines = ferrox_qemu::capabilities::machine_types(&node.opts.qemu_binary)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|m| MachineType {
            id: m.id,
            kind: m.kind,
            version: m.version,
        })
        .collect();
    Ok(MACHINES.get_or_init(|| machines))
}

fn machine_types(ctx: &C<'_>) -> Result<Vec<MachineType>, ApiError> {
    local_node(ctx)?;
    Ok(qemu_machines(ctx.state)?.clone())
}

/// Storage replication needs ZFS; no job can exist.
fn replication_jobs(ctx: &C<'_>) -> Result<Vec<ReplicationJob>, ApiError> {
    local_node(ctx)?;
    Ok(Vec::new())
}

fn node_time(ctx: &C<'_>) -> Result<NodeTime, ApiError> {
    local_node(ctx)?;
    use chrono::Offset;
    let time = ferrox_api::auth::now();
    let offset = chrono::Local::now().offset().fix().local_minus_utc();
    Ok(NodeTime {
        timezone: host::timezone(),
        time,
        localtime: time + i64::from(offset),
    })
}

fn node_dns(ctx: &C<'_>) -> Result<Dns, ApiError> {
    local_node(ctx)?;
    Ok(host::dns())
}

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
            "/nodes/{node}/subscription",
            "Subscription status (Ferrox has none).",
            auth.clone(),
            subscription,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/apt/update",
            "Available package updates.",
            NODE_MODIFY,
            apt_updates,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/capabilities/qemu/machines",
            "Machine types the node's QEMU offers.",
            auth.clone(),
            machine_types,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/replication",
            "Storage replication jobs of this node's guests.",
            auth,
            replication_jobs,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/time",
            "The node's time and time zone.",
            NODE_AUDIT,
            node_time,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/dns",
            "The node's DNS settings.",
            NODE_AUDIT,
            node_dns,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Post,
            "/nodes/{node}/status",
            "Shut the node down or reboot it: HA services as datacenter.cfg's shutdown policy says, then every other guest; the daemon ends (and powers the host off or reboots it with --host-power system).",
            Permission::Privs {
                path: "/nodes/{node}",
                privs: &["Sys.PowerMgmt"],
                any: false,
            },
            node_power,
        )
        .params(vec![NODE, bulk_param::COMMAND]),
        Endpoint::new(
            Post,
            "/nodes/{node}/startall",
            "Start the guests of this node (by default those with onboot=1 that HA does not manage), by startup order.",
            Permission::Handler(
                "VM.PowerMgmt on / or on /vms/<ID> for each ID passed in 'vms'",
            ),
            start_all,
        )
        .params(vec![
            NODE,
            bulk_param::FORCE,
            bulk_param::VMS,
            bulk_param::MAX_WORKERS,
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/stopall",
            "Shut down the guests of this node (those HA does not manage unless named), in reverse startup order.",
            Permission::Handler(
                "VM.PowerMgmt on / or on /vms/<ID> for each ID passed in 'vms'",
            ),
            stop_all,
        )
        .params(vec![
            NODE,
            bulk_param::VMS,
            bulk_param::FORCE_STOP,
            bulk_param::TIMEOUT,
            bulk_param::MAX_WORKERS,
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/migrateall",
            "Migrate the guests of this node to another node (running ones live); HA-managed guests through HA.",
            Permission::Handler(
                "VM.Migrate on / or on /vms/<ID> for each ID passed in 'vms'",
            ),
            migrate_all,
        )
        .params(vec![
            NODE,
            bulk_param::TARGET,
            bulk_param::VMS,
            bulk_param::WITH_LOCAL_DISKS,
            bulk_param::MAX_WORKERS,
            bulk_param::MAXWORKERS,
        ]),
    ]
}

mod bulk_param {
    use ferrox_api::schema::{int, BOOL};
    use ferrox_api::{Param, ParamType};

    pub const COMMAND: Param = Param::required(
        "command",
        ParamType::Enum(&["reboot", "shutdown"]),
        "Specify the command.",
    );
    pub const FORCE: Param = Param::optional(
        "force",
        BOOL,
        "Start the guests even if their 'onboot' is not set.",
    );
    pub const VMS: Param = Param::optional(
        "vms",
        ferrox_api::schema::STRING,
        "Only consider guests from this comma separated list of VMIDs.",
    );
    pub const MAX_WORKERS: Param = Param::optional(
        "max-workers",
        int(Some(1), Some(64)),
        "Tasks running at once (default: max_workers of datacenter.cfg, else the CPU threads less one, at most 8).",
    );
    // Those of a single guest's migration.
    pub use crate::api::qemu::param::{TARGET, WITH_LOCAL_DISKS};
    pub const MAXWORKERS: Param = Param::optional(
        "maxworkers",
        int(Some(1), Some(64)),
        "Deprecated alias of 'max-workers'.",
    );
    pub const FORCE_STOP: Param = Param::optional(
        "force-stop",
        BOOL,
        "Stop a guest hard after its timeout (default 1).",
    );
    pub const TIMEOUT: Param = Param::optional(
        "timeout",
        int(Some(0), Some(7200)),
        "Seconds each guest has to shut down (default 180; a guest's startup 'down' wins).",
    );
}

/// The `vms` of a bulk request, each a vmid; the caller needs `privilege` on `/` or on
/// each named guest (Proxmox VE's rule: without `vms`, only on `/`).
fn bulk_guests(
    ctx: &C<'_>,
    privilege: &'static str,
) -> Result<Option<std::collections::BTreeSet<u32>>, ApiError> {
    let vms = ctx
        .params
        .str(&bulk_param::VMS)
        .map(|text| {
            ferrox_types::format::vmid_list(text)
                .map(|list| {
                    list.into_iter()
                        .collect::<std::collections::BTreeSet<u32>>()
                })
                .map_err(|e| bulk_param::VMS.error(e))
        })
        .transpose()?;
    if !ctx.has("/", &[privilege], false) {
        match &vms {
            Some(set) if !set.is_empty() => {
                for vmid in set {
                    ctx.require(&format!("/vms/{vmid}"), &[privilege], false)?;
                }
            }
            _ => return Err(ApiError::forbidden("/", &[privilege])),
        }
    }
    Ok(vms)
}

fn node_power(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let power = match ctx.params.need_str(&bulk_param::COMMAND)? {
        "reboot" => crate::bulk::Power::Reboot,
        _ => crate::bulk::Power::Shutdown,
    };
    ctx.state.power.request(power);
    Ok(())
}

fn start_all(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let vms = bulk_guests(ctx, "VM.PowerMgmt")?;
    let node = ctx.state;
    let force = ctx.params.bool(&bulk_param::FORCE).unwrap_or(false);
    let guests = crate::bulk::start_order(node, !force, vms.as_ref());
    let workers = crate::bulk::max_workers(
        node,
        ctx.params.int(&bulk_param::MAX_WORKERS).map(|n| n as u32),
    );
    let worker = std::sync::Arc::clone(node);
    let upid = node
        .tasks
        .spawn("startall", "", &auth_id(ctx)?, move |log| {
            crate::bulk::start_all(&worker, &guests, workers, log)
        })?;
    Ok(ferrox_api_types::Upid(upid))
}

fn migrate_all(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let vms = bulk_guests(ctx, "VM.Migrate")?;
    let node = ctx.state;
    let target = ctx.params.need_str(&bulk_param::TARGET)?.to_string();
    if target == node.opts.node_name {
        return Err(bulk_param::TARGET.error("target is local node."));
    }
    if node.store.status().member_named(&target).is_none() {
        return Err(bulk_param::TARGET.error(format!("no such cluster node '{target}'")));
    }
    let vmids: Vec<u32> = node
        .guests
        .listing()
        .into_iter()
        .map(|(vmid, _, _)| vmid)
        .filter(|vmid| vms.as_ref().is_none_or(|vms| vms.contains(vmid)))
        .collect();
    let with_local_disks = ctx
        .params
        .bool(&bulk_param::WITH_LOCAL_DISKS)
        .unwrap_or(false);
    let workers = crate::bulk::max_workers(
        node,
        ctx.params
            .int(&bulk_param::MAX_WORKERS)
            .or_else(|| ctx.params.int(&bulk_param::MAXWORKERS))
            .map(|n| n as u32),
    );
    let worker = std::sync::Arc::clone(node);
    let upid = node
        .tasks
        .spawn("migrateall", "", &auth_id(ctx)?, move |log| {
            if vmids.is_empty() {
                log.log("no virtual guests matched, nothing to do..");
                return Ok(());
            }
            crate::bulk::migrate_all(&worker, &vmids, &target, with_local_disks, workers, log)
        })?;
    Ok(ferrox_api_types::Upid(upid))
}

fn stop_all(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let vms = bulk_guests(ctx, "VM.PowerMgmt")?;
    let node = ctx.state;
    let guests = crate::bulk::start_order(node, false, vms.as_ref());
    let timeout =
        std::time::Duration::from_secs(ctx.params.int(&bulk_param::TIMEOUT).unwrap_or(180) as u64);
    let force_stop = ctx.params.bool(&bulk_param::FORCE_STOP).unwrap_or(true);
    let workers = crate::bulk::max_workers(
        node,
        ctx.params.int(&bulk_param::MAX_WORKERS).map(|n| n as u32),
    );
    let worker = std::sync::Arc::clone(node);
    let upid = node
        .tasks
        .spawn("stopall", "", &auth_id(ctx)?, move |log| {
            crate::bulk::stop_all(&worker, &guests, timeout, force_stop, workers, log)
        })?;
    Ok(ferrox_api_types::Upid(upid))
}
