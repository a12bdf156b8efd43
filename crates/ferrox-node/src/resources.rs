//! The rows this node reports about itself: its guests, itself and its storages, in the
//! one `Resource` shape of `/cluster/resources` (also `/nodes` and pool members), and a
//! storage's status. The API's listings and the node-to-node route both use them.

use crate::guests::{config_dir, parse_config_path, GuestStatic, RunInfo};
use crate::{host, Node};
use ferrox_api_types::cluster::Resource;
use ferrox_api_types::storage::StorageStatus;
use ferrox_types::{HaResources, ManagerStatus};
use std::collections::BTreeMap;

/// A JSON array of rows written as they come (10 000 guests must answer in milliseconds:
/// no `Value`, no string per row).
pub(crate) struct JsonArray(Vec<u8>);

/// Where rows go: a reply being written, or a list for use in the process.
pub(crate) trait RowSink {
    fn push(&mut self, row: &Resource);
}

impl RowSink for Vec<Resource> {
    fn push(&mut self, row: &Resource) {
        Vec::push(self, row.clone());
    }
}

impl RowSink for JsonArray {
    fn push(&mut self, row: &Resource) {
        JsonArray::push(self, row);
    }
}

impl JsonArray {
    pub(crate) fn new() -> JsonArray {
        JsonArray(vec![b'['])
    }

    pub(crate) fn push(&mut self, row: &Resource) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        // A `Resource` has string keys only: writing it into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.0, row);
    }

    pub(crate) fn finish(mut self) -> String {
        self.0.push(b']');
        // serde_json writes UTF-8.
        String::from_utf8(self.0).unwrap_or_default()
    }
}

/// What the rows take from cluster documents: HA states and pool membership, read once
/// per listing.
#[derive(Default)]
pub(crate) struct Facts {
    /// vmid of `vm:<vmid>` → the CRM's state, or the requested state before the CRM saw it.
    pub(crate) services: BTreeMap<u32, String>,
    /// node → the CRM's node state.
    nodes: BTreeMap<String, String>,
    pools: BTreeMap<u32, String>,
}

impl Facts {
    pub(crate) fn load(node: &Node) -> Facts {
        let manager: ManagerStatus = node
            .tree
            .get(crate::ha::MANAGER_STATUS)
            .and_then(|e| serde_json::from_str(&e.data).ok())
            .unwrap_or_default();
        let configured = node
            .tree
            .get(crate::ha::RESOURCES)
            .and_then(|e| HaResources::parse(&e.data).ok())
            .unwrap_or_default();
        let vmid = |sid: &str| sid.strip_prefix("vm:").and_then(|v| v.parse::<u32>().ok());
        let mut services: BTreeMap<u32, String> = configured
            .resources
            .values()
            .filter_map(|r| Some((vmid(&r.sid)?, r.state.as_str().to_string())))
            .collect();
        for (sid, s) in &manager.service_status {
            if let Some(v) = vmid(sid) {
                services.insert(v, s.state.as_str().to_string());
            }
        }
        let nodes = manager
            .node_status
            .iter()
            .map(|(n, s)| (n.clone(), s.as_str().to_string()))
            .collect();
        let users = node.auth.user_config();
        let pools = users
            .pools
            .iter()
            .flat_map(|(pool, (_, vms, _))| {
                vms.iter()
                    .filter_map(|v| v.parse().ok())
                    .map(move |vmid: u32| (vmid, pool.clone()))
            })
            .collect();
        Facts {
            services,
            nodes,
            pools,
        }
    }
}

