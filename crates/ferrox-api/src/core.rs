//! Endpoints every Ferrox API serves, whatever the node does: login, API tokens,
//! permissions, version, tasks, and the OpenAPI document.

use crate::auth::{Caller, LoginOutcome};
use crate::error::ApiError;
use crate::rbac;
use crate::router::{ApiState, Ctx, Endpoint, Method, Paged, Permission};
use crate::schema::common::NODE;
use crate::schema::{int, Param, ParamType, BOOL, REALM, STRING, TEXT, TOKEN_NAME, USERID};
use crate::tasks::TaskFilter;
use ferrox_api_types::access::{PermissionMap, Ticket, Token as TokenInfo, TokenCreated};
use ferrox_api_types::tasks::{TaskLogLine, TaskStatus};
use ferrox_api_types::Version;
use ferrox_types::user_config::Token;

/// The Proxmox VE release whose API Ferrox speaks (clients gate features on it).
pub const PVE_VERSION: &str = "9.2.0";
pub const PVE_RELEASE: &str = "9.2";
/// An identifier of the build in the 8–64 hex digits clients expect.
pub const REPOID: &str = "f3770c5e";

/// Fails unless `{node}` is this node (requests for other nodes need the cluster).
pub fn local_node<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let node = ctx.params.need_str(&NODE)?;
    if node == ctx.state.node_name() {
        Ok(())
    } else {
        Err(ApiError::new(
            595,
            format!(
                "no such node '{node}' (this node is '{}')",
                ctx.state.node_name()
            ),
        ))
    }
}

fn cap<S: ApiState>(state: &S, caller: &Caller) -> PermissionMap {
    let cfg = state.auth().user_config();
    let groups: [(&str, &str, &[&str]); 7] = [
        ("vms", "/vms", &["VM.", "Permissions.Modify"]),
        (
            "access",
            "/access/groups",
            &["User.", "Group.", "Permissions.Modify"],
        ),
        ("storage", "/storage", &["Datastore.", "Permissions.Modify"]),
        ("nodes", "/nodes", &["Sys.", "Permissions.Modify"]),
        ("sdn", "/sdn", &["SDN.", "Permissions.Modify"]),
        ("dc", "/", &["Sys.Audit", "Sys.Modify", "SDN."]),
        ("mapping", "/mapping", &["Mapping.", "Permissions.Modify"]),
    ];
    groups
        .into_iter()
        .map(|(key, path, prefixes)| {
            let privs = rbac::privileges(&cfg, caller, path)
                .into_keys()
                .filter(|p| prefixes.iter().any(|pre| p.starts_with(pre)))
                .map(|p| (p, 1))
                .collect();
            (key.to_string(), privs)
        })
        .collect()
}

fn create_ticket<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Ticket, ApiError> {
    let auth = ctx.state.auth();
    let username = ctx.params.need_str(&param::USERNAME)?;
    let userid = auth.canonical_userid(username, ctx.params.str(&param::REALM));
    let password = ctx.params.need_str(&param::PASSWORD)?;
    if let (Some(path), Some(privs)) = (ctx.params.str(&param::PATH), ctx.params.str(&param::PRIVS))
    {
        // "Verify ticket and check privileges" mode.
        let owner = auth
            .verify_ticket(password)
            .filter(|u| *u == userid)
            .ok_or_else(|| ApiError::new(401, "authentication failure"))?;
        let caller = Caller {
            userid: owner,
            token: None,
        };
        let wanted: Vec<&str> = privs
            .split([',', ';', ' '])
            .filter(|s| !s.is_empty())
            .collect();
        if !rbac::check(&auth.user_config(), &caller, path, &wanted, false) {
            return Err(ApiError::new(401, "authentication failure"));
        }
        return Ok(Ticket {
            username: userid,
            ticket: None,
            csrf_prevention_token: None,
            cap: None,
            need_tfa: None,
        });
    }
    let ticket = if let Some(challenge) = ctx.params.str(&param::TFA_CHALLENGE) {
        // Second step: `password` is the answer (`totp:123456`, `recovery:KEY`).
        auth.login_second_factor(&userid, challenge, password, ctx.peer)?
    } else {
        match auth.login(&userid, password, ctx.peer)? {
            LoginOutcome::Ticket(t) => t,
            LoginOutcome::NeedTfa(partial) => match ctx.params.str(&param::OTP) {
                // The legacy one-step form: password and TOTP code together.
                Some(otp) => {
                    auth.login_second_factor(&userid, &partial, &format!("totp:{otp}"), ctx.peer)?
                }
                None => {
                    return Ok(Ticket {
                        ticket: Some(partial),
                        need_tfa: Some(1),
                        csrf_prevention_token: Some(auth.csrf_token(&userid)),
                        username: userid,
                        cap: None,
                    })
                }
            },
        }
    };
    let caller = Caller {
        userid: userid.clone(),
        token: None,
    };
    Ok(Ticket {
        ticket: Some(ticket),
        csrf_prevention_token: Some(auth.csrf_token(&userid)),
        cap: Some(cap(ctx.state.as_ref(), &caller)),
        username: userid,
        need_tfa: None,
    })
}

