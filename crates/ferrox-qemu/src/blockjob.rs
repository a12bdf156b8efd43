//! Block jobs over QMP: mirroring a running guest's drive into another image, either to
//! switch the guest over to it (moving a disk) or to keep a consistent copy and let the
//! guest stay on its image (cloning a running guest); point-in-time copies of all of a
//! guest's drives at one instant (backups).

use crate::qmp::{Qmp, QmpError};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// What happens when the mirror has caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorEnd {
    /// The guest continues on the copy (`block-job-complete`).
    Pivot,
    /// The copy is left consistent as of now; the guest stays on its image
    /// (`block-job-cancel` of a ready mirror).
    Detach,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockJobError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("block job {job}: {reason}")]
    Failed { job: String, reason: String },
    #[error("block job {job} did not finish within {seconds} s; cancelled")]
    Timeout { job: String, seconds: u64 },
}

fn job<'a>(jobs: &'a Value, id: &str) -> Option<&'a Value> {
    jobs.as_array()?.iter().find(|j| j["device"] == id)
}

/// The id of the mirror job of `device`.
pub fn mirror_job(device: &str) -> String {
    format!("mirror-{device}")
}

/// Starts mirroring drive `device` (`drive-scsi0`) into the existing `target` (a file, or
/// an NBD export `nbd:host:port:exportname=name`) of `format`; returns the job id.
pub fn start_mirror(
    qmp: &mut Qmp,
    device: &str,
    target: &str,
    format: &str,
) -> Result<String, BlockJobError> {
    let id = mirror_job(device);
    qmp.execute(
        "drive-mirror",
        Some(json!({
            "job-id": id,
            "device": device,
            "target": target,
            "format": format,
            "mode": "existing",
            "sync": "full",
        })),
    )?;
    Ok(id)
}

/// Waits until every job in `ids` is ready (source and copy equal, writes go to both),
/// reporting `(done, total)` bytes over all of them about every two seconds. On timeout
/// the jobs are cancelled.
pub fn wait_ready(
    qmp: &mut Qmp,
    ids: &[String],
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BlockJobError> {
    let start = Instant::now();
    let mut reported = Instant::now();
    loop {
        let jobs = qmp.execute("query-block-jobs", None)?;
        let mut ready = true;
        let (mut done, mut total) = (0, 0);
        for id in ids {
            let Some(j) = job(&jobs, id) else {
                return Err(failure(qmp, id));
            };
            ready &= j["ready"] == true;
            done += j["offset"].as_u64().unwrap_or(0);
            total += j["len"].as_u64().unwrap_or(0);
        }
        if ready {
            return Ok(());
        }
        if start.elapsed() > timeout {
            cancel(qmp, ids);
            return Err(BlockJobError::Timeout {
                job: ids.join(", "),
                seconds: timeout.as_secs(),
            });
        }
        if reported.elapsed() >= Duration::from_secs(2) {
            progress(done, total);
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends ready jobs (`end`) and waits until they are gone.
pub fn finish(qmp: &mut Qmp, ids: &[String], end: MirrorEnd) -> Result<(), BlockJobError> {
    let command = match end {
        MirrorEnd::Pivot => "block-job-complete",
        MirrorEnd::Detach => "block-job-cancel",
    };
    for id in ids {
        qmp.execute(command, Some(json!({ "device": id })))?;
    }
    wait_gone(qmp, ids, Duration::from_secs(60), &mut |_, _| {})?;
    first_error(qmp, ids)
}

/// Cancels jobs at once (the guest stays on its images); for cleaning up after a failure.
pub fn cancel(qmp: &mut Qmp, ids: &[String]) {
    for id in ids {
        let _ = qmp.execute(
            "block-job-cancel",
            Some(json!({"device": id, "force": true})),
        );
    }
    let _ = wait_gone(qmp, ids, Duration::from_secs(30), &mut |_, _| {});
}

/// Mirrors drive `device` into the existing image `target` of `format` and ends it
/// (`end`), reporting progress.
pub fn mirror(
    qmp: &mut Qmp,
    device: &str,
    target: &Path,
    format: &str,
    end: MirrorEnd,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BlockJobError> {
    let id = start_mirror(qmp, device, &target.to_string_lossy(), format)?;
    let ids = [id];
    wait_ready(qmp, &ids, timeout, progress)?;
    finish(qmp, &ids, end)
}

/// Starts point-in-time copies of drives (`(device, target file)`) into new raw files,
/// in one transaction: every copy is of the same instant. Returns the job ids.
pub fn start_backups(
    qmp: &mut Qmp,
    drives: &[(String, std::path::PathBuf)],
) -> Result<Vec<String>, BlockJobError> {
    let ids: Vec<String> = drives.iter().map(|(d, _)| format!("backup-{d}")).collect();
    let actions: Vec<Value> = drives
        .iter()
        .zip(&ids)
        .map(|((device, target), id)| {
            json!({"type": "drive-backup", "data": {
                "job-id": id, "device": device, "target": target.to_string_lossy(),
                "format": "raw", "sync": "full", "mode": "absolute-paths"}})
        })
        .collect();
    if !actions.is_empty() {
        qmp.execute("transaction", Some(json!({ "actions": actions })))?;
    }
    Ok(ids)
}

/// Waits until jobs have ended (reporting `(done, total)` bytes about every two seconds);
/// an error when one failed. On timeout they are cancelled.
pub fn wait_done(
    qmp: &mut Qmp,
    ids: &[String],
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BlockJobError> {
    if let Err(e) = wait_gone(qmp, ids, timeout, progress) {
        if matches!(e, BlockJobError::Timeout { .. }) {
            cancel(qmp, ids);
        }
        return Err(e);
    }
    first_error(qmp, ids)
}

/// Waits until none of the jobs is listed any more, reporting `(done, total)` bytes of
/// those still running about every two seconds.
fn wait_gone(
    qmp: &mut Qmp,
    ids: &[String],
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BlockJobError> {
    let start = Instant::now();
    let mut reported = Instant::now();
    loop {
        let jobs = qmp.execute("query-block-jobs", None)?;
        let running: Vec<&Value> = ids.iter().filter_map(|id| job(&jobs, id)).collect();
        if running.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(BlockJobError::Timeout {
                job: ids.join(", "),
                seconds: timeout.as_secs(),
            });
        }
        if reported.elapsed() >= Duration::from_secs(2) {
            let done = running
                .iter()
                .map(|j| j["offset"].as_u64().unwrap_or(0))
                .sum();
            let total = running.iter().map(|j| j["len"].as_u64().unwrap_or(0)).sum();
            progress(done, total);
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The error of the first job that ended with one (its event says so).
fn first_error(qmp: &mut Qmp, ids: &[String]) -> Result<(), BlockJobError> {
    match ids
        .iter()
        .find_map(|id| ended_with_error(qmp, id).map(|r| (id, r)))
    {
        Some((id, reason)) => Err(BlockJobError::Failed {
            job: id.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

fn ended_with_error(qmp: &mut Qmp, id: &str) -> Option<String> {
    // Any command collects the events that came before its reply.
    let _ = qmp.execute("query-status", None);
    qmp.events
        .iter()
        .filter(|e| e["data"]["device"] == id)
        .find_map(|e| e["data"]["error"].as_str().map(String::from))
}

fn failure(qmp: &mut Qmp, id: &str) -> BlockJobError {
    BlockJobError::Failed {
        job: id.to_string(),
        reason: ended_with_error(qmp, id).unwrap_or_else(|| "the job vanished".into()),
    }
}
