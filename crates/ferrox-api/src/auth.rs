//! Authentication: users and tokens from `user.cfg`, password hashes (Argon2id) in
//! `priv/shadow.cfg`, token secrets (SHA-256 of the UUID) in `priv/token.cfg`, tickets and
//! CSRF tokens signed with an HMAC key kept in `priv/authkey.key`.
//!
//! `@pam` users: a user whose password was set through Ferrox (root@pam at first start,
//! with `FERROX_ROOT_PASSWORD`) logs in with that password, kept in the shadow file; any
//! other `@pam` user who has an account on the host is checked by the host's PAM
//! (`pam_realm`). Users of an `ldap` realm are checked by their directory (`ldap`).

use crate::error::ApiError;
use crate::fsutil::write_atomic;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use ferrox_types::domains::{DomainsConfig, RealmKind};
use ferrox_types::tfa_config::TfaConfig;
use ferrox_types::user_config::{Token, User, UserConfig};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Ticket lifetime and allowed clock skew, as in Proxmox VE.
pub const TICKET_LIFETIME: i64 = 2 * 3600;
const CLOCK_SKEW: i64 = 300;
/// Proxmox VE's VNC ticket window: issued at most 20 s in the future, used within 40 s.
const VNC_TICKET_SKEW: i64 = 20;
const VNC_TICKET_LIFETIME: i64 = 40;

type HmacSha256 = Hmac<Sha256>;

/// Unix seconds.
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

/// One file of a compare-and-set write: `data` replaces the file only if it still holds
/// `expected` (`None`: the file must not exist).
pub struct FileWrite<'a> {
    pub path: &'a str,
    pub expected: Option<&'a str>,
    pub data: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Another writer changed a file since it was read: read again and retry.
    #[error("{0} changed meanwhile")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// Where the account files live (paths relative to `etc/`): this node's `etc/` directory,
/// or the cluster store. Reads return the newest state this node knows; writes are
/// compare-and-set and all-or-nothing, so concurrent changes are never lost.
pub trait AccountFiles: Send + Sync {
    fn read(&self, path: &str) -> Result<Option<String>, String>;
    /// As `read`, but seeing every write acknowledged anywhere before it (a cluster node
    /// may lag the others): what a read-modify-write starts from.
    fn read_latest(&self, path: &str) -> Result<Option<String>, String> {
        self.read(path)
    }
    fn write(&self, files: &[FileWrite<'_>]) -> Result<(), WriteError>;
}

/// Files in a local `etc/` directory (a node without the store: unit tests). A mutex makes
/// compare-and-write atomic within the process.
pub struct LocalFiles {
    dir: PathBuf,
    writing: std::sync::Mutex<()>,
}

impl LocalFiles {
    pub fn new(dir: &Path) -> LocalFiles {
        LocalFiles {
            dir: dir.to_path_buf(),
            writing: std::sync::Mutex::new(()),
        }
    }
}

impl AccountFiles for LocalFiles {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        match std::fs::read_to_string(self.dir.join(path)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.dir.join(path).display())),
        }
    }

    fn write(&self, files: &[FileWrite<'_>]) -> Result<(), WriteError> {
        let _held = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for f in files {
            if self.read(f.path).map_err(WriteError::Failed)?.as_deref() != f.expected {
                return Err(WriteError::Conflict(f.path.to_string()));
            }
        }
        for f in files {
            let target = self.dir.join(f.path);
            write_atomic(
                &target,
                f.data.as_bytes(),
                crate::fsutil::config_file_mode(f.path),
            )
            .map_err(|e| WriteError::Failed(format!("writing {}: {e}", target.display())))?;
        }
        Ok(())
    }
}

/// The result of the first login step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Ticket(String),
    /// The user has a second factor: a partial ticket to answer with it.
    NeedTfa(String),
}

impl LoginOutcome {
    /// The full ticket (tests and callers that know the user has no second factor).
    pub fn ticket(self) -> Option<String> {
        match self {
            LoginOutcome::Ticket(t) => Some(t),
            LoginOutcome::NeedTfa(_) => None,
        }
    }
}

