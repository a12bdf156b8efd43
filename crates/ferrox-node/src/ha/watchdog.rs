//! The node's watchdog: a separate process (`ferrox node watchdog`) that the daemon must
//! feed while it holds its HA agent lock. When it is not fed in time (the daemon hangs,
//! dies, or lost quorum and stopped feeding) it kills every QEMU guest of the node, as a
//! hardware watchdog would reset the host. `/dev/watchdog` is fed in addition where it
//! exists, so that a dead watchdog process resets the host. docs/fencing.md has the timing.
//!
//! A hardware reset also ends every thread of the daemon; killing guests does not. A
//! daemon paused in the middle of a start (SIGSTOP, a hung disk) and resumed after the
//! watchdog fired would finish that start after another node recovered the guest. So once
//! it fired the watchdog stays *fenced*: it kills every guest that appears (polling every
//! 10 ms, before a new QEMU has its vCPUs running) until the daemon that fed it either ends
//! or says `unfence`, which it does only once none of the service actions it began before
//! are still running. `unfence` kills whatever those actions left, then the node is clean.
//!
//! Protocol: one line per message on a unix socket, one reply line each (`ok`, `fenced` or
//! `refused`): `open ID MS` and `feed ID MS` (arm handle ID until MS milliseconds from now;
//! refused with `fenced` while fenced), `close ID` (disarm it), `status`, `unfence` (only
//! from the process whose handle fired). It fires when any armed handle passes its
//! deadline. A connection that goes away leaves its handles armed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Feeder {
    pid: i32,
    started: u64,
}

impl Feeder {
    fn of(stream: &UnixStream) -> Option<Feeder> {
        let pid = rustix::net::sockopt::get_socket_peercred(stream)
            .ok()?
            .pid
            .as_raw_nonzero()
            .get();
        Some(Feeder {
            pid,
            started: process_start(pid)?,
        })
    }

    fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.started)
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot). The command name
/// before it is in parentheses and may hold spaces: count from the last ')'.
fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Default)]
struct State {
    /// Armed handles: deadline and the process that armed them last.
    handles: std::collections::HashMap<String, (Instant, Option<Feeder>)>,
    /// Set when a handle fired: the process that had armed it (None: unknown, the fence
    /// lasts until some process says `unfence`).
    fenced: Option<Option<Feeder>>,
}

impl State {
    fn answer(
        &mut self,
        line: &str,
        peer: Option<Feeder>,
        timeout: Duration,
        run_dir: &Path,
    ) -> &'static str {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["open" | "feed", _, _] if self.fenced.is_some() => "fenced",
            ["open" | "feed", id, ms] => {
                let ms = ms.parse::<u64>().unwrap_or(0);
                let allowed = Duration::from_millis(ms).min(timeout);
                self.handles
                    .insert(id.to_string(), (Instant::now() + allowed, peer));
                "ok"
            }
            ["close", id] => {
                self.handles.remove(*id);
                "ok"
            }
            ["status"] if self.fenced.is_some() => "fenced",
            ["status"] => "ok",
            ["unfence"] => match self.fenced {
                None => "ok",
                Some(by) if by.is_none() || by == peer => {
                    let killed = kill_guests(run_dir);
                    eprintln!("watchdog: unfenced by its daemon, killed guests {killed:?}");
                    self.fenced = None;
                    "ok"
                }
                Some(_) => "refused",
            },
            _ => {
                eprintln!("watchdog: ignoring '{line}'");
                "refused"
            }
        }
    }

    /// One look at the handles; returns whether the host watchdog may still be fed.
    fn check(&mut self, run_dir: &Path) -> bool {
        let now = Instant::now();
        if let Some((id, (_, feeder))) = self
            .handles
            .iter()
            .find(|(_, (deadline, _))| *deadline < now)
        {
            let (id, feeder) = (id.clone(), *feeder);
            self.handles.clear();
            self.fenced = Some(feeder);
            let killed = kill_guests(run_dir);
            eprintln!(
                "watchdog: handle {id} not fed in time: fenced this node, killed guests {killed:?}"
            );
            return false;
        }
        match self.fenced {
            Some(Some(feeder)) if !feeder.alive() => {
                let killed = kill_guests(run_dir);
                eprintln!(
                    "watchdog: the fenced daemon (pid {}) is gone: unfenced, killed guests {killed:?}",
                    feeder.pid
                );
                self.fenced = None;
            }
            Some(_) => {
                let killed = kill_guests(run_dir);
                if !killed.is_empty() {
                    eprintln!("watchdog: fenced: killed guests {killed:?}");
                }
            }
            None => {}
        }
        true
    }
}

