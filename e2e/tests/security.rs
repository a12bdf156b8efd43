//! Regression tests of the security review: each finding as the named user would try it,
//! through the API of a real daemon, with every refused request leaving `etc/` as it was.

use ferrox_e2e::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn qemu_img_available() -> bool {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED (allocation part): qemu-img is not installed");
    }
    ok
}

/// A guest without disks (no QEMU needed to create it).
fn create_guest(d: &Daemon, root: &Auth, vmid: &str) {
    d.task_ok(
        root,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", vmid), ("memory", "128"), ("name", "sec")],
    );
}

fn acl_lines(d: &Daemon) -> Vec<String> {
    std::fs::read_to_string(d.etc().join("user.cfg"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("acl:"))
        .map(String::from)
        .collect()
}

#[test]
fn a_token_comment_cannot_add_an_acl_line() {
    let d = start_daemon("tcg");
    let root = d.login();
    d.add_user(&root, "bob@pve", "bobsecret1", &[]);
    let bob = d.login_as("bob@pve", "bobsecret1");
    let evil = "hi\nacl:1:/:bob@pve:Administrator:";
    let r = d.request(
        "POST",
        "/access/users/bob@pve/token/xx",
        &bob,
        &[("comment", evil)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(acl_lines(&d).is_empty(), "{:?}", acl_lines(&d));
    let r = d.request("GET", "/access/users/bob@pve/token/xx", &bob, &[]);
    assert_eq!(
        r.body["data"]["comment"], evil,
        "the comment reads back as given"
    );
    // bob is still nobody: no privileges anywhere, refused where root is allowed
    let perms = d.request("GET", "/access/permissions", &bob, &[]);
    assert_eq!(perms.body["data"], serde_json::json!({}), "{perms:?}");
    let r = d.request(
        "POST",
        "/storage",
        &bob,
        &[("storage", "xs"), ("type", "dir"), ("path", "/tmp/x")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    // and a user comment or group comment cannot either
    let r = d.request("PUT", "/access/users/bob@pve", &root, &[("comment", evil)]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request(
        "POST",
        "/access/groups",
        &root,
        &[("groupid", "ops"), ("comment", evil)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(acl_lines(&d).is_empty());
    let r = d.request("GET", "/access/users/bob@pve", &root, &[]);
    assert_eq!(r.body["data"]["comment"], evil);
}

#[test]
fn a_vm_user_cannot_set_root_only_or_other_keys() {
    let d = start_daemon("tcg");
    let root = d.login();
    create_guest(&d, &root, "100");
    d.add_user(
        &root,
        "vmuser@pve",
        "vmusersecret",
        &[("/vms/100", "PVEVMUser")],
    );
    let user = d.login_as("vmuser@pve", "vmusersecret");
    let before = config_snapshot(&d.etc());
    let path = "/nodes/pve1/qemu/100/config";
    for (key, value) in [
        ("args", "-device loader,file=/etc/shadow"),
        ("hookscript", "local:snippets/x.pl"),
        ("lock", "backup"),
        ("affinity", "0-1"),
    ] {
        let r = d.request("PUT", path, &user, &[(key, value)]);
        assert_eq!(r.status, 403, "{key}: {r:?}");
        assert!(r.reason.contains("only root"), "{key}: {}", r.reason);
    }
    // PVEVMUser has neither VM.Config.CPU nor VM.Config.Memory nor Options
    for (key, value) in [("cores", "2"), ("memory", "256"), ("name", "renamed")] {
        let r = d.request("PUT", path, &user, &[(key, value)]);
        assert_eq!(r.status, 403, "{key}: {r:?}");
    }
    // skiplock is root's, named as the parameter
    let r = d.request(
        "PUT",
        path,
        &user,
        &[("ide2", "none,media=cdrom"), ("skiplock", "1")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["skiplock"]
        .as_str()
        .unwrap()
        .contains("Only root"));
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu/100/status/start",
        &user,
        &[("skiplock", "1")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        config_snapshot(&d.etc()),
        before,
        "refusals changed nothing"
    );
    // what PVEVMUser may do: the CD drive
    let r = d.request("PUT", path, &user, &[("ide2", "none,media=cdrom")]);
    assert_eq!(r.status, 200, "{r:?}");
    // root may set args
    let r = d.request("PUT", path, &root, &[("args", "-no-reboot")]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn volumes_cannot_escape_their_storage_or_be_borrowed() {
    let d = start_daemon("tcg");
    let root = d.login();
    create_guest(&d, &root, "100");
    create_guest(&d, &root, "102");
    d.add_user(
        &root,
        "admin@pve",
        "adminsecret",
        &[("/vms/100", "PVEVMAdmin")],
    );
    let user = d.login_as("admin@pve", "adminsecret");
    let before = config_snapshot(&d.etc());
    let path = "/nodes/pve1/qemu/100/config";
    // Not a volume of a known shape: the config format refuses it, naming the key.
    for value in [
        "local:/etc/shadow",
        "local:../../..",
        "local:100/../../x.qcow2",
    ] {
        let r = d.request("PUT", path, &user, &[("scsi1", value)]);
        assert_eq!(r.status, 400, "{value}: {r:?}");
        assert!(r.body["errors"]["scsi1"].is_string(), "{value}: {r:?}");
    }
    // Host paths are root's.
    for value in ["/etc/shadow", "file=/dev/sda"] {
        let r = d.request("PUT", path, &user, &[("scsi1", value)]);
        assert_eq!(r.status, 403, "{value}: {r:?}");
        assert!(r.reason.contains("Only root"), "{value}: {}", r.reason);
    }
    // Another guest's disk needs Datastore.Audit and VM.Config.Disk on that guest.
    let r = d.request(
        "PUT",
        path,
        &user,
        &[("scsi1", "local:102/vm-102-disk-0.qcow2")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    // A new disk needs Datastore.AllocateSpace on the storage.
    let r = d.request("PUT", path, &user, &[("scsi1", "local:1")]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.reason.contains("Datastore.AllocateSpace"), "{}", r.reason);
    let r = d.request("PUT", path, &user, &[("scsi1", "nosuch:1")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        config_snapshot(&d.etc()),
        before,
        "refusals changed nothing"
    );
    // With PVEDatastoreUser on the storage: allocation yes, the other guest's disk still no.
    let r = d.request(
        "PUT",
        "/access/acl",
        &root,
        &[
            ("path", "/storage/local"),
            ("roles", "PVEDatastoreUser"),
            ("users", "admin@pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request(
        "PUT",
        path,
        &user,
        &[("scsi1", "local:102/vm-102-disk-0.qcow2")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.reason.contains("/vms/102"), "{}", r.reason);
    if qemu_img_available() {
        let r = d.request("PUT", path, &user, &[("scsi1", "local:1")]);
        assert_eq!(r.status, 200, "{r:?}");
        let cfg = d.request("GET", path, &user, &[]);
        assert!(
            cfg.body["data"]["scsi1"]
                .as_str()
                .unwrap()
                .starts_with("local:100/vm-100-disk-"),
            "{cfg:?}"
        );
    }
    // root may name a host path, as in Proxmox VE
    let r = d.request("PUT", path, &root, &[("scsi2", "/dev/null")]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn newlines_cannot_add_lines_to_config_files() {
    let d = start_daemon("tcg");
    let root = d.login();
    create_guest(&d, &root, "100");
    let before = config_snapshot(&d.etc());
    let path = "/nodes/pve1/qemu/100/config";
    let r = d.request("PUT", path, &root, &[("tags", "x\nonboot: 1")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["tags"].is_string());
    let r = d.request("PUT", path, &root, &[("name", "a\nonboot: 1")]);
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.request(
        "POST",
        "/storage",
        &root,
        &[
            ("storage", "inj"),
            ("type", "dir"),
            ("path", "/tmp/ferrox-inj"),
            (
                "nodes",
                "n1\n\tshared 1\ndir: inj2\n\tpath /\n\tcontent images",
            ),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["nodes"].is_string(), "{r:?}");
    let r = d.request(
        "POST",
        "/storage",
        &root,
        &[
            ("storage", "inj"),
            ("type", "dir"),
            ("path", "/tmp/x\n\tshared 1"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.request(
        "POST",
        "/cluster/ha/resources",
        &root,
        &[("sid", "vm:100"), ("comment", "a\nvm: 101")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["comment"].is_string(), "{r:?}");
    assert_eq!(
        config_snapshot(&d.etc()),
        before,
        "refusals changed nothing"
    );
    // A multi-line description is fine: it stays a comment, and the guest stays usable.
    let r = d.request(
        "PUT",
        path,
        &root,
        &[("description", "two\nonboot: 1\n[PENDING]")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let cfg = d.request("GET", path, &root, &[]);
    assert_eq!(cfg.status, 200, "{cfg:?}");
    assert_eq!(cfg.body["data"]["description"], "two\nonboot: 1\n[PENDING]");
    assert!(cfg.body["data"].get("onboot").is_none());
    d.task_ok(&root, "DELETE", "/nodes/pve1/qemu/100", &[]);
}

#[test]
fn concurrent_token_changes_are_all_kept() {
    let d = start_daemon("tcg");
    let root = d.login();
    let r = d.request(
        "POST",
        "/access/users/root@pam/token/hammer",
        &root,
        &[("privsep", "0")],
    );
    let secret = r.body["data"]["value"].as_str().unwrap().to_string();
    let token = Auth {
        token: Some(format!("root@pam!hammer={secret}")),
        ..Auth::default()
    };
    let d = std::sync::Arc::new(d);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let d = std::sync::Arc::clone(&d);
            let token = token.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut deleted = Vec::new();
                for i in 0..30 {
                    let name = format!("c{c}n{i}");
                    let r = d.request(
                        "POST",
                        &format!("/access/users/root@pam/token/{name}"),
                        &token,
                        &[],
                    );
                    assert_eq!(r.status, 200, "{r:?}");
                    let secret = r.body["data"]["value"].as_str().unwrap().to_string();
                    if i % 3 == 0 {
                        let r = d.request(
                            "DELETE",
                            &format!("/access/users/root@pam/token/{name}"),
                            &token,
                            &[],
                        );
                        assert_eq!(r.status, 200, "{r:?}");
                        deleted.push((name, secret));
                    } else {
                        kept.push((name, secret));
                    }
                }
                (kept, deleted)
            })
        })
        .collect();
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    for c in clients {
        let (k, del) = c.join().unwrap();
        kept.extend(k);
        deleted.extend(del);
    }
    let listed: BTreeSet<String> = d
        .request("GET", "/access/users/root@pam/token", &token, &[])
        .body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tokenid"].as_str().unwrap().to_string())
        .collect();
    let mut expected: BTreeSet<String> = kept.iter().map(|(n, _)| n.clone()).collect();
    expected.insert("hammer".into());
    assert_eq!(listed, expected, "the final set is what was acknowledged");
    for (name, secret) in kept.iter().take(5) {
        let auth = Auth {
            token: Some(format!("root@pam!{name}={secret}")),
            ..Auth::default()
        };
        assert_eq!(d.request("GET", "/version", &auth, &[]).status, 200);
    }
    for (name, secret) in deleted.iter().take(5) {
        let auth = Auth {
            token: Some(format!("root@pam!{name}={secret}")),
            ..Auth::default()
        };
        assert_eq!(
            d.request("GET", "/version", &auth, &[]).status,
            401,
            "{name}"
        );
    }
}

#[test]
fn failed_logins_are_throttled_with_a_clear_error() {
    let d = start_daemon("tcg");
    let root = d.login();
    d.add_user(&root, "eve@pve", "evesecret1", &[]);
    let none = Auth::default();
    for _ in 0..5 {
        let r = d.request(
            "POST",
            "/access/ticket",
            &none,
            &[("username", "eve@pve"), ("password", "guess")],
        );
        assert_eq!(r.status, 401, "{r:?}");
    }
    let r = d.request(
        "POST",
        "/access/ticket",
        &none,
        &[("username", "eve@pve"), ("password", "evesecret1")],
    );
    assert_eq!(r.status, 429, "{r:?}");
    assert!(
        r.reason.contains("eve@pve") && r.reason.contains("try again"),
        "{}",
        r.reason
    );
    // root is not locked out by eve's failures
    assert!(d.login().ticket.is_some());
}

#[test]
fn other_users_of_the_host_cannot_read_the_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let d = start_daemon("tcg");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut checked = 0;
    let mut stack = vec![d.path().join("store"), d.etc().join("priv")];
    while let Some(p) = stack.pop() {
        let m = mode(&p);
        assert_eq!(m & 0o077, 0, "{} has mode {m:o}", p.display());
        checked += 1;
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    assert!(checked > 4, "the store and priv/ hold files");
    let key = d.etc().join("nodes/pve1/pve-ssl.key");
    assert_eq!(mode(&key) & 0o077, 0);
    // A daemon refuses to start on loose modes, naming the path.
    let dir = d.kill();
    let store = dir.path().join("store");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(ferrox_binary())
        .args(["node", "serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--name",
            "pve1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&store.display().to_string()) && err.contains("chmod 700"),
        "{err}"
    );
}

#[test]
fn user_group_role_and_acl_management() {
    let d = start_daemon("tcg");
    let root = d.login();
    create_guest(&d, &root, "100");
    // a user admin for the 'ops' group only
    let r = d.request("POST", "/access/groups", &root, &[("groupid", "ops")]);
    assert_eq!(r.status, 200, "{r:?}");
    d.add_user(
        &root,
        "ua@pve",
        "uasecret1",
        &[
            ("/access/groups/ops", "PVEUserAdmin"),
            ("/access/realm/pve", "PVEUserAdmin"),
        ],
    );
    let ua = d.login_as("ua@pve", "uasecret1");
    // may create users in 'ops', not outside it
    let r = d.request(
        "POST",
        "/access/users",
        &ua,
        &[
            ("userid", "x@pve"),
            ("groups", "ops"),
            ("password", "xsecret12"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request("POST", "/access/users", &ua, &[("userid", "y@pve")]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = d.request("DELETE", "/access/users/root@pam", &ua, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    // but may not hand out privileges: no Permissions.Modify
    let r = d.request(
        "PUT",
        "/access/acl",
        &ua,
        &[
            ("path", "/"),
            ("roles", "Administrator"),
            ("users", "x@pve"),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    // custom role
    let r = d.request(
        "POST",
        "/access/roles",
        &root,
        &[("roleid", "Watcher"), ("privs", "VM.Audit,Bogus.Priv")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["privs"]
        .as_str()
        .unwrap()
        .contains("Bogus.Priv"));
    let r = d.request(
        "POST",
        "/access/roles",
        &root,
        &[("roleid", "Watcher"), ("privs", "VM.Audit")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request(
        "PUT",
        "/access/acl",
        &root,
        &[
            ("path", "/vms/100"),
            ("roles", "Watcher"),
            ("groups", "ops"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let x = d.login_as("x@pve", "xsecret12");
    let r = d.request("GET", "/nodes/pve1/qemu/100/config", &x, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request("POST", "/nodes/pve1/qemu/100/status/start", &x, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    // a VM admin on /vms/100 may delegate what it holds there, but nothing it lacks
    d.add_user(&root, "va@pve", "vasecret1", &[("/vms/100", "PVEVMAdmin")]);
    let va = d.login_as("va@pve", "vasecret1");
    let r = d.request(
        "PUT",
        "/access/acl",
        &va,
        &[
            ("path", "/vms/100"),
            ("roles", "PVEVMUser"),
            ("users", "x@pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request(
        "PUT",
        "/access/acl",
        &va,
        &[
            ("path", "/vms/100"),
            ("roles", "PVEAdmin"),
            ("users", "x@pve"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.request(
        "PUT",
        "/access/acl",
        &va,
        &[("path", "/"), ("roles", "PVEVMUser"), ("users", "x@pve")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let acl = d.request("GET", "/access/acl", &root, &[]);
    let rows = acl.body["data"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["ugid"] == "x@pve" && r["roleid"] == "PVEVMUser" && r["path"] == "/vms/100"));
    // password: own change needs the current one; others' need privileges
    let r = d.request(
        "PUT",
        "/access/password",
        &x,
        &[("userid", "x@pve"), ("password", "newsecret12")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.request(
        "PUT",
        "/access/password",
        &x,
        &[
            ("userid", "x@pve"),
            ("password", "newsecret12"),
            ("confirmation-password", "xsecret12"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request(
        "PUT",
        "/access/password",
        &x,
        &[
            ("userid", "root@pam"),
            ("password", "pwned12345"),
            ("confirmation-password", "newsecret12"),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    d.login_as("x@pve", "newsecret12");
    // disable, then delete: tokens and ACL entries go too
    let r = d.request("PUT", "/access/users/x@pve", &root, &[("enable", "0")]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request(
        "POST",
        "/access/ticket",
        &Auth::default(),
        &[("username", "x@pve"), ("password", "newsecret12")],
    );
    assert_eq!(r.status, 401, "{r:?}");
    let r = d.request("DELETE", "/access/users/x@pve", &root, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let text = std::fs::read_to_string(d.etc().join("user.cfg")).unwrap();
    assert!(!text.contains("x@pve"), "{text}");
    let users: Vec<Value> = d.request("GET", "/access/users", &root, &[]).body["data"]
        .as_array()
        .unwrap()
        .clone();
    assert!(users.iter().all(|u| u["userid"] != "x@pve"));
}

/// Sends `head` over a raw TLS connection and returns what the server answers.
fn raw_tls(addr: &str, head: &str) -> String {
    use std::io::{Read, Write};
    let config = ferrox_client::pinned::tls_client_config(None).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn connections_are_limited_and_timed_out() {
    use std::io::Read;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut d = start_node_with(
        dir,
        "pve1",
        "127.0.0.1",
        port,
        "tcg",
        &["--max-connections", "20"],
    );
    let addr = format!("127.0.0.1:{port}");
    // The cluster secret is checked before the body is read: a stranger announcing a
    // 400 MB body gets 401 at once, without sending it.
    let answer = raw_tls(
        &addr,
        "POST /ferrox/store/append HTTP/1.1\r\nhost: x\r\ncontent-length: 400000000\r\nx-ferrox-cluster: wrong\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Connections that never start TLS hold the slots... First no other connection of
    // this test may hold one: the harness's pooled keep-alive connection goes, and the
    // server gets a moment to see it and the stranger's close.
    d.agent = insecure_agent();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let idle: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // ...so a new client is told so, clearly (once the server has taken them all in:
    // they hold their slots for the 5 s handshake timeout).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    let url = format!("https://{addr}/api2/json/version");
    let (status, body) = loop {
        // A new agent each time: a pooled connection would already hold a slot.
        let agent = ferrox_client::pinned::tls_agent(None).unwrap();
        let (status, body) = match agent.get(&url).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        if status == 503 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many open connections"), "{body}");
    // The handshake timeout closes them, and the node answers again.
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut byte = [0u8; 1];
    match first.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a connection without a handshake stayed open: {other:?}"),
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = d.request("GET", "/version", &Auth::default(), &[]);
        if r.status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn login_step(d: &Daemon, form: &[(&str, &str)]) -> Resp {
    d.request("POST", "/access/ticket", &Auth::default(), form)
}

/// The second step of a TFA login.
fn answer_challenge(d: &Daemon, user: &str, partial: &str, answer: &str) -> Resp {
    login_step(
        d,
        &[
            ("username", user),
            ("tfa-challenge", partial),
            ("password", answer),
        ],
    )
}

#[test]
fn second_factors_totp_and_recovery_keys() {
    let d = start_daemon("tcg");
    let root = d.login();
    d.add_user(&root, "alice@pve", "alicesecret", &[]);
    let alice = d.login_as("alice@pve", "alicesecret");
    let url =
        "otpauth://totp/Ferrox:alice@pve?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Ferrox";
    let totp = totp_rs::Totp::from_url_unchecked(url).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // Adding needs the current password and a current code.
    let code = totp.generate(now()).to_string();
    let r = d.request(
        "POST",
        "/access/tfa/alice@pve",
        &alice,
        &[("type", "totp"), ("totp", url), ("value", code.as_str())],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["password"].is_string());
    let r = d.request(
        "POST",
        "/access/tfa/alice@pve",
        &alice,
        &[
            ("type", "totp"),
            ("totp", url),
            ("value", "000000x"),
            ("password", "alicesecret"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["value"].is_string(), "{r:?}");
    let r = d.request(
        "POST",
        "/access/tfa/alice@pve",
        &alice,
        &[
            ("type", "totp"),
            ("totp", "not-a-uri"),
            ("value", "123456"),
            ("password", "alicesecret"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["totp"].is_string(), "{r:?}");
    assert!(!d.etc().join("priv/tfa.cfg").exists(), "nothing stored");
    let r = d.request(
        "POST",
        "/access/tfa/alice@pve",
        &alice,
        &[
            ("type", "totp"),
            ("totp", url),
            ("value", code.as_str()),
            ("password", "alicesecret"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Another user cannot add factors to alice, nor read them.
    d.add_user(&root, "mallory@pve", "mallorysecret", &[]);
    let mallory = d.login_as("mallory@pve", "mallorysecret");
    let r = d.request(
        "POST",
        "/access/tfa/alice@pve",
        &mallory,
        &[("type", "recovery"), ("password", "mallorysecret")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        d.request("GET", "/access/tfa/alice@pve", &mallory, &[])
            .status,
        403
    );
    // The password alone now gives a partial ticket that opens nothing.
    let r = login_step(
        &d,
        &[("username", "alice@pve"), ("password", "alicesecret")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["data"]["NeedTFA"], 1);
    let partial = r.body["data"]["ticket"].as_str().unwrap().to_string();
    assert!(partial.starts_with("PVE:!tfa!"), "{partial}");
    let half = Auth {
        ticket: Some(partial.clone()),
        ..Auth::default()
    };
    assert_eq!(d.request("GET", "/version", &half, &[]).status, 401);
    // A wrong code is refused; the right one gives a ticket; the same code again does not.
    let r = answer_challenge(&d, "alice@pve", &partial, "totp:000000");
    assert_eq!(r.status, 401, "{r:?}");
    let code = totp.generate(now()).to_string();
    let answer = format!("totp:{code}");
    let r = answer_challenge(&d, "alice@pve", &partial, answer.as_str());
    assert_eq!(r.status, 200, "{r:?}");
    let ticket = r.body["data"]["ticket"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("PVE:alice@pve:"), "{ticket}");
    let r = answer_challenge(&d, "alice@pve", &partial, answer.as_str());
    assert_eq!(r.status, 401, "a code is good once: {r:?}");
    // A partial ticket is bound to its user.
    let r = answer_challenge(&d, "mallory@pve", &partial, answer.as_str());
    assert_eq!(r.status, 401, "{r:?}");
    // Recovery keys: shown once, each good once.
    let full = Auth {
        ticket: Some(ticket),
        csrf: r.body["data"]["CSRFPreventionToken"]
            .as_str()
            .map(String::from)
            .or(alice.csrf.clone()),
        token: None,
    };
    let r = d.request(
        "POST",
        "/access/tfa/alice@pve",
        &full,
        &[("type", "recovery"), ("password", "alicesecret")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let keys: Vec<String> = r.body["data"]["recovery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 10);
    let stored = std::fs::read_to_string(d.etc().join("priv/tfa.cfg")).unwrap();
    assert!(
        !stored.contains(&keys[0]),
        "recovery keys are stored hashed"
    );
    let r = login_step(
        &d,
        &[("username", "alice@pve"), ("password", "alicesecret")],
    );
    let partial = r.body["data"]["ticket"].as_str().unwrap().to_string();
    let answer = format!("recovery:{}", keys[3]);
    let r = answer_challenge(&d, "alice@pve", &partial, answer.as_str());
    assert_eq!(r.status, 200, "{r:?}");
    let r = answer_challenge(&d, "alice@pve", &partial, answer.as_str());
    assert_eq!(r.status, 401, "a recovery key is good once: {r:?}");
    let list = d.request("GET", "/access/tfa/alice@pve", &root, &[]);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2, "{list:?}");
    // Root removes the TOTP and the keys: the password alone logs in again.
    for id in list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
    {
        let r = d.request("DELETE", &format!("/access/tfa/alice@pve/{id}"), &root, &[]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    d.login_as("alice@pve", "alicesecret");
}

#[test]
fn tokens_expire() {
    let d = start_daemon("tcg");
    let root = d.login();
    let r = d.request(
        "POST",
        "/access/users/root@pam/token/old",
        &root,
        &[("privsep", "0"), ("expire", "1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let token = Auth {
        token: Some(format!(
            "root@pam!old={}",
            r.body["data"]["value"].as_str().unwrap()
        )),
        ..Auth::default()
    };
    assert_eq!(d.request("GET", "/version", &token, &[]).status, 401);
    let r = d.request(
        "PUT",
        "/access/users/root@pam/token/old",
        &root,
        &[("expire", "0")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.request("GET", "/version", &token, &[]).status, 200);
    // A user's expiry is the default of its new tokens.
    let r = d.request(
        "POST",
        "/access/users",
        &root,
        &[("userid", "temp@pve"), ("expire", "4102444800")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request("POST", "/access/users/temp@pve/token/t1", &root, &[]);
    assert_eq!(r.body["data"]["info"]["expire"], 4102444800u64, "{r:?}");
}

/// The lost-update finding on a cluster: clients change tokens through three different
/// nodes at once; every node ends with exactly the acknowledged set.
#[test]
fn token_changes_through_every_node_of_a_cluster_are_all_kept() {
    let nodes = local_cluster(3, "acct", "tcg", &[]);
    let root = nodes[0].login();
    let r = nodes[0].request(
        "POST",
        "/access/users/root@pam/token/hammer",
        &root,
        &[("privsep", "0")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let token = Auth {
        token: Some(format!(
            "root@pam!hammer={}",
            r.body["data"]["value"].as_str().unwrap()
        )),
        ..Auth::default()
    };
    // The token reaches the other nodes by replication.
    for d in &nodes {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while d.request("GET", "/version", &token, &[]).status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "token unknown on {}",
                d.name
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let kept: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(n, d)| {
                let token = token.clone();
                s.spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..20 {
                        let name = format!("n{n}t{i}");
                        let path = format!("/access/users/root@pam/token/{name}");
                        let r = d.request("POST", &path, &token, &[]);
                        assert_eq!(r.status, 200, "{r:?}");
                        if i % 4 == 0 {
                            let r = d.request("DELETE", &path, &token, &[]);
                            assert_eq!(r.status, 200, "{r:?}");
                        } else {
                            kept.push(name);
                        }
                    }
                    kept
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut expected: BTreeSet<String> = kept.into_iter().collect();
    expected.insert("hammer".into());
    for d in &nodes {
        // Replication: every node reaches the same set.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let listed: BTreeSet<String> = d
                .request("GET", "/access/users/root@pam/token", &token, &[])
                .body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["tokenid"].as_str().unwrap().to_string())
                .collect();
            if listed == expected {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: {listed:?} != {expected:?}",
                d.name
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

#[test]
fn pool_roles_reach_the_pool_members_and_only_them() {
    let d = start_daemon("tcg");
    let root = d.login();
    create_guest(&d, &root, "102");
    let r = d.request(
        "POST",
        "/pools",
        &root,
        &[("poolid", "web"), ("comment", "web servers")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Bad input names the field and changes nothing.
    let before = config_snapshot(&d.etc());
    for (form, field) in [
        (vec![("poolid", "bad pool")], "poolid"),
        (vec![("poolid", "web")], "poolid"),
    ] {
        let r = d.request("POST", "/pools", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {r:?}");
    }
    for (form, field) in [
        (vec![("vms", "999")], "vms"),
        (vec![("vms", "abc")], "vms"),
        (vec![("storage", "nosuch")], "storage"),
    ] {
        let r = d.request("PUT", "/pools/web", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {r:?}");
    }
    assert_eq!(config_snapshot(&d.etc()), before);
    d.add_user(&root, "pa@pve", "pasecret1", &[("/pool/web", "PVEVMAdmin")]);
    let pa = d.login_as("pa@pve", "pasecret1");
    // Creating into the pool is allowed by the pool's role; outside it is not.
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu",
        &pa,
        &[("vmid", "101"), ("memory", "128")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let upid = d.task_ok(
        &pa,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("memory", "128"), ("pool", "web")],
    );
    assert!(upid.contains("qmcreate"));
    // Reading the pool needs Pool.Audit, which PVEVMAdmin does not have.
    assert_eq!(d.request("GET", "/pools/web", &pa, &[]).status, 403);
    let pool = d.request("GET", "/pools/web", &root, &[]);
    assert_eq!(
        pool.body["data"]["members"][0]["id"], "qemu/100",
        "{pool:?}"
    );
    // The pool's role covers its guest, not others.
    let r = d.request("PUT", "/nodes/pve1/qemu/100/config", &pa, &[("cores", "2")]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.request("PUT", "/nodes/pve1/qemu/102/config", &pa, &[("cores", "2")]);
    assert_eq!(r.status, 403, "{r:?}");
    // Adding another guest needs VM.Allocate on it.
    let r = d.request("PUT", "/pools/web", &pa, &[("vms", "102")]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = d.request("POST", "/pools", &pa, &[("poolid", "other")]);
    assert_eq!(r.status, 403, "{r:?}");
    // A pool with members is not deleted; destroying the guest empties it.
    let r = d.request("DELETE", "/pools/web", &root, &[]);
    assert_eq!(r.status, 400, "{r:?}");
    d.task_ok(&pa, "DELETE", "/nodes/pve1/qemu/100", &[]);
    let pool = d.request("GET", "/pools/web", &root, &[]);
    assert_eq!(
        pool.body["data"]["members"],
        serde_json::json!([]),
        "{pool:?}"
    );
    let r = d.request("DELETE", "/pools", &root, &[("poolid", "web")]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn access_management_through_the_cli() {
    let d = start_daemon("tcg");
    let fingerprint = d.fingerprint().expect("fingerprint");
    let ferrox = |args: &[&str]| {
        let out = Command::new(ferrox_binary())
            .args(args)
            .env("FERROX_HOST", &d.addr)
            .env("FERROX_FINGERPRINT", &fingerprint)
            .env("FERROX_PASSWORD", "secret1")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for args in [
        vec!["group", "add", "ops", "--comment", "Operators"],
        vec![
            "user",
            "add",
            "zoe@pve",
            "--password",
            "zoesecret1",
            "--groups",
            "ops",
        ],
        vec!["role", "add", "Watcher", "--privs", "VM.Audit,Sys.Audit"],
        vec![
            "acl", "modify", "/vms", "--roles", "Watcher", "--groups", "ops",
        ],
        vec!["pool", "add", "web", "--comment", "web servers"],
        vec!["user", "token", "add", "zoe@pve", "ci", "--privsep", "1"],
    ] {
        let (ok, out) = ferrox(&args);
        assert!(ok, "{args:?}: {out}");
    }
    let (ok, out) = ferrox(&["user", "list"]);
    assert!(
        ok && out.contains("zoe@pve") && out.lines().next().unwrap().contains("userid"),
        "{out}"
    );
    let (ok, out) = ferrox(&["acl", "list"]);
    assert!(
        ok && out.contains("/vms") && out.contains("Watcher") && out.contains("group"),
        "{out}"
    );
    let (ok, out) = ferrox(&["pool", "list"]);
    assert!(ok && out.contains("web"), "{out}");
    // Bad input: the error names the field.
    let (ok, out) = ferrox(&["role", "add", "Bad", "--privs", "Not.A.Privilege"]);
    assert!(!ok && out.contains("privs"), "{out}");
    let (ok, out) = ferrox(&["user", "add", "no-realm"]);
    assert!(!ok && out.contains("userid"), "{out}");
    let (ok, out) = ferrox(&[
        "acl", "delete", "/vms", "--roles", "Watcher", "--groups", "ops",
    ]);
    assert!(ok, "{out}");
    let (_, out) = ferrox(&["acl", "list"]);
    assert!(!out.contains("Watcher"), "{out}");
}
