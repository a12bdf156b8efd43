//! The permission matrix: what Proxmox VE 9 requires for each endpoint Ferrox serves
//! (written down here from Proxmox VE's API declarations, `shared/spec/pve-api.md` §3g
//! and §4), checked twice: against Ferrox's own declarations, and live, by calling every
//! such endpoint as users holding one built-in role each on `/`.

use ferrox_api::rbac;
use ferrox_api::router::{Method, Permission};
use ferrox_e2e::*;
use std::collections::BTreeSet;

/// What Proxmox VE requires.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pve {
    /// No authentication.
    World,
    /// Any authenticated user; the handler filters or checks data-dependent privileges.
    All,
    /// root@pam only (no `permissions` declared).
    Root,
    /// Privileges on a path (all of them, or any with `true`).
    Priv(&'static str, &'static [&'static str], bool),
}

use Pve::*;

const VM_CONFIG: &[&str] = &[
    "VM.Config.Disk",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Config.Cloudinit",
];
const VM_AUDIT: Pve = Priv("/vms/{vmid}", &["VM.Audit"], false);
const VM_POWER: Pve = Priv("/vms/{vmid}", &["VM.PowerMgmt"], false);
const SYS_AUDIT_ROOT: Pve = Priv("/", &["Sys.Audit"], false);
const SYS_CONSOLE_ROOT: Pve = Priv("/", &["Sys.Console"], false);

/// Proxmox VE's requirement for each endpoint Ferrox serves. Ferrox extensions (no such
/// endpoint in Proxmox VE) are marked and hold what Ferrox chose.
const TABLE: &[(&str, &str, Pve)] = &[
    ("GET", "/access/ticket", World),
    ("POST", "/access/ticket", World),
    ("GET", "/access/domains", World),
    (
        "POST",
        "/access/domains",
        Priv("/access/realm", &["Realm.Allocate"], false),
    ),
    (
        "GET",
        "/access/domains/{realm}",
        Priv(
            "/access/realm/{realm}",
            &["Realm.Allocate", "Sys.Audit"],
            true,
        ),
    ),
    (
        "PUT",
        "/access/domains/{realm}",
        Priv("/access/realm", &["Realm.Allocate"], false),
    ),
    (
        "DELETE",
        "/access/domains/{realm}",
        Priv("/access/realm", &["Realm.Allocate"], false),
    ),
    ("GET", "/access/permissions", All),
    ("GET", "/access/users", All),
    ("POST", "/access/users", All),
    ("GET", "/access/users/{userid}", All),
    ("PUT", "/access/users/{userid}", All),
    ("DELETE", "/access/users/{userid}", All),
    ("GET", "/access/users/{userid}/token", All),
    ("GET", "/access/users/{userid}/token/{tokenid}", All),
    ("POST", "/access/users/{userid}/token/{tokenid}", All),
    ("PUT", "/access/users/{userid}/token/{tokenid}", All),
    ("DELETE", "/access/users/{userid}/token/{tokenid}", All),
    ("PUT", "/access/password", All),
    ("GET", "/access/tfa", All),
    ("GET", "/access/tfa/{userid}", All),
    ("POST", "/access/tfa/{userid}", All),
    ("PUT", "/access/tfa/{userid}/{id}", All),
    ("DELETE", "/access/tfa/{userid}/{id}", All),
    ("GET", "/access/groups", All),
    (
        "POST",
        "/access/groups",
        Priv("/access/groups", &["Group.Allocate"], false),
    ),
    (
        "GET",
        "/access/groups/{groupid}",
        Priv(
            "/access/groups/{groupid}",
            &["Sys.Audit", "Group.Allocate"],
            true,
        ),
    ),
    (
        "PUT",
        "/access/groups/{groupid}",
        Priv("/access/groups/{groupid}", &["Group.Allocate"], false),
    ),
    (
        "DELETE",
        "/access/groups/{groupid}",
        Priv("/access/groups/{groupid}", &["Group.Allocate"], false),
    ),
    ("GET", "/access/roles", All),
    (
        "POST",
        "/access/roles",
        Priv("/access", &["Sys.Modify"], false),
    ),
    ("GET", "/access/roles/{roleid}", All),
    (
        "PUT",
        "/access/roles/{roleid}",
        Priv("/access", &["Sys.Modify"], false),
    ),
    (
        "DELETE",
        "/access/roles/{roleid}",
        Priv("/access", &["Sys.Modify"], false),
    ),
    ("GET", "/access/acl", All),
    ("PUT", "/access/acl", All),
    ("GET", "/version", All),
    ("GET", "/nodes", All),
    ("GET", "/nodes/{node}", All),
    ("GET", "/nodes/{node}/version", All),
    (
        "GET",
        "/nodes/{node}/status",
        Priv("/nodes/{node}", &["Sys.Audit"], false),
    ),
    (
        "GET",
        "/nodes/{node}/rrddata",
        Priv("/nodes/{node}", &["Sys.Audit"], false),
    ),
    // pve-manager's node power; startall/stopall: `user => 'all'`, VM.PowerMgmt on / or
    // on each named guest in the handler (tests/node_power.rs).
    (
        "POST",
        "/nodes/{node}/status",
        Priv("/nodes/{node}", &["Sys.PowerMgmt"], false),
    ),
    ("POST", "/nodes/{node}/startall", All),
    ("POST", "/nodes/{node}/stopall", All),
    // migrateall: `user => 'all'`, VM.Migrate on / or on each `vms` guest (handler).
    ("POST", "/nodes/{node}/migrateall", All),
    // pve-manager's PVE::API2::Network.
    ("GET", "/nodes/{node}/network", All),
    (
        "POST",
        "/nodes/{node}/network",
        Priv("/nodes/{node}", &["Sys.Modify"], false),
    ),
    (
        "PUT",
        "/nodes/{node}/network",
        Priv("/nodes/{node}", &["Sys.Modify"], false),
    ),
    (
        "DELETE",
        "/nodes/{node}/network",
        Priv("/nodes/{node}", &["Sys.Modify"], false),
    ),
    (
        "GET",
        "/nodes/{node}/network/{iface}",
        Priv("/nodes/{node}", &["Sys.Audit"], false),
    ),
    (
        "PUT",
        "/nodes/{node}/network/{iface}",
        Priv("/nodes/{node}", &["Sys.Modify"], false),
    ),
    (
        "DELETE",
        "/nodes/{node}/network/{iface}",
        Priv("/nodes/{node}", &["Sys.Modify"], false),
    ),
    ("GET", "/nodes/{node}/tasks", All),
    ("GET", "/nodes/{node}/tasks/{upid}/status", All),
    ("GET", "/nodes/{node}/tasks/{upid}/log", All),
    ("GET", "/nodes/{node}/qemu", All),
    ("POST", "/nodes/{node}/qemu", All),
    ("GET", "/nodes/{node}/qemu/{vmid}", All),
    (
        "DELETE",
        "/nodes/{node}/qemu/{vmid}",
        Priv("/vms/{vmid}", &["VM.Allocate"], false),
    ),
    ("GET", "/nodes/{node}/qemu/{vmid}/config", VM_AUDIT),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/config",
        Priv("/vms/{vmid}", VM_CONFIG, true),
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/config",
        Priv("/vms/{vmid}", VM_CONFIG, true),
    ),
    ("GET", "/nodes/{node}/qemu/{vmid}/pending", VM_AUDIT),
    ("GET", "/nodes/{node}/qemu/{vmid}/rrddata", VM_AUDIT),
    ("GET", "/nodes/{node}/qemu/{vmid}/status", All),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current", VM_AUDIT),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start", VM_POWER),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop", VM_POWER),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/shutdown",
        VM_POWER,
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot", VM_POWER),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/suspend", VM_POWER),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/resume", VM_POWER),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/migrate",
        Priv("/vms/{vmid}", &["VM.Migrate"], false),
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/migrate",
        Priv("/vms/{vmid}", &["VM.Migrate"], false),
    ),
    ("GET", "/nodes/{node}/storage", All),
    (
        "GET",
        "/nodes/{node}/storage/{storage}/status",
        Priv(
            "/storage/{storage}",
            &["Datastore.Audit", "Datastore.AllocateSpace"],
            true,
        ),
    ),
    ("GET", "/nodes/{node}/storage/{storage}/content", All),
    ("GET", "/storage", All),
    (
        "POST",
        "/storage",
        Priv("/storage", &["Datastore.Allocate"], false),
    ),
    ("GET", "/pools", All),
    (
        "POST",
        "/pools",
        Priv("/pool/{poolid}", &["Pool.Allocate"], false),
    ),
    (
        "PUT",
        "/pools",
        Priv("/pool/{poolid}", &["Pool.Allocate"], false),
    ),
    (
        "DELETE",
        "/pools",
        Priv("/pool/{poolid}", &["Pool.Allocate"], false),
    ),
    (
        "GET",
        "/pools/{poolid}",
        Priv("/pool/{poolid}", &["Pool.Audit"], false),
    ),
    (
        "PUT",
        "/pools/{poolid}",
        Priv("/pool/{poolid}", &["Pool.Allocate"], false),
    ),
    (
        "DELETE",
        "/pools/{poolid}",
        Priv("/pool/{poolid}", &["Pool.Allocate"], false),
    ),
    ("GET", "/cluster/resources", All),
    ("GET", "/cluster/nextid", All),
    ("GET", "/cluster/status", SYS_AUDIT_ROOT),
    ("GET", "/cluster/options", All),
    ("PUT", "/cluster/options", Priv("/", &["Sys.Modify"], false)),
    ("POST", "/cluster/config", Root),
    ("GET", "/cluster/config/join", SYS_AUDIT_ROOT),
    ("POST", "/cluster/config/join", Root),
    ("GET", "/cluster/config/nodes", SYS_AUDIT_ROOT),
    ("POST", "/cluster/config/nodes/{node}", Root),
    ("DELETE", "/cluster/config/nodes/{node}", Root),
    // Ferrox extension: cluster-wide leased locks (administration of the store).
    ("GET", "/cluster/locks", SYS_AUDIT_ROOT),
    ("POST", "/cluster/locks/{name}", Root),
    ("DELETE", "/cluster/locks/{name}", Root),
    ("GET", "/cluster/ha/resources", SYS_AUDIT_ROOT),
    ("POST", "/cluster/ha/resources", SYS_CONSOLE_ROOT),
    ("GET", "/cluster/ha/resources/{sid}", SYS_AUDIT_ROOT),
    ("PUT", "/cluster/ha/resources/{sid}", SYS_CONSOLE_ROOT),
    ("DELETE", "/cluster/ha/resources/{sid}", SYS_CONSOLE_ROOT),
    (
        "POST",
        "/cluster/ha/resources/{sid}/migrate",
        SYS_CONSOLE_ROOT,
    ),
    (
        "POST",
        "/cluster/ha/resources/{sid}/relocate",
        SYS_CONSOLE_ROOT,
    ),
    // Ferrox extension of `ha-manager crm-command` (arm/disarm are Sys.Console in 9.2).
    ("POST", "/cluster/ha/crm-command", SYS_CONSOLE_ROOT),
    ("GET", "/cluster/ha/rules", SYS_AUDIT_ROOT),
    ("POST", "/cluster/ha/rules", SYS_CONSOLE_ROOT),
    ("GET", "/cluster/ha/rules/{rule}", SYS_AUDIT_ROOT),
    ("PUT", "/cluster/ha/rules/{rule}", SYS_CONSOLE_ROOT),
    ("DELETE", "/cluster/ha/rules/{rule}", SYS_CONSOLE_ROOT),
    ("GET", "/cluster/ha/status/current", SYS_AUDIT_ROOT),
    ("GET", "/cluster/ha/status/manager_status", SYS_AUDIT_ROOT),
    ("GET", "/cluster/ha/history", SYS_AUDIT_ROOT),
    ("GET", "/cluster/ha", All),
    ("GET", "/cluster/ha/status", All),
    // Issue 13: what common clients read on a fresh cluster.
    ("GET", "/cluster", All),
    ("GET", "/cluster/tasks", All),
    ("GET", "/cluster/log", All),
    ("GET", "/cluster/config/qdevice", SYS_AUDIT_ROOT),
    ("GET", "/cluster/replication", All),
    ("GET", "/cluster/backup", SYS_AUDIT_ROOT),
    ("POST", "/cluster/backup", Priv("/", &["Sys.Modify"], false)),
    ("GET", "/cluster/backup/{id}", SYS_AUDIT_ROOT),
    (
        "PUT",
        "/cluster/backup/{id}",
        Priv("/", &["Sys.Modify"], false),
    ),
    (
        "DELETE",
        "/cluster/backup/{id}",
        Priv("/", &["Sys.Modify"], false),
    ),
    ("GET", "/cluster/backup-info/not-backed-up", SYS_AUDIT_ROOT),
    ("GET", "/cluster/qemu", All),
    // Ferrox extension: previewing reads the whole cluster (Sys.Audit on /, as
    // /cluster/ha/status); carrying out a plan changes it (Sys.Modify on /, as
    // datacenter options) and needs VM.Migrate on every guest it moves (in the handler).
    ("GET", "/cluster/crs/plan", Priv("/", &["Sys.Audit"], false)),
    (
        "POST",
        "/cluster/crs/plan",
        Priv("/", &["Sys.Modify"], false),
    ),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/resize",
        Priv("/vms/{vmid}", &["VM.Config.Disk"], false),
    ),
    // qemu-server: a template needs VM.Allocate. A clone needs VM.Clone on the source,
    // VM.Allocate on the new vmid (or its pool) and Datastore.AllocateSpace on every
    // target storage; a disk move VM.Config.Disk and Datastore.AllocateSpace on the target
    // storage: checks on several paths, made by their handlers (tests/snapshot.rs).
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/template",
        Priv("/vms/{vmid}", &["VM.Allocate"], false),
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/clone", All),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/unlink",
        Priv("/vms/{vmid}", &["VM.Config.Disk"], false),
    ),
    // vzdump: `user => 'all'`; VM.Backup on each guest and Datastore.AllocateSpace on the
    // storage in the handler (tests/backup.rs).
    ("POST", "/nodes/{node}/vzdump", All),
    // Datastore.AllocateTemplate on the storage and Sys.Audit + Sys.Modify on the node, in
    // the handler (tests/backup.rs).
    ("POST", "/nodes/{node}/storage/{storage}/download-url", All),
    // pve-storage's volume API: `user => 'all'`, check_volume_access and the delete's
    // checks in the handler (tests/backup.rs).
    (
        "GET",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        All,
    ),
    (
        "PUT",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        All,
    ),
    (
        "DELETE",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        All,
    ),
    // pve-storage's upload (tests/iso.rs).
    (
        "POST",
        "/nodes/{node}/storage/{storage}/upload",
        Priv("/storage/{storage}", &["Datastore.AllocateTemplate"], false),
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/move_disk", All),
    // qemu-server's snapshot API.
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/snapshot",
        Priv("/vms/{vmid}", &["VM.Audit"], false),
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/snapshot",
        Priv("/vms/{vmid}", &["VM.Snapshot"], false),
    ),
    ("GET", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}", All),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
        Priv(
            "/vms/{vmid}",
            &["VM.Snapshot", "VM.Snapshot.Rollback", "VM.Audit"],
            true,
        ),
    ),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
        Priv("/vms/{vmid}", &["VM.Snapshot"], false),
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback",
        Priv(
            "/vms/{vmid}",
            &["VM.Snapshot", "VM.Snapshot.Rollback"],
            true,
        ),
    ),
    (
        "DELETE",
        "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}",
        Priv("/vms/{vmid}", &["VM.Snapshot"], false),
    ),
    // qemu-server: VM.Console on the guest for all three.
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/vncproxy",
        Priv("/vms/{vmid}", &["VM.Console"], false),
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/termproxy",
        Priv("/vms/{vmid}", &["VM.Console"], false),
    ),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/vncwebsocket",
        Priv("/vms/{vmid}", &["VM.Console"], false),
    ),
    // PVE: Sys.Audit on /nodes, or any Mapping privilege on /mapping/cpu (two paths).
    ("GET", "/cluster/qemu/cpu-flags", All),
    // Ferrox extension: what every node runs is no secret to a logged-in user.
    ("GET", "/cluster/qemu/cpu-baseline", All),
    ("GET", "/cluster/qemu/custom-cpu-models", All),
    (
        "POST",
        "/cluster/qemu/custom-cpu-models",
        Priv("/mapping/cpu", &["Mapping.Modify"], false),
    ),
    (
        "GET",
        "/cluster/qemu/custom-cpu-models/{cputype}",
        Priv(
            "/mapping/cpu/{cputype}",
            &["Mapping.Audit", "Mapping.Use", "Mapping.Modify"],
            true,
        ),
    ),
    (
        "PUT",
        "/cluster/qemu/custom-cpu-models/{cputype}",
        Priv("/mapping/cpu/{cputype}", &["Mapping.Modify"], false),
    ),
    (
        "DELETE",
        "/cluster/qemu/custom-cpu-models/{cputype}",
        Priv("/mapping/cpu/{cputype}", &["Mapping.Modify"], false),
    ),
    ("GET", "/cluster/metrics", All),
    ("GET", "/cluster/metrics/export", SYS_AUDIT_ROOT),
    ("GET", "/cluster/metrics/server", SYS_AUDIT_ROOT),
    ("GET", "/cluster/metrics/server/{id}", SYS_AUDIT_ROOT),
    (
        "POST",
        "/cluster/metrics/server/{id}",
        Priv("/", &["Sys.Modify"], false),
    ),
    (
        "PUT",
        "/cluster/metrics/server/{id}",
        Priv("/", &["Sys.Modify"], false),
    ),
    (
        "DELETE",
        "/cluster/metrics/server/{id}",
        Priv("/", &["Sys.Modify"], false),
    ),
    ("GET", "/cluster/notifications", All),
    ("GET", "/cluster/notifications/endpoints", All),
    (
        "GET",
        "/cluster/notifications/targets",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    (
        "POST",
        "/cluster/notifications/targets/{name}/test",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit", "Mapping.Use"],
            true,
        ),
    ),
    (
        "GET",
        "/cluster/notifications/endpoints/webhook",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    ("POST", "/cluster/notifications/endpoints/webhook", All),
    (
        "GET",
        "/cluster/notifications/endpoints/webhook/{name}",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    (
        "PUT",
        "/cluster/notifications/endpoints/webhook/{name}",
        All,
    ),
    (
        "DELETE",
        "/cluster/notifications/endpoints/webhook/{name}",
        Priv("/mapping/notifications", &["Mapping.Modify"], false),
    ),
    (
        "GET",
        "/cluster/notifications/endpoints/sendmail",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    ("POST", "/cluster/notifications/endpoints/sendmail", All),
    (
        "GET",
        "/cluster/notifications/endpoints/sendmail/{name}",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    (
        "PUT",
        "/cluster/notifications/endpoints/sendmail/{name}",
        All,
    ),
    (
        "DELETE",
        "/cluster/notifications/endpoints/sendmail/{name}",
        Priv("/mapping/notifications", &["Mapping.Modify"], false),
    ),
    (
        "GET",
        "/cluster/notifications/matchers",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    (
        "POST",
        "/cluster/notifications/matchers",
        Priv("/mapping/notifications", &["Mapping.Modify"], false),
    ),
    (
        "GET",
        "/cluster/notifications/matchers/{name}",
        Priv(
            "/mapping/notifications",
            &["Mapping.Modify", "Mapping.Audit"],
            true,
        ),
    ),
    (
        "PUT",
        "/cluster/notifications/matchers/{name}",
        Priv("/mapping/notifications", &["Mapping.Modify"], false),
    ),
    (
        "DELETE",
        "/cluster/notifications/matchers/{name}",
        Priv("/mapping/notifications", &["Mapping.Modify"], false),
    ),
    // Ferrox extension: the cluster for Prometheus (also GET /metrics).
    ("GET", "/cluster/metrics/prometheus", SYS_AUDIT_ROOT),
    // pve-network's PVE::API2::Network::SDN, ::Zones, ::Vnets, ::Subnets.
    ("GET", "/cluster/sdn", Priv("/sdn", &["SDN.Audit"], false)),
    (
        "PUT",
        "/cluster/sdn",
        Priv("/sdn", &["SDN.Allocate"], false),
    ),
    ("GET", "/cluster/sdn/zones", All),
    (
        "POST",
        "/cluster/sdn/zones",
        Priv("/sdn/zones", &["SDN.Allocate"], false),
    ),
    (
        "GET",
        "/cluster/sdn/zones/{zone}",
        Priv("/sdn/zones/{zone}", &["SDN.Allocate"], false),
    ),
    (
        "PUT",
        "/cluster/sdn/zones/{zone}",
        Priv("/sdn/zones/{zone}", &["SDN.Allocate"], false),
    ),
    (
        "DELETE",
        "/cluster/sdn/zones/{zone}",
        Priv("/sdn/zones/{zone}", &["SDN.Allocate"], false),
    ),
    ("GET", "/cluster/sdn/vnets", All),
    (
        "POST",
        "/cluster/sdn/vnets",
        Priv("/sdn/zones/{zone}", &["SDN.Allocate"], false),
    ),
    ("GET", "/cluster/sdn/vnets/{vnet}", All),
    ("PUT", "/cluster/sdn/vnets/{vnet}", All),
    ("DELETE", "/cluster/sdn/vnets/{vnet}", All),
    ("GET", "/cluster/sdn/vnets/{vnet}/subnets", All),
    ("POST", "/cluster/sdn/vnets/{vnet}/subnets", All),
    ("GET", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", All),
    ("PUT", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", All),
    ("DELETE", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", All),
    ("GET", "/nodes/{node}/lxc", All),
    ("GET", "/nodes/{node}/subscription", All),
    (
        "GET",
        "/nodes/{node}/apt/update",
        Priv("/nodes/{node}", &["Sys.Modify"], false),
    ),
    ("GET", "/nodes/{node}/capabilities/qemu/cpu", All),
    ("GET", "/nodes/{node}/capabilities/qemu/cpu-flags", All),
    ("GET", "/nodes/{node}/capabilities/qemu/machines", All),
    ("GET", "/nodes/{node}/replication", All),
    (
        "GET",
        "/nodes/{node}/time",
        Priv("/nodes/{node}", &["Sys.Audit"], false),
    ),
    (
        "GET",
        "/nodes/{node}/dns",
        Priv("/nodes/{node}", &["Sys.Audit"], false),
    ),
];

fn lookup(method: Method, path: &str) -> Option<Pve> {
    TABLE
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, e)| *e)
}

#[test]
fn declared_permissions_match_proxmox_ve() {
    let mut problems = Vec::new();
    for e in ferrox_node::api::endpoints() {
        let Some(expected) = lookup(e.method, e.path) else {
            problems.push(format!(
                "{} {}: not in the table (add Proxmox VE's permission)",
                e.method.as_str(),
                e.path
            ));
            continue;
        };
        let declared = match &e.permission {
            Permission::World => World,
            Permission::Authenticated | Permission::Handler(_) => All,
            Permission::Root => Root,
            Permission::Privs { path, privs, any } => Priv(path, privs, *any),
        };
        let same = match (declared, expected) {
            (Priv(p1, v1, a1), Priv(p2, v2, a2)) => {
                let s1: BTreeSet<_> = v1.iter().collect();
                let s2: BTreeSet<_> = v2.iter().collect();
                p1 == p2 && s1 == s2 && (a1 == a2 || s1.len() == 1)
            }
            (a, b) => a == b,
        };
        if !same {
            problems.push(format!(
                "{} {}: declared {declared:?}, Proxmox VE {expected:?}",
                e.method.as_str(),
                e.path
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A value for a required parameter that passes validation but lets the request fail
/// after the permission check (a guest, task or storage that does not exist), so that
/// the matrix changes nothing it depends on.
fn sample(name: &str, method: Method, path: &str, role: &str) -> String {
    let suffix: String = role.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    match name {
        "node" => "pve1".into(),
        "vmid" if path == "/nodes/{node}/qemu" && method == Method::Post => "100".into(),
        "vmid" => "999".into(),
        "storage" => "local".into(),
        "upid" => "UPID:pve1:00000001:00000001:00000001:qmstart:999:root@pam:".into(),
        "userid" => "root@pam".into(),
        "tokenid" => format!("t{suffix}"),
        "groupid" => format!("g{suffix}"),
        "roleid" => format!("R{suffix}"),
        "rule" => format!("r{suffix}"),
        "name" => format!("l{suffix}"),
        "sid" => "vm:999".into(),
        "target" => "pve1".into(),
        "type" if path == "/storage" => "dir".into(),
        "type" => "node-affinity".into(),
        "path" if path == "/storage" => "/nonexistent/ferrox-matrix".into(),
        "path" => "/vms/999".into(),
        "roles" => "PVEAuditor".into(),
        "clustername" => "matrix".into(),
        "hostname" => "127.0.0.1:1".into(),
        "address" => "127.0.0.1:1".into(),
        "fingerprint" => vec!["AA"; 32].join(":"),
        "password" => "matrixsecret1".into(),
        "command" => "arm-ha".into(),
        "resources" => "vm:999".into(),
        "nodes" => "pve1".into(),
        "username" => "root@pam".into(),
        "realm" => "nosuch".into(),
        "poolid" => format!("p{suffix}"),
        "id" => format!("m{suffix}"),
        "server" => "127.0.0.1".into(),
        "port" if path.ends_with("/vncwebsocket") => "5900".into(),
        "disk" => "scsi0".into(),
        "size" => "+1G".into(),
        "snapname" => "s1".into(),
        "newid" => "998".into(),
        "idlist" => "scsi0".into(),
        "port" => "2003".into(),
        _ => "1".into(),
    }
}

fn allowed(role: &str, expected: Pve, vmid: &str) -> bool {
    let privs = rbac::builtin_role(role).expect("built-in role");
    match expected {
        World | All => true,
        Root => false,
        Priv(_, wanted, any) => {
            // Every role in the matrix is granted on `/` with propagation, so the path
            // does not matter; `vmid` is only for the message.
            let _ = vmid;
            if any {
                wanted.iter().any(|p| privs.contains(p))
            } else {
                wanted.iter().all(|p| privs.contains(p))
            }
        }
    }
}

#[test]
fn every_endpoint_refuses_exactly_the_roles_proxmox_ve_refuses() {
    let d = start_daemon("tcg");
    let root = d.login();
    let roles = [
        "PVEAuditor",
        "PVEVMUser",
        "PVEVMAdmin",
        "PVEDatastoreUser",
        "PVEAdmin",
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for role in roles {
        let userid = format!("m{}@pve", role.to_lowercase());
        d.add_user(&root, &userid, "matrixsecret1", &[("/", role)]);
        let auth = d.login_as(&userid, "matrixsecret1");
        for e in ferrox_node::api::endpoints() {
            // Endpoints open to every user check data-dependent privileges in their
            // handlers (tested with the access and guest tests); the matrix covers the
            // declared privileges.
            let expected = lookup(e.method, e.path).unwrap_or(All);
            if matches!(expected, World | All) {
                continue;
            }
            let mut path = e.path.to_string();
            let mut form: Vec<(String, String)> = Vec::new();
            for p in e.params.iter().filter(|p| !p.optional) {
                let value = match &p.ty {
                    ferrox_api::ParamType::Enum(values) => values[0].to_string(),
                    _ => sample(p.name, e.method, e.path, role),
                };
                let var = format!("{{{}}}", p.name);
                if path.contains(&var) {
                    path = path.replace(&var, &value);
                } else {
                    form.push((p.name.to_string(), value));
                }
            }
            let form_ref: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let r = d.request(e.method.as_str(), &path, &auth, &form_ref);
            checked += 1;
            let should_pass = allowed(role, expected, "999");
            let refused = r.status == 403;
            if refused == should_pass {
                problems.push(format!(
                    "{role}: {} {path}: got {} {} (expected {})",
                    e.method.as_str(),
                    r.status,
                    r.reason,
                    if should_pass { "allowed" } else { "403" }
                ));
            }
        }
    }
    assert!(checked > 200, "checked {checked} requests");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const TABLE_START: &str = "<!-- privilege table: generated from the endpoint declarations -->\n";
const TABLE_END: &str = "<!-- end of privilege table -->";

/// docs/security.md carries the privilege of every endpoint, generated from the
/// declarations; `FERROX_UPDATE_DOCS=1 cargo test --test permissions` rewrites it.
#[test]
fn the_security_document_lists_every_endpoint_as_declared() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    let doc = std::fs::read_to_string(&path).expect("docs/security.md");
    let table = ferrox_api::openapi::permission_table(&ferrox_node::api::endpoints());
    let start = doc.find(TABLE_START).expect("table start marker") + TABLE_START.len();
    let end = doc.find(TABLE_END).expect("table end marker");
    if std::env::var_os("FERROX_UPDATE_DOCS").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    let first_difference = doc[start..end]
        .lines()
        .zip(table.lines())
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("document: {a}\ndeclared: {b}"))
        .unwrap_or_else(|| "the tables differ in length".into());
    assert!(
        doc[start..end] == table,
        "docs/security.md is out of date (run FERROX_UPDATE_DOCS=1 cargo test -p ferrox-e2e --test permissions):\n{first_difference}"
    );
}
