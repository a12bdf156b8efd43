//! Backups: `/nodes/{node}/vzdump` (back up guests now), `/cluster/backup` (backup jobs
//! in `jobs.cfg`, run by the cluster: `crate::backup_jobs`) and `/cluster/backup-info`
//! (the guests no enabled job covers).

use super::*;
use crate::guests::backup::{BackupJob as BackupRun, BackupMode};
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::schema::{BOOL, STORAGE_ID, STRING};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::cluster::NotBackedUp;
use ferrox_api_types::ConfigMap;
use ferrox_api_types::Upid;
use ferrox_types::jobs_config::{BackupJob, JobsConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

const AUDIT: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Audit"],
    any: false,
};

const MODIFY: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Modify"],
    any: false,
};

fn job_row(job: &BackupJob) -> ConfigMap {
    let mut row: ConfigMap = job
        .properties()
        .into_iter()
        .map(|(k, v)| (k, serde_json::json!(v)))
        .collect();
    row.insert("id".into(), serde_json::json!(job.id));
    row.insert("type".into(), serde_json::json!("vzdump"));
    if let Some(next) = crate::backup_jobs::next_run(job).filter(|_| job.enabled) {
        row.insert("next-run".into(), serde_json::json!(next));
    }
    row
}

fn jobs(ctx: &C<'_>) -> Result<(crate::cluster::Document, JobsConfig), ApiError> {
    let doc = ctx.state.tree.load("jobs.cfg");
    let cfg =
        JobsConfig::parse(&doc.text).map_err(|e| ApiError::internal(format!("jobs.cfg: {e}")))?;
    Ok((doc, cfg))
}

fn backup_jobs(ctx: &C<'_>) -> Result<Vec<ConfigMap>, ApiError> {
    let (_, cfg) = jobs(ctx)?;
    Ok(cfg.backups.values().map(job_row).collect())
}

fn backup_job(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    let (_, cfg) = jobs(ctx)?;
    let id = ctx.params.need_str(&JOB_ID)?;
    cfg.backups
        .get(id)
        .map(job_row)
        .ok_or_else(|| JOB_ID.error(format!("job '{id}' does not exist")))
}

/// The job settings given in a request, each checked (400 naming the parameter).
fn job_settings(ctx: &C<'_>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut props = BTreeMap::new();
    for p in [
        &SCHEDULE, &STORAGE, &VMID_LIST, &ALL, &MODE, &ENABLED, &JOB_NODE, &PRUNE, &COMMENT,
        &COMPRESS, &MAILTO, &NOTES,
    ] {
        if let Some(v) = ctx.params.0.get(p.name) {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => {
                    if *b {
                        "1".into()
                    } else {
                        "0".into()
                    }
                }
                other => other.to_string(),
            };
            props.insert(p.name.to_string(), text);
        }
    }
    if let Some(s) = props.get("schedule") {
        ferrox_types::calendar::CalendarEvent::parse(s).map_err(|e| SCHEDULE.error(e))?;
    }
    if let Some(p) = props.get("prune-backups") {
        ferrox_types::storage::Retention::parse(p).map_err(|e| PRUNE.error(e))?;
        let storage = props.get("storage").map(String::as_str).unwrap_or("local");
        ctx.require(
            &format!("/storage/{storage}"),
            &["Datastore.Allocate"],
            false,
        )?;
    }
    if let Some(t) = props.get("notes-template") {
        ferrox_storage::backup::notes_from_template(t, &[]).map_err(|e| NOTES.error(e))?;
    }
    if props
        .get("compress")
        .is_some_and(|c| !matches!(c.as_str(), "1" | "zstd"))
    {
        return Err(COMPRESS.error("archives are compressed with zstd: give 1 or zstd"));
    }
    if let Some(list) = props.get("vmid") {
        ferrox_types::format::vmid_list(list).map_err(|e| VMID_LIST.error(e))?;
    }
    Ok(props)
}

fn save_jobs(
    ctx: &C<'_>,
    doc: &crate::cluster::Document,
    cfg: &JobsConfig,
) -> Result<(), ApiError> {
    ctx.state.tree.save(doc, &cfg.to_text())?;
    Ok(())
}

fn create_job(ctx: &C<'_>) -> Result<(), ApiError> {
    let (doc, mut cfg) = jobs(ctx)?;
    let id = match ctx.params.str(&NEW_JOB_ID) {
        Some(id) => id.to_string(),
        None => format!(
            "backup-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..13]
        ),
    };
    if cfg.backups.contains_key(&id) || cfg.others.iter().any(|s| s.id == id) {
        return Err(NEW_JOB_ID.error(format!("job '{id}' already exists")));
    }
    let props = job_settings(ctx)?;
    let job =
        BackupJob::from_properties(&id, &props).map_err(|e| ApiError::new(400, e.to_string()))?;
    cfg.backups.insert(id, job);
    save_jobs(ctx, &doc, &cfg)
}

fn update_job(ctx: &C<'_>) -> Result<(), ApiError> {
    let (doc, mut cfg) = jobs(ctx)?;
    doc.check_digest(ctx.params.str(&DIGEST))?;
    let id = ctx.params.need_str(&JOB_ID)?.to_string();
    let current = cfg
        .backups
        .get(&id)
        .ok_or_else(|| JOB_ID.error(format!("job '{id}' does not exist")))?;
    let mut props = current.properties();
    for key in ctx
        .params
        .str(&DELETE)
        .map(ferrox_types::format::split_list)
        .into_iter()
        .flatten()
    {
        props.remove(key);
    }
    let changes = job_settings(ctx)?;
    if changes.contains_key("all") {
        props.remove("vmid");
    }
    if changes.contains_key("vmid") {
        props.remove("all");
    }
    props.extend(changes);
    let job =
        BackupJob::from_properties(&id, &props).map_err(|e| ApiError::new(400, e.to_string()))?;
    cfg.backups.insert(id, job);
    save_jobs(ctx, &doc, &cfg)
}

