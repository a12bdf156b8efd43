//! A real network partition: three daemons, each in its own network namespace, joined by
//! a bridge; one node is cut off. The minority side keeps serving reads, refuses writes,
//! cannot renew or take locks; the majority goes on and takes the lock once its lease
//! ran out; after healing the cut-off node catches up. Needs root and `ip netns`.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUBNET: &str = "10.213.77";

struct Lab {
    prefix: String,
    daemons: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    assert!(ip(args), "ip {}", args.join(" "));
}

impl Lab {
    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Namespaces `n1..n3` on a bridge in `sw`. `None` (after saying so) without root
    /// or `ip netns`.
    fn new() -> Option<Lab> {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .map(|u| u.split_whitespace().next() == Some("0"))
            })
            .unwrap_or(false);
        let prefix = format!("fx{}", std::process::id() % 100000);
        if !root || !ip(&["netns", "add", &format!("{prefix}sw")]) {
            eprintln!(
                "SKIPPED partition test: needs root and `ip netns` (CI has both; scripts/test.sh runs it as root)"
            );
            return None;
        }
        let lab = Lab {
            prefix,
            daemons: Vec::new(),
            _dirs: Vec::new(),
        };
        let sw = format!("{}sw", lab.prefix);
        must(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        must(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 1..=3 {
            let ns = lab.ns(i);
            must(&["netns", "add", &ns]);
            let (a, b) = (format!("{}a{i}", lab.prefix), format!("{}b{i}", lab.prefix));
            must(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            must(&["link", "set", &a, "netns", &ns]);
            must(&["link", "set", &b, "netns", &sw]);
            must(&["-n", &sw, "link", "set", &b, "master", "br0"]);
            must(&["-n", &sw, "link", "set", &b, "up"]);
            must(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{i}/24"),
                "dev",
                &a,
            ]);
            must(&["-n", &ns, "link", "set", &a, "up"]);
            must(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        Some(lab)
    }

    fn start(&mut self, i: usize) {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), env!("CARGO_BIN_EXE_ferrox")])
            .args(["node", "serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "0.0.0.0:8006", "--name", &format!("n{i}")])
            .args(["--address", &format!("{SUBNET}.{i}:8006")])
            .args(["--root-password", "secret1", "--auth-failure-delay-ms", "0"])
            .args(["--accel", "tcg"])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.daemons.push(child);
        self._dirs.push(dir);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.fingerprint(i).is_none() {
            assert!(Instant::now() < deadline, "n{i} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn fingerprint(&self, i: usize) -> Option<String> {
        let log = std::fs::read_to_string(self._dirs.get(i - 1)?.path().join("daemon.log")).ok()?;
        log.lines()
            .find_map(|l| l.strip_prefix("ssl_fingerprint "))
            .map(String::from)
    }

    /// The CLI, run inside node `i`'s namespace against its own API.
    fn cli(&self, i: usize, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), env!("CARGO_BIN_EXE_ferrox")])
            .args(args)
            .env("FERROX_HOST", "127.0.0.1:8006")
            .env("FERROX_FINGERPRINT", self.fingerprint(i).unwrap())
            .env("FERROX_PASSWORD", "secret1")
            .env("FERROX_JOIN_PASSWORD", "secret1")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn api(&self, i: usize, args: &[&str]) -> Result<Value, String> {
        let (ok, out) = self.cli(i, &[&["api"], args].concat());
        if !ok {
            return Err(out);
        }
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }

    fn set_link(&self, i: usize, up: bool) {
        let dev = format!("{}a{i}", self.prefix);
        must(&[
            "-n",
            &self.ns(i),
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        for i in 1..=3 {
            ip(&["netns", "del", &self.ns(i)]);
        }
        ip(&["netns", "del", &format!("{}sw", self.prefix)]);
    }
}

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_minority_side_of_a_partition_refuses_writes_and_locks() {
    let Some(mut lab) = Lab::new() else {
        return;
    };
    for i in 1..=3 {
        lab.start(i);
    }
    let (ok, out) = lab.cli(1, &["cluster", "create", "part"]);
    assert!(ok, "{out}");
    let fp1 = lab.fingerprint(1).unwrap();
    for i in [2, 3] {
        let (ok, out) = lab.cli(
            i,
            &[
                "cluster",
                "join",
                &format!("{SUBNET}.1:8006"),
                "--fingerprint",
                &fp1,
            ],
        );
        assert!(ok, "n{i}: {out}");
    }
    let (ok, out) = lab.cli(3, &["cluster", "status"]);
    assert!(ok && out.contains("3 nodes, quorate yes"), "{out}");

    // n3 holds a lock with a short lease, then is cut off.
    let lock = lab
        .api(
            3,
            &["create", "/cluster/locks/partition-test", "--lease", "20"],
        )
        .unwrap();
    assert_eq!(lock["granted"], 1, "{lock}");
    lab.set_link(3, false);

    // Majority side: still quorate, still writing; the lock is n3's until it expires,
    // then the majority takes it.
    eventually("n1 sees n3 gone", Duration::from_secs(20), || {
        let (_, out) = lab.cli(1, &["cluster", "status"]);
        out.contains("quorate yes") && out.lines().any(|l| l.contains("n3") && l.contains(" no "))
    });
    let held = lab
        .api(1, &["create", "/cluster/locks/partition-test"])
        .unwrap();

    assert_eq!(held["granted"], 0, "{held}");
    assert_eq!(held["owner"], "n3");
    eventually("the lease runs out", Duration::from_secs(40), || {
        lab.api(1, &["create", "/cluster/locks/partition-test"])
            .is_ok_and(|v| v["granted"] == 1)
    });
    let (ok, out) = lab.cli(1, &["vm", "create", "400", "--memory", "64"]);
    assert!(ok, "majority write: {out}");

    // Minority side: not quorate, refuses writes and locks, still answers reads.
    eventually("n3 notices", Duration::from_secs(20), || {
        let (_, out) = lab.cli(3, &["cluster", "status"]);
        out.contains("quorate no")
    });
    let err = lab
        .api(3, &["create", "/cluster/locks/partition-test"])
        .unwrap_err();
    assert!(err.contains("cluster not ready"), "{err}");
    let (ok, out) = lab.cli(3, &["vm", "create", "401", "--memory", "64"]);
    assert!(
        !ok && out.contains("cluster not ready"),
        "minority write: {out}"
    );
    let storage = lab.api(3, &["get", "/storage"]).unwrap();
    assert!(
        storage.as_array().is_some_and(|s| !s.is_empty()),
        "{storage}"
    );

    // Heal: n3 catches up with what the majority wrote, and its refused write never
    // appears anywhere.
    lab.set_link(3, true);
    // n3's own store (not the aggregated view) has the majority's guest and lock holder.
    eventually("n3 catches up", Duration::from_secs(30), || {
        let taken = lab
            .api(3, &["get", "/cluster/nextid", "--vmid", "400"])
            .is_err();
        let locks = lab.api(3, &["get", "/cluster/locks"]).unwrap_or_default();
        taken && locks.to_string().contains("\"owner\":\"n1\"")
    });
    let vms = lab
        .api(3, &["get", "/cluster/resources", "--type", "vm"])
        .unwrap();
    assert!(vms.to_string().contains("\"vmid\":400"), "{vms}");
    assert!(!vms.to_string().contains("\"vmid\":401"), "{vms}");
}
