//! Authentication: users and tokens from `user.cfg`, password hashes (Argon2id) in
//! `priv/shadow.cfg`, token secrets (SHA-256 of the UUID) in `priv/token.cfg`, tickets and
//! CSRF tokens signed with an HMAC key kept in `priv/authkey.key`.
//!
//! `root@pam` is checked against the shadow file, not the host's PAM: these machines run
//! the daemon in sandboxes whose `/etc/shadow` is not the operator's, and the first start
//! sets the password (`--root-password` / `FERROX_ROOT_PASSWORD`). Other `@pam` users are
//! handled the same way. This is the documented substitute for PAM.

use crate::error::ApiError;
use crate::fsutil::write_atomic;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use ferrox_types::user_config::{Token, User, UserConfig};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Ticket lifetime and allowed clock skew, as in Proxmox VE.
pub const TICKET_LIFETIME: i64 = 2 * 3600;
const CLOCK_SKEW: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Who is calling: a user, or one of the user's API tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub userid: String,
    /// Token name (the part after `!`) when authenticated with an API token.
    pub token: Option<String>,
}

impl Caller {
    /// `user@realm` or `user@realm!token`, as written in UPIDs and ACLs.
    pub fn auth_id(&self) -> String {
        match &self.token {
            Some(t) => format!("{}!{t}", self.userid),
            None => self.userid.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
}

/// Where configuration writes go: this node's `etc/` directory, or the cluster store
/// (which mirrors the tree back into `etc/` before the write returns).
pub trait ConfigWriter: Send + Sync {
    /// Writes every file (paths relative to `etc/`) or none of them.
    fn write_files(&self, files: &[(&str, &str)]) -> Result<(), String>;
}

/// Writes straight into a local `etc/` directory (a node without the store: tests).
pub struct LocalFiles(pub PathBuf);

impl ConfigWriter for LocalFiles {
    fn write_files(&self, files: &[(&str, &str)]) -> Result<(), String> {
        for (path, data) in files {
            let mode = if path.starts_with("priv/") {
                0o600
            } else {
                0o640
            };
            let target = self.0.join(path);
            write_atomic(&target, data.as_bytes(), mode)
                .map_err(|e| format!("writing {}: {e}", target.display()))?;
        }
        Ok(())
    }
}

pub struct Auth {
    etc: PathBuf,
    writer: Arc<dyn ConfigWriter>,
    accounts: RwLock<Accounts>,
}

/// What every request consults, kept in memory: the ticket key, user.cfg and the token
/// secret hashes. Changes replace the snapshot after the files are written.
struct Accounts {
    key: Arc<Vec<u8>>,
    users: Arc<UserConfig>,
    token_hashes: BTreeMap<String, String>,
}

const USER_CFG: &str = "user.cfg";
const SHADOW: &str = "priv/shadow.cfg";
const TOKENS: &str = "priv/token.cfg";
const AUTHKEY: &str = "priv/authkey.key";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthSetupError + '_ {
    move |source| AuthSetupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_or_empty(path: &Path) -> Result<String, AuthSetupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// `key:value:` lines (shadow.cfg) or `key value` lines (token.cfg).
fn read_secret_lines(path: &Path, sep: char) -> Result<BTreeMap<String, String>, AuthSetupError> {
    Ok(read_or_empty(path)?
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(sep)?;
            Some((k.to_string(), v.trim_end_matches(':').to_string()))
        })
        .collect())
}

fn parse_users(etc: &Path) -> Result<UserConfig, AuthSetupError> {
    let path = etc.join(USER_CFG);
    UserConfig::parse(&read_or_empty(&path)?)
        .map_err(|e| AuthSetupError::Format(format!("{}: {e}", path.display())))
}

fn load_accounts(etc: &Path) -> Result<Accounts, AuthSetupError> {
    let key_path = etc.join(AUTHKEY);
    let key = decode_hex(read_or_empty(&key_path)?.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AuthSetupError::Format(format!("{}: not hex", key_path.display())))?;
    Ok(Accounts {
        key: Arc::new(key),
        users: Arc::new(parse_users(etc)?),
        token_hashes: read_secret_lines(&etc.join(TOKENS), ' ')?,
    })
}

