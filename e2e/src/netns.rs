//! Test hosts in network namespaces: three nodes on a bridge, links that can be cut. Needs
//! root and `ip netns`; `Lab::new` says so and returns `None` otherwise.

use super::{ferrox_binary, kill_pids, pids_matching};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ferrox_binary_str() -> String {
    ferrox_binary().display().to_string()
}

pub const SUBNET: &str = "10.213.77";

pub struct Lab {
    prefix: String,
    daemons: Vec<Child>,
    dirs: Vec<tempfile::TempDir>,
}

/// Node `i`'s API as the CLI in its namespace reaches it.
#[derive(Clone)]
pub struct Remote {
    ns: String,
    fingerprint: String,
}

impl Remote {
    pub fn cli_within(&self, limit: Duration, args: &[&str]) -> (bool, String) {
        let out = Command::new("timeout")
            .args([&format!("{}", limit.as_secs().max(1)), "ip"])
            .args(["netns", "exec", &self.ns, &ferrox_binary_str()])
            .args(args)
            .env("FERROX_HOST", "127.0.0.1:8006")
            .env("FERROX_FINGERPRINT", &self.fingerprint)
            .env("FERROX_PASSWORD", "secret1")
            .env("FERROX_JOIN_PASSWORD", "secret1")
            .output()
            .unwrap();
        outcome(&out)
    }

    pub fn api_within(&self, limit: Duration, args: &[&str]) -> Result<Value, String> {
        let (ok, out) = self.cli_within(limit, &[&["api"], args].concat());
        if !ok {
            return Err(out);
        }
        if out.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }
}

/// Whether a command succeeded, and its output (stdout then stderr).
fn outcome(out: &std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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
    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Namespaces `n1..n3` on a bridge in `sw`. `None` (after saying so) without root
    /// or `ip netns`.
    pub fn new() -> Option<Lab> {
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
            dirs: Vec::new(),
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

    /// Starts node `i` (`n1`..`n3`) in its namespace, with extra `node serve` arguments.
    pub fn start(&mut self, i: usize, extra: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let child = self.spawn_daemon(i, dir.path(), extra);
        self.daemons.push(child);
        self.dirs.push(dir);
        self.wait_started(i);
    }

    /// Starts node `i`'s daemon again on its data directory (after `kill_daemon`).
    pub fn restart(&mut self, i: usize, extra: &[&str]) {
        let child = self.spawn_daemon(i, self.dir(i), extra);
        let old = std::mem::replace(&mut self.daemons[i - 1], child);
        drop(old);
        self.wait_started(i);
    }

    /// kill -9 of node `i`'s daemon (its watchdog and guests stay).
    pub fn kill_daemon(&mut self, i: usize) {
        let _ = self.daemons[i - 1].kill();
        let _ = self.daemons[i - 1].wait();
    }

    /// The pid of node `i`'s daemon (`ip netns exec` execs it).
    pub fn daemon_pid(&self, i: usize) -> u32 {
        self.daemons[i - 1].id()
    }

    fn spawn_daemon(&self, i: usize, dir: &Path, extra: &[&str]) -> Child {
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns(i), &ferrox_binary_str()])
            .args(["node", "serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", "0.0.0.0:8006", "--name", &format!("n{i}")])
            .args(["--address", &format!("{SUBNET}.{i}:8006")])
            .args(["--root-password", "secret1", "--auth-failure-delay-ms", "0"])
            .args(["--accel", "tcg"])
            .args(extra)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn wait_started(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.fingerprint(i).is_none() {
            assert!(Instant::now() < deadline, "n{i} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn fingerprint(&self, i: usize) -> Option<String> {
        let log = std::fs::read_to_string(self.dirs.get(i - 1)?.path().join("daemon.log")).ok()?;
        log.lines()
            .find_map(|l| l.strip_prefix("ssl_fingerprint "))
            .map(String::from)
    }

    /// The CLI, run inside node `i`'s namespace against its own API.
    pub fn cli(&self, i: usize, args: &[&str]) -> (bool, String) {
        self.cli_within(i, Duration::from_secs(600), args)
    }

    /// `cli`, given up (failed) after `limit`: a paused or cut-off node does not answer.
    pub fn cli_within(&self, i: usize, limit: Duration, args: &[&str]) -> (bool, String) {
        match self.remote(i) {
            Some(remote) => remote.cli_within(limit, args),
            None => (false, format!("n{i} has no fingerprint in its log")),
        }
    }

    /// What a thread needs to call node `i`'s API while the lab changes.
    pub fn remote(&self, i: usize) -> Option<Remote> {
        Some(Remote {
            ns: self.ns(i),
            fingerprint: self.fingerprint(i)?,
        })
    }

    pub fn api(&self, i: usize, args: &[&str]) -> Result<Value, String> {
        self.api_within(i, Duration::from_secs(600), args)
    }

    /// `api`, given up after `limit`.
    pub fn api_within(&self, i: usize, limit: Duration, args: &[&str]) -> Result<Value, String> {
        match self.remote(i) {
            Some(remote) => remote.api_within(limit, args),
            None => Err(format!("n{i} has no fingerprint in its log")),
        }
    }

    /// Node `i`'s end of its link to the switch (its "uplink" port).
    pub fn uplink(&self, i: usize) -> String {
        format!("{}a{i}", self.prefix)
    }

    pub fn set_link(&self, i: usize, up: bool) {
        let dev = self.uplink(i);
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

impl Lab {
    /// n1 creates cluster `name` and the others join it, through the CLI in each namespace.
    pub fn form_cluster(&self, name: &str) {
        let (ok, out) = self.cli(1, &["cluster", "create", name]);
        assert!(ok, "{out}");
        let fp1 = self.fingerprint(1).expect("fingerprint");
        for i in [2, 3] {
            let (ok, out) = self.cli(
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
    }

    /// Adds (through node `i`) a `shared 1` dir storage named `shared` at `path`.
    pub fn shared_storage(&self, i: usize, path: &Path) {
        let path = path.display().to_string();
        self.api(
            i,
            &[
                "create",
                "/storage",
                "--storage",
                "shared",
                "--type",
                "dir",
                "--path",
                &path,
                "--shared",
                "1",
            ],
        )
        .expect("shared storage");
    }

    /// On node `i`: a `shared` dir storage at `shared`, guest `vmid` (128 MiB, a disk on
    /// it) and the guest under HA.
    pub fn ha_guest(&self, i: usize, vmid: u32, shared: &Path) {
        self.shared_storage(i, shared);
        let vmid = vmid.to_string();
        let (ok, out) = self.cli(
            i,
            &[
                "vm", "create", &vmid, "--memory", "128", "--scsi0", "shared:1",
            ],
        );
        assert!(ok, "{out}");
        self.api(
            i,
            &[
                "create",
                "/cluster/ha/resources",
                "--sid",
                &format!("vm:{vmid}"),
            ],
        )
        .expect("HA resource");
    }

    /// Node `i`'s data directory.
    pub fn dir(&self, i: usize) -> &Path {
        self.dirs[i - 1].path()
    }
}

impl Lab {
    /// `program -j args` (`ip`, `bridge`, `tc`) inside node `i`'s namespace, as JSON.
    pub fn json_in(&self, i: usize, program: &str, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), program, "-j"])
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// A link of node `i`'s namespace as `ip -j -d link show` tells it.
    pub fn link(&self, i: usize, name: &str) -> Option<Value> {
        self.json_in(i, "ip", &["-d", "link", "show", "dev", name])
            .as_array()
            .and_then(|a| a.first().cloned())
    }

    /// Runs `args` inside node `i`'s namespace; whether it succeeded, and its output.
    pub fn run_in(&self, i: usize, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(i)])
            .args(args)
            .output()
            .unwrap();
        outcome(&out)
    }

    /// Waits for task `upid` of node `i` to end: `"<exitstatus>"` and its log lines.
    pub fn task_log(&self, i: usize, upid: &Value) -> String {
        let upid = upid.as_str().unwrap_or_default().trim_matches('"');
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            let status = self
                .api(i, &["get", &format!("/nodes/n{i}/tasks/{upid}/status")])
                .unwrap_or(Value::Null);
            if status["status"] == "stopped" {
                break status;
            }
            assert!(Instant::now() < deadline, "task {upid} did not end");
            std::thread::sleep(Duration::from_millis(200));
        };
        let log = self
            .api(
                i,
                &[
                    "get",
                    &format!("/nodes/n{i}/tasks/{upid}/log"),
                    "--limit",
                    "1000",
                ],
            )
            .unwrap();
        let lines: Vec<String> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["t"].as_str().unwrap_or("").to_string())
            .collect();
        format!("{}\n{}", status["exitstatus"], lines.join("\n"))
    }
}

