//! `user.cfg`: users, API tokens, groups, pools, roles and ACLs in Proxmox VE's
//! colon-separated format (one entry per line, fields may be empty). Secrets are not here:
//! password hashes and token secrets live in separate files.
//!
//! Comments are written with Proxmox VE's `encode_text`; every other field is checked by
//! [`UserConfig::check`] before it is written, so no value can add a line or a field.

use crate::format;
use crate::text::{decode_text, encode_text};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub userid: String,
    pub enable: bool,
    /// Unix seconds, 0 = never.
    pub expire: u64,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub comment: String,
    pub keys: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Token {
    /// `user@realm!tokenid`
    pub full_id: String,
    pub expire: u64,
    /// Privilege separation: the token's own ACLs apply, intersected with the user's.
    pub privsep: bool,
    pub comment: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub propagate: bool,
    pub path: String,
    /// `user@realm`, `@group` or `user@realm!token`.
    pub ugids: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    pub users: BTreeMap<String, User>,
    pub tokens: BTreeMap<String, Token>,
    pub groups: BTreeMap<String, (BTreeSet<String>, String)>,
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// pool → (comment, vmids, storages)
    pub pools: BTreeMap<String, (String, BTreeSet<String>, BTreeSet<String>)>,
    pub acls: Vec<Acl>,
    /// Entries the parser skipped (a token whose user is gone), for the log.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user.cfg line {line}: {message}")]
pub struct UserConfigError {
    pub line: usize,
    pub message: String,
}

/// Checks a `user@realm` id.
pub fn valid_userid(id: &str) -> bool {
    format::userid(id).is_ok()
}

fn list(field: &str) -> impl Iterator<Item = String> + '_ {
    field
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn flag(field: &str, line: usize, name: &str) -> Result<bool, UserConfigError> {
    match field {
        "" | "0" => Ok(false),
        "1" => Ok(true),
        other => Err(UserConfigError {
            line,
            message: format!("{name}: '{other}' is not 0 or 1"),
        }),
    }
}

fn number(field: &str, line: usize, name: &str) -> Result<u64, UserConfigError> {
    if field.is_empty() {
        return Ok(0);
    }
    field.parse().map_err(|_| UserConfigError {
        line,
        message: format!("{name}: '{field}' is not a number"),
    })
}

impl UserConfig {
    pub fn parse(raw: &str) -> Result<UserConfig, UserConfigError> {
        let mut cfg = UserConfig::default();
        for (index, text) in raw.lines().enumerate() {
            let line = index + 1;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = text.split(':').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            let bad = |message: String| UserConfigError { line, message };
            match f[0] {
                "user" => {
                    let userid = field(1).to_string();
                    if !valid_userid(&userid) {
                        return Err(bad(format!("userid: '{userid}' is not user@realm")));
                    }
                    let user = User {
                        userid: userid.clone(),
                        enable: field(2) != "0",
                        expire: number(field(3), line, "expire")?,
                        firstname: field(4).to_string(),
                        lastname: field(5).to_string(),
                        email: field(6).to_string(),
                        comment: decode_text(field(7)),
                        keys: field(8).to_string(),
                    };
                    cfg.users.insert(userid, user);
                }
                "token" => {
                    let full_id = field(1).to_string();
                    let Some((user, name)) = full_id.split_once('!') else {
                        return Err(bad(format!("tokenid: '{full_id}' is not user@realm!token")));
                    };
                    if !valid_userid(user) || name.is_empty() {
                        return Err(bad(format!("tokenid: '{full_id}' is not user@realm!token")));
                    }
                    let token = Token {
                        full_id: full_id.clone(),
                        expire: number(field(2), line, "expire")?,
                        privsep: flag(field(3), line, "privsep")?,
                        comment: decode_text(field(4)),
                    };
                    cfg.tokens.insert(full_id, token);
                }
                "group" => {
                    cfg.groups.insert(
                        field(1).to_string(),
                        (list(field(2)).collect(), decode_text(field(3))),
                    );
                }
                "role" => {
                    cfg.roles
                        .insert(field(1).to_string(), list(field(2)).collect());
                }
                "pool" => {
                    cfg.pools.insert(
                        field(1).to_string(),
                        (
                            decode_text(field(2)),
                            list(field(3)).collect(),
                            list(field(4)).collect(),
                        ),
                    );
                }
                "acl" => {
                    let path = field(2).to_string();
                    if !path.starts_with('/') {
                        return Err(bad(format!("path: '{path}' must start with '/'")));
                    }
                    cfg.acls.push(Acl {
                        propagate: flag(field(1), line, "propagate")?,
                        path,
                        ugids: list(field(3)).collect(),
                        roles: list(field(4)).collect(),
                    });
                }
                other => return Err(bad(format!("unknown entry type '{other}'"))),
            }
        }
        // Proxmox VE skips a token whose user is gone instead of refusing the whole file
        // (which would lock everybody out, root included).
        let orphans: Vec<String> = cfg
            .tokens
            .keys()
            .filter(|t| {
                let user = t.split('!').next().unwrap_or("");
                !cfg.users.contains_key(user) && user != "root@pam"
            })
            .cloned()
            .collect();
        for token in orphans {
            cfg.tokens.remove(&token);
            cfg.warnings
                .push(format!("token '{token}' ignored: its user does not exist"));
        }
        Ok(cfg)
    }

    /// Checks every field that is written as it is (ids, names, lists): a value that would
    /// add a field or a line is refused, naming the field. Comments need no check (encoded).
    pub fn check(&self) -> Result<(), UserConfigError> {
        let bad = |field: &str, e: String| UserConfigError {
            line: 0,
            message: format!("{field}: {e}"),
        };
        for u in self.users.values() {
            format::userid(&u.userid).map_err(|e| bad("userid", e))?;
            for (field, value) in [
                ("firstname", &u.firstname),
                ("lastname", &u.lastname),
                ("keys", &u.keys),
            ] {
                format::colon_field(value).map_err(|e| bad(field, e))?;
            }
            if !u.email.is_empty() {
                format::email(&u.email).map_err(|e| bad("email", e))?;
            }
        }
        for t in self.tokens.values() {
            format::token_id(&t.full_id).map_err(|e| bad("tokenid", e))?;
        }
        for (g, (members, _)) in &self.groups {
            format::group_id(g).map_err(|e| bad("groupid", e))?;
            for m in members {
                format::userid(m).map_err(|e| bad("members", e))?;
            }
        }
        for (p, (_, vmids, storages)) in &self.pools {
            format::pool_id(p).map_err(|e| bad("poolid", e))?;
            for v in vmids {
                v.parse::<u32>()
                    .map_err(|_| bad("vms", format!("'{v}' is not a VM id")))?;
            }
            for s in storages {
                format::storage_id(s).map_err(|e| bad("storage", e))?;
            }
        }
        for (r, privs) in &self.roles {
            format::role_id(r).map_err(|e| bad("roleid", e))?;
            for p in privs {
                format::role_id(p).map_err(|e| bad("privs", e))?;
            }
        }
        for a in &self.acls {
            format::colon_field(&a.path)
                .and_then(|()| {
                    if a.path.starts_with('/') && !a.path.contains(',') {
                        Ok(())
                    } else {
                        Err(format!("'{}' is not an ACL path", a.path))
                    }
                })
                .map_err(|e| bad("path", e))?;
            for u in &a.ugids {
                format::acl_subject(u).map_err(|e| bad("ugid", e))?;
            }
            for r in &a.roles {
                format::role_id(r).map_err(|e| bad("roles", e))?;
            }
        }
        Ok(())
    }

    /// The file text, sections in Proxmox VE's order with blank lines between them.
    pub fn to_text(&self) -> String {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        let mut sections: Vec<Vec<String>> = Vec::new();
        let mut users = Vec::new();
        for u in self.users.values() {
            users.push(format!(
                "user:{}:{}:{}:{}:{}:{}:{}:{}:",
                u.userid,
                u8::from(u.enable),
                u.expire,
                u.firstname,
                u.lastname,
                u.email,
                encode_text(&u.comment),
                u.keys
            ));
            for t in self
                .tokens
                .values()
                .filter(|t| t.full_id.starts_with(&format!("{}!", u.userid)))
            {
                users.push(format!(
                    "token:{}:{}:{}:{}:",
                    t.full_id,
                    t.expire,
                    u8::from(t.privsep),
                    encode_text(&t.comment)
                ));
            }
        }
        sections.push(users);
        sections.push(
            self.groups
                .iter()
                .map(|(g, (m, c))| format!("group:{g}:{}:{}:", join(m), encode_text(c)))
                .collect(),
        );
        sections.push(
            self.pools
                .iter()
                .map(|(p, (c, v, s))| {
                    format!("pool:{p}:{}:{}:{}:", encode_text(c), join(v), join(s))
                })
                .collect(),
        );
        sections.push(
            self.roles
                .iter()
                .map(|(r, p)| format!("role:{r}:{}:", join(p)))
                .collect(),
        );
        sections.push(
            self.acls
                .iter()
                .map(|a| {
                    format!(
                        "acl:{}:{}:{}:{}:",
                        u8::from(a.propagate),
                        a.path,
                        a.ugids.join(","),
                        a.roles.join(",")
                    )
                })
                .collect(),
        );
        let mut out = String::new();
        for s in sections.into_iter().filter(|s| !s.is_empty()) {
            for line in s {
                out.push_str(&line);
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "user:root@pam:1:0:::root@example.com:::\ntoken:root@pam!ci:0:1:for CI:\nuser:alice@pve:1:0:Alice:Doe:alice@example.com:operator::\n\ngroup:ops:alice@pve:Operators:\n\npool:web::100,101:local:\n\nrole:Watcher:Sys.Audit,VM.Audit:\n\nacl:1:/vms:@ops:PVEVMUser:\nacl:0:/:root@pam!ci:Watcher:\n\n";

    #[test]
    fn parses_and_writes_back() {
        let cfg = UserConfig::parse(SAMPLE).unwrap();
        assert!(cfg.users["alice@pve"].enable);
        assert_eq!(cfg.users["alice@pve"].firstname, "Alice");
        assert!(cfg.tokens["root@pam!ci"].privsep);
        assert!(cfg.groups["ops"].0.contains("alice@pve"));
        assert_eq!(cfg.acls[1].ugids, ["root@pam!ci"]);
        assert_eq!(cfg.pools["web"].1.len(), 2);
        let again = UserConfig::parse(&cfg.to_text()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = UserConfig::parse("user:alice:1:0::::::\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("userid"));
        let e = UserConfig::parse("user:a@pve:1:soon::::::\n").unwrap_err();
        assert!(e.message.contains("expire"));
        let e = UserConfig::parse("acl:1:vms:@ops:PVEVMUser:\n").unwrap_err();
        assert!(e.message.contains("path"));
    }

    #[test]
    fn a_token_without_its_user_is_skipped_not_fatal() {
        let cfg = UserConfig::parse("user:root@pam:1:0::::::\ntoken:bob@pve!x:0:1::\n").unwrap();
        assert!(cfg.tokens.is_empty());
        assert!(cfg.warnings[0].contains("bob@pve!x"));
    }

    #[test]
    fn comments_are_encoded_and_other_fields_checked() {
        let mut cfg = UserConfig::parse(SAMPLE).unwrap();
        let evil = "hi\nacl:1:/:alice@pve:Administrator:";
        cfg.tokens.get_mut("root@pam!ci").unwrap().comment = evil.into();
        cfg.users.get_mut("alice@pve").unwrap().comment = evil.into();
        let text = cfg.to_text();
        let again = UserConfig::parse(&text).unwrap();
        assert_eq!(again.acls.len(), 2, "{text}");
        assert_eq!(again.tokens["root@pam!ci"].comment, evil);
        assert_eq!(again.users["alice@pve"].comment, evil);
        cfg.check().unwrap();
        cfg.users.get_mut("alice@pve").unwrap().firstname = "A:1".into();
        assert!(cfg.check().unwrap_err().message.contains("firstname"));
    }
}