fn delete_job(ctx: &C<'_>) -> Result<(), ApiError> {
    let (doc, mut cfg) = jobs(ctx)?;
    let id = ctx.params.need_str(&JOB_ID)?;
    if cfg.backups.remove(id).is_none() {
        return Err(JOB_ID.error(format!("job '{id}' does not exist")));
    }
    save_jobs(ctx, &doc, &cfg)?;
    let _ = ctx.state.tree.delete(
        &crate::backup_jobs::state_path(id),
        ferrox_store::Expect::Any,
    );
    Ok(())
}

fn not_backed_up(ctx: &C<'_>) -> Result<Vec<NotBackedUp>, ApiError> {
    let node = ctx.state;
    let (_, cfg) = jobs(ctx)?;
    let mut out = Vec::new();
    for (vmid, owner) in crate::cluster::cluster_vmids(node) {
        if !ctx.has(&format!("/vms/{vmid}"), &["VM.Audit"], false) {
            continue;
        }
        if cfg.backups.values().any(|j| j.covers(vmid, &owner)) {
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
const NOTES: Param = Param::optional(
    "notes-template",
    STRING,
    "Notes of the backups: {{cluster}}, {{guestname}}, {{node}} and {{vmid}} are replaced, \\n is a newline.",
);
const PROTECTED: Param = Param::optional(
    "protected",
    BOOL,
    "Mark the backups protected (not removed, not pruned).",
);
const JOB_ID: Param = Param::required("id", STRING, "The job id.");
const NEW_JOB_ID: Param = Param::optional(
    "id",
    ParamType::Format {
        name: "pve-configid",
        check: ferrox_types::format::config_id,
    },
    "The job id (default: generated).",
);
const SCHEDULE: Param = Param::optional(
    "schedule",
    STRING,
    "When the job runs: a calendar event (default 00:00).",
);
const ENABLED: Param = Param::optional("enabled", BOOL, "Enable or disable the job (default 1).");
const JOB_NODE: Param = Param::optional("node", ParamType::Node, "Only the guests on this node.");
const COMMENT: Param = Param::optional("comment", STRING, "Description of the job.");
const MAILTO: Param = Param::optional("mailto", STRING, "Kept, not acted on yet.");
const DELETE: Param = Param::optional("delete", STRING, "Settings to remove (comma list).");
const DIGEST: Param = Param::optional(
    "digest",
    ParamType::String { max_len: Some(40) },
    "Refuse the change if jobs.cfg's digest differs.",
);

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
        let out = ferrox_types::format::vmid_list(text).map_err(|e| VMID_LIST.error(e))?;
        for &vmid in &out {
            if !local.contains(&vmid) {
                return Err(VMID_LIST.error(format!(
                    "VM {vmid} is not on node '{}'",
                    node.opts.node_name
                )));
            }
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
    let notes_template = ctx.params.str(&NOTES).map(str::to_string);
    if let Some(t) = &notes_template {
        ferrox_storage::backup::notes_from_template(t, &[]).map_err(|e| NOTES.error(e))?;
    }
    let job = BackupRun {
        vmids,
        may_allocate: ctx.has(
            &format!("/storage/{storage}"),
            &["Datastore.Allocate"],
            false,
        ),
        storage,
        mode: ctx
            .params
            .str(&MODE)
            .and_then(BackupMode::parse)
            .unwrap_or(BackupMode::Snapshot),
        retention,
        protected: ctx.params.bool(&PROTECTED).unwrap_or(false),
        notes_template,
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
            NODE, VMID_LIST, ALL, STORAGE, MODE, COMPRESS, PRUNE, REMOVE, NOTES, PROTECTED,
        ]),
        Endpoint::new(Get, "/cluster/backup", "Backup jobs.", AUDIT, backup_jobs),
        Endpoint::new(
            Post,
            "/cluster/backup",
            "Create a backup job (prune-backups also needs Datastore.Allocate on the storage).",
            MODIFY,
            create_job,
        )
        .params(vec![
            NEW_JOB_ID, SCHEDULE, STORAGE, VMID_LIST, ALL, MODE, ENABLED, JOB_NODE, PRUNE,
            COMMENT, COMPRESS, MAILTO, NOTES,
        ]),
        Endpoint::new(Get, "/cluster/backup/{id}", "A backup job.", AUDIT, backup_job)
            .params(vec![JOB_ID]),
        Endpoint::new(
            Put,
            "/cluster/backup/{id}",
            "Update a backup job.",
            MODIFY,
            update_job,
        )
        .params(vec![
            JOB_ID, SCHEDULE, STORAGE, VMID_LIST, ALL, MODE, ENABLED, JOB_NODE, PRUNE, COMMENT,
            COMPRESS, MAILTO, NOTES, DELETE, DIGEST,
        ]),
        Endpoint::new(
            Delete,
            "/cluster/backup/{id}",
            "Delete a backup job.",
            MODIFY,
            delete_job,
        )
        .params(vec![JOB_ID]),
        Endpoint::new(
            Get,
            "/cluster/backup-info/not-backed-up",
            "Guests not covered by any backup job.",
            AUDIT,
            not_backed_up,
        ),
    ]
}