impl Lab {
    /// Creates guest `vmid` on node `node` (`memory` MiB, one card `net`, raw `args`) and
    /// starts it; panics when the start task fails, else returns its log (`task_log`).
    pub fn start_guest(
        &self,
        node: usize,
        vmid: &str,
        memory: &str,
        net: &str,
        args: &str,
    ) -> String {
        self.api(
            node,
            &[
                "create",
                &format!("/nodes/n{node}/qemu"),
                "--vmid",
                vmid,
                "--memory",
                memory,
                "--net0",
                net,
                "--args",
                args,
            ],
        )
        .unwrap();
        let upid = self
            .api(
                node,
                &[
                    "create",
                    &format!("/nodes/n{node}/qemu/{vmid}/status/start"),
                ],
            )
            .unwrap();
        let log = self.task_log(node, &upid);
        assert!(
            log.starts_with("\"OK\"") || log.starts_with("\"WARNINGS"),
            "{log}"
        );
        log
    }
}

/// Asserts that a request through `Lab::api` was refused naming `param` (and saying
/// `text`).
pub fn refused(result: Result<Value, String>, param: &str, text: &str) {
    let out = result.expect_err("the request must be refused");
    assert!(
        out.contains(param) && out.contains(text),
        "expected a refusal naming {param} ({text}): {out}"
    );
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        for dir in &self.dirs {
            let run = dir.path().join("run");
            kill_pids(&pids_matching(&[
                "node watchdog",
                &run.display().to_string(),
            ]));
            kill_pids(&pids_matching(&["qemu-system", &run.display().to_string()]));
            // SDN DHCP servers outlive their daemon on purpose (like guests); not a test's.
            kill_pids(&pids_matching(&["dnsmasq", &run.display().to_string()]));
        }
        for i in 1..=3 {
            ip(&["netns", "del", &self.ns(i)]);
        }
        ip(&["netns", "del", &format!("{}sw", self.prefix)]);
    }
}
