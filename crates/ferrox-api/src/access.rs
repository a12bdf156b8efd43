//! Access management as Proxmox VE's `/access` API: users, groups, custom roles, the ACL
//! and password changes. Every change is one read-modify-write of the account files
//! (`Auth::modify`), and every permission is Proxmox VE's: `User.Modify` on the user's
//! groups, `Realm.AllocateUser` on the realm, `Group.Allocate`, `Sys.Modify` on `/access`
//! for roles, `Permissions.Modify` (or the allocate privilege of the path) for the ACL.

use crate::auth::{AccountDocs, Caller};
use crate::error::ApiError;
use crate::rbac;
use crate::router::{ApiState, Ctx, Endpoint, Method, Permission};
use crate::schema::{
    int, Param, ParamType, BOOL, COLON_FIELD, EMAIL, GROUP_ID, ROLE_ID, STRING, TEXT, USERID,
};
use ferrox_api_types::access as types;
use ferrox_api_types::PrivilegeSet;
use ferrox_types::format::split_list;
use ferrox_types::user_config::{Acl, User, UserConfig};
use std::collections::{BTreeMap, BTreeSet};

fn realm_of(userid: &str) -> &str {
    userid.rsplit_once('@').map(|(_, r)| r).unwrap_or("")
}

fn caller<'a, S: ApiState>(ctx: &'a Ctx<'_, S>) -> Result<&'a Caller, ApiError> {
    ctx.caller()
}

pub(crate) fn is_root<S: ApiState>(ctx: &Ctx<'_, S>) -> bool {
    ctx.caller
        .is_some_and(|c| c.userid == "root@pam" && c.token.is_none())
}

fn groups_of(cfg: &UserConfig, userid: &str) -> Vec<String> {
    cfg.groups
        .iter()
        .filter(|(_, (members, _))| members.contains(userid))
        .map(|(g, _)| g.clone())
        .collect()
}

/// Proxmox VE's `userid-group` check: `privs` on `/access/groups`, or on every group named
/// in `new_groups` and (for an existing user) on one of the user's groups.
pub(crate) fn check_userid_group<S: ApiState>(
    ctx: &Ctx<'_, S>,
    userid: &str,
    privs: &[&str],
    new_groups: Option<&[String]>,
    existing: bool,
) -> Result<(), ApiError> {
    if ctx.has("/access/groups", privs, true) {
        return Ok(());
    }
    let cfg = ctx.state.auth().user_config();
    let allowed = |g: &str| ctx.has(&format!("/access/groups/{g}"), privs, true);
    if let Some(groups) = new_groups {
        if groups.is_empty() {
            return Err(ApiError::forbidden("/access/groups", privs));
        }
        if let Some(g) = groups.iter().find(|g| !allowed(g)) {
            return Err(ApiError::forbidden(&format!("/access/groups/{g}"), privs));
        }
    }
    if existing && !groups_of(&cfg, userid).iter().any(|g| allowed(g)) {
        return Err(ApiError::forbidden("/access/groups", privs));
    }
    Ok(())
}

fn check_realm_allocate<S: ApiState>(ctx: &Ctx<'_, S>, userid: &str) -> Result<(), ApiError> {
    ctx.require(
        &format!("/access/realm/{}", realm_of(userid)),
        &["Realm.AllocateUser"],
        false,
    )
}

