//! Backup jobs run by the cluster: every node looks at `jobs.cfg` every half minute and
//! backs up the guests it runs that an enabled job covers and that have no backup for
//! the job's latest scheduled time. What each guest got is kept in the store
//! (`jobs/vzdump-<id>.json`: the job's creation time, and per guest the scheduled time
//! of its last backup), so a guest is backed up once per run wherever it runs: one that
//! moved after its backup is not backed up again, and one whose node failed before its
//! backup is backed up by the node that runs it now. Runs scheduled before the job was
//! created do not count.

use crate::guests::backup::{BackupJob as Run, BackupMode};
use crate::Node;
use ferrox_store::Expect;
use ferrox_types::jobs_config::{BackupJob, JobsConfig};
use ferrox_types::storage::Retention;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often each node looks for due guests.
const POLL: Duration = Duration::from_secs(10);

/// How far back the latest scheduled time is looked for.
const HORIZON_DAYS: i64 = 400;

/// The state of a job in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobState {
    /// When the job was first seen (Unix seconds): earlier runs do not count.
    pub created: i64,
    /// Guest → the scheduled time its last backup was for.
    #[serde(default)]
    pub done: BTreeMap<u32, i64>,
}

pub fn state_path(id: &str) -> String {
    format!("jobs/vzdump-{id}.json")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Reads, changes and writes a job's state with compare-and-set (retried on a race).
pub fn update_state(
    node: &Node,
    id: &str,
    change: impl Fn(&mut JobState),
) -> Result<JobState, String> {
    let path = state_path(id);
    for _ in 0..10 {
        let entry = node.tree.get(&path);
        let mut state: JobState = entry
            .as_ref()
            .and_then(|e| serde_json::from_str(&e.data).ok())
            .unwrap_or_default();
        let expect = match &entry {
            Some(e) => Expect::Digest(ferrox_store::digest(&e.data)),
            None => Expect::Absent,
        };
        change(&mut state);
        let text = serde_json::to_string(&state).map_err(|e| e.to_string())?;
        match node.tree.put(&path, &text, expect) {
            Ok(_) => return Ok(state),
            Err(ferrox_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("{path}: too many concurrent changes"))
}

/// The next run of a job after now (for `next-run`).
pub fn next_run(job: &BackupJob) -> Option<i64> {
    job.event().next_after(now(), HORIZON_DAYS)
}

/// The guests among `local` (on `node`) that `job` must back up at `now`: those it
/// covers without a backup for its latest run; with that run's time. Nothing for a run
/// before the job existed.
pub fn due_guests(
    job: &BackupJob,
    state: &JobState,
    local: &[u32],
    node: &str,
    now: i64,
) -> Option<(i64, Vec<u32>)> {
    let run = job.event().last_at_or_before(now, HORIZON_DAYS)?;
    if run <= state.created {
        return None;
    }
    let due: Vec<u32> = local
        .iter()
        .copied()
        .filter(|v| job.covers(*v, node))
        .filter(|v| state.done.get(v).is_none_or(|d| *d < run))
        .collect();
    (!due.is_empty()).then_some((run, due))
}

/// One look at every job: the guests here that are due, backed up one job at a time.
pub fn run_due(node: &Arc<Node>) {
    let Some(entry) = node.tree.get("jobs.cfg") else {
        return;
    };
    let cfg = match JobsConfig::parse(&entry.data) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("jobs.cfg: {e}");
            return;
        }
    };
    let me = node.opts.node_name.clone();
    let local: Vec<u32> = node
        .guests
        .listing()
        .into_iter()
        .map(|(v, _, _)| v)
        .collect();
    let t = now();
    for job in cfg.backups.values().filter(|j| j.enabled) {
        let state = match update_state(node, &job.id, |s| {
            if s.created == 0 {
                s.created = t;
            }
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("backup job {}: {e}", job.id);
                continue;
            }
        };
        let Some((run, due)) = due_guests(job, &state, &local, &me, t) else {
            continue;
        };
        tracing::info!(
            "backup job {}: backing up {due:?} for its run at {run}",
            job.id
        );
        run_job(node, job, run, due);
    }
}

fn run_job(node: &Arc<Node>, job: &BackupJob, run: i64, vmids: Vec<u32>) {
    let retention = job
        .prune_backups
        .as_deref()
        .and_then(|p| Retention::parse(p).ok());
    let backup = Run {
        vmids: vmids.clone(),
        storage: job.storage.clone(),
        mode: BackupMode::parse(&job.mode).unwrap_or(BackupMode::Snapshot),
        retention,
        protected: false,
        // A job runs as root@pam.
        may_allocate: true,
        notes_template: job.other.get("notes-template").cloned(),
    };
    let worker = Arc::clone(node);
    let id = job.id.clone();
    let spawned = node.tasks.spawn("vzdump", "", "root@pam", move |log| {
        log.log(format!("backup job '{id}' (run at {run})"));
        let result = worker.run_backup(&backup, log);
        // Each guest that has an archive now is done for this run, even if others failed.
        let storages = worker.storage_config()?;
        let done: Vec<u32> = backup
            .vmids
            .iter()
            .copied()
            .filter(|v| {
                ferrox_storage::open(&storages, &worker.opts.node_name, &backup.storage)
                    .and_then(|s| s.list_backups(Some(*v)))
                    .is_ok_and(|l| l.iter().any(|b| b.ctime >= run))
            })
            .collect();
        update_state(&worker, &id, |s| {
            for v in &done {
                s.done.insert(*v, run);
            }
        })?;
        result
    });
    match spawned {
        Ok(upid) => {
            if let Err(e) = node.tasks.wait(&upid, Duration::from_secs(24 * 3600)) {
                tracing::warn!("backup job {}: {e}", job.id);
            }
        }
        Err(e) => tracing::warn!("backup job {}: {e}", job.id),
    }
}

/// Starts the scheduler thread.
pub fn spawn_scheduler(node: Arc<Node>) {
    let spawned = std::thread::Builder::new()
        .name("backup-jobs".into())
        .spawn(move || loop {
            std::thread::sleep(POLL);
            if node.store.status().quorate {
                run_due(&node);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("backup jobs: no thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> BackupJob {
        JobsConfig::parse(text)
            .unwrap()
            .backups
            .into_values()
            .next()
            .unwrap()
    }

    #[test]
    fn each_guest_once_per_run_wherever_it_runs() {
        let j = job("vzdump: j\n\tschedule *:00\n\tvmid 100,101,102\n");
        let hour: i64 = 1_800_003_600; // on the hour
        let mut state = JobState {
            created: hour - 7200,
            done: BTreeMap::new(),
        };
        // n1 runs 100 and 101; 102 elsewhere; 103 is not in the job.
        let (run, due) = due_guests(&j, &state, &[100, 101, 103], "n1", hour + 60).unwrap();
        assert_eq!((run, due), (hour, vec![100, 101]));
        state.done.insert(100, hour);
        state.done.insert(101, hour);
        assert!(due_guests(&j, &state, &[100, 101], "n1", hour + 600).is_none());
        // 101 moved to n2 after its backup: not again; 102's node failed before its
        // backup and n2 runs it now: due there.
        let (_, due) = due_guests(&j, &state, &[101, 102], "n2", hour + 900).unwrap();
        assert_eq!(due, vec![102]);
        // The next run wants everyone again.
        let (run, due) = due_guests(&j, &state, &[100], "n1", hour + 3600 + 5).unwrap();
        assert_eq!((run, due), (hour + 3600, vec![100]));
        // A job created after the latest run waits for the next.
        let fresh = JobState {
            created: hour + 10,
            done: BTreeMap::new(),
        };
        assert!(due_guests(&j, &fresh, &[100], "n1", hour + 600).is_none());
        // Disabled, or for another node: nothing.
        let off = job("vzdump: j\n\tschedule *:00\n\tall 1\n\tenabled 0\n");
        assert!(due_guests(&off, &state, &[100], "n1", hour + 60).is_none());
        let pinned = job("vzdump: j\n\tschedule *:00\n\tall 1\n\tnode n2\n");
        assert!(due_guests(&pinned, &state, &[105], "n1", hour + 60).is_none());
    }
}
