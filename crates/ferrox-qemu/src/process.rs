//! Starting, inspecting and stopping a guest's QEMU process.

use crate::command::LaunchSpec;
use crate::qmp::Qmp;
use crate::QemuError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// QEMU's run state as `query-status` reports it (`running`, `paused`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub status: String,
    pub running: bool,
    /// Whether KVM acceleration is in use (`query-kvm`).
    pub kvm: bool,
}

#[derive(Debug, Clone)]
pub struct GuestProcess {
    pub vmid: u32,
    pub pid: u32,
    pub qmp_socket: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QemuError {
    let what = what.into();
    move |source| QemuError::Io { what, source }
}

/// Whether a process exists (it may be a zombie of ours until reaped).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

impl GuestProcess {
    /// Starts QEMU with `args` (from `command_line`); returns once QMP answers.
    pub fn start(
        binary: &Path,
        args: &[String],
        spec: &LaunchSpec<'_>,
    ) -> Result<GuestProcess, QemuError> {
        std::fs::create_dir_all(spec.run_dir).map_err(io(spec.run_dir.display().to_string()))?;
        let _ = std::fs::remove_file(spec.qmp_socket());
        let out = Command::new(binary)
            .args(args)
            .output()
            .map_err(io(binary.display().to_string()))?;
        if !out.status.success() {
            return Err(QemuError::Start(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let pid_text = std::fs::read_to_string(spec.pid_file())
            .map_err(io(spec.pid_file().display().to_string()))?;
        let pid = pid_text
            .trim()
            .parse()
            .map_err(|_| QemuError::Start(format!("bad pid file content '{}'", pid_text.trim())))?;
        // Accounting only (pressure stalls): a host without a writable cgroup2 runs the
        // guest all the same, without guest pressure figures.
        let _ = crate::cgroup::place(spec.vmid, pid);
        let guest = GuestProcess {
            vmid: spec.vmid,
            pid,
            qmp_socket: spec.qmp_socket(),
        };
        guest.qmp()?;
        Ok(guest)
    }

    /// The guest whose pid file is in `run_dir`, if its QEMU process is alive.
    /// Every guest with a live process in `run_dir` (by its pid file, as `find`).
    pub fn all(run_dir: &Path) -> Vec<GuestProcess> {
        let Ok(entries) = std::fs::read_dir(run_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".pid")?.parse::<u32>().ok()
            })
            .filter_map(|vmid| GuestProcess::find(vmid, run_dir))
            .collect()
    }

    pub fn find(vmid: u32, run_dir: &Path) -> Option<GuestProcess> {
        let qmp_socket = run_dir.join(format!("{vmid}.qmp"));
        let pid: u32 = std::fs::read_to_string(run_dir.join(format!("{vmid}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // A recycled pid belongs to another program: the command line must name our socket.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let needle = qmp_socket.display().to_string();
        let ours = String::from_utf8_lossy(&cmdline).contains(&needle);
        (ours && pid_alive(pid)).then_some(GuestProcess {
            vmid,
            pid,
            qmp_socket,
        })
    }

    /// Pauses the vCPUs (`stop`); the process and its memory stay.
    pub fn suspend(&self) -> Result<(), QemuError> {
        self.qmp()?.execute("stop", None)?;
        Ok(())
    }

    /// Resumes paused vCPUs (`cont`).
    pub fn resume(&self) -> Result<(), QemuError> {
        self.qmp()?.execute("cont", None)?;
        Ok(())
    }

    pub fn qmp(&self) -> Result<Qmp, QemuError> {
        if !pid_alive(self.pid) {
            return Err(QemuError::NotRunning(self.vmid));
        }
        Ok(Qmp::connect(&self.qmp_socket, QMP_TIMEOUT)?)
    }

    pub fn status(&self) -> Result<RunState, QemuError> {
        let mut qmp = self.qmp()?;
        let status = qmp.execute("query-status", None)?;
        let kvm = qmp.execute("query-kvm", None)?;
        Ok(RunState {
            status: status["status"].as_str().unwrap_or("unknown").to_string(),
            running: status["running"].as_bool().unwrap_or(false),
            kvm: kvm["enabled"].as_bool().unwrap_or(false),
        })
    }

    fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !pid_alive(self.pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        !pid_alive(self.pid)
    }

    /// Hard stop: `quit`, then SIGKILL if QEMU is still there after 5 s.
    pub fn stop(&self) -> Result<(), QemuError> {
        if let Ok(mut qmp) = self.qmp() {
            let _ = qmp.execute("quit", None);
        }
        if !self.wait_exit(Duration::from_secs(5)) {
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .status();
            self.wait_exit(Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(&self.qmp_socket);
        Ok(())
    }

    /// ACPI shutdown; falls back to a hard stop after `timeout`. Returns whether the guest
    /// shut down by itself.
    pub fn shutdown(&self, timeout: Duration) -> Result<bool, QemuError> {
        self.qmp()?.execute("system_powerdown", None)?;
        if self.wait_exit(timeout) {
            let _ = std::fs::remove_file(&self.qmp_socket);
            return Ok(true);
        }
        self.stop()?;
        Ok(false)
    }
}
