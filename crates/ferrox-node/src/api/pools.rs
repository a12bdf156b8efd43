//! `/pools`: resource pools as in Proxmox VE 9 — a name, a comment, guests and storages.
//! Roles given on `/pool/<id>` reach the members (`ferrox_api::rbac`). Membership lives in
//! user.cfg and changes through `Auth::modify` like every account change. Adding a guest
//! needs `VM.Allocate` on it, a storage `Datastore.Allocate` on it.

use crate::Node;
use ferrox_api::schema::{BOOL, POOL_ID, STRING, TEXT};
use ferrox_api::{ApiError, Ctx, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::cluster::Resource;
use ferrox_api_types::pools::Pool;
use ferrox_types::format::split_list;
use ferrox_types::user_config::UserConfig;
use std::collections::BTreeSet;

type C<'a> = Ctx<'a, Node>;

/// A pool's members as resource rows: where a guest is and its name (from the store).
fn members(node: &Node, cfg: &UserConfig, pool: &str, kind: Option<&str>) -> Vec<Resource> {
    let Some((_, vms, storages)) = cfg.pools.get(pool) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if kind.is_none_or(|k| k == "qemu") {
        for vmid in vms {
            let Ok(id) = vmid.parse::<u32>() else {
                continue;
            };
            let owner = crate::cluster::vmid_owner(node, id);
            let name = owner.as_ref().and_then(|n| {
                node.tree
                    .get(&crate::guests::config_path(n, id))
                    .and_then(|e| ferrox_types::GuestConfig::parse(&e.data).ok())
                    .and_then(|c| c.name().map(String::from))
            });
            out.push(Resource {
                id: format!("qemu/{id}"),
                kind: "qemu".into(),
                vmid: Some(id),
                node: owner,
                name,
                ..Resource::default()
            });
        }
    }
    if kind.is_none_or(|k| k == "storage") {
        for sid in storages {
            out.push(Resource {
                id: format!("storage/{}/{sid}", node.opts.node_name),
                kind: "storage".into(),
                storage: Some(sid.clone()),
                node: Some(node.opts.node_name.clone()),
                ..Resource::default()
            });
        }
    }
    out
}

fn pool_row(
    node: &Node,
    cfg: &UserConfig,
    pool: &str,
    with_members: bool,
    kind: Option<&str>,
) -> Pool {
    let comment = cfg.pools.get(pool).map(|p| p.0.clone()).unwrap_or_default();
    Pool {
        poolid: Some(pool.to_string()),
        comment: (!comment.is_empty()).then_some(comment),
        members: with_members.then(|| members(node, cfg, pool, kind)),
    }
}

fn list(ctx: &C<'_>) -> Result<Vec<Pool>, ApiError> {
    let cfg = ctx.state.auth.user_config();
    let only = ctx.params.str(&param::POOLID_FILTER);
    let kind = ctx.params.str(&param::TYPE);
    let rows = cfg
        .pools
        .keys()
        .filter(|p| only.is_none_or(|o| o == p.as_str()))
        .filter(|p| ctx.has(&format!("/pool/{p}"), &["Pool.Audit"], false))
        .map(|p| pool_row(ctx.state, &cfg, p, only.is_some(), kind))
        .collect();
    Ok(rows)
}

fn read(ctx: &C<'_>) -> Result<Pool, ApiError> {
    let pool = ctx.params.need_str(&param::POOLID)?;
    let cfg = ctx.state.auth.user_config();
    if !cfg.pools.contains_key(pool) {
        return Err(ApiError::internal(format!("pool '{pool}' does not exist")));
    }
    let row = pool_row(ctx.state, &cfg, pool, true, ctx.params.str(&param::TYPE));
    Ok(Pool {
        poolid: None,
        ..row
    })
}

fn create(ctx: &C<'_>) -> Result<(), ApiError> {
    let pool = ctx.params.need_str(&param::POOLID)?.to_string();
    let comment = ctx.params.str(&param::COMMENT).unwrap_or("").to_string();
    ctx.state.auth.modify(|docs| {
        if docs.users.pools.contains_key(&pool) {
            return Err(param::POOLID.error(format!("pool '{pool}' already exists")));
        }
        docs.users.pools.insert(
            pool.clone(),
            (comment.clone(), BTreeSet::new(), BTreeSet::new()),
        );
        Ok(())
    })?;
    Ok(())
}

fn update(ctx: &C<'_>) -> Result<(), ApiError> {
    let pool = ctx.params.need_str(&param::POOLID)?.to_string();
    let node = ctx.state;
    let list = |param: &Param| -> Vec<String> {
        ctx.params
            .str(param)
            .map(|v| split_list(v).map(String::from).collect())
            .unwrap_or_default()
    };
    let vms = list(&param::VMS);
    let storages = list(&param::STORAGE);
    let delete = ctx.params.bool(&param::DELETE).unwrap_or(false);
    let allow_move = ctx.params.bool(&param::ALLOW_MOVE).unwrap_or(false);
    for v in &vms {
        let vmid: u32 = v
            .parse()
            .ok()
            .filter(|v| *v >= 100)
            .ok_or_else(|| param::VMS.error(format!("'{v}' is not a VM id")))?;
        ctx.require(&format!("/vms/{vmid}"), &["VM.Allocate"], false)?;
        if !delete && crate::cluster::vmid_owner(node, vmid).is_none() {
            return Err(param::VMS.error(format!("VM {vmid} does not exist")));
        }
    }
    let known_storages = node.storage_config()?;
    for s in &storages {
        ferrox_types::format::storage_id(s).map_err(|e| param::STORAGE.error(e))?;
        ctx.require(&format!("/storage/{s}"), &["Datastore.Allocate"], false)?;
        if !delete && !known_storages.storages.contains_key(s) {
            return Err(param::STORAGE.error(format!("storage '{s}' does not exist")));
        }
    }
    let comment = ctx.params.str(&param::COMMENT).map(String::from);
    node.auth.modify(|docs| {
        if !docs.users.pools.contains_key(&pool) {
            return Err(ApiError::internal(format!("pool '{pool}' does not exist")));
        }
        for v in &vms {
            if delete {
                continue;
            }
            let elsewhere = docs
                .users
                .pools
                .iter()
                .find(|(p, (_, members, _))| *p != &pool && members.contains(v))
                .map(|(p, _)| p.clone());
            if let Some(other) = elsewhere {
                if !allow_move {
                    return Err(param::VMS.error(format!(
                        "VM {v} is already a member of pool '{other}' (allow-move moves it)"
                    )));
                }
                if let Some(p) = docs.users.pools.get_mut(&other) {
                    p.1.remove(v);
                }
            }
        }
        let Some((current_comment, members, pool_storages)) = docs.users.pools.get_mut(&pool)
        else {
            return Ok(());
        };
        if let Some(c) = &comment {
            *current_comment = c.clone();
        }
        for v in &vms {
            if delete {
                members.remove(v);
            } else {
                members.insert(v.clone());
            }
        }
        for s in &storages {
            if delete {
                pool_storages.remove(s);
            } else {
                pool_storages.insert(s.clone());
            }
        }
        Ok(())
    })?;
    Ok(())
}

fn remove(ctx: &C<'_>) -> Result<(), ApiError> {
    let pool = ctx.params.need_str(&param::POOLID)?.to_string();
    ctx.state.auth.modify(|docs| {
        let Some((_, vms, storages)) = docs.users.pools.get(&pool) else {
            return Err(ApiError::internal(format!("pool '{pool}' does not exist")));
        };
        if !vms.is_empty() || !storages.is_empty() {
            return Err(param::POOLID.error(format!("pool '{pool}' is not empty")));
        }
        docs.users.pools.remove(&pool);
        let path = format!("/pool/{pool}");
        docs.users.acls.retain(|a| a.path != path);
        Ok(())
    })?;
    Ok(())
}

fn update_params() -> Vec<Param> {
    vec![
        param::POOLID,
        param::COMMENT,
        param::VMS,
        param::STORAGE,
        param::DELETE,
        param::ALLOW_MOVE,
    ]
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const POOLID: Param = Param::required("poolid", POOL_ID, "Pool id.");
    pub const POOLID_FILTER: Param = Param::optional("poolid", POOL_ID, "Only this pool.");
    pub const COMMENT: Param = Param::optional("comment", TEXT, "Free text.");
    pub const VMS: Param = Param::optional(
        "vms",
        STRING,
        "Guests to add (or remove with delete=1), comma list.",
    );
    pub const STORAGE: Param = Param::optional(
        "storage",
        STRING,
        "Storages to add (or remove with delete=1), comma list.",
    );
    pub const DELETE: Param = Param::optional(
        "delete",
        BOOL,
        "Remove the listed members instead of adding them.",
    );
    pub const ALLOW_MOVE: Param =
        Param::optional("allow-move", BOOL, "Move guests that are in another pool.");
    pub const TYPE: Param = Param::optional(
        "type",
        ParamType::Enum(&["qemu", "lxc", "storage"]),
        "Only members of this type.",
    );
}

pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let audit = Permission::Privs {
        path: "/pool/{poolid}",
        privs: &["Pool.Audit"],
        any: false,
    };
    let allocate = Permission::Privs {
        path: "/pool/{poolid}",
        privs: &["Pool.Allocate"],
        any: false,
    };
    vec![
        Endpoint::new(
            Get,
            "/pools",
            "Pools you may see (with members when 'poolid' is given).",
            Permission::Handler("pools with Pool.Audit on /pool/<pool>"),
            list,
        )
        .params(vec![param::POOLID_FILTER, param::TYPE]),
        Endpoint::new(Post, "/pools", "Create a pool.", allocate.clone(), create)
            .params(vec![param::POOLID, param::COMMENT]),
        Endpoint::new(
            Put,
            "/pools",
            "Change a pool: comment, members.",
            allocate.clone(),
            update,
        )
        .params(update_params()),
        Endpoint::new(
            Delete,
            "/pools",
            "Delete an empty pool.",
            allocate.clone(),
            remove,
        )
        .params(vec![param::POOLID]),
        Endpoint::new(
            Get,
            "/pools/{poolid}",
            "A pool and its members.",
            audit,
            read,
        )
        .params(vec![param::POOLID, param::TYPE]),
        Endpoint::new(
            Put,
            "/pools/{poolid}",
            "Change a pool (older path).",
            allocate.clone(),
            update,
        )
        .params(update_params()),
        Endpoint::new(
            Delete,
            "/pools/{poolid}",
            "Delete an empty pool (older path).",
            allocate,
            remove,
        )
        .params(vec![param::POOLID]),
    ]
}
