//! Block jobs over QMP: mirroring a running guest's drive into another image, either to
//! switch the guest over to it (moving a disk) or to keep a consistent copy and let the
//! guest stay on its image (cloning a running guest).

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

/// Mirrors drive `device` (`drive-scsi0`) into the existing image `target` of `format`,
/// reporting `(done, total)` bytes about every `report_every`.
pub fn mirror(
    qmp: &mut Qmp,
    device: &str,
    target: &Path,
    format: &str,
    end: MirrorEnd,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BlockJobError> {
    let id = format!("mirror-{device}");
    qmp.execute(
        "drive-mirror",
        Some(json!({
            "job-id": id,
            "device": device,
            "target": target.to_string_lossy(),
            "format": format,
            "mode": "existing",
            "sync": "full",
        })),
    )?;
    let start = Instant::now();
    let mut reported = Instant::now();
    // Until it is ready (source and copy equal, writes go to both), then the end.
    loop {
        let jobs = qmp.execute("query-block-jobs", None)?;
        let Some(j) = job(&jobs, &id) else {
            return Err(failure(qmp, &id));
        };
        if j["ready"] == true {
            break;
        }
        if start.elapsed() > timeout {
            let _ = qmp.execute(
                "block-job-cancel",
                Some(json!({"device": id, "force": true})),
            );
            return Err(BlockJobError::Timeout {
                job: id,
                seconds: timeout.as_secs(),
            });
        }
        if reported.elapsed() >= Duration::from_secs(2) {
            progress(
                j["offset"].as_u64().unwrap_or(0),
                j["len"].as_u64().unwrap_or(0),
            );
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let command = match end {
        MirrorEnd::Pivot => "block-job-complete",
        MirrorEnd::Detach => "block-job-cancel",
    };
    qmp.execute(command, Some(json!({ "device": id })))?;
    let finish = Instant::now();
    loop {
        let jobs = qmp.execute("query-block-jobs", None)?;
        if job(&jobs, &id).is_none() {
            break;
        }
        if finish.elapsed() > Duration::from_secs(60) {
            return Err(BlockJobError::Timeout {
                job: id,
                seconds: 60,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A job that ended with an error says so in its event.
    match ended_with_error(qmp, &id) {
        Some(reason) => Err(BlockJobError::Failed { job: id, reason }),
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