/// A guest's row: what its config says, and how it runs when `info` is known.
pub(crate) fn guest_resource(
    vmid: u32,
    node: &str,
    fixed: &GuestStatic,
    status: &'static str,
    info: Option<&RunInfo>,
    facts: &Facts,
) -> Resource {
    let now = ferrox_api::auth::now();
    let live = status != "unknown";
    let counter = |f: fn(&RunInfo) -> u64| live.then(|| info.map_or(0, f));
    Resource {
        id: format!("qemu/{vmid}"),
        kind: "qemu".into(),
        node: Some(node.to_string()),
        status: Some(status.into()),
        vmid: Some(vmid),
        name: Some(fixed.name.clone()),
        template: Some(u8::from(fixed.template)),
        uptime: live.then(|| info.map_or(0, |i| (now - i.started).max(0))),
        cpu: live.then(|| info.map_or(0.0, |i| i.cpu)),
        maxcpu: Some(fixed.cpus),
        mem: counter(|i| i.mem),
        memhost: counter(|i| i.mem),
        maxmem: Some(fixed.maxmem),
        disk: live.then_some(0),
        maxdisk: Some(fixed.maxdisk),
        diskread: counter(|i| i.diskread),
        diskwrite: counter(|i| i.diskwrite),
        netin: live.then_some(0),
        netout: live.then_some(0),
        pressurecpusome: info.and_then(|i| i.pressure).map(|p| p.cpu_some),
        pressurememorysome: info.and_then(|i| i.pressure).map(|p| p.memory_some),
        pressureiosome: info.and_then(|i| i.pressure).map(|p| p.io_some),
        tags: live.then(|| fixed.tags.clone()).flatten(),
        lock: live.then(|| fixed.lock.clone()).flatten(),
        hastate: facts.services.get(&vmid).cloned(),
        pool: facts.pools.get(&vmid).cloned(),
        ..Resource::default()
    }
}

/// A node's row; the usage figures only for callers with `Sys.Audit` on the node.
pub(crate) fn node_resource(node: &Node, with_stats: bool, facts: &Facts) -> Resource {
    let name = &node.opts.node_name;
    let mut row = Resource {
        id: format!("node/{name}"),
        kind: "node".into(),
        node: Some(name.clone()),
        status: Some("online".into()),
        level: Some(String::new()),
        hastate: facts.nodes.get(name).cloned(),
        ..Resource::default()
    };
    if with_stats {
        let mem = host::memory();
        let root = host::filesystem(&node.opts.data_dir);
        row.uptime = Some(host::uptime() as i64);
        row.cpu = Some(node.metrics.latest().cpu);
        row.maxcpu = Some(host::cpu_count() as u64);
        row.mem = Some(mem.used());
        row.maxmem = Some(mem.total);
        row.disk = Some(root.used());
        row.maxdisk = Some(root.total);
        row.cgroup_mode = Some(2);
    }
    row
}

/// The row of a member that does not answer.
pub(crate) fn offline_node(name: &str, facts: &Facts) -> Resource {
    Resource {
        id: format!("node/{name}"),
        kind: "node".into(),
        node: Some(name.to_string()),
        status: Some("offline".into()),
        level: Some(String::new()),
        hastate: facts.nodes.get(name).cloned(),
        ..Resource::default()
    }
}

/// A storage's row on this node.
pub(crate) fn storage_resource(node: &Node, s: &ferrox_types::Storage) -> Resource {
    let name = &node.opts.node_name;
    let status = storage_status(node, s);
    Resource {
        id: format!("storage/{name}/{}", s.id),
        kind: "storage".into(),
        node: Some(name.clone()),
        status: Some("available".into()),
        storage: Some(s.id.clone()),
        plugintype: Some(s.storage_type.clone()),
        content: Some(status.content),
        shared: Some(status.shared),
        disk: Some(status.used),
        maxdisk: Some(status.total),
        ..Resource::default()
    }
}

/// What `/cluster/resources` shows for a node that does not answer: the node offline,
/// its guests (from the store) in state `unknown`.
pub fn offline_resources(node: &Node, name: &str) -> Vec<Resource> {
    let facts = Facts::load(node);
    let mut out = vec![offline_node(name, &facts)];
    for (path, entry) in node.tree.list(&config_dir(name)) {
        let Some((_, vmid)) = parse_config_path(&path) else {
            continue;
        };
        let Ok(cfg) = ferrox_types::GuestConfig::parse(&entry.data) else {
            continue;
        };
        let fixed = GuestStatic::of(vmid, &cfg);
        out.push(guest_resource(vmid, name, &fixed, "unknown", None, &facts));
    }
    out
}