fn user_exists(docs: &AccountDocs, userid: &str) -> Result<(), ApiError> {
    if docs.users.users.contains_key(userid) {
        Ok(())
    } else {
        Err(ApiError::internal(format!("no such user ('{userid}')")))
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn user_row(cfg: &UserConfig, u: &User, full: bool) -> types::User {
    let groups = groups_of(cfg, &u.userid);
    let prefix = format!("{}!", u.userid);
    let tokens = full.then(|| {
        cfg.tokens
            .values()
            .filter(|t| t.full_id.starts_with(&prefix))
            .map(|t| types::Token {
                tokenid: Some(t.full_id[prefix.len()..].to_string()),
                expire: t.expire,
                privsep: u8::from(t.privsep),
                comment: Some(t.comment.clone()),
            })
            .collect()
    });
    let groups = if full {
        Some(types::UserGroups::List(groups))
    } else {
        (!groups.is_empty()).then(|| types::UserGroups::Joined(groups.join(",")))
    };
    types::User {
        userid: u.userid.clone(),
        enable: u8::from(u.enable),
        expire: u.expire,
        realm_type: Some(realm_of(&u.userid).to_string()),
        firstname: non_empty(&u.firstname),
        lastname: non_empty(&u.lastname),
        email: non_empty(&u.email),
        comment: non_empty(&u.comment),
        keys: non_empty(&u.keys),
        groups,
        tokens,
    }
}

fn list_users<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<types::User>, ApiError> {
    let me = caller(ctx)?.userid.clone();
    let cfg = ctx.state.auth().user_config();
    let all = ctx.has("/access/groups", &["User.Modify", "Sys.Audit"], true);
    let enabled = ctx.params.bool(&param::ENABLED);
    let full = ctx.params.bool(&param::FULL).unwrap_or(false);
    let rows = cfg
        .users
        .values()
        .filter(|u| enabled.is_none_or(|e| u.enable == e))
        .filter(|u| {
            all || u.userid == me
                || groups_of(&cfg, &u.userid).iter().any(|g| {
                    ctx.has(
                        &format!("/access/groups/{g}"),
                        &["User.Modify", "Sys.Audit"],
                        true,
                    )
                })
        })
        .map(|u| user_row(&cfg, u, full))
        .collect();
    Ok(rows)
}

fn read_user<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<types::User, ApiError> {
    let userid = ctx.params.need_str(&param::USERID)?;
    let cfg = ctx.state.auth().user_config();
    let user = cfg
        .users
        .get(userid)
        .ok_or_else(|| ApiError::internal(format!("no such user ('{userid}')")))?;
    if caller(ctx)?.userid != userid {
        check_userid_group(ctx, userid, &["User.Modify", "Sys.Audit"], None, true)?;
    }
    Ok(user_row(&cfg, user, true))
}

fn group_list_param<S: ApiState>(ctx: &Ctx<'_, S>) -> Option<Vec<String>> {
    ctx.params
        .str(&param::GROUPS)
        .map(|g| split_list(g).map(String::from).collect())
}

/// Sets the user's fields from the request (create and update share it).
fn apply_user_fields<S: ApiState>(ctx: &Ctx<'_, S>, user: &mut User) {
    let p = &ctx.params;
    if let Some(e) = p.bool(&param::ENABLE) {
        user.enable = e;
    }
    if let Some(e) = p.int(&param::EXPIRE) {
        user.expire = e.max(0) as u64;
    }
    for (param, field) in [
        (&param::FIRSTNAME, &mut user.firstname),
        (&param::LASTNAME, &mut user.lastname),
        (&param::EMAIL, &mut user.email),
        (&param::COMMENT, &mut user.comment),
        (&param::KEYS, &mut user.keys),
    ] {
        if let Some(v) = p.str(param) {
            *field = v.to_string();
        }
    }
}

fn set_groups(
    docs: &mut AccountDocs,
    userid: &str,
    groups: &[String],
    append: bool,
) -> Result<(), ApiError> {
    for g in groups {
        if !docs.users.groups.contains_key(g) {
            return Err(param::GROUPS.error(format!("no such group '{g}'")));
        }
    }
    if !append {
        for (members, _) in docs.users.groups.values_mut() {
            members.remove(userid);
        }
    }
    for g in groups {
        if let Some((members, _)) = docs.users.groups.get_mut(g) {
            members.insert(userid.to_string());
        }
    }
    Ok(())
}

fn create_user<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let userid = ctx.params.need_str(&param::USERID)?.to_string();
    check_realm_allocate(ctx, &userid)?;
    let groups = group_list_param(ctx);
    // As Proxmox VE: without User.Modify on all groups, the new user must go into groups
    // the caller administers.
    check_userid_group(
        ctx,
        &userid,
        &["User.Modify"],
        Some(groups.as_deref().unwrap_or(&[])),
        false,
    )?;
    if !ctx
        .state
        .auth()
        .domains()
        .realms
        .contains_key(realm_of(&userid))
    {
        return Err(param::USERID.error(format!("domain '{}' does not exist", realm_of(&userid))));
    }
    let password = ctx.params.str(&param::INITIAL_PASSWORD);
    let ldap_realm = matches!(
        ctx.state
            .auth()
            .domains()
            .realm_of(&userid)
            .map(|r| &r.kind),
        Some(ferrox_types::domains::RealmKind::Ldap(_))
    );
    if password.is_some() && ldap_realm {
        return Err(
            param::INITIAL_PASSWORD.error("the password of an LDAP user is set in the directory")
        );
    }
    let mut user = User {
        userid: userid.clone(),
        enable: true,
        ..User::default()
    };
    apply_user_fields(ctx, &mut user);
    let auth = ctx.state.auth();
    let hash = password.map(crate::auth::hash_password).transpose()?;
    auth.modify(|docs| {
        if docs.users.users.contains_key(&userid) {
            return Err(param::USERID.error(format!("user '{userid}' already exists")));
        }
        docs.users.users.insert(userid.clone(), user.clone());
        if let Some(groups) = &groups {
            set_groups(docs, &userid, groups, false)?;
        }
        if let Some(h) = &hash {
            docs.shadow.insert(userid.clone(), h.clone());
        }
        Ok(())
    })?;
    Ok(())
}

fn update_user<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let userid = ctx.params.need_str(&param::USERID)?.to_string();
    let groups = group_list_param(ctx);
    check_userid_group(
        ctx,
        &userid,
        &["User.Modify"],
        Some(groups.as_deref().unwrap_or(&[])),
        true,
    )?;
    let append = ctx.params.bool(&param::APPEND).unwrap_or(false);
    if append && groups.is_none() {
        return Err(param::APPEND.error("parameter 'append' requires 'groups'"));
    }
    ctx.state.auth().modify(|docs| {
        user_exists(docs, &userid)?;
        if let Some(user) = docs.users.users.get_mut(&userid) {
            apply_user_fields(ctx, user);
        }
        if let Some(groups) = &groups {
            set_groups(docs, &userid, groups, append)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Removes every trace of `subject` (a user or a token) from the ACL.
fn drop_acl_subject(cfg: &mut UserConfig, subject: &dyn Fn(&str) -> bool) {
    for acl in &mut cfg.acls {
        acl.ugids.retain(|u| !subject(u));
    }
    cfg.acls.retain(|a| !a.ugids.is_empty());
}

fn delete_user<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let userid = ctx.params.need_str(&param::USERID)?.to_string();
    check_realm_allocate(ctx, &userid)?;
    check_userid_group(ctx, &userid, &["User.Modify"], None, true)?;
    if userid == "root@pam" {
        return Err(param::USERID.error("root@pam cannot be deleted"));
    }
    ctx.state.auth().modify(|docs| {
        user_exists(docs, &userid)?;
        docs.users.users.remove(&userid);
        let token_prefix = format!("{userid}!");
        docs.users
            .tokens
            .retain(|id, _| !id.starts_with(&token_prefix));
        docs.token_hashes
            .retain(|id, _| !id.starts_with(&token_prefix));
        docs.shadow.remove(&userid);
        for (members, _) in docs.users.groups.values_mut() {
            members.remove(&userid);
        }
        drop_acl_subject(&mut docs.users, &|u| {
            u == userid || u.starts_with(&token_prefix)
        });
        Ok(())
    })?;
    Ok(())
}

/// `PUT /access/password`: your own password (with your current one as confirmation), or
/// another user's with `Realm.AllocateUser` and `User.Modify`. Only root changes root's.
fn change_password<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let me = caller(ctx)?.clone();
    let userid = ctx.params.need_str(&param::USERID)?.to_string();
    let password = ctx.params.need_str(&param::PASSWORD)?;
    if password.len() < 8 {
        return Err(param::PASSWORD.error("value must be at least 8 characters long"));
    }
    let auth = ctx.state.auth();
    if !is_root(ctx) {
        let confirmation = ctx
            .params
            .str(&param::CONFIRMATION_PASSWORD)
            .ok_or_else(|| {
                param::CONFIRMATION_PASSWORD
                    .error("confirm your identity with your current password")
            })?;
        if auth
            .confirm_password(&me.userid, confirmation, ctx.peer)
            .is_err()
        {
            return Err(param::CONFIRMATION_PASSWORD.error("confirmation password is wrong"));
        }
        if me.userid != userid {
            if userid == "root@pam" {
                return Err(ApiError::new(
                    403,
                    "Permission check failed (only root@pam may change its password)",
                ));
            }
            check_realm_allocate(ctx, &userid)?;
            check_userid_group(ctx, &userid, &["User.Modify"], None, true)?;
        }
    }
    auth.set_password(&userid, password)?;
    Ok(())
}

fn list_groups<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<types::GroupEntry>, ApiError> {
    let cfg = ctx.state.auth().user_config();
    let rows = cfg
        .groups
        .iter()
        .filter(|(g, _)| {
            ctx.has(
                &format!("/access/groups/{g}"),
                &["Sys.Audit", "Group.Allocate"],
                true,
            )
        })
        .map(|(g, (members, comment))| types::GroupEntry {
            groupid: g.clone(),
            users: members.iter().cloned().collect::<Vec<_>>().join(","),
            comment: non_empty(comment),
        })
        .collect();
    Ok(rows)
}

fn read_group<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<types::Group, ApiError> {
    let g = ctx.params.need_str(&param::GROUPID)?;
    let cfg = ctx.state.auth().user_config();
    let (members, comment) = cfg
        .groups
        .get(g)
        .ok_or_else(|| ApiError::internal(format!("group '{g}' does not exist")))?;
    Ok(types::Group {
        members: members.iter().cloned().collect(),
        comment: non_empty(comment),
    })
}

fn create_group<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let g = ctx.params.need_str(&param::GROUPID)?.to_string();
    let comment = ctx.params.str(&param::COMMENT).unwrap_or("").to_string();
    ctx.state.auth().modify(|docs| {
        if docs.users.groups.contains_key(&g) {
            return Err(param::GROUPID.error(format!("group '{g}' already exists")));
        }
        docs.users
            .groups
            .insert(g.clone(), (BTreeSet::new(), comment.clone()));
        Ok(())
    })?;
    Ok(())
}

fn update_group<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let g = ctx.params.need_str(&param::GROUPID)?.to_string();
    let comment = ctx.params.str(&param::COMMENT).map(String::from);
    ctx.state.auth().modify(|docs| {
        let entry = docs
            .users
            .groups
            .get_mut(&g)
            .ok_or_else(|| ApiError::internal(format!("group '{g}' does not exist")))?;
        if let Some(c) = &comment {
            entry.1 = c.clone();
        }
        Ok(())
    })?;
    Ok(())
}

