//! Guest consoles (`vncproxy`, `termproxy`, `vncwebsocket`) and the balancing plan
//! (`/cluster/crs/plan`) on a real 2-node cluster with real QEMU guests: the one-time
//! ticket is bound to its user, guest and 40 s; a websocket without authentication, with
//! another guest's ticket or with a used one is refused and the guest keeps running; a
//! console works through the node that does not run the guest; a plan moves guests.

use ferrox_e2e::*;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Opens `wss://addr/api2/json/...vncwebsocket?port&vncticket` with the ticket cookie.
fn websocket(
    addr: &str,
    node: &str,
    vmid: u32,
    port: u64,
    ticket: &str,
    cookie: Option<&str>,
) -> Result<WebSocket<Tls>, tungstenite::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ferrox_client::pinned::tls_client_config(None).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    let tls = rustls::StreamOwned::new(conn, tcp);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("port", &port.to_string())
        .append_pair("vncticket", ticket)
        .finish();
    let mut request =
        format!("wss://{addr}/api2/json/nodes/{node}/qemu/{vmid}/vncwebsocket?{query}")
            .into_client_request()
            .unwrap();
    if let Some(c) = cookie {
        request
            .headers_mut()
            .insert("Cookie", format!("PVEAuthCookie={c}").parse().unwrap());
    }
    tungstenite::client(request, tls)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::Error::new(ErrorKind::WouldBlock, "interrupted"))
            }
        })
}

fn refused_with(result: Result<WebSocket<Tls>, tungstenite::Error>, status: u16, what: &str) {
    match result {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), status, "{what}: {resp:?}")
        }
        Err(e) => panic!("{what}: expected HTTP {status}, got {e}"),
        Ok(_) => panic!("{what}: the websocket was accepted"),
    }
}

/// Reads binary messages until `want` has been seen (or the time is up).
fn read_until(ws: &mut WebSocket<Tls>, want: &[u8], limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < limit {
        match ws.read() {
            Ok(Message::Binary(b)) => got.extend_from_slice(&b),
            Ok(Message::Text(t)) => got.extend_from_slice(t.as_bytes()),
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "reading the console: {e} (got {:?})",
                String::from_utf8_lossy(&got)
            ),
        }
        if got.windows(want.len()).any(|w| w == want) {
            break;
        }
    }
    got
}

struct Ticket {
    ticket: String,
    port: u64,
    user: String,
}

fn open(d: &Daemon, auth: &Auth, node: &str, vmid: u32, kind: &str) -> Ticket {
    let r = d.request(
        "POST",
        &format!("/nodes/{node}/qemu/{vmid}/{kind}"),
        auth,
        if kind == "vncproxy" {
            &[("websocket", "1")]
        } else {
            &[]
        },
    );
    assert_eq!(r.status, 200, "{kind}: {r:?}");
    Ticket {
        ticket: r.body["data"]["ticket"].as_str().unwrap().to_string(),
        port: r.body["data"]["port"].as_u64().unwrap(),
        user: r.body["data"]["user"].as_str().unwrap().to_string(),
    }
}

fn running(d: &Daemon, auth: &Auth, node: &str, vmid: u32) -> bool {
    let r = d.request(
        "GET",
        &format!("/nodes/{node}/qemu/{vmid}/status/current"),
        auth,
        &[],
    );
    r.body["data"]["status"] == "running"
}