fn permissions<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<PermissionMap, ApiError> {
    let caller = ctx.caller()?.clone();
    let subject = match ctx.params.str(&param::PERMISSIONS_OF) {
        Some(other) if other != caller.auth_id() => {
            ctx.require("/access", &["Sys.Audit"], false)?;
            match other.split_once('!') {
                Some((u, t)) => Caller {
                    userid: u.into(),
                    token: Some(t.into()),
                },
                None => Caller {
                    userid: other.into(),
                    token: None,
                },
            }
        }
        _ => caller,
    };
    Ok(rbac::permission_map(
        &ctx.state.auth().user_config(),
        &subject,
        ctx.params.str(&param::ACL_PATH),
    ))
}

/// Users manage their own tokens; `User.Modify` on `/access/groups` manages anyone's.
fn token_owner<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<String, ApiError> {
    let userid = ctx.params.need_str(&param::USERID)?.to_string();
    let caller = ctx.caller()?;
    if caller.userid == userid && caller.token.is_none() {
        return Ok(userid);
    }
    ctx.require("/access/groups", &["User.Modify"], false)?;
    Ok(userid)
}

/// A token as its listing shows it; the single-token replies leave out `tokenid`.
fn token_info(t: &Token, with_id: bool) -> TokenInfo {
    TokenInfo {
        tokenid: with_id.then(|| {
            let name = t.full_id.split_once('!').map(|(_, n)| n).unwrap_or("");
            name.to_string()
        }),
        privsep: u8::from(t.privsep),
        expire: t.expire,
        comment: (!t.comment.is_empty()).then(|| t.comment.clone()),
    }
}

fn list_tokens<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<TokenInfo>, ApiError> {
    let userid = token_owner(ctx)?;
    let prefix = format!("{userid}!");
    let cfg = ctx.state.auth().user_config();
    let list = cfg
        .tokens
        .values()
        .filter(|t| t.full_id.starts_with(&prefix))
        .map(|t| token_info(t, true))
        .collect();
    Ok(list)
}

fn full_token_id<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<String, ApiError> {
    let userid = token_owner(ctx)?;
    let tokenid = ctx.params.need_str(&param::TOKENID)?;
    Ok(format!("{userid}!{tokenid}"))
}

fn read_token<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<TokenInfo, ApiError> {
    let full = full_token_id(ctx)?;
    let cfg = ctx.state.auth().user_config();
    let t = cfg
        .tokens
        .get(&full)
        .ok_or_else(|| ApiError::internal(format!("no such token '{full}'")))?;
    Ok(token_info(t, false))
}

fn create_token<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<TokenCreated, ApiError> {
    let full = full_token_id(ctx)?;
    let userid = ctx.params.need_str(&param::USERID)?;
    // Proxmox VE: a token expires with its user unless told otherwise.
    let user_expire = ctx
        .state
        .auth()
        .user_config()
        .users
        .get(userid)
        .map(|u| u.expire)
        .unwrap_or(0);
    let token = Token {
        full_id: full.clone(),
        expire: ctx
            .params
            .int(&param::EXPIRE)
            .map(|e| e.max(0) as u64)
            .unwrap_or(user_expire),
        privsep: ctx.params.bool(&param::PRIVSEP).unwrap_or(true),
        comment: ctx.params.str(&param::COMMENT).unwrap_or("").to_string(),
    };
    let secret = ctx.state.auth().create_token(userid, token.clone())?;
    Ok(TokenCreated {
        full_tokenid: full,
        info: token_info(&token, false),
        value: secret,
    })
}