/// The time step (`time / period`) at which `code` is valid for the TOTP of `url`,
/// allowing one step of clock difference either way.
pub fn totp_step_matching(url: &str, code: &str, time: u64) -> Option<u64> {
    totp_rs::Totp::from_url_unchecked(url)
        .ok()?
        .check(code, time)
}

pub struct Auth {
    files: Arc<dyn AccountFiles>,
    accounts: RwLock<Accounts>,
    throttle: LoginThrottle,
    /// The last TOTP step used per user and entry: a code is good once.
    totp_used: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// A hash checked when a user has none, so that a login takes as long for a user who
    /// does not exist as for one who does.
    dummy_hash: String,
}

/// What every request consults, kept in memory: the ticket key, user.cfg, the token secret
/// hashes and the password hashes. Replaced as a whole after each change or reload.
struct Accounts {
    key: Arc<Vec<u8>>,
    users: Arc<UserConfig>,
    token_hashes: BTreeMap<String, String>,
    shadow: BTreeMap<String, String>,
    tfa: Arc<TfaConfig>,
    domains: Arc<DomainsConfig>,
    realm_passwords: BTreeMap<String, String>,
}

/// The account documents as a change sees them (parsed from what was just read).
pub struct AccountDocs {
    pub users: UserConfig,
    /// full token id → SHA-256 of the secret.
    pub token_hashes: BTreeMap<String, String>,
    /// user id → Argon2 hash.
    pub shadow: BTreeMap<String, String>,
    /// Second factors (TOTP, recovery keys).
    pub tfa: TfaConfig,
    /// Realms (`domains.cfg`).
    pub domains: DomainsConfig,
    /// realm → bind password of its LDAP service account.
    pub realm_passwords: BTreeMap<String, String>,
}

const USER_CFG: &str = "user.cfg";
const SHADOW: &str = "priv/shadow.cfg";
const TOKENS: &str = "priv/token.cfg";
const AUTHKEY: &str = "priv/authkey.key";
const TFA: &str = "priv/tfa.cfg";
const DOMAINS: &str = "domains.cfg";
/// `<realm> <password>` lines: bind passwords of LDAP realms (Proxmox VE keeps one file
/// per realm under `priv/realm/`; one file keeps every account change a single
/// compare-and-set).
const REALM_PASSWORDS: &str = "priv/realm.pw";
/// How long the partial ticket of a TFA login is good for.
const TFA_CHALLENGE_LIFETIME: i64 = 300;
/// A change that keeps losing the compare-and-set to other writers gives up after this.
const CHANGE_TRIES: usize = 50;

/// `key:value:` lines (shadow.cfg) or `key value` lines (token.cfg).
fn parse_secret_lines(text: &str, sep: char) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(sep)?;
            Some((k.to_string(), v.trim_end_matches(':').to_string()))
        })
        .collect()
}

fn shadow_text(shadow: &BTreeMap<String, String>) -> String {
    shadow.iter().map(|(u, h)| format!("{u}:{h}:\n")).collect()
}

