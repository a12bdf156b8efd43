//! Second factors as Proxmox VE's `/access/tfa` API: TOTP (an `otpauth://` URI confirmed
//! with a current code) and recovery keys (ten one-time keys, shown once). A user manages
//! their own with their current password; `User.Modify` on the user's groups manages
//! anyone's. The login side (partial ticket, `totp:`/`recovery:` answers) is in `auth`.

use crate::access::{check_userid_group, is_root};
use crate::error::ApiError;
use crate::router::{ApiState, Ctx, Endpoint, Method, Permission};
use crate::schema::{Param, ParamType, BOOL, STRING, TEXT, USERID};
use ferrox_api_types::access::{TfaAdded, TfaEntry, UserTfa as UserTfaRow};
use ferrox_types::tfa_config::{RecoveryEntry, TotpEntry, UserTfa};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Recovery keys generated at once, as in Proxmox VE.
const RECOVERY_KEYS: usize = 10;

fn userid<'a, S: ApiState>(ctx: &'a Ctx<'_, S>) -> Result<&'a str, ApiError> {
    ctx.params.need_str(&param::USERID)
}

/// Proxmox VE: `['or', ['userid-param', 'self'], ['userid-group', privs]]`.
fn check_self_or<S: ApiState>(
    ctx: &Ctx<'_, S>,
    user: &str,
    privs: &[&str],
) -> Result<(), ApiError> {
    let caller = ctx.caller()?;
    if caller.userid == user && caller.token.is_none() {
        return Ok(());
    }
    check_userid_group(ctx, user, privs, None, true)
}

/// A change of second factors needs the caller's current password (root@pam excepted).
fn confirm<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    if is_root(ctx) {
        return Ok(());
    }
    let caller = ctx.caller()?;
    let password = ctx
        .params
        .str(&param::PASSWORD)
        .ok_or_else(|| param::PASSWORD.error("confirm your identity with your current password"))?;
    ctx.state
        .auth()
        .confirm_password(&caller.userid, password, ctx.peer)
        .map_err(|_| param::PASSWORD.error("the password is wrong"))
}

fn entries(user: &UserTfa) -> Vec<TfaEntry> {
    let mut out: Vec<TfaEntry> = user
        .totp
        .iter()
        .map(|t| TfaEntry {
            kind: "totp".into(),
            id: t.id.clone(),
            description: t.description.clone(),
            created: t.created,
            enable: u8::from(t.enable),
        })
        .collect();
    if let Some(r) = &user.recovery {
        let left = r.keys.iter().flatten().count();
        out.push(TfaEntry {
            kind: "recovery".into(),
            id: r.id.clone(),
            description: format!("{left} of {} keys left", r.keys.len()),
            created: r.created,
            enable: 1,
        });
    }
    out
}

fn list_all<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<UserTfaRow>, ApiError> {
    let tfa = ctx.state.auth().tfa_config();
    let rows = tfa
        .users
        .iter()
        .filter(|(u, _)| check_self_or(ctx, u, &["User.Modify", "Sys.Audit"]).is_ok())
        .map(|(u, t)| UserTfaRow {
            userid: u.clone(),
            entries: entries(t),
        })
        .collect();
    Ok(rows)
}

fn list_user<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<Vec<TfaEntry>, ApiError> {
    let user = userid(ctx)?;
    check_self_or(ctx, user, &["User.Modify", "Sys.Audit"])?;
    let tfa = ctx.state.auth().tfa_config();
    Ok(tfa.users.get(user).map(entries).unwrap_or_default())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn add<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<TfaAdded, ApiError> {
    let user = userid(ctx)?.to_string();
    check_self_or(ctx, &user, &["User.Modify"])?;
    confirm(ctx)?;
    let auth = ctx.state.auth();
    let created = crate::auth::now();
    let description = ctx
        .params
        .str(&param::DESCRIPTION)
        .unwrap_or("")
        .to_string();
    match ctx.params.need_str(&param::TYPE)? {
        "totp" => {
            let url = ctx
                .params
                .str(&param::TOTP)
                .ok_or_else(|| param::TOTP.error("the otpauth:// URI of the new TOTP is missing"))?
                .to_string();
            let totp = totp_rs::Totp::from_url_unchecked(&url)
                .map_err(|e| param::TOTP.error(format!("not a TOTP URI: {e}")))?;
            let value = ctx
                .params
                .str(&param::VALUE)
                .ok_or_else(|| param::VALUE.error("confirm the TOTP with a current code"))?;
            if totp.check(value, created.max(0) as u64).is_none() {
                return Err(param::VALUE.error("the code does not match the TOTP"));
            }
            let id = format!("totp-{}", random_hex(4));
            let entry = TotpEntry {
                id: id.clone(),
                description,
                created,
                enable: true,
                url,
            };
            auth.modify(|docs| {
                if !docs.users.users.contains_key(&user) {
                    return Err(ApiError::internal(format!("no such user ('{user}')")));
                }
                docs.tfa
                    .users
                    .entry(user.clone())
                    .or_default()
                    .totp
                    .push(entry.clone());
                Ok(())
            })?;
            Ok(TfaAdded { id, recovery: None })
        }
        "recovery" => {
            let keys: Vec<String> = (0..RECOVERY_KEYS)
                .map(|_| {
                    let hex = random_hex(8);
                    format!(
                        "{}-{}-{}-{}",
                        &hex[0..4],
                        &hex[4..8],
                        &hex[8..12],
                        &hex[12..16]
                    )
                })
                .collect();
            let hashes: Vec<Option<String>> = keys
                .iter()
                .map(|k| {
                    Some(
                        Sha256::digest(k.as_bytes())
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect(),
                    )
                })
                .collect();
            auth.modify(|docs| {
                if !docs.users.users.contains_key(&user) {
                    return Err(ApiError::internal(format!("no such user ('{user}')")));
                }
                let entry = docs.tfa.users.entry(user.clone()).or_default();
                if entry.recovery.is_some() {
                    return Err(
                        param::TYPE.error("the user already has recovery keys (delete them first)")
                    );
                }
                entry.recovery = Some(RecoveryEntry {
                    id: "recovery".into(),
                    created,
                    keys: hashes.clone(),
                });
                Ok(())
            })?;
            Ok(TfaAdded {
                id: "recovery".into(),
                recovery: Some(keys),
            })
        }
        other => Err(param::TYPE.error(format!("'{other}' is not supported (totp, recovery)"))),
    }
}

fn update<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let user = userid(ctx)?.to_string();
    let id = ctx.params.need_str(&param::ID)?.to_string();
    check_self_or(ctx, &user, &["User.Modify"])?;
    confirm(ctx)?;
    let description = ctx.params.str(&param::DESCRIPTION).map(String::from);
    let enable = ctx.params.bool(&param::ENABLE);
    ctx.state.auth().modify(|docs| {
        let entry = docs
            .tfa
            .users
            .get_mut(&user)
            .and_then(|u| u.totp.iter_mut().find(|t| t.id == id))
            .ok_or_else(|| param::ID.error(format!("no such TFA entry '{id}'")))?;
        if let Some(d) = &description {
            entry.description = d.clone();
        }
        if let Some(e) = enable {
            entry.enable = e;
        }
        Ok(())
    })?;
    Ok(())
}

