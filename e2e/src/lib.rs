//! The end-to-end harness: daemons started from the real `ferrox` binary, with a plain
//! HTTPS client, logins and task waits, network-namespace labs and the no-double-run
//! monitor — what the daemon tests (`tests/`) and the cluster benchmarks (`examples/`)
//! share. Test support, not product code: it panics on anything unexpected.
//!
//! The binary is the `ferrox` beside the test or example (`target/<profile>/`, built by
//! `cargo test --workspace`), or `FERROX_BIN`.

pub mod netns;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    /// Taken over by a restarted daemon (then the guests are left running).
    pub dir: Option<tempfile::TempDir>,
    pub base: String,
    pub agent: ureq::Agent,
    pub name: String,
    /// host:port of its API.
    pub addr: String,
}

/// Pids of processes whose command line contains every one of `needles`.
pub fn pids_matching(needles: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if !zombie && needles.iter().all(|n| cmdline.contains(n)) {
            out.push(pid);
        }
    }
    out
}

pub fn kill_pids(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

impl Daemon {
    /// The watchdog process of this node (it outlives the daemon on purpose).
    pub fn watchdog_pids(&self) -> Vec<u32> {
        match &self.dir {
            Some(d) => {
                pids_matching(&["node watchdog", &d.path().join("run").display().to_string()])
            }
            None => Vec::new(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            stop_left_behind(dir.path());
        }
    }
}

/// Stops what a daemon leaves running on purpose when it dies (docs/fencing.md): its
/// watchdog, a CPU probe's paused QEMU, its guests (daemonized QEMU processes).
fn stop_left_behind(dir: &Path) {
    let run = dir.join("run").display().to_string();
    kill_pids(&pids_matching(&["node watchdog", &run]));
    kill_pids(&pids_matching(&["cpu-probe", &run]));
    if let Ok(entries) = std::fs::read_dir(dir.join("run")) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Ok(pid) = std::fs::read_to_string(e.path()) {
                    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                }
            }
        }
    }
}

/// The data directory of a killed daemon. What that daemon left running is stopped when
/// this is dropped, unless a new daemon took the directory over (`start_node(dir, ..)`).
pub struct DataDir(Option<tempfile::TempDir>);

impl DataDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("data dir").path()
    }
}