#[test]
fn consoles_and_balancing_plans() {
    if !qemu_available() {
        return;
    }
    let payload_dir = tempfile::tempdir().unwrap();
    let Some(echo) = build_payload(payload_dir.path(), "echo", ECHO_PAYLOAD) else {
        eprintln!("SKIPPED: building the echo guest needs binutils (as, ld)");
        return;
    };
    let nodes = local_cluster(2, "consoles", "tcg", &[]);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let root = n1.login();
    let args = format!("-kernel {}", echo.display());
    for vmid in ["100", "101"] {
        n1.task_ok(
            &root,
            "POST",
            "/nodes/n1/qemu",
            &[
                ("vmid", vmid),
                ("memory", "64"),
                ("serial0", "socket"),
                ("args", &args),
                ("start", "1"),
            ],
        );
    }
    wait_for("both guests run", Duration::from_secs(60), || {
        running(n1, &root, "n1", 100) && running(n1, &root, "n1", 101)
    });

    // Privileges: VM.Console on the guest; Sys.Audit on / to preview a plan, Sys.Modify
    // to carry one out.
    n1.add_user(&root, "auditor@pve", "auditor-pw", &[("/", "PVEAuditor")]);
    n1.add_user(&root, "nobody@pve", "nobody-pw", &[]);
    let auditor = n1.login_as("auditor@pve", "auditor-pw");
    let nobody = n1.login_as("nobody@pve", "nobody-pw");
    for kind in ["vncproxy", "termproxy"] {
        let r = n1.request("POST", &format!("/nodes/n1/qemu/100/{kind}"), &auditor, &[]);
        assert_eq!(r.status, 403, "{kind} without VM.Console: {r:?}");
    }
    assert_eq!(
        n1.request("GET", "/cluster/crs/plan", &nobody, &[]).status,
        403
    );
    assert_eq!(
        n1.request("GET", "/cluster/crs/plan", &auditor, &[]).status,
        200
    );
    let r = n1.request("POST", "/cluster/crs/plan", &auditor, &[("digest", "x")]);
    assert_eq!(r.status, 403, "{r:?}");

    // A serial port that does not exist is refused by name.
    let r = n1.request(
        "POST",
        "/nodes/n1/qemu/100/termproxy",
        &root,
        &[("serial", "serial2")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let ticket_cookie = root.ticket.clone().unwrap();
    let cookie = Some(ticket_cookie.as_str());

    // VNC: refused without authentication, with the ticket of another guest; accepted
    // once (QEMU's RFB greeting arrives); refused when used again.
    let t = open(n1, &root, "n1", 100, "vncproxy");
    refused_with(
        websocket(&n1.addr, "n1", 100, t.port, &t.ticket, None),
        401,
        "no authentication",
    );
    refused_with(
        websocket(&n1.addr, "n1", 101, t.port, &t.ticket, cookie),
        401,
        "the ticket of another guest",
    );
    let mut ws = websocket(&n1.addr, "n1", 100, t.port, &t.ticket, cookie).expect("VNC websocket");
    let greeting = read_until(&mut ws, b"\n", Duration::from_secs(20));
    assert!(greeting.starts_with(b"RFB 003."), "{greeting:?}");
    let _ = ws.close(None);
    refused_with(
        websocket(&n1.addr, "n1", 100, t.port, &t.ticket, cookie),
        401,
        "a used ticket",
    );
    let other_user = n1.login_as("auditor@pve", "auditor-pw");
    let t = open(n1, &root, "n1", 100, "vncproxy");
    refused_with(
        websocket(
            &n1.addr,
            "n1",
            100,
            t.port,
            &t.ticket,
            other_user.ticket.as_deref(),
        ),
        403,
        "another user's ticket (and no VM.Console)",
    );

    // Serial console through the other node (n2 relays to n1): the termproxy login,
    // then what is typed comes back from the guest.
    let t = open(n2, &root, "n1", 100, "termproxy");
    let mut ws =
        websocket(&n2.addr, "n1", 100, t.port, &t.ticket, cookie).expect("serial websocket");
    ws.send(Message::text(format!("{}:{}\n", t.user, t.ticket)))
        .unwrap();
    let ok = read_until(&mut ws, b"OK", Duration::from_secs(20));
    assert!(ok.starts_with(b"OK"), "{ok:?}");
    ws.send(Message::text("0:11:ferrox-echo")).unwrap();
    ws.send(Message::text("1:80:24:")).unwrap();
    ws.send(Message::text("2")).unwrap();
    let echoed = read_until(&mut ws, b"ferrox-echo", Duration::from_secs(20));
    assert!(
        echoed.windows(11).any(|w| w == b"ferrox-echo"),
        "{:?}",
        String::from_utf8_lossy(&echoed)
    );
    let _ = ws.close(None);
    // A wrong termproxy login gets nothing through.
    let t = open(n1, &root, "n1", 100, "termproxy");
    let mut ws =
        websocket(&n1.addr, "n1", 100, t.port, &t.ticket, cookie).expect("serial websocket");
    ws.send(Message::text(format!("{}:{}x\n", t.user, t.ticket)))
        .unwrap();
    let mut answer = Vec::new();
    while let Ok(m) = ws.read() {
        match m {
            Message::Close(_) => break,
            other => answer.extend_from_slice(&other.into_data()),
        }
    }
    assert!(!answer.starts_with(b"OK"), "{answer:?}");

    // Balancing: both guests run on n1, none on n2: the plan moves one; a stale digest is
    // refused; applying it moves the guest live.
    let r = n1.request("GET", "/cluster/crs/plan", &root, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let plan = &r.body["data"];
    let moves: Vec<&serde_json::Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["moves"].as_array().unwrap())
        .collect();
    assert_eq!(moves.len(), 1, "{plan}");
    assert_eq!(moves[0]["from"], "n1");
    assert_eq!(moves[0]["to"], "n2");
    assert!(plan["imbalance_after"].as_f64() < plan["imbalance_before"].as_f64());
    let n1_load = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n1")
        .unwrap();
    assert!(
        n1_load["cpu_after"].as_f64() < n1_load["cpu_before"].as_f64(),
        "{plan}"
    );
    let r = n1.request("POST", "/cluster/crs/plan", &root, &[("digest", "0000")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.raw.contains("digest"), "{}", r.raw);
    let digest = plan["digest"].as_str().unwrap();
    let moved = moves[0]["vmid"].as_u64().unwrap() as u32;
    let upid = n1.request("POST", "/cluster/crs/plan", &root, &[("digest", digest)]);
    assert_eq!(upid.status, 200, "{upid:?}");
    let status = n1.wait_task(&root, upid.body["data"].as_str().unwrap());
    assert_eq!(status["exitstatus"], "OK", "{status}");
    assert!(running(n1, &root, "n2", moved), "vm {moved} runs on n2");
    let r = n1.request("GET", "/cluster/crs/plan", &root, &[]);
    assert_eq!(
        r.body["data"]["steps"].as_array().unwrap().len(),
        0,
        "{}",
        r.raw
    );

    // A ticket is valid for 40 s.
    let stay = if moved == 100 { 101 } else { 100 };
    let t = open(n1, &root, "n1", stay, "vncproxy");
    std::thread::sleep(Duration::from_secs(42));
    refused_with(
        websocket(&n1.addr, "n1", stay, t.port, &t.ticket, cookie),
        401,
        "an expired ticket",
    );
    // None of this disturbed the guests.
    assert!(running(n1, &root, "n1", stay));
    assert!(running(n1, &root, "n2", moved));
}

/// The virtual size of guest `vmid`'s first image below the node's data directory.
fn image_size(dir: &std::path::Path, vmid: u32) -> u64 {
    let name = format!("vm-{vmid}-disk-0.qcow2");
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name.as_str()) {
                let out = std::process::Command::new("qemu-img")
                    .args(["info", "--output", "json", "-U"])
                    .arg(&p)
                    .output()
                    .unwrap();
                let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                return info["virtual-size"].as_u64().unwrap();
            }
        }
    }
    panic!("no {name} below {}", dir.display());
}