fn delete_group<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let g = ctx.params.need_str(&param::GROUPID)?.to_string();
    ctx.state.auth().modify(|docs| {
        if docs.users.groups.remove(&g).is_none() {
            return Err(ApiError::internal(format!("group '{g}' does not exist")));
        }
        let subject = format!("@{g}");
        drop_acl_subject(&mut docs.users, &|u| u == subject);
        Ok(())
    })?;
    Ok(())
}

fn role_privileges_param<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<BTreeSet<String>, ApiError> {
    let known = rbac::all_privileges();
    let mut out = BTreeSet::new();
    for p in split_list(ctx.params.str(&param::PRIVS).unwrap_or("")) {
        if !known.contains(p) {
            return Err(param::PRIVS.error(format!("invalid privilege '{p}'")));
        }
        out.insert(p.to_string());
    }
    Ok(out)
}

fn list_roles<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<types::RoleEntry>, ApiError> {
    let cfg = ctx.state.auth().user_config();
    let mut rows: Vec<types::RoleEntry> = rbac::BUILTIN_ROLES
        .iter()
        .filter_map(|r| {
            let privs = rbac::builtin_role(r)?;
            Some(types::RoleEntry {
                roleid: r.to_string(),
                privs: privs.into_iter().collect::<Vec<_>>().join(","),
                special: Some(1),
            })
        })
        .collect();
    rows.extend(cfg.roles.iter().map(|(r, privs)| types::RoleEntry {
        roleid: r.clone(),
        privs: privs.iter().cloned().collect::<Vec<_>>().join(","),
        special: None,
    }));
    Ok(rows)
}

