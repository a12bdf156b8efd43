//! Authentication realms as Proxmox VE's `/access/domains`: `pam` and `pve` always exist;
//! `ldap` realms are added, changed and removed here (`Realm.Allocate`). A user of an LDAP
//! realm still needs an entry in user.cfg (as in Proxmox VE without realm sync); the
//! directory decides the password.

use crate::error::ApiError;
use crate::router::{ApiState, Ctx, Endpoint, Method, Permission};
use crate::schema::{int, Param, ParamType, BOOL, REALM, STRING, TEXT};
use ferrox_api_types::access::Realm as RealmRow;
use ferrox_types::domains::{dn, server_name, LdapMode, LdapRealm, Realm, RealmKind};

fn realm_row(r: &Realm, full: bool) -> RealmRow {
    let mut row = RealmRow {
        realm: r.id.clone(),
        kind: r.kind.type_name().to_string(),
        comment: (!r.comment.is_empty()).then(|| r.comment.clone()),
        default: r.default.then_some(1),
        server1: None,
        server2: None,
        port: None,
        base_dn: None,
        user_attr: None,
        bind_dn: None,
        mode: None,
        verify: None,
    };
    if let (true, RealmKind::Ldap(l)) = (full, &r.kind) {
        row.server1 = Some(l.server1.clone());
        row.server2 = l.server2.clone();
        row.port = l.port;
        row.base_dn = Some(l.base_dn.clone());
        row.user_attr = Some(l.user_attr.clone());
        row.bind_dn = l.bind_dn.clone();
        row.mode = Some(l.mode.as_str().to_string());
        row.verify = Some(u8::from(l.verify));
    }
    row
}

fn list<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<RealmRow>, ApiError> {
    let domains = ctx.state.auth().domains();
    Ok(domains
        .realms
        .values()
        .map(|r| realm_row(r, false))
        .collect())
}

fn read<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<RealmRow, ApiError> {
    let id = ctx.params.need_str(&param::REALM)?;
    let domains = ctx.state.auth().domains();
    let r = domains
        .realms
        .get(id)
        .ok_or_else(|| ApiError::internal(format!("domain '{id}' does not exist")))?;
    Ok(realm_row(r, true))
}

/// The LDAP settings of a request, over `base` (the realm's current ones on update).
fn ldap_settings<S: ApiState>(
    ctx: &Ctx<'_, S>,
    base: Option<&LdapRealm>,
) -> Result<LdapRealm, ApiError> {
    let p = &ctx.params;
    let text = |param: &Param, current: Option<&String>| -> Option<String> {
        p.str(param).map(String::from).or_else(|| current.cloned())
    };
    let missing = "property is missing and it is not optional";
    let server1 = text(&param::SERVER1, base.map(|b| &b.server1))
        .ok_or_else(|| param::SERVER1.error(missing))?;
    let base_dn = text(&param::BASE_DN, base.map(|b| &b.base_dn))
        .ok_or_else(|| param::BASE_DN.error(missing))?;
    let mode = match p.str(&param::MODE) {
        Some(m) => LdapMode::parse(m).ok_or_else(|| {
            param::MODE.error(format!("'{m}' is not ldap, ldaps or ldap+starttls"))
        })?,
        None => base.map(|b| b.mode).unwrap_or(LdapMode::Ldap),
    };
    let deleted = |param: &Param| {
        p.str(&param::DELETE)
            .is_some_and(|d| ferrox_types::format::split_list(d).any(|x| x == param.name))
    };
    let optional = |param: &Param, current: Option<&String>| {
        if deleted(param) {
            None
        } else {
            text(param, current)
        }
    };
    Ok(LdapRealm {
        server1,
        server2: optional(&param::SERVER2, base.and_then(|b| b.server2.as_ref())),
        port: match p.int(&param::PORT) {
            Some(port) => Some(port as u16),
            None if deleted(&param::PORT) => None,
            None => base.and_then(|b| b.port),
        },
        base_dn,
        user_attr: text(&param::USER_ATTR, base.map(|b| &b.user_attr))
            .unwrap_or_else(|| "uid".into()),
        bind_dn: optional(&param::BIND_DN, base.and_then(|b| b.bind_dn.as_ref())),
        mode,
        verify: p
            .bool(&param::VERIFY)
            .or(base.map(|b| b.verify))
            .unwrap_or(false),
    })
}

fn create<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::REALM)?.to_string();
    if ctx.params.need_str(&param::TYPE)? != "ldap" {
        return Err(param::TYPE.error("only ldap realms can be added (pam and pve exist)"));
    }
    let ldap = ldap_settings(ctx, None)?;
    let realm = Realm {
        id: id.clone(),
        kind: RealmKind::Ldap(ldap),
        comment: ctx.params.str(&param::COMMENT).unwrap_or("").to_string(),
        default: ctx.params.bool(&param::DEFAULT).unwrap_or(false),
    };
    let password = ctx.params.str(&param::PASSWORD).map(String::from);
    ctx.state.auth().modify(|docs| {
        if docs.domains.realms.contains_key(&id) {
            return Err(param::REALM.error(format!("domain '{id}' already exists")));
        }
        if realm.default {
            docs.domains
                .realms
                .values_mut()
                .for_each(|r| r.default = false);
        }
        docs.domains.realms.insert(id.clone(), realm.clone());
        if let Some(pw) = &password {
            docs.realm_passwords.insert(id.clone(), pw.clone());
        }
        Ok(())
    })?;
    Ok(())
}