/// Kills every guest whose pid file is in `run_dir` (its command line must name the QMP
/// socket beside the pid file, so a recycled pid is never hit). Returns the vmids.
pub fn kill_guests(run_dir: &Path) -> Vec<u32> {
    let mut killed = Vec::new();
    for process in ferrox_qemu::GuestProcess::all(run_dir) {
        if let Some(pid) = rustix::process::Pid::from_raw(process.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Kill);
            killed.push(process.vmid);
        }
    }
    killed
}

/// Runs the watchdog until the process is killed. `timeout` caps every feed.
pub fn run(socket: &Path, timeout: Duration, run_dir: &Path) -> anyhow::Result<()> {
    // Two watchdogs for one node would each hold handles; the one whose socket was
    // replaced would fire on handles nobody can feed any more.
    if UnixStream::connect(socket).is_ok() {
        anyhow::bail!("a watchdog already listens on {}", socket.display());
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let state: Arc<Mutex<State>> = Arc::default();
    let hardware = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/watchdog")
        .ok();
    if hardware.is_some() {
        eprintln!("watchdog: feeding /dev/watchdog as well");
    }
    {
        let state = Arc::clone(&state);
        let run_dir: PathBuf = run_dir.to_path_buf();
        std::thread::spawn(move || {
            let mut hardware = hardware;
            loop {
                let fenced = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    if !s.check(&run_dir) {
                        // The host watchdog is no longer fed either: it resets the host.
                        hardware = None;
                    }
                    s.fenced.is_some()
                };
                if let Some(dev) = hardware.as_mut() {
                    let _ = dev.write_all(b"\0");
                }
                let pace = if fenced { 10 } else { 100 };
                std::thread::sleep(Duration::from_millis(pace));
            }
        });
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(&state);
        let run_dir: PathBuf = run_dir.to_path_buf();
        std::thread::spawn(move || {
            let peer = Feeder::of(&stream);
            let Ok(mut replies) = stream.try_clone() else {
                return;
            };
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let reply = state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .answer(&line, peer, timeout, &run_dir);
                if replies.write_all(format!("{reply}\n").as_bytes()).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// What the watchdog process answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Fenced,
    Refused,
    /// Not reachable, or no answer in time.
    Unreachable,
}

/// The daemon's side: a connection to the watchdog process, re-established when needed,
/// and the count of service actions this process has running (an `unfence` waits for
/// them to end).
pub struct WatchdogClient {
    socket: PathBuf,
    stream: Mutex<Option<BufReader<UnixStream>>>,
    actions: Arc<AtomicUsize>,
    /// How to start the watchdog process again when it died (its timeout and run dir);
    /// held while starting it, so that the CRM and LRM threads start one, not two.
    respawn: Option<Mutex<(Duration, PathBuf)>>,
}

/// Held while a service action runs; see [`WatchdogClient::action_begins`].
pub struct ActionInFlight(Arc<AtomicUsize>);

impl Drop for ActionInFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchdogClient {
    pub fn new(socket: &Path) -> WatchdogClient {
        WatchdogClient {
            socket: socket.to_path_buf(),
            stream: Mutex::new(None),
            actions: Arc::default(),
            respawn: None,
        }
    }

    /// Starts the watchdog process for `run_dir` (unless one runs) and connects to it; a
    /// watchdog process that dies later is started again on the next request.
    pub fn start(
        socket: &Path,
        timeout: Duration,
        run_dir: &Path,
    ) -> anyhow::Result<WatchdogClient> {
        ensure_running(socket, timeout, run_dir)?;
        Ok(WatchdogClient {
            respawn: Some(Mutex::new((timeout, run_dir.to_path_buf()))),
            ..WatchdogClient::new(socket)
        })
    }

    /// Sends one message and reads the reply. A dead watchdog process is started again
    /// (it comes up with no handle armed: the next feed arms it).
    pub fn request(&self, message: &str) -> Reply {
        let reply = self.exchange(message);
        if reply != Reply::Unreachable {
            return reply;
        }
        let Some(respawn) = &self.respawn else {
            return reply;
        };
        let respawn = respawn.lock().unwrap_or_else(|p| p.into_inner());
        let (timeout, run_dir) = &*respawn;
        match ensure_running(&self.socket, *timeout, run_dir) {
            Ok(()) => {
                eprintln!("watchdog: the watchdog process was gone; started it again");
                self.exchange(message)
            }
            Err(e) => {
                eprintln!("watchdog: cannot start the watchdog process again: {e:#}");
                reply
            }
        }
    }

    fn exchange(&self, message: &str) -> Reply {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..2 {
            if stream.is_none() {
                *stream = UnixStream::connect(&self.socket)
                    .ok()
                    .filter(|s| s.set_read_timeout(Some(Duration::from_secs(1))).is_ok())
                    .map(BufReader::new);
            }
            if let Some(s) = stream.as_mut() {
                let mut reply = String::new();
                if s.get_mut()
                    .write_all(format!("{message}\n").as_bytes())
                    .is_ok()
                    && s.read_line(&mut reply).is_ok_and(|n| n > 0)
                {
                    return match reply.trim() {
                        "ok" => Reply::Ok,
                        "fenced" => Reply::Fenced,
                        _ => Reply::Refused,
                    };
                }
            }
            *stream = None;
        }
        Reply::Unreachable
    }

    /// Marks a service action (a start, a migration, a shutdown) as running in this
    /// process until the returned guard drops.
    pub fn action_begins(&self) -> ActionInFlight {
        self.actions.fetch_add(1, Ordering::SeqCst);
        ActionInFlight(Arc::clone(&self.actions))
    }

    /// After the watchdog fired: whether the node is clean again. It is once no service
    /// action begun before the fence is still running; then `unfence` kills what they left.
    /// Ok(()) when the node is not (or no longer) fenced; Err(why) while it stays fenced.
    pub fn settle_fence(&self) -> Result<(), String> {
        match self.request("status") {
            Reply::Fenced => {}
            _ => return Ok(()),
        }
        let running = self.actions.load(Ordering::SeqCst);
        if running > 0 {
            return Err(format!(
                "the watchdog fenced this node; waiting for {running} service action(s) begun before the fence to end"
            ));
        }
        match self.request("unfence") {
            Reply::Ok => Ok(()),
            reply => Err(format!("the watchdog did not lift its fence ({reply:?})")),
        }
    }
}

/// Starts the watchdog process for `run_dir` unless one already listens on `socket` (a
/// restarted daemon keeps the running one: its guests stay protected meanwhile).
pub fn ensure_running(socket: &Path, timeout: Duration, run_dir: &Path) -> anyhow::Result<()> {
    if UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    // Appended to: a watchdog started again keeps the record of earlier fences.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("watchdog.log"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["node", "watchdog", "--socket"])
        .arg(socket)
        .args([
            "--timeout-ms",
            &timeout.as_millis().to_string(),
            "--run-dir",
        ])
        .arg(run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a signal to the daemon's group must not take it along.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(socket).is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("the watchdog process did not start ({})", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Option<Feeder> {
        let pid = std::process::id() as i32;
        Some(Feeder {
            pid,
            started: process_start(pid).expect("own start time"),
        })
    }

    /// A process that looks like guest `vmid` of `run_dir` to `kill_guests`.
    fn fake_guest(run_dir: &Path, vmid: u32) -> std::process::Child {
        let qmp = run_dir.join(format!("{vmid}.qmp"));
        // `; true` keeps the shell (whose command line names the socket) from exec'ing sleep.
        // The watchdog kills the shell, not its sleep: that one outlives the test, so it
        // must not hold the test's output open (a reader would wait for it) nor last long.
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 60; true"])
            .arg(&qmp)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh");
        std::fs::write(run_dir.join(format!("{vmid}.pid")), child.id().to_string()).unwrap();
        // Until the child has exec'd `sh` its command line is still this test's, and the
        // watchdog rightly leaves it alone (QEMU writes its pid file itself, after exec).
        let deadline = Instant::now() + Duration::from_secs(30);
        while ferrox_qemu::GuestProcess::find(vmid, run_dir).is_none() {
            assert!(Instant::now() < deadline, "fake guest {vmid} never came up");
            std::thread::sleep(Duration::from_millis(2));
        }
        child
    }

    fn killed(child: &mut std::process::Child) -> bool {
        // Generous: a killed process must still be scheduled to exit, which takes a
        // while on a busy host (this test may run niced beside a benchmark).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return !status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        false
    }

    #[test]
    fn a_fired_watchdog_stays_fenced_until_its_daemon_unfences_it() {
        let dir = tempfile::tempdir().unwrap();
        let cap = Duration::from_secs(5);
        let mut state = State::default();
        let mut guest = fake_guest(dir.path(), 100);
        assert_eq!(
            state.answer("open n1-lrm 5000", me(), cap, dir.path()),
            "ok"
        );
        assert!(state.check(dir.path()), "fed in time: no fence");
        assert_eq!(state.answer("feed n1-lrm 0", me(), cap, dir.path()), "ok");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!state.check(dir.path()), "the deadline passed: it fires");
        assert!(killed(&mut guest), "the guest was killed when it fired");

        // The daemon resumes: its feeds do not re-arm, and a guest its stale start
        // brings up is killed while the fence holds.
        assert_eq!(
            state.answer("feed n1-lrm 5000", me(), cap, dir.path()),
            "fenced"
        );
        assert_eq!(
            state.answer("open n1-lrm 5000", me(), cap, dir.path()),
            "fenced"
        );
        assert_eq!(state.answer("status", me(), cap, dir.path()), "fenced");
        let mut late = fake_guest(dir.path(), 101);
        assert!(state.check(dir.path()));
        assert!(killed(&mut late), "a guest started while fenced is killed");

        // Only the process that fed it lifts the fence.
        let init = Feeder {
            pid: 1,
            started: process_start(1).unwrap_or(0),
        };
        assert_eq!(
            state.answer("unfence", Some(init), cap, dir.path()),
            "refused"
        );
        let mut left = fake_guest(dir.path(), 102);
        assert_eq!(state.answer("unfence", me(), cap, dir.path()), "ok");
        assert!(killed(&mut left), "unfence kills what stale actions left");
        assert_eq!(state.answer("status", me(), cap, dir.path()), "ok");
        assert_eq!(
            state.answer("open n1-lrm 5000", me(), cap, dir.path()),
            "ok"
        );
        let mut fresh = fake_guest(dir.path(), 103);
        assert!(state.check(dir.path()));
        assert!(
            !killed_within(&mut fresh, Duration::from_millis(300)),
            "unfenced: guests live"
        );
        let _ = fresh.kill();
        let _ = fresh.wait();
    }

    fn killed_within(child: &mut std::process::Child, limit: Duration) -> bool {
        std::thread::sleep(limit);
        matches!(child.try_wait(), Ok(Some(_)))
    }

    #[test]
    fn the_fence_lifts_when_the_daemon_that_fed_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let cap = Duration::from_secs(5);
        let mut daemon = std::process::Command::new("sleep")
            .arg("600")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = daemon.id() as i32;
        let feeder = Some(Feeder {
            pid,
            started: process_start(pid).unwrap(),
        });
        let mut state = State::default();
        assert_eq!(state.answer("open n1-lrm 0", feeder, cap, dir.path()), "ok");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!state.check(dir.path()));
        assert!(state.check(dir.path()));
        assert_eq!(state.answer("status", me(), cap, dir.path()), "fenced");
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        assert!(state.check(dir.path()));
        assert_eq!(
            state.answer("status", me(), cap, dir.path()),
            "ok",
            "a restarted daemon starts clean"
        );
    }

    #[test]
    fn the_daemon_side_waits_for_its_actions_before_unfencing() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("watchdog.sock");
        let run_dir = dir.path().to_path_buf();
        {
            let socket = socket.clone();
            std::thread::spawn(move || run(&socket, Duration::from_secs(5), &run_dir));
        }
        let client = WatchdogClient::new(&socket);
        let deadline = Instant::now() + Duration::from_secs(5);
        while client.request("status") != Reply::Ok {
            assert!(Instant::now() < deadline, "the watchdog did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        let action = client.action_begins();
        assert_eq!(client.request("open n1-lrm 0"), Reply::Ok);
        let deadline = Instant::now() + Duration::from_secs(5);
        while client.request("status") != Reply::Fenced {
            assert!(Instant::now() < deadline, "the watchdog did not fire");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(client.request("feed n1-lrm 5000"), Reply::Fenced);
        let why = client.settle_fence().unwrap_err();
        assert!(why.contains("1 service action"), "{why}");
        drop(action);
        assert_eq!(client.settle_fence(), Ok(()));
        assert_eq!(client.request("feed n1-lrm 5000"), Reply::Ok);
        assert_eq!(client.request("close n1-lrm"), Reply::Ok);
        // A second watchdog for the same node refuses to start (it would replace the
        // socket and leave the first one's handles unfed).
        let second = run(&socket, Duration::from_secs(5), dir.path());
        assert!(second.is_err(), "{second:?}");
        assert_eq!(client.request("status"), Reply::Ok);
    }
}