fn read_role<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<PrivilegeSet, ApiError> {
    let r = ctx.params.need_str(&param::ROLEID)?;
    let cfg = ctx.state.auth().user_config();
    let privs: Vec<String> = match rbac::builtin_role(r) {
        Some(p) => p.into_iter().map(String::from).collect(),
        None => cfg
            .roles
            .get(r)
            .ok_or_else(|| ApiError::internal(format!("role '{r}' does not exist")))?
            .iter()
            .cloned()
            .collect(),
    };
    Ok(privs.into_iter().map(|p| (p, 1)).collect())
}

fn special_role(r: &str) -> Result<(), ApiError> {
    if rbac::builtin_role(r).is_some() {
        return Err(param::ROLEID.error(format!("cannot change built-in role '{r}'")));
    }
    Ok(())
}

fn create_role<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let r = ctx.params.need_str(&param::ROLEID)?.to_string();
    special_role(&r)?;
    let privs = role_privileges_param(ctx)?;
    ctx.state.auth().modify(|docs| {
        if docs.users.roles.contains_key(&r) {
            return Err(param::ROLEID.error(format!("role '{r}' already exists")));
        }
        docs.users.roles.insert(r.clone(), privs.clone());
        Ok(())
    })?;
    Ok(())
}

fn update_role<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let r = ctx.params.need_str(&param::ROLEID)?.to_string();
    special_role(&r)?;
    let privs = role_privileges_param(ctx)?;
    let append = ctx.params.bool(&param::APPEND_PRIVS).unwrap_or(false);
    ctx.state.auth().modify(|docs| {
        let current = docs
            .users
            .roles
            .get_mut(&r)
            .ok_or_else(|| ApiError::internal(format!("role '{r}' does not exist")))?;
        if !append {
            current.clear();
        }
        current.extend(privs.iter().cloned());
        Ok(())
    })?;
    Ok(())
}

