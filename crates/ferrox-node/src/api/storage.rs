//! `/storage` and `/nodes/{node}/storage`: the storage configuration, a node's storages,
//! their status and content.

use super::*;
use crate::resources::{content_list, storage_status};
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::rbac;
use ferrox_api::schema::{ABSOLUTE_PATH, BOOL, CONTENT_LIST, NODE_LIST, STORAGE_ID, STRING};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::storage::{
    StorageCreated, StorageDefinition, StorageStatus, Volume, VolumeDetails,
};
use ferrox_types::{VolumeId, VolumeKind};
use std::collections::BTreeMap;

/// `POST /nodes/{node}/storage/{storage}/download-url`: Proxmox VE checks
/// Datastore.AllocateTemplate on the storage and Sys.Audit and Sys.Modify on the node (it
/// makes the node fetch any URL).
fn download_url(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let node = ctx.state;
    let storage = ctx.params.need_str(&param::STORAGE)?.to_string();
    ctx.require(
        &format!("/storage/{storage}"),
        &["Datastore.AllocateTemplate"],
        false,
    )?;
    ctx.require(
        &format!("/nodes/{}", node.opts.node_name),
        &["Sys.Audit", "Sys.Modify"],
        false,
    )?;
    let url = ctx.params.need_str(&param::URL)?.to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(param::URL.error("only http:// and https:// URLs"));
    }
    if ctx.params.str(&param::DOWNLOAD_CONTENT) != Some("iso") {
        return Err(param::DOWNLOAD_CONTENT.error("only ISO images ('iso') can be downloaded yet"));
    }
    if ctx.params.str(&param::COMPRESSION).is_some() {
        return Err(param::COMPRESSION.error("compressed downloads are not supported yet"));
    }
    if ctx.params.bool(&param::VERIFY).is_some_and(|v| !v) {
        return Err(param::VERIFY.error("certificates are always verified"));
    }
    let checksum = checksum_param(ctx)?;
    let filename = ctx.params.need_str(&param::FILENAME)?;
    let target = iso_target(ctx, &storage, filename)?;
    let worker = std::sync::Arc::clone(node);
    let upid = node
        .tasks
        .spawn("download", &storage, &auth_id(ctx)?, move |log| {
            worker.download_url(&url, &target, checksum.as_ref(), log)
        })?;
    Ok(ferrox_api_types::Upid(upid))
}

/// `checksum` and `checksum-algorithm` of `download-url` and `upload`.
fn checksum_param(ctx: &C<'_>) -> Result<Option<crate::storage::files::Checksum>, ApiError> {
    use crate::storage::files::{Checksum, CHECKSUM_ALGORITHMS};
    match (
        ctx.params.str(&param::CHECKSUM),
        ctx.params.str(&param::CHECKSUM_ALGORITHM),
    ) {
        (Some(hex), Some(algorithm)) => {
            if !CHECKSUM_ALGORITHMS.contains(&algorithm) {
                return Err(param::CHECKSUM_ALGORITHM.error(format!(
                    "'{algorithm}' is not checked yet: one of {}",
                    CHECKSUM_ALGORITHMS.join(", ")
                )));
            }
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(param::CHECKSUM.error("a checksum is hex digits"));
            }
            Ok(Some(Checksum {
                algorithm: algorithm.to_string(),
                hex: hex.to_string(),
            }))
        }
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(param::CHECKSUM_ALGORITHM.error("give the algorithm of the checksum"))
        }
        (None, Some(_)) => Err(param::CHECKSUM.error("give the checksum to check")),
    }
}

/// Where ISO image `filename` goes on `storage`: a new file (an existing one is not
/// overwritten: a guest may have it in its CD drive).
fn iso_target(ctx: &C<'_>, storage: &str, filename: &str) -> Result<std::path::PathBuf, ApiError> {
    let node = ctx.state;
    let cfg = node.storage_config()?;
    let target = ferrox_storage::open(&cfg, &node.opts.node_name, storage)
        .map_err(|e| param::STORAGE.error(e.to_string()))?
        .iso_path(filename)
        .map_err(|e| param::FILENAME.error(e.to_string()))?;
    if target.exists() {
        return Err(param::FILENAME.error(format!("'{filename}' already exists on '{storage}'")));
    }
    Ok(target)
}