fn update<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::REALM)?.to_string();
    let password = ctx.params.str(&param::PASSWORD).map(String::from);
    let comment = ctx.params.str(&param::COMMENT).map(String::from);
    let default = ctx.params.bool(&param::DEFAULT);
    ctx.state.auth().modify(|docs| {
        let current = docs
            .domains
            .realms
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("domain '{id}' does not exist")))?;
        let mut realm = current.clone();
        if let RealmKind::Ldap(l) = &current.kind {
            realm.kind = RealmKind::Ldap(ldap_settings(ctx, Some(l))?);
        }
        if let Some(c) = &comment {
            realm.comment = c.clone();
        }
        if let Some(d) = default {
            if d {
                docs.domains
                    .realms
                    .values_mut()
                    .for_each(|r| r.default = false);
            }
            realm.default = d;
        }
        docs.domains.realms.insert(id.clone(), realm);
        if let Some(pw) = &password {
            docs.realm_passwords.insert(id.clone(), pw.clone());
        }
        Ok(())
    })?;
    Ok(())
}

fn delete<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::REALM)?.to_string();
    if id == "pam" || id == "pve" {
        return Err(param::REALM.error(format!("cannot delete the built-in realm '{id}'")));
    }
    ctx.state.auth().modify(|docs| {
        if docs.domains.realms.remove(&id).is_none() {
            return Err(ApiError::internal(format!("domain '{id}' does not exist")));
        }
        docs.realm_passwords.remove(&id);
        Ok(())
    })?;
    Ok(())
}

const SERVER: ParamType = ParamType::Format {
    name: "address",
    check: server_name,
};
const DN: ParamType = ParamType::Format {
    name: "ldap-dn",
    check: dn,
};

fn ldap_params(create: bool) -> Vec<Param> {
    vec![
        param::SERVER1,
        param::SERVER2,
        param::PORT,
        param::BASE_DN,
        param::USER_ATTR,
        param::BIND_DN,
        param::PASSWORD,
        param::MODE,
        param::VERIFY,
        param::COMMENT,
        param::DEFAULT,
    ]
    .into_iter()
    .chain((!create).then_some(param::DELETE))
    .collect()
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const SERVER1: Param =
        Param::optional("server1", SERVER, "LDAP server (host name or address).");
    pub const SERVER2: Param =
        Param::optional("server2", SERVER, "LDAP server (host name or address).");
    pub const PORT: Param = Param::optional(
        "port",
        int(Some(1), Some(65535)),
        "Server port (default 389, ldaps 636).",
    );
    pub const BASE_DN: Param = Param::optional(
        "base_dn",
        DN,
        "Where users are (e.g. ou=people,dc=example,dc=com).",
    );
    pub const USER_ATTR: Param = Param::optional(
        "user_attr",
        ParamType::Format {
            name: "ldap-attribute",
            check: ferrox_types::format::group_id,
        },
        "Attribute of the user name (default uid).",
    );
    pub const BIND_DN: Param =
        Param::optional("bind_dn", DN, "Service account to search users with.");
    pub const PASSWORD: Param = Param::optional(
        "password",
        ParamType::String { max_len: Some(256) },
        "Password of the service account (kept in priv/).",
    );
    pub const MODE: Param = Param::optional(
        "mode",
        ParamType::Enum(&["ldap", "ldaps", "ldap+starttls"]),
        "Transport (default ldap).",
    );
    pub const VERIFY: Param = Param::optional(
        "verify",
        BOOL,
        "Check the server certificate (ldaps, starttls).",
    );
    pub const COMMENT: Param = Param::optional("comment", TEXT, "Free text.");
    pub const DEFAULT: Param =
        Param::optional("default", BOOL, "The realm the login form selects.");
    pub const DELETE: Param = Param::optional(
        "delete",
        STRING,
        "Settings to remove (server2, port, bind_dn).",
    );
    pub const REALM: Param = Param::required("realm", super::REALM, "Realm id.");
    pub const TYPE: Param = Param::required(
        "type",
        ParamType::Enum(&["ldap", "pam", "pve"]),
        "Realm type.",
    );
}

pub fn endpoints<S: ApiState>() -> Vec<Endpoint<S>> {
    use Method::*;

    let allocate = Permission::Privs {
        path: "/access/realm",
        privs: &["Realm.Allocate"],
        any: false,
    };
    vec![
        Endpoint::new(
            Get,
            "/access/domains",
            "Authentication realms.",
            Permission::World,
            list,
        ),
        Endpoint::new(
            Post,
            "/access/domains",
            "Add an LDAP realm.",
            allocate.clone(),
            create,
        )
        .params([vec![param::REALM, param::TYPE], ldap_params(true)].concat()),
        Endpoint::new(
            Get,
            "/access/domains/{realm}",
            "A realm's settings (without passwords).",
            Permission::Privs {
                path: "/access/realm/{realm}",
                privs: &["Realm.Allocate", "Sys.Audit"],
                any: true,
            },
            read,
        )
        .params(vec![param::REALM]),
        Endpoint::new(
            Put,
            "/access/domains/{realm}",
            "Change a realm.",
            allocate.clone(),
            update,
        )
        .params([vec![param::REALM], ldap_params(false)].concat()),
        Endpoint::new(
            Delete,
            "/access/domains/{realm}",
            "Remove an LDAP realm.",
            allocate,
            delete,
        )
        .params(vec![param::REALM]),
    ]
}