fn delete_role<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let r = ctx.params.need_str(&param::ROLEID)?.to_string();
    special_role(&r)?;
    ctx.state.auth().modify(|docs| {
        if docs.users.roles.remove(&r).is_none() {
            return Err(ApiError::internal(format!("role '{r}' does not exist")));
        }
        for acl in &mut docs.users.acls {
            acl.roles.retain(|x| *x != r);
        }
        docs.users.acls.retain(|a| !a.roles.is_empty());
        Ok(())
    })?;
    Ok(())
}

/// Proxmox VE's `check_path`: the ACL paths that mean something.
pub fn valid_acl_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let id = |s: &str| ferrox_types::format::group_id(s).is_ok();
    match parts.as_slice() {
        [""] => path == "/",
        ["access"] | ["nodes"] | ["pool"] | ["sdn"] | ["storage"] | ["vms"] | ["mapping"] => true,
        ["access", "groups"] | ["access", "realm"] => true,
        ["access", "groups", g] | ["access", "realm", g] => id(g),
        ["nodes", n] => ferrox_types::format::node_name(n).is_ok(),
        ["storage", s] => ferrox_types::format::storage_id(s).is_ok(),
        ["vms", v] => v.parse::<u32>().is_ok_and(|v| v >= 100),
        ["pool", rest @ ..] => !rest.is_empty() && rest.len() <= 3 && rest.iter().all(|p| id(p)),
        ["sdn", "zones" | "vnets" | "controllers" | "ipams" | "dns" | "fabrics", rest @ ..] => {
            rest.len() <= 2 && rest.iter().all(|p| id(p))
        }
        ["mapping", kind, rest @ ..] => id(kind) && rest.len() <= 1 && rest.iter().all(|p| id(p)),
        _ => false,
    }
}

/// `perm-modify`: `Permissions.Modify` on the path, or the allocate privilege of what the
/// path names.
fn check_perm_modify<S: ApiState>(ctx: &Ctx<'_, S>, path: &str) -> Result<(), ApiError> {
    let mut privs = vec!["Permissions.Modify"];
    if path.starts_with("/storage/") {
        privs.push("Datastore.Allocate");
    } else if path.starts_with("/vms/") {
        privs.push("VM.Allocate");
    } else if path.starts_with("/pool/") {
        privs.push("Pool.Allocate");
    }
    ctx.require(path, &privs, true)
}

fn acl_subject_kind(ugid: &str) -> (&'static str, &str) {
    match ugid.strip_prefix('@') {
        Some(g) => ("group", g),
        None if ugid.contains('!') => ("token", ugid),
        None => ("user", ugid),
    }
}

fn list_acl<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<types::AclEntry>, ApiError> {
    let cfg = ctx.state.auth().user_config();
    let audit = ctx.has("/access", &["Sys.Audit"], false);
    let mut rows = Vec::new();
    for acl in &cfg.acls {
        if !audit && check_perm_modify(ctx, &acl.path).is_err() {
            continue;
        }
        for ugid in &acl.ugids {
            let (kind, id) = acl_subject_kind(ugid);
            for role in &acl.roles {
                rows.push(types::AclEntry {
                    path: acl.path.clone(),
                    kind: kind.to_string(),
                    ugid: id.to_string(),
                    roleid: role.clone(),
                    propagate: u8::from(acl.propagate),
                });
            }
        }
    }
    Ok(rows)
}

/// One ACL grant: path, subject, role → propagate.
type Grants = BTreeMap<(String, String, String), bool>;

fn explode(acls: &[Acl]) -> Grants {
    let mut out = Grants::new();
    for a in acls {
        for u in &a.ugids {
            for r in &a.roles {
                out.insert((a.path.clone(), u.clone(), r.clone()), a.propagate);
            }
        }
    }
    out
}