#[test]
fn disks_grow_stopped_and_running_never_shrink() {
    if !qemu_available() {
        return;
    }
    let d = start_daemon("tcg");
    let root = d.login();
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "102"), ("memory", "64"), ("scsi0", "local:1")],
    );
    d.add_user(&root, "auditor@pve", "auditor-pw", &[("/", "PVEAuditor")]);
    let auditor = d.login_as("auditor@pve", "auditor-pw");
    let r = d.request(
        "PUT",
        "/nodes/pve1/qemu/102/resize",
        &auditor,
        &[("disk", "scsi0"), ("size", "+1G")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let config = |d: &Daemon| {
        d.request("GET", "/nodes/pve1/qemu/102/config", &root, &[])
            .body["data"]
            .clone()
    };
    let before = config(&d);
    for (form, field) in [
        (vec![("disk", "scsi0"), ("size", "512M")], "size"),
        (vec![("disk", "scsi0"), ("size", "-1G")], "size"),
        (vec![("disk", "scsi1"), ("size", "+1G")], "disk"),
        (
            vec![("disk", "scsi0"), ("size", "+1G"), ("digest", "0000")],
            "digest",
        ),
    ] {
        let r = d.request("PUT", "/nodes/pve1/qemu/102/resize", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    assert_eq!(config(&d), before, "a refused resize changed nothing");
    // Stopped: the storage grows the image.
    let digest = before["digest"].as_str().unwrap().to_string();
    d.task_ok(
        &root,
        "PUT",
        "/nodes/pve1/qemu/102/resize",
        &[("disk", "scsi0"), ("size", "+1G"), ("digest", &digest)],
    );
    assert!(config(&d)["scsi0"].as_str().unwrap().contains("size=2G"));
    assert_eq!(image_size(d.path(), 102), 2 << 30);
    // Running: QEMU grows it (block_resize).
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/102/status/start", &[]);
    d.task_ok(
        &root,
        "PUT",
        "/nodes/pve1/qemu/102/resize",
        &[("disk", "scsi0"), ("size", "3G")],
    );
    assert!(config(&d)["scsi0"].as_str().unwrap().contains("size=3G"));
    assert_eq!(image_size(d.path(), 102), 3 << 30);
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/102/status/stop", &[]);
}
