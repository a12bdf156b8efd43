//! `/cluster/backup` and `/cluster/backup-info`: backup jobs. None can be configured yet,
//! so no guest is covered by one: every guest the caller may audit is "not backed up",
//! as Proxmox VE answers on a cluster without backup jobs.

use super::*;
use crate::Node;
use ferrox_api::{ApiError, Endpoint, Method, Permission};
use ferrox_api_types::cluster::NotBackedUp;
use ferrox_api_types::ConfigMap;

const AUDIT: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Audit"],
    any: false,
};

fn backup_jobs(_: &C<'_>) -> Result<Vec<ConfigMap>, ApiError> {
    Ok(Vec::new())
}

fn not_backed_up(ctx: &C<'_>) -> Result<Vec<NotBackedUp>, ApiError> {
    let node = ctx.state;
    let mut out = Vec::new();
    for (vmid, owner) in crate::cluster::cluster_vmids(node) {
        if !ctx.has(&format!("/vms/{vmid}"), &["VM.Audit"], false) {
            continue;
        }
        let name = node
            .tree
            .get(&crate::guests::config_path(&owner, vmid))
            .and_then(|e| ferrox_types::GuestConfig::parse(&e.data).ok())
            .and_then(|c| c.name().map(String::from));
        out.push(NotBackedUp {
            vmid,
            kind: "qemu".into(),
            name,
        });
    }
    out.sort_by_key(|g| g.vmid);
    Ok(out)
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(Get, "/cluster/backup", "Backup jobs.", AUDIT, backup_jobs),
        Endpoint::new(
            Get,
            "/cluster/backup-info/not-backed-up",
            "Guests not covered by any backup job.",
            AUDIT,
            not_backed_up,
        ),
    ]
}