fn implode(grants: &Grants) -> Vec<Acl> {
    let mut lines: BTreeMap<(String, bool, String), Vec<String>> = BTreeMap::new();
    for ((path, ugid, role), propagate) in grants {
        lines
            .entry((path.clone(), *propagate, ugid.clone()))
            .or_default()
            .push(role.clone());
    }
    lines
        .into_iter()
        .map(|((path, propagate, ugid), roles)| Acl {
            propagate,
            path,
            ugids: vec![ugid],
            roles,
        })
        .collect()
}

fn update_acl<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let path = ctx.params.need_str(&param::PATH)?.to_string();
    let delete = ctx.params.bool(&param::DELETE).unwrap_or(false);
    if !delete && !valid_acl_path(&path) {
        return Err(param::PATH.error(format!("invalid ACL path '{path}'")));
    }
    check_perm_modify(ctx, &path)?;
    let propagate = ctx.params.bool(&param::PROPAGATE).unwrap_or(true);
    let list = |param: &Param| -> Vec<String> {
        ctx.params
            .str(param)
            .map(|v| split_list(v).map(String::from).collect())
            .unwrap_or_default()
    };
    let roles = list(&param::ROLES);
    let mut subjects: Vec<String> = list(&param::USERS);
    subjects.extend(
        list(&param::ACL_GROUPS)
            .into_iter()
            .map(|g| format!("@{g}")),
    );
    subjects.extend(list(&param::TOKENS));
    if subjects.is_empty() {
        return Err(param::USERS.error("no users, groups or tokens specified"));
    }
    for (param, check) in [
        (
            &param::USERS,
            ferrox_types::format::userid as fn(&str) -> Result<(), String>,
        ),
        (&param::ACL_GROUPS, ferrox_types::format::group_id),
        (&param::TOKENS, ferrox_types::format::token_id),
    ] {
        for v in list(param) {
            check(&v).map_err(|e| param.error(e))?;
        }
    }
    for r in &roles {
        ferrox_types::format::role_id(r).map_err(|e| param::ROLES.error(e))?;
    }
    let me = caller(ctx)?.clone();
    let auth = ctx.state.auth();
    auth.modify(|docs| {
        let mine = rbac::privileges(&docs.users, &me, &path);
        for role in &roles {
            let privs: BTreeSet<String> = match rbac::builtin_role(role) {
                Some(p) => p.into_iter().map(String::from).collect(),
                None => docs
                    .users
                    .roles
                    .get(role)
                    .cloned()
                    .ok_or_else(|| param::ROLES.error(format!("role '{role}' does not exist")))?,
            };
            // Without Permissions.Modify one may only hand out what one holds oneself.
            if !mine.contains_key("Permissions.Modify") {
                let verb = if delete { "remove" } else { "add" };
                if role == "NoAccess" {
                    return Err(param::ROLES.error(format!("Cannot {verb} role '{role}' - requires 'Permissions.Modify'"),
                    ));
                }
                for p in &privs {
                    match mine.get(p) {
                        None => {
                            return Err(param::ROLES.error(format!("Cannot {verb} role '{role}' - requires 'Permissions.Modify' or superset of privileges.")))
                        }
                        Some(prop) if propagate && !prop && !delete => {
                            return Err(param::ROLES.error(format!("Cannot {verb} role '{role}' with propagation - requires 'Permissions.Modify' or propagated superset of privileges.")))
                        }
                        _ => {}
                    }
                }
            }
        }
        for s in &subjects {
            let known = match acl_subject_kind(s) {
                ("group", g) => docs.users.groups.contains_key(g),
                ("token", t) => docs.users.tokens.contains_key(t),
                _ => docs.users.users.contains_key(s.as_str()),
            };
            if !known && !delete {
                let (kind, id) = acl_subject_kind(s);
                return Err(ApiError::param(
                    &format!("{kind}s"),
                    format!("{kind} '{id}' does not exist"),
                ));
            }
        }
        let mut grants = explode(&docs.users.acls);
        for s in &subjects {
            for r in &roles {
                let key = (path.clone(), s.clone(), r.clone());
                if delete {
                    grants.remove(&key);
                } else {
                    grants.insert(key, propagate);
                }
            }
        }
        docs.users.acls = implode(&grants);
        Ok(())
    })?;
    Ok(())
}

fn user_field_params() -> Vec<Param> {
    vec![
        param::ENABLE,
        param::EXPIRE,
        param::FIRSTNAME,
        param::LASTNAME,
        param::EMAIL,
        param::COMMENT,
        param::KEYS,
        param::GROUPS,
    ]
}