fn tokens_text(hashes: &BTreeMap<String, String>) -> String {
    hashes.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

/// The texts of the account files as read, `None` for a missing file.
struct Texts {
    users: Option<String>,
    tokens: Option<String>,
    shadow: Option<String>,
    key: Option<String>,
    tfa: Option<String>,
    domains: Option<String>,
    realm_passwords: Option<String>,
}

fn read_texts(files: &dyn AccountFiles) -> Result<Texts, String> {
    read_texts_with(&|p| files.read(p))
}

fn read_texts_latest(files: &dyn AccountFiles) -> Result<Texts, String> {
    read_texts_with(&|p| files.read_latest(p))
}

fn read_texts_with(read: &dyn Fn(&str) -> Result<Option<String>, String>) -> Result<Texts, String> {
    Ok(Texts {
        users: read(USER_CFG)?,
        tokens: read(TOKENS)?,
        shadow: read(SHADOW)?,
        key: read(AUTHKEY)?,
        tfa: read(TFA)?,
        domains: read(DOMAINS)?,
        realm_passwords: read(REALM_PASSWORDS)?,
    })
}

fn parse_docs(t: &Texts) -> Result<AccountDocs, String> {
    let users = UserConfig::parse(t.users.as_deref().unwrap_or(""))
        .map_err(|e| format!("{USER_CFG}: {e}"))?;
    for w in &users.warnings {
        tracing::warn!("{USER_CFG}: {w}");
    }
    Ok(AccountDocs {
        users,
        token_hashes: parse_secret_lines(t.tokens.as_deref().unwrap_or(""), ' '),
        shadow: parse_secret_lines(t.shadow.as_deref().unwrap_or(""), ':'),
        tfa: TfaConfig::parse(t.tfa.as_deref().unwrap_or("")).map_err(|e| e.to_string())?,
        domains: DomainsConfig::parse(t.domains.as_deref().unwrap_or(""))
            .map_err(|e| format!("{DOMAINS}: {e}"))?,
        realm_passwords: parse_secret_lines(t.realm_passwords.as_deref().unwrap_or(""), ' '),
    })
}

fn load_accounts(files: &dyn AccountFiles) -> Result<Accounts, AuthSetupError> {
    let texts = read_texts(files).map_err(AuthSetupError::Format)?;
    let key = decode_hex(texts.key.as_deref().unwrap_or("").trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AuthSetupError::Format(format!("{AUTHKEY}: not hex")))?;
    let docs = parse_docs(&texts).map_err(AuthSetupError::Format)?;
    Ok(Accounts {
        key: Arc::new(key),
        users: Arc::new(docs.users),
        token_hashes: docs.token_hashes,
        shadow: docs.shadow,
        tfa: Arc::new(docs.tfa),
        domains: Arc::new(docs.domains),
        realm_passwords: docs.realm_passwords,
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

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An Argon2id hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| ApiError::internal(format!("hashing the password failed: {e}")))?
        .to_string())
}

impl Auth {
    /// Opens (and on first start initialises) the auth files below a local `etc`.
    pub fn open(etc: &Path) -> Result<Auth, AuthSetupError> {
        Auth::open_with(Arc::new(LocalFiles::new(etc)))
    }

    /// As `open`, with the files read from and written to `files`.
    pub fn open_with(files: Arc<dyn AccountFiles>) -> Result<Auth, AuthSetupError> {
        let texts = read_texts(files.as_ref()).map_err(AuthSetupError::Format)?;
        let mut writes: Vec<(&str, Option<String>, String)> = Vec::new();
        if texts.key.as_deref().unwrap_or("").trim().is_empty() {
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            let hex = key.iter().map(|b| format!("{b:02x}")).collect();
            writes.push((AUTHKEY, texts.key.clone(), hex));
        }
        let mut docs = parse_docs(&texts).map_err(AuthSetupError::Format)?;
        if !docs.users.users.contains_key("root@pam") {
            docs.users.users.insert(
                "root@pam".into(),
                User {
                    userid: "root@pam".into(),
                    enable: true,
                    email: "root@localhost".into(),
                    ..User::default()
                },
            );
            writes.push((USER_CFG, texts.users.clone(), docs.users.to_text()));
        }
        if !writes.is_empty() {
            let batch: Vec<FileWrite<'_>> = writes
                .iter()
                .map(|(path, expected, data)| FileWrite {
                    path,
                    expected: expected.as_deref(),
                    data,
                })
                .collect();
            match files.write(&batch) {
                // Another node initialised them first: use theirs.
                Ok(()) | Err(WriteError::Conflict(_)) => {}
                Err(WriteError::Failed(e)) => return Err(AuthSetupError::Format(e)),
            }
        }
        let accounts = load_accounts(files.as_ref())?;
        Ok(Auth {
            files,
            accounts: RwLock::new(accounts),
            throttle: LoginThrottle::default(),
            totp_used: Default::default(),
            dummy_hash: hash_password(&uuid::Uuid::new_v4().to_string())
                .map_err(|e| AuthSetupError::Format(e.message))?,
        })
    }

    /// Re-reads the accounts after someone else changed them (another cluster node). It
    /// reads under the accounts lock from the files' source, never from an older copy, so
    /// a reload cannot undo a change made meanwhile.
    pub fn reload(&self) -> Result<(), AuthSetupError> {
        let mut current = self
            .accounts
            .write()
            .map_err(|_| AuthSetupError::Format("accounts lock poisoned".into()))?;
        *current = load_accounts(self.files.as_ref())?;
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
        self.accounts
            .read()
            .map(|a| a.shadow.contains_key(userid))
            .unwrap_or(false)
    }

    /// A read-modify-write of the account files: `change` works on freshly read and parsed
    /// documents; what it changed is written with compare-and-set against what was read,
    /// and the whole sequence is repeated when another writer came first. Nothing is
    /// written when `change` fails or the result does not pass `UserConfig::check`.
    pub fn modify<T>(
        &self,
        mut change: impl FnMut(&mut AccountDocs) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        for attempt in 0..CHANGE_TRIES {
            if attempt > 0 {
                // Another writer won the last round: back off a little, at random, so
                // that competing writers do not keep colliding.
                let ms =
                    rand::Rng::gen_range(&mut rand::thread_rng(), 2..20 * attempt.min(10) as u64);
                std::thread::sleep(Duration::from_millis(ms));
            }
            let texts = read_texts_latest(self.files.as_ref()).map_err(ApiError::internal)?;
            let mut docs = parse_docs(&texts).map_err(ApiError::internal)?;
            let result = change(&mut docs)?;
            docs.users.check().map_err(|e| {
                let (field, msg) = e
                    .message
                    .split_once(": ")
                    .map(|(f, m)| (f.to_string(), m.to_string()))
                    .unwrap_or(("userid".into(), e.message.clone()));
                ApiError::param(&field, msg)
            })?;
            let new_users = docs.users.to_text();
            let new_tokens = tokens_text(&docs.token_hashes);
            let new_shadow = shadow_text(&docs.shadow);
            let old_tfa = TfaConfig::parse(texts.tfa.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let new_tfa = if docs.tfa == old_tfa {
                texts.tfa.clone().unwrap_or_default()
            } else {
                docs.tfa.to_text()
            };
            let old_domains = DomainsConfig::parse(texts.domains.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let new_domains = if docs.domains == old_domains {
                texts.domains.clone().unwrap_or_default()
            } else {
                docs.domains.to_text()
            };
            let new_realm_passwords = tokens_text(&docs.realm_passwords);
            let mut batch = Vec::new();
            for (path, old, new) in [
                (USER_CFG, &texts.users, &new_users),
                (TOKENS, &texts.tokens, &new_tokens),
                (SHADOW, &texts.shadow, &new_shadow),
                (TFA, &texts.tfa, &new_tfa),
                (DOMAINS, &texts.domains, &new_domains),
                (
                    REALM_PASSWORDS,
                    &texts.realm_passwords,
                    &new_realm_passwords,
                ),
            ] {
                if old.as_deref().unwrap_or("") != new.as_str() {
                    batch.push(FileWrite {
                        path,
                        expected: old.as_deref(),
                        data: new,
                    });
                }
            }
            if batch.is_empty() {
                return Ok(result);
            }
            match self.files.write(&batch) {
                Ok(()) => {
                    self.reload()
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    return Ok(result);
                }
                Err(WriteError::Conflict(_)) => continue,
                Err(WriteError::Failed(e)) => return Err(ApiError::internal(e)),
            }
        }
        Err(ApiError::internal(
            "the account files kept changing meanwhile - try again",
        ))
    }

    /// Sets (or replaces) a user's password hash.
    pub fn set_password(&self, userid: &str, password: &str) -> Result<(), ApiError> {
        if password.len() < 5 {
            return Err(ApiError::param(
                "password",
                "value must be at least 5 characters long",
            ));
        }
        if password.len() > 64 {
            return Err(ApiError::param(
                "password",
                "value may only be 64 characters long",
            ));
        }
        let hash = hash_password(password)?;
        self.modify(|docs| {
            if let Some(RealmKind::Ldap(_)) = docs.domains.realm_of(userid).map(|r| &r.kind) {
                return Err(ApiError::param(
                    "userid",
                    "the password of an LDAP user is changed in the directory",
                ));
            }
            if !docs.users.users.contains_key(userid) {
                return Err(ApiError::param(
                    "userid",
                    format!("no such user ('{userid}')"),
                ));
            }
            docs.shadow.insert(userid.to_string(), hash.clone());
            Ok(())
        })
    }

    fn user_usable(&self, userid: &str) -> bool {
        self.user_config()
            .users
            .get(userid)
            .is_some_and(|u| u.enable && (u.expire == 0 || u.expire as i64 > now()))
    }

    /// The realms (a shared snapshot).
    pub fn domains(&self) -> Arc<DomainsConfig> {
        self.accounts
            .read()
            .map(|a| Arc::clone(&a.domains))
            .unwrap_or_default()
    }

    /// Checks a password against the user's realm: the directory of an `ldap` realm; for
    /// `pam`, the host's PAM when Ferrox keeps no password of its own for the user (see
    /// the crate doc); else the password hashes kept by Ferrox.
    fn check_password(&self, userid: &str, password: &str) -> bool {
        let (name, realm) = userid.rsplit_once('@').unwrap_or((userid, ""));
        if realm == "pam" && !self.has_password(userid) && crate::pam_realm::host_has_user(name) {
            return crate::pam_realm::authenticate(name, password);
        }
        let ldap = self.accounts.read().ok().and_then(|a| {
            match a.domains.realms.get(realm).map(|r| &r.kind) {
                Some(RealmKind::Ldap(l)) => {
                    Some((l.clone(), a.realm_passwords.get(realm).cloned()))
                }
                _ => None,
            }
        });
        if let Some((ldap, bind_password)) = ldap {
            return match crate::ldap::authenticate(&ldap, bind_password.as_deref(), name, password)
            {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!("realm {realm}: {e}");
                    false
                }
            };
        }
        self.check_shadow(userid, password)
    }

    /// Verifies a password hash in the same time whether or not the user has one.
    fn check_shadow(&self, userid: &str, password: &str) -> bool {
        let stored = self
            .accounts
            .read()
            .ok()
            .and_then(|a| a.shadow.get(userid).cloned());
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let Ok(hash) = PasswordHash::new(&stored) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        known && matches
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

    /// First step of a login: the password (or a still-valid ticket of the same user, to
    /// renew it). Failed attempts count against the user and the client address (`peer`);
    /// while either is over its limit, logins are refused with 429 before any password
    /// check. A user with a second factor gets a partial ticket for `login_second_factor`.
    pub fn login(
        &self,
        userid: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<LoginOutcome, ApiError> {
        self.throttle.begin(userid, peer)?;
        let by_ticket =
            password.starts_with("PVE:") && self.verify_ticket(password).as_deref() == Some(userid);
        // The password is checked even for an unknown or disabled user (against a dummy
        // hash), so the answer takes as long whether the user exists or not.
        let ok = (by_ticket || self.check_password(userid, password)) && self.user_usable(userid);
        if !ok {
            return Err(ApiError::new(401, "authentication failure"));
        }
        let factors = self.tfa_types(userid);
        // Renewing a full ticket needs no second factor (it was given at login).
        if by_ticket || factors.is_empty() {
            self.throttle.succeeded(userid, peer);
            return Ok(LoginOutcome::Ticket(self.ticket(userid)));
        }
        // The user's count stays until the second factor is given too: a known password
        // must not reset the guesses of the second factor.
        self.throttle.release_address(peer);
        Ok(LoginOutcome::NeedTfa(self.tfa_challenge(userid, &factors)))
    }

    /// Checks a user's password (throttled like a login) without issuing anything: the
    /// confirmation of a sensitive change.
    pub fn confirm_password(
        &self,
        userid: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        self.throttle.begin(userid, peer)?;
        if self.check_password(userid, password) && self.user_usable(userid) {
            self.throttle.succeeded(userid, peer);
            Ok(())
        } else {
            Err(ApiError::new(401, "authentication failure"))
        }
    }

    fn tfa_types(&self, userid: &str) -> Vec<&'static str> {
        self.accounts
            .read()
            .ok()
            .and_then(|a| a.tfa.users.get(userid).map(|u| u.types()))
            .unwrap_or_default()
    }

    /// The partial ticket of a TFA login: `PVE:!tfa!<data>:<time>::<signature>`, where
    /// the data (base64url JSON) names the user and the factors it may answer with.
    fn tfa_challenge(&self, userid: &str, types: &[&str]) -> String {
        let data = serde_json::json!({ "user": userid, "types": types }).to_string();
        let data = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
        let plain = format!("PVE:!tfa!{data}:{:08X}", now());
        let sig = sign(&self.key(), &plain);
        format!("{plain}::{sig}")
    }

    fn verify_tfa_challenge(&self, challenge: &str, userid: &str) -> bool {
        let Some((plain, sig)) = challenge.split_once("::") else {
            return false;
        };
        let Some(rest) = plain.strip_prefix("PVE:!tfa!") else {
            return false;
        };
        let Some((data, hex)) = rest.rsplit_once(':') else {
            return false;
        };
        let Ok(issued) = i64::from_str_radix(hex, 16) else {
            return false;
        };
        if !(-CLOCK_SKEW..TFA_CHALLENGE_LIFETIME).contains(&(now() - issued))
            || !constant_time_eq(sign(&self.key(), plain).as_bytes(), sig.as_bytes())
        {
            return false;
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .is_some_and(|v| v["user"] == userid)
    }

    /// Second step of a TFA login: `response` is `totp:<code>` or `recovery:<key>`. A TOTP
    /// code is good once (no replay within its window); a recovery key is used up.
    pub fn login_second_factor(
        &self,
        userid: &str,
        challenge: &str,
        response: &str,
        peer: Option<IpAddr>,
    ) -> Result<String, ApiError> {
        self.throttle.begin(userid, peer)?;
        let fail = || ApiError::new(401, "authentication failure");
        if !self.verify_tfa_challenge(challenge, userid) || !self.user_usable(userid) {
            return Err(fail());
        }
        let ok = match response.split_once(':') {
            Some(("totp", code)) => self.check_totp(userid, code.trim()),
            Some(("recovery", key)) => self.use_recovery_key(userid, key.trim())?,
            _ => false,
        };
        if !ok {
            return Err(fail());
        }
        self.throttle.succeeded(userid, peer);
        Ok(self.ticket(userid))
    }

    fn check_totp(&self, userid: &str, code: &str) -> bool {
        let entries: Vec<(String, String)> = self
            .accounts
            .read()
            .ok()
            .and_then(|a| {
                a.tfa.users.get(userid).map(|u| {
                    u.totp
                        .iter()
                        .filter(|t| t.enable)
                        .map(|t| (t.id.clone(), t.url.clone()))
                        .collect()
                })
            })
            .unwrap_or_default();
        let time = now().max(0) as u64;
        for (id, url) in entries {
            let Some(step) = totp_step_matching(&url, code, time) else {
                continue;
            };
            let mut used = self.totp_used.lock().unwrap_or_else(|p| p.into_inner());
            let last = used.entry(format!("{userid}/{id}")).or_insert(0);
            if step > *last {
                *last = step;
                return true;
            }
        }
        false
    }

    fn use_recovery_key(&self, userid: &str, key: &str) -> Result<bool, ApiError> {
        let hash = sha256_hex(key);
        self.modify(|docs| {
            let Some(recovery) = docs
                .tfa
                .users
                .get_mut(userid)
                .and_then(|u| u.recovery.as_mut())
            else {
                return Ok(false);
            };
            for slot in recovery.keys.iter_mut() {
                if slot
                    .as_deref()
                    .is_some_and(|h| constant_time_eq(h.as_bytes(), hash.as_bytes()))
                {
                    *slot = None;
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    /// The second factors of a user (a shared snapshot).
    pub fn tfa_config(&self) -> Arc<TfaConfig> {
        self.accounts
            .read()
            .map(|a| Arc::clone(&a.tfa))
            .unwrap_or_default()
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

    /// Proxmox VE's VNC ticket (`PVEVNC:<time>::<signature>`): signed over the user and
    /// the ACL path of the console it opens, so it opens no other; valid for 40 s.
    pub fn vnc_ticket(&self, userid: &str, path: &str) -> String {
        let plain = format!("PVEVNC:{:08X}", now());
        let sig = sign(&self.key(), &format!("{plain}:{userid}:{path}"));
        format!("{plain}::{sig}")
    }

    pub fn verify_vnc_ticket(&self, ticket: &str, userid: &str, path: &str) -> bool {
        let Some((plain, sig)) = ticket.split_once("::") else {
            return false;
        };
        let Some(issued) = plain
            .strip_prefix("PVEVNC:")
            .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        else {
            return false;
        };
        let age = now() - issued;
        (-VNC_TICKET_SKEW..VNC_TICKET_LIFETIME).contains(&age)
            && constant_time_eq(
                sign(&self.key(), &format!("{plain}:{userid}:{path}")).as_bytes(),
                sig.as_bytes(),
            )
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

    /// Creates an API token; returns the secret, which is shown only this once.
    pub fn create_token(&self, userid: &str, token: Token) -> Result<String, ApiError> {
        let secret = uuid::Uuid::new_v4().to_string();
        let hash = sha256_hex(&secret);
        self.modify(|docs| {
            if !docs.users.users.contains_key(userid) {
                return Err(ApiError::internal(format!("no such user ('{userid}')")));
            }
            if docs.users.tokens.contains_key(&token.full_id) {
                return Err(ApiError::param(
                    "tokenid",
                    format!("Token '{}' already exists.", token.full_id),
                ));
            }
            docs.token_hashes
                .insert(token.full_id.clone(), hash.clone());
            docs.users
                .tokens
                .insert(token.full_id.clone(), token.clone());
            Ok(())
        })?;
        Ok(secret)
    }

    pub fn delete_token(&self, full_id: &str) -> Result<(), ApiError> {
        self.modify(|docs| {
            if docs.users.tokens.remove(full_id).is_none() {
                return Err(ApiError::internal(format!("no such token '{full_id}'")));
            }
            docs.token_hashes.remove(full_id);
            // Its ACL entries go with it, as in Proxmox VE.
            for acl in &mut docs.users.acls {
                acl.ugids.retain(|u| u != full_id);
            }
            docs.users.acls.retain(|a| !a.ugids.is_empty());
            Ok(())
        })
    }
}

/// Failed logins in a sliding window, per user and per client address. Proxmox VE only
/// delays each failure by 3 s; a guessing attack from many connections is refused here
/// outright once it passes the limits, without spending a password check on it.
#[derive(Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<ThrottleState>,
}

#[derive(Default)]
struct ThrottleState {
    by_user: std::collections::HashMap<String, std::collections::VecDeque<Instant>>,
    by_addr: std::collections::HashMap<IpAddr, std::collections::VecDeque<Instant>>,
}

/// Failed logins allowed per user, and per client address, within `THROTTLE_WINDOW`.
pub const USER_FAILURE_LIMIT: usize = 5;
pub const ADDR_FAILURE_LIMIT: usize = 20;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most (memory bound under a flood of made-up user names).
const THROTTLE_KEYS: usize = 100_000;

fn prune(list: &mut std::collections::VecDeque<Instant>, now: Instant) {
    while list
        .front()
        .is_some_and(|t| now.duration_since(*t) >= THROTTLE_WINDOW)
    {
        list.pop_front();
    }
}

/// Seconds until the oldest failure leaves the window.
fn wait_secs(list: &std::collections::VecDeque<Instant>, now: Instant) -> u64 {
    list.front()
        .map(|t| {
            THROTTLE_WINDOW
                .saturating_sub(now.duration_since(*t))
                .as_secs()
                + 1
        })
        .unwrap_or(1)
}

impl LoginThrottle {
    /// Counts an attempt of `userid` from `peer` before its password is checked, or
    /// refuses it when either is over its limit. Counting first means parallel attempts
    /// cannot get more checks than the limit; a success takes its count back.
    pub fn begin(&self, userid: &str, peer: Option<IpAddr>) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut state = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if state.by_user.len() + state.by_addr.len() > THROTTLE_KEYS {
            state.by_user.retain(|_, l| {
                prune(l, now);
                !l.is_empty()
            });
            state.by_addr.retain(|_, l| {
                prune(l, now);
                !l.is_empty()
            });
        }
        if let Some(list) = state.by_user.get_mut(userid) {
            prune(list, now);
            if list.len() >= USER_FAILURE_LIMIT {
                return Err(ApiError::new(
                    429,
                    format!(
                        "too many failed logins for user '{userid}' - try again in {} s",
                        wait_secs(list, now)
                    ),
                ));
            }
        }
        if let Some(list) = peer.and_then(|p| state.by_addr.get_mut(&p)) {
            prune(list, now);
            if list.len() >= ADDR_FAILURE_LIMIT {
                return Err(ApiError::new(
                    429,
                    format!(
                        "too many failed logins from this address - try again in {} s",
                        wait_secs(list, now)
                    ),
                ));
            }
        }
        state
            .by_user
            .entry(userid.to_string())
            .or_default()
            .push_back(now);
        if let Some(p) = peer {
            state.by_addr.entry(p).or_default().push_back(now);
        }
        Ok(())
    }

    /// A successful login: the user's failures are forgiven, the address gets its
    /// attempt back.
    fn succeeded(&self, userid: &str, peer: Option<IpAddr>) {
        let mut state = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        state.by_user.remove(userid);
        if let Some(list) = peer.and_then(|p| state.by_addr.get_mut(&p)) {
            list.pop_back();
        }
    }

    /// A correct password of a user who still has to give a second factor.
    fn release_address(&self, peer: Option<IpAddr>) {
        let mut state = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = peer.and_then(|p| state.by_addr.get_mut(&p)) {
            list.pop_back();
        }
    }
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
        let ticket = auth
            .login("root@pam", "secret1", None)
            .unwrap()
            .ticket()
            .unwrap();
        let fields: Vec<&str> = ticket.splitn(3, ':').collect();
        assert_eq!(fields[0], "PVE");
        assert_eq!(fields[1], "root@pam");
        assert!(ticket.contains("::"));
        assert_eq!(auth.verify_ticket(&ticket).as_deref(), Some("root@pam"));
        let forged = ticket.replace("root@pam", "admin@pve");
        assert_eq!(auth.verify_ticket(&forged), None);
        // renewal with the ticket as password
        assert!(auth.login("root@pam", &ticket, None).is_ok());
    }

    #[test]
    fn wrong_password_is_an_authentication_failure() {
        let (_d, auth) = auth();
        let err = auth.login("root@pam", "wrong", None).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (401, "authentication failure")
        );
        assert!(auth.login("nobody@pve", "secret1", None).is_err());
    }

    #[test]
    fn failed_logins_are_throttled_per_user_and_address() {
        let (_d, auth) = auth();
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..USER_FAILURE_LIMIT {
            assert_eq!(
                auth.login("root@pam", "wrong", Some(addr))
                    .unwrap_err()
                    .status,
                401
            );
        }
        let err = auth.login("root@pam", "secret1", Some(addr)).unwrap_err();
        assert_eq!(err.status, 429, "{err:?}");
        assert!(err.message.contains("root@pam"));
        // other users from other addresses are not affected
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(
            auth.login("nobody@pve", "x", Some(other))
                .unwrap_err()
                .status,
            401
        );
        // many users from one address: the address limit
        for i in 0..ADDR_FAILURE_LIMIT {
            let _ = auth.login(&format!("u{i}@pve"), "x", Some(other));
        }
        let err = auth.login("fresh@pve", "x", Some(other)).unwrap_err();
        assert_eq!(err.status, 429);
        assert!(err.message.contains("address"));
    }

    #[test]
    fn concurrent_changes_are_not_lost() {
        let (dir, auth) = auth();
        let auth = std::sync::Arc::new(auth);
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let auth = std::sync::Arc::clone(&auth);
                std::thread::spawn(move || {
                    for i in 0..15 {
                        let full_id = format!("root@pam!w{w}t{i}");
                        auth.create_token(
                            "root@pam",
                            Token {
                                full_id: full_id.clone(),
                                ..Token::default()
                            },
                        )
                        .unwrap();
                        if i % 3 == 0 {
                            auth.delete_token(&full_id).unwrap();
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let expected = 4 * 15 - 4 * 5;
        assert_eq!(auth.user_config().tokens.len(), expected);
        let again = Auth::open(dir.path()).unwrap();
        assert_eq!(again.user_config().tokens.len(), expected);
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
