//! Password checks against an LDAP server (an `ldap` realm): find the user's entry (by
//! search after a service bind, or by building the DN from `user_attr` and `base_dn`),
//! then bind as that entry with the given password. `server2` is tried when `server1`
//! cannot be reached.

use ferrox_types::domains::{LdapMode, LdapRealm};
use ldap3::{dn_escape, ldap_escape, LdapConn, LdapConnSettings, Scope, SearchEntry};
use std::time::Duration;

/// How long to wait for an LDAP server before trying the next one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn url(realm: &LdapRealm, host: &str) -> String {
    let (scheme, default_port) = match realm.mode {
        LdapMode::Ldaps => ("ldaps", 636),
        LdapMode::Ldap | LdapMode::StartTls => ("ldap", 389),
    };
    format!("{scheme}://{host}:{}", realm.port.unwrap_or(default_port))
}

/// Whether `password` is `user`'s password in the realm's directory. `Err` when no server
/// could be asked (the login then fails like a wrong password, and the reason is logged).
pub fn authenticate(
    realm: &LdapRealm,
    bind_password: Option<&str>,
    user: &str,
    password: &str,
) -> Result<bool, String> {
    // An empty password would be an "unauthenticated bind", which servers accept.
    if password.is_empty() {
        return Ok(false);
    }
    let mut last_error = String::from("no LDAP server configured");
    for host in std::iter::once(&realm.server1).chain(realm.server2.as_ref()) {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(CONNECT_TIMEOUT)
            .set_starttls(realm.mode == LdapMode::StartTls)
            .set_no_tls_verify(!realm.verify);
        let mut conn = match LdapConn::with_settings(settings, &url(realm, host)) {
            Ok(c) => c,
            Err(e) => {
                last_error = format!("{host}: {e}");
                continue;
            }
        };
        let result = bind_as_user(&mut conn, realm, bind_password, user, password);
        let _ = conn.unbind();
        return result;
    }
    Err(last_error)
}

fn bind_as_user(
    conn: &mut LdapConn,
    realm: &LdapRealm,
    bind_password: Option<&str>,
    user: &str,
    password: &str,
) -> Result<bool, String> {
    let dn = match &realm.bind_dn {
        Some(bind_dn) => {
            conn.simple_bind(bind_dn, bind_password.unwrap_or(""))
                .and_then(|r| r.success())
                .map_err(|e| format!("service bind as {bind_dn}: {e}"))?;
            let filter = format!("({}={})", realm.user_attr, ldap_escape(user));
            let (entries, _) = conn
                .search(&realm.base_dn, Scope::Subtree, &filter, vec!["1.1"])
                .and_then(|r| r.success())
                .map_err(|e| format!("searching {filter}: {e}"))?;
            match entries.as_slice() {
                [one] => SearchEntry::construct(one.clone()).dn,
                _ => return Ok(false),
            }
        }
        None => format!("{}={},{}", realm.user_attr, dn_escape(user), realm.base_dn),
    };
    Ok(conn
        .simple_bind(&dn, password)
        .map(|r| r.success().is_ok())
        .unwrap_or(false))
}
