//! Backups: `/nodes/{node}/vzdump` (back up guests now), and `/cluster/backup` and
//! `/cluster/backup-info` (backup jobs). No job can be configured yet, so no guest is
//! covered by one: every guest the caller may audit is "not backed up", as Proxmox VE
//! answers on a cluster without backup jobs.

use super::*;
use crate::guests::backup::{BackupJob, BackupMode};
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::schema::{BOOL, STORAGE_ID, STRING};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::cluster::NotBackedUp;
use ferrox_api_types::ConfigMap;
use ferrox_api_types::Upid;
use std::sync::Arc;

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

const VMID_LIST: Param = Param::optional(
    "vmid",
    STRING,
    "The guests to back up (comma-separated vmids).",
);
const ALL: Param = Param::optional("all", BOOL, "Back up every guest on this node.");
const STORAGE: Param = Param::optional(
    "storage",
    STORAGE_ID,
    "Store the archives on this storage (default 'local').",
);
const MODE: Param = Param::optional(
    "mode",
    ParamType::Enum(&["snapshot", "suspend", "stop"]),
    "Backup mode (default snapshot).",
);
const COMPRESS: Param = Param::optional(
    "compress",
    ParamType::Enum(&["0", "1", "gzip", "lzo", "zstd"]),
    "Compression: archives are zstd (1 or zstd); others are refused.",
);
const PRUNE: Param = Param::optional(
    "prune-backups",
    STRING,
    "Retention after the backup: keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly, keep-all.",
);
const REMOVE: Param = Param::optional("remove", BOOL, "Prune as prune-backups says (default 1).");
const NOTES: Param = Param::optional("notes-template", STRING, "Ignored.");

/// `POST /nodes/{node}/vzdump`: Proxmox VE checks `VM.Backup` on each guest and
/// `Datastore.AllocateSpace` on the storage; overriding its retention with
/// `prune-backups` also needs `Datastore.Allocate`.
fn vzdump(ctx: &C<'_>) -> Result<Upid, ApiError> {
    local_node(ctx)?;
    let node = ctx.state;
    let local: Vec<u32> = node
        .guests
        .listing()
        .into_iter()
        .map(|(v, _, _)| v)
        .collect();
    let vmids: Vec<u32> = if ctx.params.bool(&ALL).unwrap_or(false) {
        local.clone()
    } else {
        let text = ctx
            .params
            .str(&VMID_LIST)
            .ok_or_else(|| VMID_LIST.error("give the guests to back up, or all=1"))?;
        let mut out = Vec::new();
        for item in ferrox_types::format::split_list(text) {
            let vmid: u32 = item
                .parse()
                .ok()
                .filter(|v| (100..=999_999_999).contains(v))
                .ok_or_else(|| VMID_LIST.error(format!("'{item}' is not a vmid")))?;
            if !local.contains(&vmid) {
                return Err(VMID_LIST.error(format!(
                    "VM {vmid} is not on node '{}'",
                    node.opts.node_name
                )));
            }
            out.push(vmid);
        }
        out
    };
    if vmids.is_empty() {
        return Err(VMID_LIST.error("no guest to back up"));
    }
    if ctx
        .params
        .str(&COMPRESS)
        .is_some_and(|c| !matches!(c, "1" | "zstd"))
    {
        return Err(COMPRESS.error("archives are compressed with zstd: give 1 or zstd"));
    }
    let storage = ctx.params.str(&STORAGE).unwrap_or("local").to_string();
    let retention = match ctx.params.str(&PRUNE) {
        Some(text) if ctx.params.bool(&REMOVE).unwrap_or(true) => {
            Some(ferrox_storage::backup::Retention::parse(text).map_err(|e| PRUNE.error(e))?)
        }
        _ => None,
    };
    for vmid in &vmids {
        ctx.require(&format!("/vms/{vmid}"), &["VM.Backup"], false)?;
    }
    ctx.require(
        &format!("/storage/{storage}"),
        &["Datastore.AllocateSpace"],
        false,
    )?;
    if retention.is_some() {
        ctx.require(
            &format!("/storage/{storage}"),
            &["Datastore.Allocate"],
            false,
        )?;
    }
    let storages = node.storage_config()?;
    let target = ferrox_storage::open(&storages, &node.opts.node_name, &storage)
        .map_err(|e| STORAGE.error(e.to_string()))?;
    if !target.content().contains("backup") {
        return Err(STORAGE.error(format!(
            "storage '{storage}' does not support backups (no 'backup' content)"
        )));
    }
    let job = BackupJob {
        vmids,
        storage,
        mode: ctx
            .params
            .str(&MODE)
            .and_then(BackupMode::parse)
            .unwrap_or(BackupMode::Snapshot),
        retention,
    };
    let worker = Arc::clone(node);
    let id = if job.vmids.len() == 1 {
        job.vmids[0].to_string()
    } else {
        String::new()
    };
    let upid = node
        .tasks
        .spawn("vzdump", &id, &auth_id(ctx)?, move |log| {
            worker.run_backup(&job, log)
        })?;
    Ok(Upid(upid))
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(
            Post,
            "/nodes/{node}/vzdump",
            "Create backups of guests on this node.",
            Permission::Handler(
                "VM.Backup on each guest and Datastore.AllocateSpace on the storage; prune-backups also Datastore.Allocate",
            ),
            vzdump,
        )
        .params(vec![
            NODE, VMID_LIST, ALL, STORAGE, MODE, COMPRESS, PRUNE, REMOVE, NOTES,
        ]),
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
