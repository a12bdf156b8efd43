//! The node's watchdog: a separate process (`ferrox node watchdog`) that the daemon must
//! feed while it holds its HA agent lock. When it is not fed in time (the daemon hangs,
//! dies, or lost quorum and stopped feeding) it kills every QEMU guest of the node, as a
//! hardware watchdog would reset the host. `/dev/watchdog` is fed in addition where it
//! exists, so that a dead watchdog process resets the host. docs/fencing.md has the timing.
//!
//! Protocol: one line per message on a unix socket: `open ID MS` and `feed ID MS` (arm
//! handle ID until MS milliseconds from now), `close ID` (disarm it). It fires when any
//! armed handle passes its deadline. A connection that goes away leaves its handles armed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Armed handles and their deadlines.
type State = std::collections::HashMap<String, Instant>;

/// Kills every guest whose pid file is in `run_dir` (its command line must name the QMP
/// socket beside the pid file, so a recycled pid is never hit). Returns the vmids.
pub fn kill_guests(run_dir: &Path) -> Vec<u32> {
    let mut killed = Vec::new();
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return killed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(vmid) = name
            .strip_suffix(".pid")
            .and_then(|v| v.parse::<u32>().ok())
        else {
            continue;
        };
        let process = ferrox_qemu::GuestProcess::find(vmid, run_dir);
        if let Some(pid) = process.and_then(|p| rustix::process::Pid::from_raw(p.pid as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Kill);
            killed.push(vmid);
        }
    }
    killed
}

/// Runs the watchdog until the process is killed. `timeout` caps every feed.
pub fn run(socket: &Path, timeout: Duration, run_dir: &Path) -> anyhow::Result<()> {
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
                std::thread::sleep(Duration::from_millis(100));
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                if let Some((id, _)) = s.iter().find(|(_, deadline)| **deadline < now) {
                    let id = id.clone();
                    s.clear();
                    let killed = kill_guests(&run_dir);
                    eprintln!(
                        "watchdog: handle {id} not fed in time: fenced this node, killed guests {killed:?}"
                    );
                    // The host watchdog is no longer fed either: it resets the host.
                    hardware = None;
                }
                if let Some(dev) = hardware.as_mut() {
                    let _ = dev.write_all(b"\0");
                }
            }
        });
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["open" | "feed", id, ms] => {
                        let ms = ms.parse::<u64>().unwrap_or(0);
                        let allowed = Duration::from_millis(ms).min(timeout);
                        s.insert(id.to_string(), Instant::now() + allowed);
                    }
                    ["close", id] => {
                        s.remove(*id);
                    }
                    _ => eprintln!("watchdog: ignoring '{line}'"),
                }
            }
        });
    }
    Ok(())
}

/// The daemon's side: a connection to the watchdog process, re-established when needed.
pub struct WatchdogClient {
    socket: PathBuf,
    stream: Mutex<Option<UnixStream>>,
}

impl WatchdogClient {
    pub fn new(socket: &Path) -> WatchdogClient {
        WatchdogClient {
            socket: socket.to_path_buf(),
            stream: Mutex::new(None),
        }
    }

    pub fn send(&self, message: &str) -> bool {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..2 {
            if stream.is_none() {
                *stream = UnixStream::connect(&self.socket).ok();
            }
            if let Some(s) = stream.as_mut() {
                if s.write_all(format!("{message}\n").as_bytes()).is_ok() {
                    return true;
                }
            }
            *stream = None;
        }
        false
    }
}

/// Starts the watchdog process for `run_dir` unless one already listens on `socket` (a
/// restarted daemon keeps the running one: its guests stay protected meanwhile).
pub fn ensure_running(socket: &Path, timeout: Duration, run_dir: &Path) -> anyhow::Result<()> {
    if UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(run_dir.join("watchdog.log"))?;
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