/// `PUT /access/users/{userid}/token/{tokenid}`: comment, expiry, privilege separation.
fn update_token<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<TokenInfo, ApiError> {
    let full = full_token_id(ctx)?;
    let comment = ctx.params.str(&param::COMMENT).map(String::from);
    let expire = ctx.params.int(&param::EXPIRE).map(|e| e.max(0) as u64);
    let privsep = ctx.params.bool(&param::PRIVSEP);
    let updated = ctx.state.auth().modify(|docs| {
        let token = docs
            .users
            .tokens
            .get_mut(&full)
            .ok_or_else(|| ApiError::internal(format!("no such token '{full}'")))?;
        if let Some(c) = &comment {
            token.comment = c.clone();
        }
        if let Some(e) = expire {
            token.expire = e;
        }
        if let Some(p) = privsep {
            token.privsep = p;
        }
        Ok(token.clone())
    })?;
    Ok(token_info(&updated, false))
}

fn delete_token<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let full = full_token_id(ctx)?;
    ctx.state.auth().delete_token(&full)?;
    Ok(())
}

fn pve_version() -> Version {
    Version {
        version: PVE_VERSION.into(),
        release: PVE_RELEASE.into(),
        repoid: REPOID.into(),
        console: None,
        ferrox: None,
    }
}

fn version<S: ApiState>(_: &Ctx<'_, S>) -> Result<Version, ApiError> {
    Ok(Version {
        console: Some("html5".into()),
        ferrox: Some(env!("CARGO_PKG_VERSION").into()),
        ..pve_version()
    })
}

fn node_version<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Version, ApiError> {
    local_node(ctx)?;
    Ok(pve_version())
}

/// A user sees their own tasks and those of their tokens; `Sys.Audit` sees all.
fn task_visible<S: ApiState>(ctx: &Ctx<'_, S>, owner: &str) -> bool {
    let node = ctx.params.str(&NODE).unwrap_or("");
    if ctx.has(&format!("/nodes/{node}"), &["Sys.Audit"], false) {
        return true;
    }
    ctx.caller.is_some_and(|c| match &c.token {
        Some(_) => owner == c.auth_id(),
        None => owner == c.userid || owner.starts_with(&format!("{}!", c.userid)),
    })
}

fn task_checked<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<String, ApiError> {
    local_node(ctx)?;
    let upid = ctx.params.need_str(&param::UPID)?.to_string();
    let owner = ctx.state.tasks().owner(&upid)?;
    if !task_visible(ctx, &owner) {
        let node = ctx.params.str(&NODE).unwrap_or("");
        return Err(ApiError::forbidden(
            &format!("/nodes/{node}"),
            &["Sys.Audit"],
        ));
    }
    Ok(upid)
}

fn task_status<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<TaskStatus, ApiError> {
    let upid = task_checked(ctx)?;
    ctx.state.tasks().status(&upid)
}

fn task_log<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Paged<TaskLogLine>, ApiError> {
    let upid = task_checked(ctx)?;
    let start = ctx.params.int(&param::LOG_START).unwrap_or(0).max(0) as usize;
    let limit = ctx.params.int(&param::LOG_LIMIT).unwrap_or(50).max(0) as usize;
    let (lines, total) = ctx.state.tasks().log(&upid, start, limit)?;
    Ok(Paged { rows: lines, total })
}

