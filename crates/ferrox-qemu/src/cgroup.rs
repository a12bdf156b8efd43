//! A guest's own cgroup v2 (`qemu.slice/<vmid>.scope`, as Proxmox VE names it) and the
//! pressure-stall information (PSI) of the host and of a guest. The cgroup only groups the
//! guest's threads for accounting: no controller is enabled (these machines mount cgroup2
//! without controllers; PSI works regardless).

use std::path::{Path, PathBuf};

/// The "some" and "full" 10-second averages (percent of time stalled) of CPU, memory and
/// IO, as Proxmox VE 9 records them (`pressurecpusome`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub cpu_some: f64,
    pub cpu_full: f64,
    pub memory_some: f64,
    pub memory_full: f64,
    pub io_some: f64,
    pub io_full: f64,
}

impl Pressure {
    /// The RRD field names and values.
    pub fn fields(&self) -> [(&'static str, f64); 6] {
        [
            ("pressurecpusome", self.cpu_some),
            ("pressurecpufull", self.cpu_full),
            ("pressurememorysome", self.memory_some),
            ("pressurememoryfull", self.memory_full),
            ("pressureiosome", self.io_some),
            ("pressureiofull", self.io_full),
        ]
    }
}

/// `some avg10=4.46 avg60=... total=...` / `full avg10=...`: the two avg10 values.
pub fn parse_psi(text: &str) -> (f64, f64) {
    let avg10 = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("avg10=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (avg10("some"), avg10("full"))
}

/// Reads `cpu<suffix>`, `memory<suffix>`, `io<suffix>` in `dir`.
fn read_pressure(dir: &Path, suffix: &str) -> Option<Pressure> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(format!("{name}{suffix}")))
            .ok()
            .map(|t| parse_psi(&t))
    };
    let (cpu_some, cpu_full) = read("cpu")?;
    let (memory_some, memory_full) = read("memory").unwrap_or_default();
    let (io_some, io_full) = read("io").unwrap_or_default();
    Some(Pressure {
        cpu_some,
        cpu_full,
        memory_some,
        memory_full,
        io_some,
        io_full,
    })
}

/// The host's pressure (`/proc/pressure`); `None` without PSI.
pub fn host_pressure() -> Option<Pressure> {
    read_pressure(Path::new("/proc/pressure"), "")
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup` or, on hybrid hosts, `/sys/fs/cgroup/unified`).
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    })
}

fn scope_dir(vmid: u32) -> Option<PathBuf> {
    Some(cgroup2_root()?.join(format!("qemu.slice/{vmid}.scope")))
}

/// Moves process `pid` (all its threads) into the guest's cgroup. Best effort: without
/// cgroup2 or the right to write it, the guest runs where it is and has no pressure data.
pub fn place(vmid: u32, pid: u32) -> Result<(), String> {
    let dir = scope_dir(vmid).ok_or("cgroup2 is not mounted")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .map_err(|e| format!("{}: {e}", dir.join("cgroup.procs").display()))
}

/// The guest's pressure, while it runs in its cgroup.
pub fn guest_pressure(vmid: u32) -> Option<Pressure> {
    read_pressure(&scope_dir(vmid)?, ".pressure")
}

/// Removes the guest's (empty) cgroup after it stopped.
pub fn remove(vmid: u32) {
    if let Some(dir) = scope_dir(vmid) {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_lines_give_the_ten_second_averages() {
        let text = "some avg10=4.46 avg60=12.14 avg300=12.62 total=1007168254\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_psi(text), (4.46, 0.5));
        assert_eq!(parse_psi("garbage"), (0.0, 0.0));
    }
}