/// `POST /nodes/{node}/storage/{storage}/upload` (multipart, as Proxmox VE): the HTTP layer
/// has stored the file; an `imgcopy` task checks it and puts it in place. The file name is
/// normalized as Proxmox VE does (folders dropped, other characters than letters, digits,
/// `_`, `.`, `-` become `_`).
fn upload(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let node = ctx.state;
    let storage = ctx.params.need_str(&param::STORAGE)?.to_string();
    if ctx.params.str(&param::DOWNLOAD_CONTENT) != Some("iso") {
        return Err(param::DOWNLOAD_CONTENT.error("only ISO images ('iso') can be uploaded yet"));
    }
    let checksum = checksum_param(ctx)?;
    let uploaded = ctx
        .upload
        .filter(|u| u.field == "filename")
        .ok_or_else(|| {
            param::FILENAME.error("no file uploaded: send it as the multipart field 'filename'")
        })?;
    let filename = normalize_file_name(ctx.params.need_str(&param::FILENAME)?);
    let target = iso_target(ctx, &storage, &filename)?;
    // The task owns the file from here: the HTTP layer removes only what is left at the
    // path it gave.
    let owned = uploaded.path.with_extension("task");
    std::fs::rename(&uploaded.path, &owned)
        .map_err(|e| ApiError::internal(format!("taking the upload: {e}")))?;
    let worker = std::sync::Arc::clone(node);
    let size = uploaded.size;
    let spawned = node
        .tasks
        .spawn("imgcopy", &storage, &auth_id(ctx)?, move |log| {
            log.log(format!("received {size} bytes as '{filename}'"));
            // As Proxmox VE: an ISO image is a raw file, not an image format with a
            // backing file that QEMU would follow.
            match ferrox_storage::image_info(&owned) {
                Ok((_, format)) if format == "raw" => {}
                Ok((_, format)) => {
                    let _ = std::fs::remove_file(&owned);
                    return Err(format!("not an ISO image: the file is a {format} image").into());
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&owned);
                    return Err(e.to_string().into());
                }
            }
            worker.store_upload(&owned, &target, checksum.as_ref(), log)
        });
    Ok(ferrox_api_types::Upid(spawned?))
}