fn task_list<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Paged<TaskStatus>, ApiError> {
    local_node(ctx)?;
    let p = &ctx.params;
    let filter = TaskFilter {
        start: p.int(&param::START).unwrap_or(0).max(0) as usize,
        limit: p.int(&param::LIMIT).unwrap_or(50).max(0) as usize,
        userfilter: p.str(&param::USERFILTER).map(String::from),
        typefilter: p.str(&param::TYPEFILTER).map(String::from),
        vmid: p.int(&param::VMID),
        errors: p.bool(&param::ERRORS).unwrap_or(false),
        source: p.str(&param::SOURCE).unwrap_or("archive").to_string(),
        since: p.int(&param::SINCE),
        until: p.int(&param::UNTIL),
        statusfilter: p.str(&param::STATUSFILTER).map(String::from),
    };
    let (rows, total) = ctx
        .state
        .tasks()
        .list(&filter, &|owner| task_visible(ctx, owner));
    Ok(Paged { rows, total })
}

fn ticket_dummy<S: ApiState>(_: &Ctx<'_, S>) -> Result<(), ApiError> {
    Ok(())
}

/// Proxmox VE: `['or', ['userid-param', 'self'], ['userid-group', ['User.Modify']]]`.
const TOKEN_OWNER: Permission =
    Permission::Handler("your own tokens (not with a token), or User.Modify on /access/groups");

/// The endpoints above, declared with their parameters and permissions.
/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const UPID: Param = Param::required("upid", STRING, "The task's unique id.");
    pub const USERNAME: Param = Param::required(
        "username",
        ParamType::String { max_len: Some(64) },
        "User name (user@realm, or user with realm).",
    );
    pub const PASSWORD: Param = Param::required(
        "password",
        STRING,
        "The password, or a valid ticket to renew.",
    );
    pub const REALM: Param = Param::optional(
        "realm",
        super::REALM,
        "Appended to the user name as @realm.",
    );
    pub const OTP: Param = Param::optional(
        "otp",
        STRING,
        "One-time password (legacy one-step TFA login).",
    );
    pub const TFA_CHALLENGE: Param =
        Param::optional("tfa-challenge", STRING, "Partial ticket of a TFA login.");
    pub const PATH: Param = Param::optional(
        "path",
        STRING,
        "Verify the ticket and check privileges on this path.",
    );
    pub const ACL_PATH: Param = Param::optional("path", STRING, "Only this ACL path.");
    pub const PRIVS: Param = Param::optional("privs", STRING, "Privileges to check with 'path'.");
    pub const NEW_FORMAT: Param =
        Param::optional("new-format", BOOL, "Ignored (always the new format).");
    pub const PERMISSIONS_OF: Param = Param::optional(
        "userid",
        STRING,
        "Another user or token (needs Sys.Audit on /access).",
    );
    pub const USERID: Param = Param::required("userid", super::USERID, "User id.");
    pub const TOKENID: Param = Param::required("tokenid", TOKEN_NAME, "Token name.");
    pub const COMMENT: Param = Param::optional("comment", TEXT, "Free text.");
    pub const EXPIRE: Param = Param::optional(
        "expire",
        int(Some(0), None),
        "Expiry (Unix seconds, 0 = never).",
    );
    pub const PRIVSEP: Param = Param::optional(
        "privsep",
        BOOL,
        "Separate privileges (default 1): the token's own ACLs, intersected with the user's.",
    );
    pub const START: Param = Param::optional("start", int(Some(0), None), "Skip this many tasks.");
    pub const LOG_START: Param =
        Param::optional("start", int(Some(0), None), "First line (0-based).");
    pub const LIMIT: Param = Param::optional(
        "limit",
        int(Some(0), None),
        "At most this many tasks (default 50).",
    );
    pub const LOG_LIMIT: Param = Param::optional(
        "limit",
        int(Some(0), None),
        "At most this many lines (default 50).",
    );
    pub const USERFILTER: Param = Param::optional(
        "userfilter",
        STRING,
        "Only tasks of users containing this text.",
    );
    pub const TYPEFILTER: Param = Param::optional("typefilter", STRING, "Only tasks of this type.");
    pub const VMID: Param = Param::optional("vmid", ParamType::VmId, "Only tasks for this guest.");
    pub const ERRORS: Param = Param::optional("errors", BOOL, "Only failed tasks.");
    pub const SOURCE: Param = Param::optional(
        "source",
        ParamType::Enum(&["archive", "active", "all"]),
        "Finished, running or all tasks (default archive).",
    );
    pub const SINCE: Param = Param::optional(
        "since",
        int(Some(0), None),
        "Only tasks started at or after this time.",
    );
    pub const UNTIL: Param = Param::optional(
        "until",
        int(Some(0), None),
        "Only tasks started at or before this time.",
    );
    pub const STATUSFILTER: Param = Param::optional(
        "statusfilter",
        STRING,
        "Comma list of ok, warning, error, unknown.",
    );
    pub const DOWNLOAD: Param = Param::optional("download", BOOL, "Ignored.");
}