impl From<DataDir> for tempfile::TempDir {
    fn from(mut dir: DataDir) -> Self {
        dir.0.take().expect("data dir")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            stop_left_behind(dir.path());
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub content_type: String,
    pub body: Value,
    pub raw: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn insecure_agent() -> ureq::Agent {
    ferrox_client::pinned::tls_agent(None).unwrap()
}

pub fn start_daemon(accel: &str) -> Daemon {
    start_daemon_in(tempfile::tempdir().unwrap(), accel)
}

/// The `ferrox` binary beside the running test or example (`target/<profile>/`).
pub fn ferrox_binary() -> PathBuf {
    if let Ok(path) = std::env::var("FERROX_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    // tests and examples live one level below the binaries (deps/, examples/).
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    let binary = dir.join("ferrox");
    assert!(
        binary.exists(),
        "{} not found: build it first (cargo build -p ferrox-cli), or set FERROX_BIN",
        binary.display()
    );
    binary
}

pub fn start_daemon_in(dir: impl Into<tempfile::TempDir>, accel: &str) -> Daemon {
    start_node(dir, "pve1", "127.0.0.1", free_port(), accel)
}

/// A daemon named `name` listening on `ip:port`, with `dir` as its data directory.
pub fn start_node(
    dir: impl Into<tempfile::TempDir>,
    name: &str,
    ip: &str,
    port: u16,
    accel: &str,
) -> Daemon {
    start_node_with(dir, name, ip, port, accel, &[])
}

/// HA timings for tests: 1 s rounds, 6 s lock lease, 3 s watchdog (the defaults take
/// 5/15/10 s; docs/fencing.md).
pub const FAST_HA: &[&str] = &[
    "--ha-round-ms",
    "1000",
    "--ha-lock-lease-ms",
    "6000",
    "--ha-watchdog-timeout-ms",
    "3000",
    "--ha-fence-delay",
    "2",
];

/// `start_node` with extra `node serve` arguments.
pub fn start_node_with(
    dir: impl Into<tempfile::TempDir>,
    name: &str,
    ip: &str,
    port: u16,
    accel: &str,
    extra: &[&str],
) -> Daemon {
    let dir: tempfile::TempDir = dir.into();
    let log = dir.path().join("daemon.log");
    let child = Command::new(ferrox_binary())
        .args(["node", "serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("{ip}:{port}"), "--name", name])
        .args(["--root-password", "secret1", "--auth-failure-delay-ms", "0"])
        .args(["--accel", accel, "--metrics-interval", "1"])
        // Daemons of one test host share its network namespace: their guests get
        // user-mode networking unless a test asks for bridges (tests/network.rs runs
        // bridged nodes in namespaces of their own).
        .args(if extra.contains(&"--net-mode") {
            &[][..]
        } else {
            &["--net-mode", "user"][..]
        })
        .args(extra)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        dir: Some(dir),
        base: format!("https://{ip}:{port}/api2"),
        agent: insecure_agent(),
        name: name.to_string(),
        addr: format!("{ip}:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.fingerprint().is_none() || std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon {name} did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

#[derive(Clone, Default)]
pub struct Auth {
    pub ticket: Option<String>,
    pub csrf: Option<String>,
    pub token: Option<String>,
}

impl Daemon {
    /// A request with `auth`'s credentials.
    fn authed(&self, method: &str, path: &str, auth: &Auth) -> ureq::Request {
        let url = if path.starts_with("/api2") {
            format!("{}{}", self.base.trim_end_matches("/api2"), path)
        } else {
            format!("{}/json{path}", self.base)
        };
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &auth.ticket {
            req = req.set("Cookie", &format!("PVEAuthCookie={t}"));
        }
        if let Some(c) = &auth.csrf {
            req = req.set("CSRFPreventionToken", c);
        }
        if let Some(t) = &auth.token {
            req = req.set("Authorization", &format!("PVEAPIToken={t}"));
        }
        req
    }

    fn response(what: &str, result: Result<ureq::Response, ureq::Error>) -> Resp {
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{what}: {e}"),
        };
        let status = resp.status();
        let reason = resp.status_text().to_string();
        let content_type = resp.header("content-type").unwrap_or("").to_string();
        let raw = resp.into_string().unwrap();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Resp {
            status,
            reason,
            content_type,
            body,
            raw,
        }
    }

    pub fn request(&self, method: &str, path: &str, auth: &Auth, form: &[(&str, &str)]) -> Resp {
        let req = self.authed(method, path, auth);
        let result = if matches!(method, "GET" | "DELETE") {
            let mut r = req;
            for (k, v) in form {
                r = r.query(k, v);
            }
            r.call()
        } else {
            req.send_form(form)
        };
        Self::response(&format!("{method} {path}"), result)
    }

    /// `POST` of a multipart form as browsers send an upload: `fields`, then `file` as
    /// the field `filename` with the file name `file_name`.
    pub fn upload(
        &self,
        path: &str,
        auth: &Auth,
        fields: &[(&str, &str)],
        file_name: &str,
        file: &[u8],
    ) -> Resp {
        let boundary = "----ferrox-test-boundary";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let result = self
            .authed("POST", path, auth)
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send_bytes(&body);
        Self::response(&format!("upload to {path}"), result)
    }

    /// `GET /nodes/<this node>/qemu/{vmid}/config`'s data (asserting it answers 200).
    pub fn vm_config(&self, auth: &Auth, vmid: u32) -> Value {
        let r = self.request(
            "GET",
            &format!("/nodes/{}/qemu/{vmid}/config", self.name),
            auth,
            &[],
        );
        assert_eq!(r.status, 200, "{r:?}");
        r.body["data"].clone()
    }

    pub fn login(&self) -> Auth {
        self.login_as("root@pam", "secret1")
    }

    /// Creates `userid` (password `password`) through the API as `root`, and grants it
    /// `role` on `path` for each `(path, role)`.
    pub fn add_user(&self, root: &Auth, userid: &str, password: &str, grants: &[(&str, &str)]) {
        let r = self.request(
            "POST",
            "/access/users",
            root,
            &[("userid", userid), ("password", password)],
        );
        assert_eq!(r.status, 200, "creating {userid}: {r:?}");
        for (path, role) in grants {
            let r = self.request(
                "PUT",
                "/access/acl",
                root,
                &[("path", path), ("roles", role), ("users", userid)],
            );
            assert_eq!(
                r.status, 200,
                "granting {role} on {path} to {userid}: {r:?}"
            );
        }
    }

    pub fn login_as(&self, userid: &str, password: &str) -> Auth {
        let r = self.request(
            "POST",
            "/access/ticket",
            &Auth::default(),
            &[("username", userid), ("password", password)],
        );
        assert_eq!(r.status, 200, "{r:?}");
        Auth {
            ticket: r.body["data"]["ticket"].as_str().map(String::from),
            csrf: r.body["data"]["CSRFPreventionToken"]
                .as_str()
                .map(String::from),
            token: None,
        }
    }

    pub fn wait_task(&self, auth: &Auth, upid: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.request(
                "GET",
                &format!(
                    "/nodes/{}/tasks/{upid}/status",
                    upid.split(':').nth(1).unwrap_or("")
                ),
                auth,
                &[],
            );
            assert_eq!(r.status, 200, "{r:?}");
            if r.body["data"]["status"] == "stopped" {
                return r.body["data"].clone();
            }
            assert!(Instant::now() < deadline, "task {upid} did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a task endpoint and asserts it ended OK (or with warnings when `warn_ok`).
    pub fn task_ok(&self, auth: &Auth, method: &str, path: &str, form: &[(&str, &str)]) -> String {
        let r = self.request(method, path, auth, form);
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
        let upid = r.body["data"].as_str().unwrap().to_string();
        let status = self.wait_task(auth, &upid);
        let exit = status["exitstatus"].as_str().unwrap_or("");
        assert!(
            exit == "OK" || exit.starts_with("WARNINGS"),
            "{method} {path}: {status}"
        );
        upid
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("data dir").path()
    }

    pub fn etc(&self) -> PathBuf {
        self.path().join("etc")
    }

    /// The certificate fingerprint the daemon printed at start.
    pub fn fingerprint(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.path().join("daemon.log")).ok()?;
        log.lines()
            .find_map(|l| l.strip_prefix("ssl_fingerprint "))
            .map(String::from)
    }

    /// Kills the daemon (not its guests) and hands back its data directory.
    pub fn kill(mut self) -> DataDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        DataDir(self.dir.take())
    }
}

/// Forms a cluster through the API: `nodes[0]` creates it, the others join through it.
pub fn form_cluster(nodes: &[Daemon], name: &str) {
    let auth = nodes[0].login();
    nodes[0].task_ok(&auth, "POST", "/cluster/config", &[("clustername", name)]);
    for d in &nodes[1..] {
        let r = d.request(
            "POST",
            "/cluster/config/join",
            &d.login(),
            &[
                ("hostname", &nodes[0].addr),
                ("fingerprint", &nodes[0].fingerprint().expect("fingerprint")),
                ("password", "secret1"),
            ],
        );
        assert_eq!(r.status, 200, "{} joining: {r:?}", d.name);
    }
}

/// Nodes `n1`..`nN` on loopback, formed into cluster `name`.
pub fn local_cluster(n: usize, name: &str, accel: &str, extra: &[&str]) -> Vec<Daemon> {
    let nodes: Vec<Daemon> = (1..=n)
        .map(|i| {
            start_node_with(
                tempfile::tempdir().expect("tempdir"),
                &format!("n{i}"),
                "127.0.0.1",
                free_port(),
                accel,
                extra,
            )
        })
        .collect();
    form_cluster(&nodes, name);
    nodes
}

/// Adds a `shared 1` dir storage named `shared` at `path` (through `d`).
pub fn add_shared_storage(d: &Daemon, path: &Path) {
    let r = d.request(
        "POST",
        "/storage",
        &d.login(),
        &[
            ("storage", "shared"),
            ("type", "dir"),
            ("path", path.to_str().expect("utf-8 path")),
            ("shared", "1"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
}

/// The live QEMU process of guest `vmid` in a node's run directory (its pid file).
pub fn guest_pid(run_dir: &Path, vmid: u32) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(run_dir.join(format!("{vmid}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline)
        .replace('\0', " ")
        .contains(&format!("/{vmid}.qmp,"));
    (!zombie && ours).then_some(pid)
}

/// Whether that QEMU runs the guest, as QEMU itself says (QMP `query-status`): a
/// migration target waits `inmigrate`, a source that handed over sits in `postmigrate`.
/// A live QEMU whose QMP does not answer three times in a row counts as running.
pub fn guest_running(run_dir: &Path, vmid: u32) -> bool {
    let socket = run_dir.join(format!("{vmid}.qmp"));
    // QEMU serves one QMP client at a time: a daemon holding it (e.g. to `quit` a
    // migration source that already handed over) makes us wait. Ask again a few times,
    // checking that the process still lives; only a QEMU that stays silent counts as
    // running.
    for _ in 0..3 {
        if guest_pid(run_dir, vmid).is_none() {
            return false;
        }
        if let Ok(status) = ferrox_qemu::Qmp::connect(&socket, Duration::from_millis(200))
            .and_then(|mut q| q.execute("query-status", None))
        {
            return status["status"] == "running";
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    guest_pid(run_dir, vmid).is_some()
}

/// Samples, every 20 ms, guest `vmid` on every node (`run_dirs`) and records the most
/// seen running at once: the no-double-run check of the HA tests and benchmarks.
/// (QEMU's short-lived pre-`-daemonize` parent writes no pid file and is not counted.)
pub struct DoubleRunMonitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    max: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    doubles: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DoubleRunMonitor {
    pub fn start(vmid: u32, run_dirs: Vec<PathBuf>) -> DoubleRunMonitor {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let doubles = Arc::new(AtomicUsize::new(0));
        let (s, m, d) = (Arc::clone(&stop), Arc::clone(&max), Arc::clone(&doubles));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let running = run_dirs.iter().filter(|r| guest_running(r, vmid)).count();
                m.fetch_max(running, Ordering::Relaxed);
                if running > 1 {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        DoubleRunMonitor {
            stop,
            max,
            doubles,
            thread: Some(thread),
        }
    }

    /// Stops sampling: (most running at once, samples with more than one).
    pub fn finish(mut self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.max.load(Ordering::Relaxed),
            self.doubles.load(Ordering::Relaxed),
        )
    }
}

/// A multiboot payload that spins forever: burns a whole vCPU, dirties no memory.
pub const SPIN_PAYLOAD: &str = ".section .text\n.align 4\n.long 0x1BADB002, 0x00000003, -(0x1BADB002+0x00000003)\n.globl _start\n.code32\n_start: jmp _start\n";

/// A multiboot payload that writes one dword into every 4 KiB page above 4 MiB, forever
/// (`shared/spec/qemu-on-these-machines.md` §1.4, "mbdirty").
pub const DIRTY_PAYLOAD: &str = r#"
.section .text
.align 4
.long 0x1BADB002, 0x00000003, -(0x1BADB002+0x00000003)
.globl _start
.code32
_start: mov $stack_top, %esp
        mov 8(%ebx), %eax
        shl $10, %eax
        add $0x100000, %eax
        and $0xfffff000, %eax
        mov %eax, memend
        xor %ecx, %ecx
1:      mov $0x400000, %edi
2:      mov %ecx, (%edi)
        add $4096, %edi
        cmp memend, %edi
        jb 2b
        inc %ecx
        jmp 1b
.section .data
memend: .long 0
.section .bss
.align 16
stack:  .space 4096
stack_top:
"#;

/// Assembles a multiboot payload (`-kernel` for a guest's `args`) with binutils; `None`
/// when `as`/`ld` are missing or fail.
pub fn build_payload(dir: &Path, name: &str, asm: &str) -> Option<PathBuf> {
    let src = dir.join(format!("{name}.S"));
    std::fs::write(&src, asm).ok()?;
    let obj = dir.join(format!("{name}.o"));
    let elf = dir.join(format!("{name}.elf"));
    let ok = Command::new("as")
        .args(["--32", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("ld")
            .args(["-m", "elf_i386", "-Ttext", "0x100000", "-o"])
            .arg(&elf)
            .arg(&obj)
            .status()
            .is_ok_and(|s| s.success());
    ok.then_some(elf)
}

/// The real Linux test guest (`scripts/build-linux-guest.sh`: Debian's cloud kernel and a
/// busybox initramfs), built once into `target/linux-guest`: `(kernel, initrd)`. `None`
/// (after saying why) when it cannot be built here.
pub fn linux_guest() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/linux-guest");
    let status = Command::new("bash")
        .arg(root.join("scripts/build-linux-guest.sh"))
        .arg(&out)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: the Linux test guest cannot be built here (scripts/build-linux-guest.sh needs Debian's apt and root)");
        return None;
    }
    Some((out.join("vmlinuz"), out.join("initrd.gz")))
}

/// The `args` of a Linux test guest: direct kernel boot with `append` on its command line
/// (see scripts/build-linux-guest.sh for the `fx*` options).
pub fn linux_args(guest: &(PathBuf, PathBuf), append: &str) -> String {
    format!(
        "-kernel {} -initrd {} -append \"console=ttyS0 quiet panic=-1 {append}\"",
        guest.0.display(),
        guest.1.display()
    )
}

/// Every file below a node's `etc/` with its content, sorted: to check that a refused
/// request changed nothing. The status files the daemons rewrite on their own (`lrm_status`,
/// `ha_node_stats`, `manager_status`, and `cpu_capability`, published once the host's CPU
/// is probed) are left out.
pub fn config_snapshot(etc: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![etc.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !matches!(
                name.as_str(),
                "lrm_status" | "ha_node_stats" | "manager_status" | "cpu_capability"
            ) {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Whether QEMU is installed; says loudly when a test skips for its absence.
pub fn qemu_available() -> bool {
    let ok = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// Polls `f` every 100 ms until it holds; fails the test after `limit`. Returns how long
/// it took.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// An HTTP listener on loopback that answers 200 and hands over the request bodies
/// (webhook tests).
pub fn http_receiver() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (url, rx)
}

/// A multiboot payload with a screen and a serial shell of sorts: it paints the VGA text
/// screen white on blue with a banner, prints `ferrox echo ready` on COM1 and echoes
/// every byte it receives there (a carriage return as CR LF). The last byte received is
/// also kept in RAM at 4 MiB, where tests read it (QMP `xp`).
pub const ECHO_PAYLOAD: &str = r#"
.section .text
.align 4
.long 0x1BADB002, 0x00000003, -(0x1BADB002+0x00000003)
.globl _start
.code32
_start: mov $stack_top, %esp
        # The whole text screen: spaces, white on blue; then the banner on the first line.
        mov $0xB8000, %edi
        mov $2000, %ecx
        mov $0x1F20, %ax
        rep stosw
        mov $0xB8000, %edi
        mov $banner, %esi
1:      lodsb
        test %al, %al
        jz 2f
        mov $0x1F, %ah
        stosw
        jmp 1b
2:      # COM1: 115200 8N1, FIFO on.
        mov $0x3F9, %dx
        xor %al, %al
        out %al, %dx
        mov $0x3FB, %dx
        mov $0x80, %al
        out %al, %dx
        mov $0x3F8, %dx
        mov $1, %al
        out %al, %dx
        mov $0x3F9, %dx
        xor %al, %al
        out %al, %dx
        mov $0x3FB, %dx
        mov $0x03, %al
        out %al, %dx
        mov $0x3FA, %dx
        mov $0xC7, %al
        out %al, %dx
        mov $0x3FC, %dx
        mov $0x0B, %al
        out %al, %dx
        mov $ready, %esi
3:      lodsb
        test %al, %al
        jz 4f
        call putc
        jmp 3b
4:      mov $0x3FD, %dx
        in %dx, %al
        test $1, %al
        jz 4b
        mov $0x3F8, %dx
        in %dx, %al
        mov %al, 0x400000
        cmp $13, %al
        jne 5f
        call putc
        mov $10, %al
5:      call putc
        jmp 4b
putc:   push %eax
        mov $0x3FD, %dx
6:      in %dx, %al
        test $0x20, %al
        jz 6b
        pop %eax
        mov $0x3F8, %dx
        out %al, %dx
        ret
.section .data
banner: .asciz "Ferrox echo guest: type on the serial console"
ready:  .asciz "ferrox echo ready\r\n"
.section .bss
.align 16
stack:  .space 4096
stack_top:
"#;

/// The byte the echo guest keeps at 4 MiB: the last one it received on its serial port.
pub fn last_received(run_dir: &Path, vmid: u32) -> u8 {
    let socket = run_dir.join(format!("{vmid}.qmp"));
    for _ in 0..50 {
        // One QMP client at a time: the daemon may hold the socket for a moment.
        if let Ok(mut qmp) = ferrox_qemu::Qmp::connect(&socket, Duration::from_secs(5)) {
            let out = qmp
                .execute(
                    "human-monitor-command",
                    Some(serde_json::json!({"command-line": "xp /1bx 0x400000"})),
                )
                .unwrap();
            let text = out.as_str().unwrap();
            let hex = text.rsplit("0x").next().unwrap().trim();
            return u8::from_str_radix(hex, 16).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("QMP of VM {vmid} did not answer");
}

/// Types `byte` on the guest's serial port until the guest has stored it (a byte that
/// arrives while the guest still sets its port up is lost).
pub fn type_byte(run_dir: &Path, vmid: u32, byte: u8) {
    let mut serial =
        std::os::unix::net::UnixStream::connect(run_dir.join(format!("{vmid}.serial0")))
            .expect("serial socket");
    let mut sent = std::time::Instant::now() - Duration::from_secs(1);
    wait_for(
        "the guest to take the byte",
        Duration::from_secs(60),
        || {
            if sent.elapsed() >= Duration::from_secs(1) {
                std::io::Write::write_all(&mut serial, &[byte]).unwrap();
                sent = std::time::Instant::now();
            }
            last_received(run_dir, vmid) == byte
        },
    );
}

/// Whether the named tools run (`<tool> --version`); says loudly which are missing.
pub fn tools_available(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} missing (qemu-utils, qemu-system-x86; scripts/test.sh installs them)",
            missing.join(", ")
        );
    }
    missing.is_empty()
}

/// Runs `qemu-io -c <command>` on an image of `format` (reads with `-U -r`: they may look
/// at an image a guest holds); false when it fails or a `-P` pattern check fails.
pub fn qemu_io(image: &Path, format: &str, command: &str) -> bool {
    let mut cmd = Command::new("qemu-io");
    if command.starts_with("read") {
        cmd.args(["-U", "-r"]);
    }
    cmd.args(["-f", format, "-c", command])
        .arg(image)
        .output()
        .map(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout).contains("verification failed")
        })
        .unwrap_or(false)
}
