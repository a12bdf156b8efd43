//! Host figures from /proc and statvfs: CPU, memory, load, root filesystem, network.

pub mod cpu;
pub mod metrics;
pub mod network;
pub mod rrd;
pub mod sdn;

use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
    pub iowait: u64,
}

/// Aggregate CPU counters (`cpu` line of /proc/stat), in ticks.
pub fn cpu_times() -> CpuTimes {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return CpuTimes::default();
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let idle = get(3);
    let iowait = get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    CpuTimes { busy, idle, iowait }
}

/// Fractions of busy and iowait time between two readings.
pub fn cpu_usage(before: CpuTimes, after: CpuTimes) -> (f64, f64) {
    let busy = after.busy.saturating_sub(before.busy) as f64;
    let idle = after.idle.saturating_sub(before.idle) as f64;
    let wait = after.iowait.saturating_sub(before.iowait) as f64;
    let total = busy + idle + wait;
    if total <= 0.0 {
        (0.0, 0.0)
    } else {
        (busy / total, wait / total)
    }
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl Memory {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

pub fn memory() -> Memory {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    };
    Memory {
        total: field("MemTotal:"),
        free: field("MemFree:"),
        available: field("MemAvailable:"),
        swap_total: field("SwapTotal:"),
        swap_free: field("SwapFree:"),
    }
}

/// The three load averages as text, as Proxmox VE returns them.
pub fn loadavg() -> [String; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(String::from);
    [
        it.next().unwrap_or_else(|| "0.00".into()),
        it.next().unwrap_or_else(|| "0.00".into()),
        it.next().unwrap_or_else(|| "0.00".into()),
    ]
}

pub fn uptime() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| s as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filesystem {
    pub total: u64,
    pub free: u64,
    pub avail: u64,
}

impl Filesystem {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

pub fn filesystem(path: &Path) -> Filesystem {
    let space = ferrox_storage::dir::filesystem_space(path);
    Filesystem {
        total: space.total,
        free: space.total - space.used,
        avail: space.avail,
    }
}

/// Received and sent bytes over all interfaces but loopback.
pub fn network_bytes() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((*v.first()?, *v.get(8)?))
        })
        .fold((0, 0), |(a, b), (r, t)| (a + r, b + t))
}

/// Bytes read and written by the host's disks since boot (`/proc/diskstats`, whole
/// disks only: partitions would count twice; loop and RAM devices are not disks).
pub fn disk_bytes() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = *f.get(2)?;
            if ["loop", "ram", "zram", "sr"]
                .iter()
                .any(|p| name.starts_with(p))
                || !Path::new("/sys/block").join(name).exists()
            {
                return None;
            }
            let read: u64 = f.get(5)?.parse().ok()?;
            let written: u64 = f.get(9)?.parse().ok()?;
            Some((read * 512, written * 512))
        })
        .fold((0, 0), |(a, b), (r, w)| (a + r, b + w))
}

pub fn kernel() -> (String, String, String) {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    (read("ostype"), read("osrelease"), read("version"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_host() {
        assert!(memory().total > 0);
        assert!(cpu_count() >= 1);
        assert!(filesystem(Path::new("/")).total > 0);
        let (busy, wait) = cpu_usage(
            CpuTimes {
                busy: 10,
                idle: 80,
                iowait: 10,
            },
            CpuTimes {
                busy: 40,
                idle: 140,
                iowait: 20,
            },
        );
        assert!((busy - 0.3).abs() < 1e-9 && (wait - 0.1).abs() < 1e-9);
    }
}

/// `/etc/resolv.conf` as `GET /nodes/{node}/dns` shows it.
pub fn dns() -> ferrox_api_types::nodes::Dns {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    parse_resolv_conf(&text)
}

fn parse_resolv_conf(text: &str) -> ferrox_api_types::nodes::Dns {
    let mut dns = ferrox_api_types::nodes::Dns::default();
    let mut servers = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("search"), Some(domain)) => dns.search = Some(domain.to_string()),
            (Some("nameserver"), Some(server)) => servers.push(server.to_string()),
            _ => {}
        }
    }
    let mut servers = servers.into_iter();
    dns.dns1 = servers.next();
    dns.dns2 = servers.next();
    dns.dns3 = servers.next();
    dns
}

/// The host's time zone name (`/etc/timezone`, else the `/etc/localtime` link, else UTC).
pub fn timezone() -> String {
    if let Ok(name) = std::fs::read_to_string("/etc/timezone") {
        if !name.trim().is_empty() {
            return name.trim().to_string();
        }
    }
    std::fs::read_link("/etc/localtime")
        .ok()
        .and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            p.split_once("zoneinfo/").map(|(_, z)| z.to_string())
        })
        .unwrap_or_else(|| "UTC".into())
}

#[cfg(test)]
mod system_tests {
    #[test]
    fn resolv_conf_gives_search_and_up_to_three_servers() {
        let dns = super::parse_resolv_conf(
            "# generated\nsearch example.com\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
        );
        assert_eq!(dns.search.as_deref(), Some("example.com"));
        assert_eq!(dns.dns1.as_deref(), Some("10.0.0.1"));
        assert_eq!(dns.dns3.as_deref(), Some("10.0.0.3"));
    }
}