fn sign(key: &[u8], text: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(mac.finalize().into_bytes())
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Opens (and on first start initialises) the auth files below `etc`.
    pub fn open(etc: &Path) -> Result<Auth, AuthSetupError> {
        Auth::open_with(etc, Arc::new(LocalFiles(etc.to_path_buf())))
    }

    /// As `open`, with writes going through `writer`.
    pub fn open_with(etc: &Path, writer: Arc<dyn ConfigWriter>) -> Result<Auth, AuthSetupError> {
        let mut init: Vec<(&str, String)> = Vec::new();
        if read_or_empty(&etc.join(AUTHKEY))?.trim().is_empty() {
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            init.push((AUTHKEY, key.iter().map(|b| format!("{b:02x}")).collect()));
        }
        let mut users = parse_users(etc)?;
        if !users.users.contains_key("root@pam") {
            users.users.insert(
                "root@pam".into(),
                User {
                    userid: "root@pam".into(),
                    enable: true,
                    email: "root@localhost".into(),
                    ..User::default()
                },
            );
            init.push((USER_CFG, users.to_text()));
        }
        if !init.is_empty() {
            let files: Vec<(&str, &str)> = init.iter().map(|(p, d)| (*p, d.as_str())).collect();
            writer.write_files(&files).map_err(AuthSetupError::Format)?;
        }
        let accounts = load_accounts(etc)?;
        Ok(Auth {
            etc: etc.to_path_buf(),
            writer,
            accounts: RwLock::new(accounts),
        })
    }

    /// Re-reads the files after someone else changed them (another cluster node).
    pub fn reload(&self) -> Result<(), AuthSetupError> {
        let accounts = load_accounts(&self.etc)?;
        if let Ok(mut a) = self.accounts.write() {
            *a = accounts;
        }
        Ok(())
    }

    fn key(&self) -> Arc<Vec<u8>> {
        self.accounts
            .read()
            .map(|a| Arc::clone(&a.key))
            .unwrap_or_default()
    }

    /// The current user.cfg (a shared snapshot: cheap to take per request).
    pub fn user_config(&self) -> Arc<UserConfig> {
        self.accounts
            .read()
            .map(|a| Arc::clone(&a.users))
            .unwrap_or_default()
    }

    pub fn has_password(&self, userid: &str) -> bool {
        read_secret_lines(&self.etc.join(SHADOW), ':')
            .map(|m| m.contains_key(userid))
            .unwrap_or(false)
    }

    /// Sets (or replaces) a user's password hash.
    pub fn set_password(&self, userid: &str, password: &str) -> Result<(), ApiError> {
        if password.len() < 5 {
            return Err(ApiError::param(
                "password",
                "value must be at least 5 characters long",
            ));
        }
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| ApiError::internal(format!("hashing the password failed: {e}")))?
            .to_string();
        let mut lines = read_secret_lines(&self.etc.join(SHADOW), ':').map_err(internal)?;
        lines.insert(userid.to_string(), hash);
        let text: String = lines.iter().map(|(u, h)| format!("{u}:{h}:\n")).collect();
        self.writer
            .write_files(&[(SHADOW, &text)])
            .map_err(ApiError::internal)
    }

    fn user_usable(&self, userid: &str) -> bool {
        self.user_config()
            .users
            .get(userid)
            .is_some_and(|u| u.enable && (u.expire == 0 || u.expire as i64 > now()))
    }

    fn check_password(&self, userid: &str, password: &str) -> bool {
        let Ok(lines) = read_secret_lines(&self.etc.join(SHADOW), ':') else {
            return false;
        };
        let Some(stored) = lines.get(userid) else {
            return false;
        };
        let Ok(hash) = PasswordHash::new(stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    }

    /// Normalises `user` + optional realm into `user@realm`, finding the user
    /// case-insensitively in the realm part as Proxmox VE does.
    pub fn canonical_userid(&self, username: &str, realm: Option<&str>) -> String {
        let full = match realm {
            Some(r) if !username.contains('@') => format!("{username}@{r}"),
            _ => username.to_string(),
        };
        if let Some((name, realm)) = full.rsplit_once('@') {
            if let Some(found) = self.user_config().users.keys().find(|k| {
                k.rsplit_once('@')
                    .is_some_and(|(n, r)| n == name && r.eq_ignore_ascii_case(realm))
            }) {
                return found.clone();
            }
        }
        full
    }

    /// Password login; `password` may also be a still-valid ticket of the same user.
    pub fn login(&self, userid: &str, password: &str) -> Result<String, ApiError> {
        let fail = || ApiError::new(401, "authentication failure");
        if !self.user_usable(userid) {
            return Err(fail());
        }
        let by_ticket =
            password.starts_with("PVE:") && self.verify_ticket(password).as_deref() == Some(userid);
        if by_ticket || self.check_password(userid, password) {
            Ok(self.ticket(userid))
        } else {
            Err(fail())
        }
    }

    pub fn ticket(&self, userid: &str) -> String {
        let plain = format!("PVE:{userid}:{:08X}", now());
        let sig = sign(&self.key(), &plain);
        format!("{plain}::{sig}")
    }

    /// The user a ticket was issued to, if its signature and age are valid.
    pub fn verify_ticket(&self, ticket: &str) -> Option<String> {
        let (plain, sig) = ticket.split_once("::")?;
        let rest = plain.strip_prefix("PVE:")?;
        let (userid, hex) = rest.rsplit_once(':')?;
        let issued = i64::from_str_radix(hex, 16).ok()?;
        let age = now() - issued;
        if !(-CLOCK_SKEW..TICKET_LIFETIME).contains(&age) {
            return None;
        }
        if !constant_time_eq(sign(&self.key(), plain).as_bytes(), sig.as_bytes()) {
            return None;
        }
        self.user_usable(userid).then(|| userid.to_string())
    }

    pub fn csrf_token(&self, userid: &str) -> String {
        let stamp = format!("{:08X}", now());
        let sig = sign(&self.key(), &format!("{stamp}:{userid}"));
        format!("{stamp}:{sig}")
    }

    pub fn verify_csrf(&self, userid: &str, token: &str) -> bool {
        let Some((stamp, sig)) = token.split_once(':') else {
            return false;
        };
        let Ok(issued) = i64::from_str_radix(stamp, 16) else {
            return false;
        };
        let age = now() - issued;
        (-CLOCK_SKEW..TICKET_LIFETIME).contains(&age)
            && constant_time_eq(
                sign(&self.key(), &format!("{stamp}:{userid}")).as_bytes(),
                sig.as_bytes(),
            )
    }

    /// Verifies `user@realm!token=secret` (the value after `PVEAPIToken=`).
    pub fn verify_token(&self, value: &str) -> Option<Caller> {
        let value = value.trim();
        // `PVEAPIToken=` may be followed by a space instead of the first `=`.
        let (full_id, secret) = value.rsplit_once('=')?;
        let full_id = full_id.trim();
        let (userid, token) = full_id.split_once('!')?;
        if !self.user_usable(userid) {
            return None;
        }
        let accounts = self.accounts.read().ok()?;
        let tok = accounts.users.tokens.get(full_id)?;
        if tok.expire != 0 && tok.expire as i64 <= now() {
            return None;
        }
        let expected = accounts.token_hashes.get(full_id)?;
        constant_time_eq(expected.as_bytes(), sha256_hex(secret.trim()).as_bytes()).then(|| {
            Caller {
                userid: userid.to_string(),
                token: Some(token.to_string()),
            }
        })
    }

    /// Applies `change` to copies of user.cfg and the token hashes, writes both files and
    /// only then makes the copies current: a failed write leaves everything as it was.
    fn change_tokens(
        &self,
        change: impl FnOnce(&mut UserConfig, &mut BTreeMap<String, String>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut accounts = self
            .accounts
            .write()
            .map_err(|_| ApiError::internal("user config lock poisoned"))?;
        let mut users = (*accounts.users).clone();
        let mut hashes = accounts.token_hashes.clone();
        change(&mut users, &mut hashes)?;
        let text: String = hashes.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        self.writer
            .write_files(&[(TOKENS, &text), (USER_CFG, &users.to_text())])
            .map_err(ApiError::internal)?;
        *accounts = Accounts {
            key: Arc::clone(&accounts.key),
            users: Arc::new(users),
            token_hashes: hashes,
        };
        Ok(())
    }

    /// Creates an API token; returns the secret, which is shown only this once.
    pub fn create_token(&self, userid: &str, token: Token) -> Result<String, ApiError> {
        let secret = uuid::Uuid::new_v4().to_string();
        self.change_tokens(|users, hashes| {
            if !users.users.contains_key(userid) {
                return Err(ApiError::internal(format!("no such user ('{userid}')")));
            }
            if users.tokens.contains_key(&token.full_id) {
                return Err(ApiError::param(
                    "tokenid",
                    format!("Token '{}' already exists.", token.full_id),
                ));
            }
            hashes.insert(token.full_id.clone(), sha256_hex(&secret));
            users.tokens.insert(token.full_id.clone(), token);
            Ok(())
        })?;
        Ok(secret)
    }

    pub fn delete_token(&self, full_id: &str) -> Result<(), ApiError> {
        self.change_tokens(|users, hashes| {
            if users.tokens.remove(full_id).is_none() {
                return Err(ApiError::internal(format!("no such token '{full_id}'")));
            }
            hashes.remove(full_id);
            Ok(())
        })
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path()).unwrap();
        auth.set_password("root@pam", "secret1").unwrap();
        (dir, auth)
    }

    #[test]
    fn tickets_have_the_pve_shape_and_verify() {
        let (_d, auth) = auth();
        let ticket = auth.login("root@pam", "secret1").unwrap();
        let fields: Vec<&str> = ticket.splitn(3, ':').collect();
        assert_eq!(fields[0], "PVE");
        assert_eq!(fields[1], "root@pam");
        assert!(ticket.contains("::"));
        assert_eq!(auth.verify_ticket(&ticket).as_deref(), Some("root@pam"));
        let forged = ticket.replace("root@pam", "admin@pve");
        assert_eq!(auth.verify_ticket(&forged), None);
        // renewal with the ticket as password
        assert!(auth.login("root@pam", &ticket).is_ok());
    }

    #[test]
    fn wrong_password_is_an_authentication_failure() {
        let (_d, auth) = auth();
        let err = auth.login("root@pam", "wrong").unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (401, "authentication failure")
        );
        assert!(auth.login("nobody@pve", "secret1").is_err());
    }

    #[test]
    fn csrf_is_bound_to_the_user() {
        let (_d, auth) = auth();
        let token = auth.csrf_token("root@pam");
        assert!(auth.verify_csrf("root@pam", &token));
        assert!(!auth.verify_csrf("other@pve", &token));
        assert!(!auth.verify_csrf("root@pam", "00000000:abc"));
    }

    #[test]
    fn api_tokens_verify_and_are_stored_hashed() {
        let (dir, auth) = auth();
        let secret = auth
            .create_token(
                "root@pam",
                Token {
                    full_id: "root@pam!ci".into(),
                    privsep: false,
                    ..Token::default()
                },
            )
            .unwrap();
        let caller = auth.verify_token(&format!("root@pam!ci={secret}")).unwrap();
        assert_eq!(caller.auth_id(), "root@pam!ci");
        assert!(auth.verify_token("root@pam!ci=wrong").is_none());
        let stored = std::fs::read_to_string(dir.path().join("priv/token.cfg")).unwrap();
        assert!(!stored.contains(&secret));
        assert!(auth
            .create_token(
                "root@pam",
                Token {
                    full_id: "root@pam!ci".into(),
                    ..Token::default()
                }
            )
            .is_err());
        auth.delete_token("root@pam!ci").unwrap();
        assert!(auth
            .verify_token(&format!("root@pam!ci={secret}"))
            .is_none());
        // the file survives a reopen
        let again = Auth::open(dir.path()).unwrap();
        assert!(again.user_config().tokens.is_empty());
    }
}
