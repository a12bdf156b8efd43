//! `qemu-nbd`: serving an image of a stopped guest over NBD, so that another node can
//! write into it (an offline migration's disk copy).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Serves `image` (of `format`) as export `name` on `host:port` until [`stop`]; returns
/// once the server listens (`--fork`). Its pid goes to `pid_file`.
pub fn serve(
    image: &Path,
    format: &str,
    host: &str,
    port: u16,
    name: &str,
    pid_file: &Path,
) -> Result<(), String> {
    let out = Command::new("qemu-nbd")
        .args(["--fork", "--persistent", "--shared=1", "--cache=none"])
        .args(["--format", format, "--bind", host])
        .args(["--port", &port.to_string(), "--export-name", name])
        .arg("--pid-file")
        .arg(pid_file)
        .arg(image)
        .output()
        .map_err(|e| format!("qemu-nbd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-nbd failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Stops the server whose pid is in `pid_file` (SIGTERM; it flushes the image) and waits
/// until it is gone.
pub fn stop(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return;
    };
    let _ = std::fs::remove_file(pid_file);
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::Term);
    let start = Instant::now();
    while crate::process::pid_alive(pid.as_raw_nonzero().get() as u32)
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}