/// Proxmox VE shows a guest's pool only to those with `Pool.Audit` on it.
pub(crate) fn hide_pool(row: &mut Resource, may: &dyn Fn(&str, &[&str], bool) -> bool) {
    if row
        .pool
        .as_ref()
        .is_some_and(|p| !may(&format!("/pool/{p}"), &["Pool.Audit"], false))
    {
        row.pool = None;
    }
}

/// This node's own resources (guests, the node, its storages) as a JSON array.
pub fn local_resources(
    node: &Node,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
) -> String {
    let mut json = JsonArray::new();
    local_rows(node, kind, may, &mut json);
    json.finish()
}

/// Every member's rows the caller may see: this node's, and each other member's (one that
/// does not answer as offline, with its guests from the store in state `unknown`).
pub(crate) fn cluster_rows(
    node: &Node,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
    json: &mut dyn RowSink,
) {
    local_rows(node, kind, may, json);
    let answers =
        crate::cluster::ask_members(node, |m| crate::cluster::peer_resources(node, m, kind));
    for (member, answer) in answers {
        let entries = answer.unwrap_or_else(|| offline_resources(node, &member.name));
        for mut entry in entries.into_iter().filter(|e| visible(e, kind, may)) {
            hide_pool(&mut entry, may);
            json.push(&entry);
        }
    }
}

/// Whether a resource from another node passes the `type` filter and the caller's
/// permissions (the same rules as for this node's own resources).
fn visible(
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

/// Appends this node's own resources to `json`.
pub(crate) fn local_rows(
    node: &Node,
    kind: Option<&str>,
    may: &dyn Fn(&str, &[&str], bool) -> bool,
    json: &mut dyn RowSink,
) {
    let name = &node.opts.node_name;
    let facts = Facts::load(node);
    if kind.is_none_or(|k| k == "vm") {
        for (vmid, fixed, info) in node.guests.listing() {
            if !may(&format!("/vms/{vmid}"), &["VM.Audit"], false) {
                continue;
            }
            let status = if info.is_some() { "running" } else { "stopped" };
            let mut row = guest_resource(vmid, name, &fixed, status, info.as_ref(), &facts);
            hide_pool(&mut row, may);
            json.push(&row);
        }
    }
    if kind.is_none_or(|k| k == "node") {
        let stats = may(&format!("/nodes/{name}"), &["Sys.Audit"], false);
        json.push(&node_resource(node, stats, &facts));
    }
    if kind.is_none_or(|k| k == "storage") {
        let cfg = node.storage_config().unwrap_or_default();
        for s in cfg
            .storages
            .values()
            .filter(|s| ferrox_storage::is_usable_on(s, name))
        {
            if may(
                &format!("/storage/{}", s.id),
                &["Datastore.Audit", "Datastore.AllocateSpace"],
                true,
            ) {
                json.push(&storage_resource(node, s));
            }
        }
    }
}

pub(crate) fn content_list(s: &ferrox_types::Storage) -> String {
    s.content.iter().cloned().collect::<Vec<_>>().join(",")
}

/// A storage's status on this node: its row in `GET /nodes/{node}/storage`.
pub(crate) fn storage_status(node: &Node, s: &ferrox_types::Storage) -> StorageStatus {
    let space = ferrox_storage::space(s, &node.opts.node_name);
    StorageStatus {
        storage: s.id.clone(),
        kind: s.storage_type.clone(),
        content: content_list(s),
        shared: u8::from(s.shared),
        active: u8::from(ferrox_storage::is_usable_on(s, &node.opts.node_name)),
        enabled: u8::from(!s.disable),
        total: space.total,
        used: space.used,
        avail: space.avail,
        used_fraction: if space.total > 0 {
            space.used as f64 / space.total as f64
        } else {
            0.0
        },
    }
}