/// The endpoints above, declared with their parameters and permissions.
/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const PASSWORD: Param = Param::required(
        "password",
        ParamType::String { max_len: Some(64) },
        "The new password (8 to 64 characters).",
    );
    pub const INITIAL_PASSWORD: Param = Param::optional(
        "password",
        ParamType::String { max_len: Some(64) },
        "Initial password (pve and pam realms).",
    );
    pub const USERID: Param = Param::required("userid", super::USERID, "User id (name@realm).");
    pub const ENABLE: Param = Param::optional("enable", BOOL, "Enable the account (default 1).");
    pub const EXPIRE: Param = Param::optional(
        "expire",
        int(Some(0), None),
        "Account expiry (Unix seconds, 0 = never).",
    );
    pub const FIRSTNAME: Param = Param::optional("firstname", COLON_FIELD, "First name.");
    pub const LASTNAME: Param = Param::optional("lastname", COLON_FIELD, "Last name.");
    pub const EMAIL: Param = Param::optional("email", super::EMAIL, "E-mail address.");
    pub const COMMENT: Param = Param::optional("comment", TEXT, "Free text.");
    pub const KEYS: Param = Param::optional(
        "keys",
        COLON_FIELD,
        "Keys for two-factor authentication (legacy).",
    );
    pub const GROUPS: Param = Param::optional("groups", STRING, "Groups of the user (comma list).");
    pub const ACL_GROUPS: Param = Param::optional("groups", STRING, "Groups (comma list).");
    pub const GROUPID: Param = Param::required("groupid", GROUP_ID, "Group id.");
    pub const ROLEID: Param = Param::required("roleid", ROLE_ID, "Role id.");
    pub const ENABLED: Param =
        Param::optional("enabled", BOOL, "Only enabled (1) or disabled (0) users.");
    pub const FULL: Param = Param::optional("full", BOOL, "Include groups and tokens.");
    pub const APPEND: Param =
        Param::optional("append", BOOL, "Add the groups instead of replacing them.");
    pub const APPEND_PRIVS: Param = Param::optional(
        "append",
        BOOL,
        "Add the privileges instead of replacing them.",
    );
    pub const CONFIRMATION_PASSWORD: Param = Param::optional(
        "confirmation-password",
        ParamType::String { max_len: Some(64) },
        "Your current password (required unless you are root@pam).",
    );
    pub const PRIVS: Param = Param::optional("privs", STRING, "Privileges (comma list).");
    pub const PATH: Param = Param::required(
        "path",
        STRING,
        "ACL path (/, /vms/100, /storage/local, ...).",
    );
    pub const ROLES: Param = Param::required("roles", STRING, "Roles (comma list).");
    pub const USERS: Param = Param::optional("users", STRING, "Users (comma list).");
    pub const TOKENS: Param = Param::optional(
        "tokens",
        STRING,
        "API tokens (comma list of user@realm!name).",
    );
    pub const PROPAGATE: Param =
        Param::optional("propagate", BOOL, "Inherit to paths below (default 1).");
    pub const DELETE: Param =
        Param::optional("delete", BOOL, "Remove the entries instead of adding them.");
}

