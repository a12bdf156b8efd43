//! Security benchmarks (figures go to docs/benchmarks.md): login rate under throttling
//! per user and per address, and how a node answers normal requests during a flood of
//! half-open connections and during a crowd of wrong-password clients.
//!
//! `scripts/bench-security.sh` (release build). All traffic goes to 127.0.0.1; every loop
//! is bounded in count and time.

use ferrox_e2e::{free_port, start_node_with, Auth, Daemon};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sequential `GET /version` calls with a token for `secs` seconds, a new connection each
/// (as a client arriving during an attack would): (sent, answered, p50 ms, p99 ms).
fn normal_requests(d: &Daemon, token: &Auth, secs: u64) -> (usize, usize, f64, f64) {
    let mut ms = Vec::new();
    let mut answered = 0;
    let mut sent = 0;
    let start = Instant::now();
    let agent = ferrox_cli::client::tls_agent(None).expect("TLS setup");
    let url = format!("https://{}/api2/json/version", d.addr);
    let header = format!("PVEAPIToken={}", token.token.as_deref().unwrap_or(""));
    while start.elapsed() < Duration::from_secs(secs) {
        sent += 1;
        let t = Instant::now();
        // A fresh connection: `Connection: close` keeps ureq from pooling it.
        let r = agent
            .get(&url)
            .set("Authorization", &header)
            .set("Connection", "close")
            .call();
        if r.is_ok() {
            answered += 1;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    (sent, answered, percentile(&ms, 0.5), percentile(&ms, 0.99))
}

fn token_auth(d: &Daemon, root: &Auth) -> Auth {
    let r = d.request(
        "POST",
        "/access/users/root@pam/token/bench",
        root,
        &[("privsep", "0")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    Auth {
        token: Some(format!(
            "root@pam!bench={}",
            r.body["data"]["value"].as_str().unwrap_or("")
        )),
        ..Auth::default()
    }
}

fn login_rates(d: &Daemon, root: &Auth) {
    d.add_user(root, "victim@pve", "victimsecret", &[]);
    let none = Auth::default();
    // Correct logins, one client: the cost of Argon2.
    let start = Instant::now();
    let mut ok = 0;
    while start.elapsed() < Duration::from_secs(5) {
        let r = d.request(
            "POST",
            "/access/ticket",
            &none,
            &[("username", "victim@pve"), ("password", "victimsecret")],
        );
        ok += usize::from(r.status == 200);
    }
    println!(
        "correct logins, 1 client: {:.1}/s",
        ok as f64 / start.elapsed().as_secs_f64()
    );
    // Guessing one user's password as fast as possible (4 clients) for 10 s.
    let counts = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let counts = Arc::clone(&counts);
            s.spawn(move || {
                while start.elapsed() < Duration::from_secs(10) {
                    let r = d.request(
                        "POST",
                        "/access/ticket",
                        &Auth::default(),
                        &[("username", "victim@pve"), ("password", "guess")],
                    );
                    let i = match r.status {
                        401 => 0,
                        429 => 1,
                        _ => 2,
                    };
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "guessing one user, 4 clients, 10 s: {} password checks ({:.2}/s), {} refused with 429 ({:.0}/s), {} other",
        counts[0].load(Ordering::Relaxed),
        counts[0].load(Ordering::Relaxed) as f64 / secs,
        counts[1].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed) as f64 / secs,
        counts[2].load(Ordering::Relaxed)
    );
}

fn address_rate(d: &Daemon) {
    // 40 clients guessing made-up users from one address: the per-address limit.
    let checked = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..40 {
            let (checked, refused) = (&checked, &refused);
            s.spawn(move || {
                let mut i = 0;
                while start.elapsed() < Duration::from_secs(10) {
                    i += 1;
                    let user = format!("u{c}x{i}@pve");
                    let r = d.request(
                        "POST",
                        "/access/ticket",
                        &Auth::default(),
                        &[("username", user.as_str()), ("password", "guess")],
                    );
                    match r.status {
                        401 => checked.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let checked = checked.load(Ordering::Relaxed);
    println!(
        "guessing many users from one address, 40 clients, 10 s: {checked} password checks ({:.2}/s), {} refused with 429",
        checked as f64 / secs,
        refused.load(Ordering::Relaxed)
    );
}

fn half_open_flood(d: &Daemon, token: &Auth, addr: &str, connections: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        let addr = addr.to_string();
        std::thread::spawn(move || {
            // Keep `connections` TCP connections open that never start TLS; replace the
            // ones the server closes. Bounded: stops when told, at most 60 s.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut open: Vec<std::net::TcpStream> = Vec::new();
            let mut opened = 0usize;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                open.retain(|s| {
                    let mut b = [0u8; 1];
                    s.set_nonblocking(true).ok();
                    !matches!(std::io::Read::read(&mut &*s, &mut b), Ok(0))
                });
                while open.len() < connections {
                    match std::net::TcpStream::connect(&addr) {
                        Ok(s) => {
                            open.push(s);
                            opened += 1;
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            opened
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let (sent, answered, p50, p99) = normal_requests(d, token, 15);
    stop.store(true, Ordering::Relaxed);
    let opened = flood.join().unwrap_or(0);
    println!(
        "during 15 s of a flood of {connections} half-open connections ({opened} opened in all): {answered}/{sent} normal requests answered, p50 {p50:.1} ms, p99 {p99:.1} ms"
    );
}

fn wrong_password_crowd(d: &Daemon, token: &Auth, clients: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for c in 0..clients {
            let stop = Arc::clone(&stop);
            let attempts = Arc::clone(&attempts);
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let user = format!("crowd{c}@pve");
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    d.request(
                        "POST",
                        "/access/ticket",
                        &Auth::default(),
                        &[("username", user.as_str()), ("password", "wrong")],
                    );
                    attempts.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        let (sent, answered, p50, p99) = normal_requests(d, token, 15);
        stop.store(true, Ordering::Relaxed);
        println!(
            "during 15 s of {clients} wrong-password clients ({} attempts): {answered}/{sent} normal requests answered, p50 {p50:.1} ms, p99 {p99:.1} ms",
            attempts.load(Ordering::Relaxed)
        );
    });
}

/// A fresh node for each phase: the login throttle keeps its counts in memory.
fn fresh_node() -> (Daemon, Auth, Auth, String) {
    // Proxmox VE's 3 s delay for failed logins, as deployed.
    node_with_delay(3000)
}

fn node_with_delay(delay_ms: u32) -> (Daemon, Auth, Auth, String) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let delay = delay_ms.to_string();
    let d = start_node_with(
        dir,
        "pve1",
        "127.0.0.1",
        port,
        "tcg",
        &["--auth-failure-delay-ms", &delay],
    );
    let root = d.login();
    let token = token_auth(&d, &root);
    (d, root, token, format!("127.0.0.1:{port}"))
}

/// A wrong password takes as long for a user who exists as for one who does not: 15
/// failures each (under the throttle's limits), on nodes without the 401 delay.
fn login_timing() {
    let mut results = Vec::new();
    for known in [true, false] {
        let (d, root, _, _) = node_with_delay(0);
        let users: Vec<String> = (0..5).map(|i| format!("t{i}@pve")).collect();
        if known {
            for u in &users {
                d.add_user(&root, u, "rightsecret", &[]);
            }
        }
        let mut ms = Vec::new();
        for round in 0..3 {
            for u in &users {
                let t = Instant::now();
                let r = d.request(
                    "POST",
                    "/access/ticket",
                    &Auth::default(),
                    &[
                        ("username", u.as_str()),
                        ("password", &format!("wrong{round}")),
                    ],
                );
                assert_eq!(r.status, 401, "{r:?}");
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        results.push((known, mean, percentile(&ms, 0.5)));
    }
    for (known, mean, p50) in results {
        println!(
            "wrong password, {} user: mean {mean:.1} ms, p50 {p50:.1} ms (15 logins)",
            if known { "existing" } else { "unknown" }
        );
    }
}

fn main() {
    login_timing();
    let (d, _, token, addr) = fresh_node();
    let (sent, answered, p50, p99) = normal_requests(&d, &token, 5);
    println!("quiet node, 5 s: {answered}/{sent} answered, p50 {p50:.1} ms, p99 {p99:.1} ms");
    half_open_flood(&d, &token, &addr, 1000);
    drop(d);
    let (d, _, token, _) = fresh_node();
    wrong_password_crowd(&d, &token, 200);
    drop(d);
    let (d, root, _, _) = fresh_node();
    login_rates(&d, &root);
    drop(d);
    let (d, _, _, _) = fresh_node();
    address_rate(&d);
}
