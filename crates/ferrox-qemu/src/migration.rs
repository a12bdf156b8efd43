//! Live migration over QMP, with the quirks measured on these machines
//! (`shared/spec/qemu-on-these-machines.md` §3.6): the bandwidth is always set (QEMU 7.2's
//! 128 MiB/s default never converges for a busy guest), the whole capability set is set
//! on both ends every time (capabilities persist per process), a `completed` reading with
//! zero times is re-queried, and a destination that exits is the normal failure path.

use crate::qmp::{Qmp, QmpError};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Capabilities Ferrox sets, all of them, on both ends.
const CAPABILITIES: &[(&str, bool)] = &[
    ("events", true),
    ("xbzrle", false),
    ("auto-converge", false),
    ("postcopy-ram", false),
];

/// 10 GiB/s: effectively unlimited on loopback and LAN links (QEMU's own default is 128
/// MiB/s, with which a busy guest never converges).
pub const DEFAULT_MAX_BANDWIDTH: u64 = 10 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationStats {
    /// `active`, `completed`, `failed`, `cancelled`, ...
    pub status: String,
    pub total_time_ms: u64,
    pub downtime_ms: u64,
    pub transferred: u64,
    pub remaining: u64,
    pub total: u64,
    pub expected_downtime_ms: u64,
    pub dirty_sync_count: u64,
    pub mbps: f64,
    pub error: Option<String>,
}

impl MigrationStats {
    fn from_query(v: &Value) -> MigrationStats {
        let ram = &v["ram"];
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        MigrationStats {
            status: v["status"].as_str().unwrap_or("none").to_string(),
            total_time_ms: n(&v["total-time"]),
            downtime_ms: n(&v["downtime"]),
            transferred: n(&ram["transferred"]),
            remaining: n(&ram["remaining"]),
            total: n(&ram["total"]),
            expected_downtime_ms: n(&v["expected-downtime"]),
            dirty_sync_count: n(&ram["dirty-sync-count"]),
            mbps: ram["mbps"].as_f64().unwrap_or(0.0),
            error: v["error-desc"].as_str().map(String::from),
        }
    }
}

/// Sets the full capability set (both ends, before `migrate`).
pub fn set_capabilities(qmp: &mut Qmp) -> Result<(), QmpError> {
    let caps: Vec<Value> = CAPABILITIES
        .iter()
        .map(|(name, state)| json!({"capability": name, "state": state}))
        .collect();
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({ "capabilities": caps })),
    )?;
    Ok(())
}

pub fn query(qmp: &mut Qmp) -> Result<MigrationStats, QmpError> {
    Ok(MigrationStats::from_query(
        &qmp.execute("query-migrate", None)?,
    ))
}

/// Why a migration did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU reports the migration `failed` or `cancelled`.
    #[error("migration {status}: {reason}")]
    Ended { status: String, reason: String },
    #[error("migration did not converge within {seconds} s (expected downtime {expected_downtime_ms} ms); cancelled")]
    NoConvergence {
        seconds: u64,
        expected_downtime_ms: u64,
    },
}

/// Migrates the source guest behind `qmp` to `uri` (`tcp:host:port`), reporting
/// progress about every `report_every`. Returns the final statistics when the migration
/// completed; errors when it failed, was cancelled or did not finish within `timeout`
/// (then it is cancelled: the source keeps running).
pub fn migrate(
    qmp: &mut Qmp,
    uri: &str,
    max_bandwidth: u64,
    timeout: Duration,
    report_every: Duration,
    progress: &mut dyn FnMut(&MigrationStats),
) -> Result<MigrationStats, MigrationError> {
    set_capabilities(qmp)?;
    qmp.execute(
        "migrate-set-parameters",
        Some(json!({ "max-bandwidth": max_bandwidth })),
    )?;
    qmp.execute("migrate", Some(json!({ "uri": uri })))?;
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let stats = query(qmp)?;
        match stats.status.as_str() {
            "completed" => {
                let mut stats = stats;
                // QEMU 7.2 sometimes reports zero times in the first `completed` reading.
                for _ in 0..10 {
                    if stats.total_time_ms > 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    stats = query(qmp)?;
                }
                return Ok(stats);
            }
            "failed" | "cancelled" => {
                return Err(MigrationError::Ended {
                    reason: stats.error.unwrap_or_else(|| "no reason given".into()),
                    status: stats.status,
                })
            }
            _ => {}
        }
        if start.elapsed() > timeout {
            let _ = qmp.execute("migrate_cancel", None);
            return Err(MigrationError::NoConvergence {
                seconds: timeout.as_secs(),
                expected_downtime_ms: stats.expected_downtime_ms,
            });
        }
        if last_report.elapsed() >= report_every {
            progress(&stats);
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long saving or loading a snapshot's RAM state may take: it is written at disk
/// speed, so generous.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(900);

/// Saves the guest's RAM and device state into `file` as a migration stream, the way a
/// snapshot with `vmstate=1` keeps it. Pause the guest first so the state matches the disk
/// snapshots taken with it; QEMU leaves it in `postmigrate`, from which `cont` resumes.
pub fn save_state(
    qmp: &mut Qmp,
    file: &std::fs::File,
    progress: &mut dyn FnMut(&MigrationStats),
) -> Result<MigrationStats, MigrationError> {
    use std::os::fd::AsFd;
    qmp.send_fd("vmstate", file.as_fd())?;
    migrate(
        qmp,
        "fd:vmstate",
        DEFAULT_MAX_BANDWIDTH,
        STATE_TIMEOUT,
        Duration::from_secs(5),
        progress,
    )
}

/// Loads a state written by [`save_state`] into a guest started with `-incoming defer`;
/// the guest stays paused (`-S`) until `cont`.
pub fn load_state(qmp: &mut Qmp, file: &std::fs::File) -> Result<(), MigrationError> {
    use std::os::fd::AsFd;
    set_capabilities(qmp)?;
    qmp.send_fd("vmstate", file.as_fd())?;
    qmp.execute("migrate-incoming", Some(json!({"uri": "fd:vmstate"})))?;
    let start = Instant::now();
    loop {
        let stats = query(qmp)?;
        match stats.status.as_str() {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(MigrationError::Ended {
                    reason: stats.error.unwrap_or_else(|| "no reason given".into()),
                    status: stats.status,
                })
            }
            _ if start.elapsed() > STATE_TIMEOUT => {
                return Err(MigrationError::NoConvergence {
                    seconds: STATE_TIMEOUT.as_secs(),
                    expected_downtime_ms: 0,
                })
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_read_query_migrate() {
        let v = json!({"status": "completed", "total-time": 566, "downtime": 46,
            "ram": {"transferred": 100, "remaining": 0, "total": 268435456, "mbps": 5800.5, "dirty-sync-count": 3}});
        let s = MigrationStats::from_query(&v);
        assert_eq!(s.status, "completed");
        assert_eq!(
            (s.total_time_ms, s.downtime_ms, s.total),
            (566, 46, 268435456)
        );
        assert_eq!(s.dirty_sync_count, 3);
        let failed = MigrationStats::from_query(&json!({"status": "failed", "error-desc": "boom"}));
        assert_eq!(failed.error.as_deref(), Some("boom"));
    }
}