pub fn endpoints<S: ApiState>() -> Vec<Endpoint<S>> {
    use Method::*;
    let auth = Permission::Authenticated;
    let group_allocate = Permission::Privs {
        path: "/access/groups",
        privs: &["Group.Allocate"],
        any: false,
    };
    let role_modify = Permission::Privs {
        path: "/access",
        privs: &["Sys.Modify"],
        any: false,
    };
    vec![
        Endpoint::new(Get, "/access/users", "User index (users you may see).", Permission::Handler("users with User.Modify or Sys.Audit on /access/groups or on one of their groups, and yourself"), list_users)
            .params(vec![
                param::ENABLED,
                param::FULL,
            ]),
        Endpoint::new(Post, "/access/users", "Create a user.", Permission::Handler("Realm.AllocateUser on /access/realm/<realm> and User.Modify on /access/groups or on every group given"), create_user)
            .params([vec![param::USERID, param::INITIAL_PASSWORD], user_field_params()].concat()),
        Endpoint::new(Get, "/access/users/{userid}", "User configuration.", Permission::Handler("yourself, or User.Modify or Sys.Audit on /access/groups or on one of the user's groups"), read_user)
            .params(vec![param::USERID]),
        Endpoint::new(Put, "/access/users/{userid}", "Update a user.", Permission::Handler("User.Modify on /access/groups or on one of the user's groups (and on every group given)"), update_user)
            .params([vec![param::USERID, param::APPEND], user_field_params()].concat()),
        Endpoint::new(Delete, "/access/users/{userid}", "Delete a user with its tokens, ACL entries and password.", Permission::Handler("Realm.AllocateUser on /access/realm/<realm> and User.Modify on /access/groups or on one of the user's groups"), delete_user)
            .params(vec![param::USERID]),
        Endpoint::new(Put, "/access/password", "Change a user's password.", Permission::Handler("your own password, or Realm.AllocateUser and User.Modify for another user's (root@pam's only by root@pam)"), change_password)
            .no_token()
            .params(vec![
                param::USERID,
                param::PASSWORD,
                param::CONFIRMATION_PASSWORD,
            ]),
        Endpoint::new(Get, "/access/groups", "Group index (groups you may see).", Permission::Handler("groups with Sys.Audit or Group.Allocate on /access/groups/<group>"), list_groups),
        Endpoint::new(Post, "/access/groups", "Create a group.", group_allocate.clone(), create_group)
            .params(vec![param::GROUPID, param::COMMENT]),
        Endpoint::new(Get, "/access/groups/{groupid}", "Group configuration.", Permission::Privs { path: "/access/groups/{groupid}", privs: &["Sys.Audit", "Group.Allocate"], any: true }, read_group)
            .params(vec![param::GROUPID]),
        Endpoint::new(Put, "/access/groups/{groupid}", "Update a group.", Permission::Privs { path: "/access/groups/{groupid}", privs: &["Group.Allocate"], any: false }, update_group)
            .params(vec![param::GROUPID, param::COMMENT]),
        Endpoint::new(Delete, "/access/groups/{groupid}", "Delete a group and its ACL entries.", Permission::Privs { path: "/access/groups/{groupid}", privs: &["Group.Allocate"], any: false }, delete_group)
            .params(vec![param::GROUPID]),
        Endpoint::new(Get, "/access/roles", "Role index.", auth.clone(), list_roles),
        Endpoint::new(Post, "/access/roles", "Create a custom role.", role_modify.clone(), create_role)
            .params(vec![param::ROLEID, param::PRIVS]),
        Endpoint::new(Get, "/access/roles/{roleid}", "Privileges of a role.", auth.clone(), read_role)
            .params(vec![param::ROLEID]),
        Endpoint::new(Put, "/access/roles/{roleid}", "Update a custom role.", role_modify.clone(), update_role)
            .params(vec![param::ROLEID, param::PRIVS, param::APPEND_PRIVS]),
        Endpoint::new(Delete, "/access/roles/{roleid}", "Delete a custom role (and its ACL entries).", role_modify, delete_role)
            .params(vec![param::ROLEID]),
        Endpoint::new(Get, "/access/acl", "Access control list (entries you may modify, or all with Sys.Audit on /access).", Permission::Handler("entries on paths where you hold Permissions.Modify; all with Sys.Audit on /access"), list_acl),
        Endpoint::new(Put, "/access/acl", "Add or remove ACL entries.", Permission::Handler("Permissions.Modify on the path (or VM.Allocate on /vms/<id>, Datastore.Allocate on /storage/<id>, Pool.Allocate on /pool/<id>, handing out only privileges you hold)"), update_acl)
            .params(vec![
                param::PATH,
                param::ROLES,
                param::USERS,
                param::ACL_GROUPS,
                param::TOKENS,
                param::PROPAGATE,
                param::DELETE,
            ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_paths_follow_proxmox_ve() {
        for ok in [
            "/",
            "/vms",
            "/vms/100",
            "/storage/local",
            "/access/groups/ops",
            "/pool/a/b",
            "/nodes/n1",
            "/sdn/zones/z1/v1",
        ] {
            assert!(valid_acl_path(ok), "{ok}");
        }
        for bad in [
            "",
            "vms",
            "/vms/99",
            "/foo",
            "/vms/100/x",
            "/pool/a/b/c/d",
            "/storage/x\ny",
        ] {
            assert!(!valid_acl_path(bad), "{bad}");
        }
    }

    #[test]
    fn grants_round_trip_through_lines() {
        let acls = vec![Acl {
            propagate: true,
            path: "/vms".into(),
            ugids: vec!["a@pve".into(), "@ops".into()],
            roles: vec!["PVEVMUser".into(), "PVEAuditor".into()],
        }];
        let grants = explode(&acls);
        assert_eq!(grants.len(), 4);
        assert_eq!(explode(&implode(&grants)), grants);
    }
}