pub fn endpoints<S: ApiState>() -> Vec<Endpoint<S>> {
    use Method::*;
    let mut list = crate::access::endpoints();
    list.extend(crate::tfa::endpoints());
    list.extend(crate::realms::endpoints());
    list.extend(vec![
        Endpoint::new(
            Get,
            "/access/ticket",
            "Dummy, for formatters.",
            Permission::World,
            ticket_dummy,
        ),
        Endpoint::new(
            Post,
            "/access/ticket",
            "Create an authentication ticket.",
            Permission::World,
            create_ticket,
        )
        .no_token()
        .params(vec![
            param::USERNAME,
            param::PASSWORD,
            param::REALM,
            param::OTP,
            param::TFA_CHALLENGE,
            param::PATH,
            param::PRIVS,
            param::NEW_FORMAT,
        ]),
        Endpoint::new(
            Get,
            "/access/permissions",
            "Effective permissions of the caller (or of 'userid').",
            Permission::Authenticated,
            permissions,
        )
        .params(vec![param::ACL_PATH, param::PERMISSIONS_OF]),
        Endpoint::new(
            Get,
            "/access/users/{userid}/token",
            "A user's API tokens.",
            TOKEN_OWNER,
            list_tokens,
        )
        .params(vec![param::USERID]),
        Endpoint::new(
            Get,
            "/access/users/{userid}/token/{tokenid}",
            "One API token.",
            TOKEN_OWNER,
            read_token,
        )
        .params(vec![param::USERID, param::TOKENID]),
        Endpoint::new(
            Post,
            "/access/users/{userid}/token/{tokenid}",
            "Create an API token; the secret is returned once.",
            TOKEN_OWNER,
            create_token,
        )
        .params(vec![
            param::USERID,
            param::TOKENID,
            param::COMMENT,
            param::EXPIRE,
            param::PRIVSEP,
        ]),
        Endpoint::new(
            Put,
            "/access/users/{userid}/token/{tokenid}",
            "Change an API token's comment, expiry or privilege separation.",
            TOKEN_OWNER,
            update_token,
        )
        .params(vec![
            param::USERID,
            param::TOKENID,
            param::COMMENT,
            param::EXPIRE,
            param::PRIVSEP,
        ]),
        Endpoint::new(
            Delete,
            "/access/users/{userid}/token/{tokenid}",
            "Delete an API token.",
            TOKEN_OWNER,
            delete_token,
        )
        .params(vec![param::USERID, param::TOKENID]),
        Endpoint::new(
            Get,
            "/version",
            "API version.",
            Permission::Authenticated,
            version,
        ),
        Endpoint::new(
            Get,
            "/nodes/{node}/version",
            "Version of a node.",
            Permission::Authenticated,
            node_version,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/tasks",
            "Tasks of a node, newest first.",
            Permission::Authenticated,
            task_list,
        )
        .params(vec![
            NODE,
            param::START,
            param::LIMIT,
            param::USERFILTER,
            param::TYPEFILTER,
            param::VMID,
            param::ERRORS,
            param::SOURCE,
            param::SINCE,
            param::UNTIL,
            param::STATUSFILTER,
        ]),
        Endpoint::new(
            Get,
            "/nodes/{node}/tasks/{upid}/status",
            "Status of a task.",
            Permission::Authenticated,
            task_status,
        )
        .params(vec![NODE, param::UPID]),
        Endpoint::new(
            Get,
            "/nodes/{node}/tasks/{upid}/log",
            "Log of a task.",
            Permission::Authenticated,
            task_log,
        )
        .params(vec![
            NODE,
            param::UPID,
            param::LOG_START,
            param::LOG_LIMIT,
            param::DOWNLOAD,
        ]),
    ]);
    list
}
