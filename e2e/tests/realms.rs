//! Realms end to end: an LDAP realm against a real OpenLDAP `slapd` (Debian's package,
//! started here on 127.0.0.1 with its own database), configured through the API.

use ferrox_e2e::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUFFIX: &str = "dc=ferrox,dc=test";

struct Slapd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slapd_binary() -> Option<PathBuf> {
    ["/usr/sbin/slapd", "/usr/local/sbin/slapd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A slapd with people `carol` and `dave` (passwords `carolsecret`, `davesecret`) below
/// `ou=people`, and `cn=admin` (password `adminsecret`) as the service account.
fn start_slapd() -> Option<Slapd> {
    let Some(slapd) = slapd_binary() else {
        eprintln!(
            "SKIPPED: slapd is not installed (scripts/test.sh installs it: apt-get install slapd)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let conf = dir.path().join("slapd.conf");
    let schema = Path::new("/etc/ldap/schema");
    std::fs::write(
        &conf,
        format!(
            "include {s}/core.schema\ninclude {s}/cosine.schema\ninclude {s}/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\n\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\nrootpw adminsecret\n\
             directory {db}\n",
            s = schema.display(),
            d = dir.path().display(),
            db = db.display()
        ),
    )
    .unwrap();
    let person = |uid: &str, pw: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {pw}\n\n"
        )
    };
    let ldif = dir.path().join("data.ldif");
    std::fs::write(
        &ldif,
        format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Ferrox\ndc: ferrox\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n{}{}",
            person("carol", "carolsecret"),
            person("dave", "davesecret")
        ),
    )
    .unwrap();
    let added = Command::new(slapd.with_file_name("slapadd"))
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(&ldif)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "slapadd: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let port = free_port();
    let child = Command::new(&slapd)
        .arg("-f")
        .arg(&conf)
        .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "slapd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Slapd {
        child,
        port,
        _dir: dir,
    })
}

fn login(d: &Daemon, user: &str, password: &str) -> u16 {
    d.request(
        "POST",
        "/access/ticket",
        &Auth::default(),
        &[("username", user), ("password", password)],
    )
    .status
}

#[test]
fn an_ldap_realm_authenticates_against_openldap() {
    let Some(ldap) = start_slapd() else { return };
    let d = start_daemon("tcg");
    let root = d.login();
    let port = ldap.port.to_string();
    let base = format!("ou=people,{SUFFIX}");
    // Bad settings are refused, naming the field; nothing is written.
    let before = config_snapshot(&d.etc());
    for (field, form) in [
        ("server1", vec![("server1", "ldap host")]),
        (
            "base_dn",
            vec![("server1", "127.0.0.1"), ("base_dn", "people")],
        ),
        (
            "realm",
            vec![
                ("realm", "pve"),
                ("server1", "127.0.0.1"),
                ("base_dn", base.as_str()),
            ],
        ),
    ] {
        let mut form = form;
        if !form.iter().any(|(k, _)| *k == "realm") {
            form.push(("realm", "corp"));
        }
        form.push(("type", "ldap"));
        let r = d.request("POST", "/access/domains", &root, &form);
        assert_eq!(r.status, 400, "{field}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{field}: {r:?}");
    }
    assert_eq!(config_snapshot(&d.etc()), before);
    let r = d.request(
        "POST",
        "/access/domains",
        &root,
        &[
            ("realm", "corp"),
            ("type", "ldap"),
            ("server1", "127.0.0.1"),
            ("port", &port),
            ("base_dn", &base),
            ("user_attr", "uid"),
            ("comment", "OpenLDAP"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let realms = d.request("GET", "/access/domains", &Auth::default(), &[]);
    assert!(realms.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["realm"] == "corp" && r["type"] == "ldap"));
    // A user of the realm must exist in user.cfg; the directory decides the password.
    let r = d.request(
        "POST",
        "/access/users",
        &root,
        &[("userid", "carol@corp"), ("password", "ferroxsecret")],
    );
    assert_eq!(
        r.status, 400,
        "no Ferrox password for a directory user: {r:?}"
    );
    let r = d.request("POST", "/access/users", &root, &[("userid", "carol@corp")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(login(&d, "carol@corp", "carolsecret"), 200);
    assert_eq!(login(&d, "carol@corp", "wrongsecret"), 401);
    assert_eq!(
        login(&d, "dave@corp", "davesecret"),
        401,
        "dave has no Ferrox user"
    );
    let r = d.request(
        "PUT",
        "/access/password",
        &root,
        &[("userid", "carol@corp"), ("password", "newsecret1")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    // With a service account: users are searched, the bind password stays in priv/.
    let r = d.request(
        "PUT",
        "/access/domains/corp",
        &root,
        &[
            ("bind_dn", &format!("cn=admin,{SUFFIX}")),
            ("password", "adminsecret"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(login(&d, "carol@corp", "carolsecret"), 200);
    let cfg = std::fs::read_to_string(d.etc().join("domains.cfg")).unwrap();
    assert!(
        cfg.contains("bind_dn") && !cfg.contains("adminsecret"),
        "{cfg}"
    );
    let r = d.request("GET", "/access/domains/corp", &root, &[]);
    assert!(r.body["data"].get("password").is_none(), "{r:?}");
    let r = d.request(
        "PUT",
        "/access/domains/corp",
        &root,
        &[("password", "wrong-admin")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        login(&d, "carol@corp", "carolsecret"),
        401,
        "service bind fails"
    );
    // An unreachable directory fails the login, it does not let anyone in.
    let r = d.request(
        "PUT",
        "/access/domains/corp",
        &root,
        &[("password", "adminsecret"), ("port", "1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(login(&d, "carol@corp", "carolsecret"), 401);
    let r = d.request("DELETE", "/access/domains/pve", &root, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.request("DELETE", "/access/domains/corp", &root, &[]);
    assert_eq!(r.status, 200, "{r:?}");
}

struct HostUser(String);

impl Drop for HostUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

/// A throw-away account on this host with a password, or `None` (said loudly) without
/// root or the shadow tools.
fn host_user(password: &str) -> Option<HostUser> {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("SKIPPED: the PAM test needs root (to add a host account)");
        return None;
    }
    let name = format!("fxpam{}", std::process::id() % 100_000);
    let added = Command::new("useradd")
        .args(["-M", "-s", "/usr/sbin/nologin", &name])
        .output();
    if !added.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: useradd failed: {added:?}");
        return None;
    }
    let user = HostUser(name);
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}:{password}\n", user.0).as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
    Some(user)
}

#[test]
fn a_pam_user_of_the_host_logs_in_with_the_host_password() {
    let Some(user) = host_user("hostsecret1") else {
        return;
    };
    let d = start_daemon("tcg");
    let root = d.login();
    let userid = format!("{}@pam", user.0);
    let r = d.request(
        "POST",
        "/access/users",
        &root,
        &[("userid", userid.as_str())],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(login(&d, &userid, "hostsecret1"), 200);
    assert_eq!(login(&d, &userid, "wrongsecret"), 401);
    // A host account Ferrox does not know is no user here.
    assert_eq!(login(&d, "nobody@pam", "x"), 401);
    // root@pam keeps the password Ferrox was started with.
    assert!(d.login().ticket.is_some());
}
