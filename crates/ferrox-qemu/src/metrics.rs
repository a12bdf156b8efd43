//! Per-guest usage read from the QEMU process: CPU time of the vCPU threads (named
//! `CPU n/KVM` or `CPU n/TCG` with `debug-threads=on`), resident memory, and block IO.

/// Cumulative counters of one guest at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestCounters {
    /// CPU time of the vCPU threads, in clock ticks.
    pub vcpu_ticks: u64,
    /// CPU time of the whole QEMU process, in clock ticks.
    pub process_ticks: u64,
    /// Resident memory of the QEMU process, bytes.
    pub rss: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Seconds since boot when the process started (field 22 of stat), in ticks.
    pub start_ticks: u64,
}

/// utime + stime and starttime from a `/proc/.../stat` line.
fn stat_times(stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15, starttime 22 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some((utime + stime, start))
}

pub fn read_counters(pid: u32) -> Option<GuestCounters> {
    let base = format!("/proc/{pid}");
    let (process_ticks, start_ticks) =
        stat_times(&std::fs::read_to_string(format!("{base}/stat")).ok()?)?;
    let mut vcpu_ticks = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("{base}/task")) {
        for task in tasks.flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.starts_with("CPU ") {
                if let Some((t, _)) = std::fs::read_to_string(dir.join("stat"))
                    .ok()
                    .as_deref()
                    .and_then(stat_times)
                {
                    vcpu_ticks += t;
                }
            }
        }
    }
    let status = std::fs::read_to_string(format!("{base}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0);
    let io = std::fs::read_to_string(format!("{base}/io")).unwrap_or_default();
    let io_field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Some(GuestCounters {
        vcpu_ticks,
        process_ticks,
        rss,
        read_bytes: io_field("read_bytes:"),
        write_bytes: io_field("write_bytes:"),
        start_ticks,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_process() {
        let c = super::read_counters(std::process::id()).unwrap();
        assert!(c.rss > 0);
        assert!(c.start_ticks > 0);
    }

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line = "42 (CPU 0/KVM) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20";
        assert_eq!(super::stat_times(line), Some((11 + 12, 19)));
    }
}
