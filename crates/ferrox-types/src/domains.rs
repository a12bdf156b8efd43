//! `domains.cfg`: authentication realms in Proxmox VE's section-config format. `pam` and
//! `pve` always exist; `ldap` realms name their server and how a user's entry is found.
//! The bind password of an LDAP realm is not here: it lives in `priv/realm/<realm>.pw`.

use crate::format;
use crate::section_config::invalid;
use crate::section_config::{self, header_line, parse_bool, property_line, SectionConfigError};
use std::collections::BTreeMap;

/// How to reach an LDAP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapMode {
    Ldap,
    Ldaps,
    StartTls,
}

impl LdapMode {
    pub fn parse(text: &str) -> Option<LdapMode> {
        match text {
            "ldap" => Some(LdapMode::Ldap),
            "ldaps" => Some(LdapMode::Ldaps),
            "ldap+starttls" => Some(LdapMode::StartTls),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LdapMode::Ldap => "ldap",
            LdapMode::Ldaps => "ldaps",
            LdapMode::StartTls => "ldap+starttls",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapRealm {
    pub server1: String,
    pub server2: Option<String>,
    pub port: Option<u16>,
    pub base_dn: String,
    /// The attribute holding the user name (`uid`, `sAMAccountName`).
    pub user_attr: String,
    /// Searching the user needs a bind first (else the DN is `user_attr=name,base_dn`).
    pub bind_dn: Option<String>,
    pub mode: LdapMode,
    /// Check the server certificate (ldaps, starttls).
    pub verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmKind {
    Pam,
    Pve,
    Ldap(LdapRealm),
}

impl RealmKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            RealmKind::Pam => "pam",
            RealmKind::Pve => "pve",
            RealmKind::Ldap(_) => "ldap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    pub id: String,
    pub kind: RealmKind,
    pub comment: String,
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainsConfig {
    pub realms: BTreeMap<String, Realm>,
}

/// A host name or address of an LDAP server (no scheme, no spaces).
pub fn server_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!("'{value}' is not a host name or address"))
    }
}

/// An LDAP DN as written in the config: one line, not empty.
pub fn dn(value: &str) -> Result<(), String> {
    format::single_line(value)?;
    if value.trim().is_empty() || !value.contains('=') {
        return Err(format!("'{value}' is not a distinguished name"));
    }
    Ok(())
}

impl Default for DomainsConfig {
    /// The two realms every node has.
    fn default() -> DomainsConfig {
        let mut realms = BTreeMap::new();
        realms.insert(
            "pam".into(),
            Realm {
                id: "pam".into(),
                kind: RealmKind::Pam,
                comment: "Linux PAM standard authentication".into(),
                default: false,
            },
        );
        realms.insert(
            "pve".into(),
            Realm {
                id: "pve".into(),
                kind: RealmKind::Pve,
                comment: "Proxmox VE authentication server".into(),
                default: true,
            },
        );
        DomainsConfig { realms }
    }
}

impl DomainsConfig {
    pub fn parse(raw: &str) -> Result<DomainsConfig, SectionConfigError> {
        let mut cfg = DomainsConfig::default();
        for section in section_config::parse(raw)? {
            let id = section.id.clone();
            format::realm(&id).map_err(|e| invalid(&id, e))?;
            let props: BTreeMap<&str, &str> = section
                .properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let get = |k: &str| props.get(k).map(|v| v.to_string());
            let need =
                |k: &str| get(k).ok_or_else(|| invalid(&id, format!("missing property '{k}'")));
            let kind = match section.section_type.as_str() {
                "pam" => RealmKind::Pam,
                "pve" => RealmKind::Pve,
                "ldap" => {
                    let server1 = need("server1")?;
                    server_name(&server1)
                        .map_err(|e| invalid(&id, format!("property 'server1': {e}")))?;
                    let base_dn = need("base_dn")?;
                    dn(&base_dn).map_err(|e| invalid(&id, format!("property 'base_dn': {e}")))?;
                    let port = match get("port") {
                        Some(p) => Some(p.parse().map_err(|_| {
                            invalid(&id, format!("property 'port': '{p}' is not a port"))
                        })?),
                        None => None,
                    };
                    let mode = match get("mode") {
                        Some(m) => LdapMode::parse(&m).ok_or_else(|| {
                            invalid(
                                &id,
                                format!(
                                    "property 'mode': '{m}' is not ldap, ldaps or ldap+starttls"
                                ),
                            )
                        })?,
                        None => LdapMode::Ldap,
                    };
                    RealmKind::Ldap(LdapRealm {
                        server1,
                        server2: get("server2"),
                        port,
                        base_dn,
                        user_attr: get("user_attr").unwrap_or_else(|| "uid".into()),
                        bind_dn: get("bind_dn"),
                        mode,
                        verify: match props.get("verify") {
                            Some(v) => parse_bool(&id, "verify", v)?,
                            None => false,
                        },
                    })
                }
                other => {
                    return Err(invalid(&id, format!("unsupported realm type '{other}'")));
                }
            };
            let realm = Realm {
                id: id.clone(),
                kind,
                comment: get("comment").unwrap_or_default(),
                default: match props.get("default") {
                    Some(v) => parse_bool(&id, "default", v)?,
                    None => false,
                },
            };
            cfg.realms.insert(id, realm);
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for r in self.realms.values() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&header_line(r.kind.type_name(), &r.id));
            if !r.comment.is_empty() {
                out.push_str(&property_line("comment", &r.comment));
            }
            if r.default {
                out.push_str(&property_line("default", "1"));
            }
            if let RealmKind::Ldap(l) = &r.kind {
                out.push_str(&property_line("server1", &l.server1));
                if let Some(s) = &l.server2 {
                    out.push_str(&property_line("server2", s));
                }
                if let Some(p) = l.port {
                    out.push_str(&property_line("port", &p.to_string()));
                }
                out.push_str(&property_line("base_dn", &l.base_dn));
                out.push_str(&property_line("user_attr", &l.user_attr));
                if let Some(b) = &l.bind_dn {
                    out.push_str(&property_line("bind_dn", b));
                }
                out.push_str(&property_line("mode", l.mode.as_str()));
                if l.verify {
                    out.push_str(&property_line("verify", "1"));
                }
            }
        }
        out
    }