/// Proxmox VE's `normalize_content_filename`.
fn normalize_file_name(name: &str) -> String {
    let name = name.trim_end_matches(['\n', '\r']);
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `{volume}` of a content path on `{storage}`: a whole volume id of that storage, or
/// a volume name on it (as Proxmox VE takes it).
fn content_volume(ctx: &C<'_>) -> Result<VolumeId, ApiError> {
    let storage = ctx.params.need_str(&param::STORAGE)?;
    let given = ctx.params.need_str(&param::VOLUME)?;
    let volid = match given.split_once(':') {
        Some((sid, _)) if sid != storage => {
            return Err(param::VOLUME.error(format!("storage ID mismatch ({sid} != {storage})")))
        }
        Some(_) => given.to_string(),
        None => format!("{storage}:{given}"),
    };
    VolumeId::parse(&volid)
        .ok_or_else(|| param::VOLUME.error(format!("'{volid}' is not a volume id")))
}

/// Proxmox VE's `check_volume_access` (without a guest of the caller's): Datastore.Allocate
/// on the storage reaches everything; ISO images need Datastore.Audit or AllocateSpace;
/// backups Datastore.AllocateSpace and VM.Backup on their guest; images Datastore.Audit and
/// VM.Config.Disk on their guest.
fn check_volume_access(ctx: &C<'_>, volume: &VolumeId) -> Result<(), ApiError> {
    let storage = format!("/storage/{}", volume.storage);
    if ctx.has(&storage, &["Datastore.Allocate"], false) {
        return Ok(());
    }
    match volume.kind() {
        Some(VolumeKind::Iso | VolumeKind::Template | VolumeKind::Import) => ctx.require(
            &storage,
            &["Datastore.AllocateSpace", "Datastore.Audit"],
            true,
        ),
        Some(VolumeKind::Backup) => {
            let owner = backup_owner(volume)
                .ok_or_else(|| ApiError::forbidden(&storage, &["Datastore.Allocate"]))?;
            ctx.require(&storage, &["Datastore.AllocateSpace"], false)?;
            ctx.require(&format!("/vms/{owner}"), &["VM.Backup"], false)
        }
        Some(VolumeKind::Image { owner }) => {
            ctx.require(&storage, &["Datastore.Audit"], false)?;
            ctx.require(&format!("/vms/{owner}"), &["VM.Config.Disk"], false)
        }
        _ => Err(ApiError::forbidden(&storage, &["Datastore.Allocate"])),
    }
}

/// The guest a backup archive belongs to, from its name.
fn backup_owner(volume: &VolumeId) -> Option<u32> {
    let file = volume.name.strip_prefix("backup/")?;
    ferrox_storage::backup::parse_archive_name(file).map(|(vmid, _)| vmid)
}

/// `GET /nodes/{node}/storage/{storage}/content/{volume}`.
fn volume_details(ctx: &C<'_>) -> Result<VolumeDetails, ApiError> {
    local_node(ctx)?;
    let volume = content_volume(ctx)?;
    check_volume_access(ctx, &volume)?;
    let node = ctx.state;
    let cfg = node.storage_config()?;
    let plugin = ferrox_storage::open(&cfg, &node.opts.node_name, &volume.storage)
        .map_err(|e| param::STORAGE.error(e.to_string()))?;
    let (path, format) = plugin
        .path(&volume)
        .map_err(|e| param::VOLUME.error(e.to_string()))?;
    let meta = std::fs::metadata(&path).map_err(|_| {
        ApiError::internal(format!(
            "volume '{}:{}' does not exist",
            volume.storage, volume.name
        ))
    })?;
    use std::os::unix::fs::MetadataExt;
    let used = meta.blocks() * 512;
    let (size, format) = match volume.kind() {
        Some(VolumeKind::Image { .. }) => {
            let (size, _) =
                ferrox_storage::image_info(&path).map_err(|e| ApiError::internal(e.to_string()))?;
            (size, format)
        }
        Some(VolumeKind::Iso) => (meta.len(), "iso".to_string()),
        Some(VolumeKind::Backup) => (meta.len(), "tar.zst".to_string()),
        _ => (meta.len(), format),
    };
    let attributes = plugin
        .attributes(&volume)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let is_backup = volume.kind() == Some(VolumeKind::Backup);
    Ok(VolumeDetails {
        path: path.display().to_string(),
        size,
        used,
        format,
        notes: attributes.notes,
        protected: is_backup.then_some(u8::from(attributes.protected)),
    })
}

/// `PUT /nodes/{node}/storage/{storage}/content/{volume}`: a backup's notes and protection.
/// Protecting one more than `max-protected-backups` (default 5, unlimited for holders of
/// Datastore.Allocate on the storage, as Proxmox VE) of a guest's backups is refused.
fn volume_update(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let volume = content_volume(ctx)?;
    check_volume_access(ctx, &volume)?;
    let node = ctx.state;
    let cfg = node.storage_config()?;
    let plugin = ferrox_storage::open(&cfg, &node.opts.node_name, &volume.storage)
        .map_err(|e| param::STORAGE.error(e.to_string()))?;
    let notes = ctx.params.str(&param::NOTES);
    let protect = ctx.params.bool(&param::PROTECTED);
    if let (Some(true), Some(owner)) = (protect, backup_owner(&volume)) {
        let already = plugin.attributes(&volume).is_ok_and(|a| a.protected);
        let may_allocate = ctx.has(
            &format!("/storage/{}", volume.storage),
            &["Datastore.Allocate"],
            false,
        );
        if !already {
            crate::guests::backup::check_protected_limit(
                &*plugin,
                &cfg.storages[&volume.storage],
                owner,
                may_allocate,
            )
            .map_err(|e| param::PROTECTED.error(e))?;
        }
    }
    plugin
        .set_attributes(&volume, notes, protect)
        .map_err(|e| param::VOLUME.error(e.to_string()))
}

/// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`: an `imgdel` task. A backup
/// of a guest needs Datastore.AllocateSpace and VM.Backup on it, anything else
/// Datastore.Allocate (as Proxmox VE). A protected backup stays; so does an image a guest
/// still refers to (Proxmox VE would delete it under the guest).
fn volume_delete(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let volume = content_volume(ctx)?;
    let storage = format!("/storage/{}", volume.storage);
    match (volume.kind(), backup_owner(&volume)) {
        (Some(VolumeKind::Backup), Some(owner)) => {
            ctx.require(&storage, &["Datastore.AllocateSpace"], false)?;
            ctx.require(&format!("/vms/{owner}"), &["VM.Backup"], false)?;
        }
        _ => ctx.require(&storage, &["Datastore.Allocate"], false)?,
    }
    let node = ctx.state;
    let volid = format!("{}:{}", volume.storage, volume.name);
    for (path, entry) in node.tree.list("nodes") {
        let Some((_, vmid)) = crate::guests::parse_config_path(&path) else {
            continue;
        };
        let used = ferrox_types::GuestConfig::parse(&entry.data)
            .ok()
            .and_then(|c| c.volume_reference(&volid));
        if let Some(key) = used {
            return Err(
                param::VOLUME.error(format!("volume '{volid}' is in use by VM {vmid} ({key})"))
            );
        }
    }
    let cfg = node.storage_config()?;
    let plugin = ferrox_storage::open(&cfg, &node.opts.node_name, &volume.storage)
        .map_err(|e| param::STORAGE.error(e.to_string()))?;
    if plugin.attributes(&volume).is_ok_and(|a| a.protected) {
        return Err(param::VOLUME.error(format!("backup '{volid}' is protected")));
    }
    let (path, _) = plugin
        .path(&volume)
        .map_err(|e| param::VOLUME.error(e.to_string()))?;
    if !path.exists() {
        return Err(param::VOLUME.error(format!("volume '{volid}' does not exist")));
    }
    let id = match volume.owner().or(backup_owner(&volume)) {
        Some(vmid) => format!("{vmid}@{}", volume.storage),
        None => volume.storage.clone(),
    };
    let worker_cfg = cfg.clone();
    let node_name = node.opts.node_name.clone();
    let upid = node
        .tasks
        .spawn("imgdel", &id, &auth_id(ctx)?, move |log| {
            ferrox_storage::free(&worker_cfg, &node_name, &volid).map_err(|e| e.to_string())?;
            log.log(format!("Removed volume '{volid}'"));
            Ok(())
        })?;
    Ok(ferrox_api_types::Upid(upid))
}

/// `POST /storage`: a new `dir` or `btrfs` storage, added to the tree's storage.cfg through its one
/// serializer (compare-and-set against the version read).
fn storage_create(ctx: &C<'_>) -> Result<StorageCreated, ApiError> {
    let id = ctx.params.need_str(&param::NEW_STORAGE)?;
    let kind = ctx.params.need_str(&param::TYPE)?;
    let path = ctx.params.need_str(&param::PATH)?;
    let node = ctx.state;
    let current = node.tree.load("storage.cfg");
    let mut cfg = ferrox_types::StorageConfig::parse(&current.text)
        .map_err(|e| ApiError::internal(format!("storage.cfg: {e}")))?;
    if cfg.storages.contains_key(id) {
        return Err(param::NEW_STORAGE.error(format!("storage ID '{id}' already defined")));
    }
    let list = |param: &Param| {
        ctx.params.str(param).map(|v| {
            ferrox_types::format::split_list(v)
                .map(String::from)
                .collect::<std::collections::BTreeSet<_>>()
        })
    };
    let mut other = BTreeMap::new();
    if let Some(format) = ctx.params.str(&param::FORMAT) {
        other.insert("format".to_string(), format.to_string());
    }
    if let Some(nocow) = ctx.params.bool(&param::NOCOW) {
        if kind != "btrfs" {
            return Err(param::NOCOW.error("only btrfs storages have 'nocow'"));
        }
        other.insert(
            "nocow".to_string(),
            if nocow { "1" } else { "0" }.to_string(),
        );
    }
    let storage = ferrox_types::Storage {
        id: id.to_string(),
        storage_type: kind.to_string(),
        path: Some(path.to_string()),
        content: list(&param::CONTENT).unwrap_or_else(|| {
            ["images", "rootdir"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        shared: ctx.params.bool(&param::SHARED).unwrap_or(false),
        disable: ctx.params.bool(&param::DISABLE).unwrap_or(false),
        nodes: list(&param::NODES),
        other,
    };
    let enabled_here = storage.is_enabled_on(&node.opts.node_name);
    cfg.storages.insert(id.to_string(), storage.clone());
    cfg.order.push(id.to_string());
    let text = cfg.to_text();
    // The serializer's output must read back as the same storages (the one parser).
    ferrox_types::StorageConfig::parse(&text).map_err(|e| {
        let message = e.to_string();
        match ["format", "nocow"]
            .into_iter()
            .find(|k| message.contains(&format!("'{k}'")))
        {
            Some("format") => param::FORMAT.error(message),
            Some(_) => param::NOCOW.error(message),
            None => param::NEW_STORAGE.error(message),
        }
    })?;
    if kind == "btrfs" {
        // Before any folder is made: the path, or the folder it would be made in.
        let existing = std::path::Path::new(path)
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(std::path::Path::new("/"));
        ferrox_storage::btrfs::check_btrfs(existing).map_err(|e| param::PATH.error(e))?;
    }
    std::fs::create_dir_all(path)
        .map_err(|e| param::PATH.error(format!("cannot create {path}: {e}")))?;
    // As Proxmox VE activates a new storage: a problem shows now, not at the first disk
    // (a btrfs storage on another file system).
    if enabled_here {
        ferrox_storage::plugin(&storage, &node.opts.node_name)
            .map_err(|e| param::PATH.error(e.to_string()))?;
    }
    node.tree.save(&current, &text)?;
    Ok(StorageCreated {
        storage: id.to_string(),
        kind: kind.to_string(),
    })
}

pub(super) fn storage_visible(ctx: &C<'_>, id: &str) -> bool {
    ctx.has(
        &format!("/storage/{id}"),
        &["Datastore.Audit", "Datastore.AllocateSpace"],
        true,
    )
}

fn node_storages(ctx: &C<'_>) -> Result<Vec<StorageStatus>, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.storage_config()?;
    let content = ctx.params.str(&param::CONTENT_FILTER);
    let list = cfg
        .storages
        .values()
        .filter(|s| ferrox_storage::is_usable_on(s, &ctx.state.opts.node_name))
        .filter(|s| {
            ctx.params
                .str(&param::STORAGE_FILTER)
                .is_none_or(|id| s.id == id)
        })
        .filter(|s| content.is_none_or(|c| c.split(',').all(|c| s.content.contains(c))))
        .filter(|s| storage_visible(ctx, &s.id))
        .map(|s| storage_status(ctx.state, s))
        .collect();
    Ok(list)
}

fn one_storage<'a>(
    ctx: &C<'_>,
    cfg: &'a ferrox_types::StorageConfig,
) -> Result<&'a ferrox_types::Storage, ApiError> {
    let id = ctx.params.need_str(&param::STORAGE)?;
    cfg.storages
        .get(id)
        .filter(|s| ferrox_storage::is_usable_on(s, &ctx.state.opts.node_name))
        .ok_or_else(|| ApiError::internal(format!("storage '{id}' does not exist")))
}

fn read_storage_status(ctx: &C<'_>) -> Result<StorageStatus, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.storage_config()?;
    Ok(storage_status(ctx.state, one_storage(ctx, &cfg)?))
}

fn storage_content(ctx: &C<'_>) -> Result<Vec<Volume>, ApiError> {
    local_node(ctx)?;
    let cfg = ctx.state.storage_config()?;
    let storage = one_storage(ctx, &cfg)?;
    let wanted = ctx.params.str(&param::CONTENT_TYPE);
    let vmid = ctx.params.int(&param::VMID).map(|v| v as u32);
    let plugin = ferrox_storage::open(&cfg, &ctx.state.opts.node_name, &storage.id)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let caller = ctx.caller()?;
    let users = ctx.state.auth.user_config();
    let may_audit = |vmid: u32| {
        rbac::check(
            &users,
            caller,
            &format!("/vms/{vmid}"),
            &["VM.Audit"],
            false,
        )
    };
    let mut list = Vec::new();
    // Container templates are not managed yet: listed as empty.
    if wanted.is_none_or(|c| c == "iso") && storage_visible(ctx, &storage.id) {
        let isos = plugin
            .list_isos()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        list.extend(isos.into_iter().map(|(volid, size, ctime)| Volume {
            volid,
            vmid: None,
            format: "iso".into(),
            size,
            used: size,
            content: "iso".into(),
            ctime,
            notes: None,
            protected: None,
        }));
    }
    if wanted.is_none_or(|c| c == "images") {
        let volumes = plugin
            .list(vmid)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        list.extend(
            volumes
                .into_iter()
                .filter(|v| may_audit(v.vmid) || storage_visible(ctx, &storage.id))
                .map(|v| Volume {
                    volid: v.volid,
                    vmid: Some(v.vmid),
                    format: v.format,
                    size: v.size,
                    used: v.used,
                    content: "images".into(),
                    ctime: 0,
                    notes: None,
                    protected: None,
                }),
        );
    }
    if wanted.is_none_or(|c| c == "backup") {
        let backups = plugin
            .list_backups(vmid)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        list.extend(
            backups
                .into_iter()
                .filter(|b| may_audit(b.vmid) || storage_visible(ctx, &storage.id))
                .map(|b| Volume {
                    notes: VolumeId::parse(&b.volid)
                        .and_then(|v| plugin.attributes(&v).ok())
                        .and_then(|a| a.notes),
                    volid: b.volid,
                    vmid: Some(b.vmid),
                    format: "tar.zst".into(),
                    size: b.size,
                    used: b.size,
                    content: "backup".into(),
                    ctime: b.ctime,
                    protected: Some(u8::from(b.protected)),
                }),
        );
    }
    Ok(list)
}

fn storage_config_list(ctx: &C<'_>) -> Result<Vec<StorageDefinition>, ApiError> {
    let cfg = ctx.state.storage_config()?;
    let list = cfg
        .storages
        .values()
        .filter(|s| {
            ctx.params
                .str(&param::TYPE_FILTER)
                .is_none_or(|t| s.storage_type == t)
        })
        .filter(|s| storage_visible(ctx, &s.id))
        .map(|s| StorageDefinition {
            storage: s.id.clone(),
            kind: s.storage_type.clone(),
            content: content_list(s),
            shared: u8::from(s.shared),
            digest: cfg.digest.clone(),
            path: s.path.clone(),
        })
        .collect();
    Ok(list)
}

const STORAGE_AUDIT: Permission = Permission::Privs {
    path: "/storage/{storage}",
    privs: &["Datastore.Audit", "Datastore.AllocateSpace"],
    any: true,
};

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const CONTENT_FILTER: Param = Param::optional(
        "content",
        STRING,
        "Only storages allowing these content types.",
    );
    pub const CONTENT_TYPE: Param = Param::optional("content", STRING, "Only this content type.");
    pub const URL: Param = Param::required("url", STRING, "The URL to download the file from.");
    pub const VOLUME: Param = Param::required("volume", STRING, "Volume identifier.");
    pub const NOTES: Param =
        Param::optional("notes", STRING, "The new notes (empty removes them).");
    pub const PROTECTED: Param = Param::optional(
        "protected",
        BOOL,
        "Protection status (backups only): a protected backup is not removed or pruned.",
    );
    pub const FILENAME: Param =
        Param::required("filename", STRING, "The name of the file to create.");
    pub const DOWNLOAD_CONTENT: Param = Param::required(
        "content",
        ParamType::Enum(&["iso", "vztmpl", "import"]),
        "Content type (iso only yet).",
    );
    pub const CHECKSUM: Param =
        Param::optional("checksum", STRING, "The expected checksum of the file.");
    pub const CHECKSUM_ALGORITHM: Param = Param::optional(
        "checksum-algorithm",
        ParamType::Enum(&["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]),
        "The algorithm of the checksum (SHA-2 ones are checked).",
    );
    pub const VERIFY: Param = Param::optional(
        "verify-certificates",
        BOOL,
        "Verify the server's TLS certificate (always).",
    );
    pub const COMPRESSION: Param =
        Param::optional("compression", STRING, "Not supported (refused when given).");
    pub const CONTENT: Param = Param::optional("content", CONTENT_LIST, "Allowed content types.");
    pub const STORAGE_FILTER: Param = Param::optional("storage", STRING, "Only this storage.");
    pub const STORAGE: Param = Param::required("storage", STRING, "Storage id.");
    pub const NEW_STORAGE: Param =
        Param::required("storage", STORAGE_ID, "The storage identifier.");
    pub const ENABLED: Param = Param::optional("enabled", BOOL, "Ignored.");
    pub const TARGET: Param = Param::optional("target", STRING, "Ignored.");
    pub const VMID: Param = Param::optional("vmid", ParamType::VmId, "Only volumes of this VM.");
    pub const TYPE_FILTER: Param = Param::optional("type", STRING, "Only this storage type.");
    pub const TYPE: Param = Param::required(
        "type",
        ParamType::Enum(ferrox_storage::TYPES),
        "Storage type.",
    );
    pub const FORMAT: Param = Param::optional(
        "format",
        ParamType::Enum(ferrox_types::storage::IMAGE_FORMATS),
        "Default image format.",
    );
    pub const NOCOW: Param = Param::optional(
        "nocow",
        BOOL,
        "btrfs: set the NOCOW flag on image files (no data checksums).",
    );
    pub const PATH: Param = Param::required("path", ABSOLUTE_PATH, "File system path.");
    pub const NODES: Param =
        Param::optional("nodes", NODE_LIST, "Nodes the storage is available on.");
    pub const SHARED: Param = Param::optional("shared", BOOL, "The same content on every node.");
    pub const DISABLE: Param = Param::optional("disable", BOOL, "Disable the storage.");
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let auth = Permission::Authenticated;
    vec![
        Endpoint::new(
            Get,
            "/nodes/{node}/storage",
            "Storages usable on this node.",
            auth.clone(),
            node_storages,
        )
        .params(vec![
            NODE,
            param::CONTENT_FILTER,
            param::STORAGE_FILTER,
            param::ENABLED,
            param::TARGET,
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/storage/{storage}/status",
            "Storage status.",
            STORAGE_AUDIT,
            read_storage_status,
        )
        .params(vec![NODE, param::STORAGE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/storage/{storage}/content",
            "Volumes on a storage.",
            auth.clone(),
            storage_content,
        )
        .params(vec![NODE, param::STORAGE, param::CONTENT_TYPE, param::VMID]),
        Endpoint::new(
            Get,
            "/nodes/{node}/storage/{storage}/content/{volume}",
            "Volume attributes.",
            Permission::Handler("read access to the volume (check_volume_access)"),
            volume_details,
        )
        .params(vec![NODE, param::STORAGE, param::VOLUME]),
        Endpoint::new(
            Put,
            "/nodes/{node}/storage/{storage}/content/{volume}",
            "Update volume attributes (notes, protection of backups).",
            Permission::Handler("read access to the volume (check_volume_access)"),
            volume_update,
        )
        .params(vec![
            NODE,
            param::STORAGE,
            param::VOLUME,
            param::NOTES,
            param::PROTECTED,
        ]),
        Endpoint::new(
            Delete,
            "/nodes/{node}/storage/{storage}/content/{volume}",
            "Delete a volume.",
            Permission::Handler(
                "Datastore.Allocate on the storage, or Datastore.AllocateSpace and VM.Backup on the guest for its backups",
            ),
            volume_delete,
        )
        .params(vec![NODE, param::STORAGE, param::VOLUME]),
        Endpoint::new(
            Post,
            "/nodes/{node}/storage/{storage}/download-url",
            "Download an ISO image from a URL into the storage.",
            Permission::Handler(
                "Datastore.AllocateTemplate on /storage/{storage}, Sys.Audit and Sys.Modify on /nodes/{node}",
            ),
            download_url,
        )
        .params(vec![
            NODE,
            param::STORAGE,
            param::URL,
            param::FILENAME,
            param::DOWNLOAD_CONTENT,
            param::CHECKSUM,
            param::CHECKSUM_ALGORITHM,
            param::VERIFY,
            param::COMPRESSION,
        ]),
        Endpoint::new(
            Post,
            "/nodes/{node}/storage/{storage}/upload",
            "Upload an ISO image (multipart/form-data, the file in the field 'filename').",
            Permission::Privs {
                path: "/storage/{storage}",
                privs: &["Datastore.AllocateTemplate"],
                any: false,
            },
            upload,
        )
        .upload()
        .params(vec![
            NODE,
            param::STORAGE,
            param::DOWNLOAD_CONTENT,
            param::FILENAME,
            param::CHECKSUM,
            param::CHECKSUM_ALGORITHM,
        ]),
        Endpoint::new(
            Get,
            "/storage",
            "Storage configuration.",
            auth.clone(),
            storage_config_list,
        )
        .params(vec![param::TYPE_FILTER]),
        Endpoint::new(
            Post,
            "/storage",
            "Create a storage (type dir or btrfs).",
            Permission::Privs {
                path: "/storage",
                privs: &["Datastore.Allocate"],
                any: false,
            },
            storage_create,
        )
        .params(vec![
            param::NEW_STORAGE,
            param::TYPE,
            param::PATH,
            param::CONTENT,
            param::NODES,
            param::SHARED,
            param::DISABLE,
            param::FORMAT,
            param::NOCOW,
        ]),
    ]
}