fn delete<S: ApiState>(ctx: &Ctx<'_, S>) -> Result<(), ApiError> {
    let user = userid(ctx)?.to_string();
    let id = ctx.params.need_str(&param::ID)?.to_string();
    check_self_or(ctx, &user, &["User.Modify"])?;
    confirm(ctx)?;
    ctx.state.auth().modify(|docs| {
        let entry = docs
            .tfa
            .users
            .get_mut(&user)
            .ok_or_else(|| param::ID.error(format!("no such TFA entry '{id}'")))?;
        let before = entry.totp.len() + usize::from(entry.recovery.is_some());
        entry.totp.retain(|t| t.id != id);
        if entry.recovery.as_ref().is_some_and(|r| r.id == id) {
            entry.recovery = None;
        }
        if entry.totp.len() + usize::from(entry.recovery.is_some()) == before {
            return Err(param::ID.error(format!("no such TFA entry '{id}'")));
        }
        if entry.totp.is_empty() && entry.recovery.is_none() {
            docs.tfa.users.remove(&user);
        }
        Ok(())
    })?;
    Ok(())
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const USERID: Param = Param::required("userid", super::USERID, "User id.");
    pub const ID: Param = Param::required(
        "id",
        ParamType::String { max_len: Some(64) },
        "TFA entry id.",
    );
    pub const PASSWORD: Param = Param::optional(
        "password",
        ParamType::String { max_len: Some(64) },
        "Your current password (required unless you are root@pam).",
    );
    pub const TYPE: Param = Param::required(
        "type",
        ParamType::Enum(&["totp", "recovery"]),
        "Kind of factor.",
    );
    pub const DESCRIPTION: Param = Param::optional("description", TEXT, "Free text.");
    pub const TOTP: Param =
        Param::optional("totp", STRING, "otpauth://totp/... URI with the secret.");
    pub const VALUE: Param = Param::optional(
        "value",
        ParamType::String { max_len: Some(16) },
        "A current TOTP code, to confirm the TOTP.",
    );
    pub const ENABLE: Param = Param::optional("enable", BOOL, "Whether the entry can be used.");
}

pub fn endpoints<S: ApiState>() -> Vec<Endpoint<S>> {
    use Method::*;
    let manage = Permission::Handler(
        "your own (with your password, not with a token), or User.Modify on the user's groups",
    );
    let read = Permission::Handler(
        "your own, or User.Modify or Sys.Audit on /access/groups or on one of the user's groups",
    );
    vec![
        Endpoint::new(
            Get,
            "/access/tfa",
            "Second factors of the users you may see.",
            read.clone(),
            list_all,
        ),
        Endpoint::new(
            Get,
            "/access/tfa/{userid}",
            "A user's second factors.",
            read,
            list_user,
        )
        .params(vec![param::USERID]),
        Endpoint::new(
            Post,
            "/access/tfa/{userid}",
            "Add a TOTP (confirmed with a current code) or recovery keys (returned once).",
            manage.clone(),
            add,
        )
        .no_token()
        .params(vec![
            param::USERID,
            param::TYPE,
            param::DESCRIPTION,
            param::TOTP,
            param::VALUE,
            param::PASSWORD,
        ]),
        Endpoint::new(
            Put,
            "/access/tfa/{userid}/{id}",
            "Change a TOTP entry's description or enable it.",
            manage.clone(),
            update,
        )
        .no_token()
        .params(vec![
            param::USERID,
            param::ID,
            param::DESCRIPTION,
            param::ENABLE,
            param::PASSWORD,
        ]),
        Endpoint::new(
            Delete,
            "/access/tfa/{userid}/{id}",
            "Delete a second factor.",
            manage,
            delete,
        )
        .no_token()
        .params(vec![param::USERID, param::ID, param::PASSWORD]),
    ]
}