    /// The realm of a user id (`alice@corp` → `corp`).
    pub fn realm_of(&self, userid: &str) -> Option<&Realm> {
        let (_, realm) = userid.rsplit_once('@')?;
        self.realms.get(realm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pam: pam\n\tcomment Linux PAM standard authentication\n\npve: pve\n\tcomment Proxmox VE authentication server\n\tdefault 1\n\nldap: corp\n\tserver1 ldap.example.com\n\tport 389\n\tbase_dn ou=people,dc=example,dc=com\n\tuser_attr uid\n\tmode ldap\n";

    #[test]
    fn parses_and_round_trips() {
        let cfg = DomainsConfig::parse(SAMPLE).unwrap();
        let RealmKind::Ldap(l) = &cfg.realms["corp"].kind else {
            panic!("not ldap");
        };
        assert_eq!((l.port, l.user_attr.as_str()), (Some(389), "uid"));
        assert_eq!(cfg.realm_of("alice@corp").unwrap().id, "corp");
        assert_eq!(DomainsConfig::parse(&cfg.to_text()).unwrap(), cfg);
        assert!(DomainsConfig::parse("").unwrap().realms.contains_key("pam"));
    }

    #[test]
    fn errors_name_the_realm_and_property() {
        let e = DomainsConfig::parse("ldap: corp\n\tserver1 x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("corp") && e.contains("base_dn"), "{e}");
        let e = DomainsConfig::parse("ldap: corp\n\tserver1 a b\n\tbase_dn dc=x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server1"), "{e}");
        assert!(DomainsConfig::parse("ad: x1\n").is_err());
    }
}
