//! Tasks: every long operation runs as a worker with a Proxmox-VE-format UPID and a log
//! file on disk (`<dir>/<UPID>`), ending with `TASK OK`, `TASK WARNINGS: n` or
//! `TASK ERROR: msg`. Finished tasks are recorded in `<dir>/index` (`UPID ENDTIME STATUS`,
//! as Proxmox VE's task index), so they stay queryable after a restart.

use crate::auth::now;
use crate::error::ApiError;
use ferrox_api_types::tasks::{TaskLogLine, TaskStatus};
use ferrox_types::Upid;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a worker writes to: its log, line by line.
pub struct TaskLog {
    file: Mutex<File>,
    warnings: Mutex<u32>,
    upid: String,
}

impl TaskLog {
    pub fn upid(&self) -> &str {
        &self.upid
    }

    pub fn log(&self, line: impl AsRef<str>) {
        if let Ok(mut f) = self.file.lock() {
            for l in line.as_ref().lines() {
                let _ = writeln!(f, "{l}");
            }
            let _ = f.flush();
        }
    }

    pub fn warn(&self, line: impl AsRef<str>) {
        self.log(format!("WARN: {}", line.as_ref()));
        if let Ok(mut w) = self.warnings.lock() {
            *w += 1;
        }
    }
}

#[derive(Debug, Clone)]
struct Finished {
    endtime: i64,
    status: String,
}

/// What `TaskStore::on_end` calls.
pub type EndHook = Box<dyn Fn(&TaskStatus) + Send + Sync>;

pub struct TaskStore {
    dir: PathBuf,
    node: String,
    pid: u32,
    pstart: u64,
    state: Mutex<TaskIndex>,
    /// Signalled whenever a task ends (`wait`).
    ended: Condvar,
    /// Told about every task that ended (notifications of failed tasks).
    on_end: std::sync::OnceLock<EndHook>,
}

/// How a task ended, as its exit status says (`OK`, `WARNINGS: n`, or the error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Ok,
    Warnings(u32),
    Failed(String),
}

impl TaskOutcome {
    fn from_status(status: &str) -> TaskOutcome {
        match status {
            "OK" => TaskOutcome::Ok,
            s => match s.strip_prefix("WARNINGS: ").and_then(|n| n.parse().ok()) {
                Some(n) => TaskOutcome::Warnings(n),
                None => TaskOutcome::Failed(s.to_string()),
            },
        }
    }

    /// Ended without an error (warnings allowed).
    pub fn succeeded(&self) -> bool {
        !matches!(self, TaskOutcome::Failed(_))
    }
}

/// What a task worker fails with: the text that becomes `TASK ERROR: ...` and the exit
/// status. API errors keep their per-parameter details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError(pub String);

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> TaskError {
        TaskError(message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> TaskError {
        TaskError(message.to_string())
    }
}

impl From<ApiError> for TaskError {
    fn from(e: ApiError) -> TaskError {
        let detail: Vec<String> = e.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        TaskError(if detail.is_empty() {
            e.message
        } else {
            detail.join("; ")
        })
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(e: anyhow::Error) -> TaskError {
        TaskError(format!("{e:#}"))
    }
}

#[derive(Default)]
struct TaskIndex {
    /// Every known task, oldest first, with its end (None while it runs).
    tasks: BTreeMap<String, (Upid, Option<Finished>)>,
}

/// Filters of `GET /nodes/{node}/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub start: usize,
    pub limit: usize,
    pub userfilter: Option<String>,
    pub typefilter: Option<String>,
    pub vmid: Option<i64>,
    pub errors: bool,
    /// `archive` (finished), `active` or `all`.
    pub source: String,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub statusfilter: Option<String>,
}

fn process_start_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .nth(19)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn classify(status: &str) -> &'static str {
    if status == "OK" {
        "ok"
    } else if status.starts_with("WARNINGS") {
        "warning"
    } else if status == "unexpected status" {
        "unknown"
    } else {
        "error"
    }
}

impl TaskStore {
    pub fn open(dir: &Path, node: &str) -> std::io::Result<Arc<TaskStore>> {
        std::fs::create_dir_all(dir)?;
        let mut index = TaskIndex::default();
        let index_path = dir.join("index");
        if let Ok(text) = std::fs::read_to_string(&index_path) {
            for line in text.lines() {
                let mut parts = line.splitn(3, ' ');
                let (Some(upid), Some(end), Some(status)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if let (Ok(parsed), Ok(endtime)) =
                    (upid.parse::<Upid>(), i64::from_str_radix(end, 16))
                {
                    index.tasks.insert(
                        upid.to_string(),
                        (
                            parsed,
                            Some(Finished {
                                endtime,
                                status: status.to_string(),
                            }),
                        ),
                    );
                }
            }
        }
        let store = TaskStore {
            dir: dir.to_path_buf(),
            node: node.to_string(),
            pid: std::process::id(),
            pstart: process_start_ticks(),
            state: Mutex::new(index),
            ended: Condvar::new(),
            on_end: std::sync::OnceLock::new(),
        };
        // Workers of an earlier daemon that never finished: their end is unknown.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(upid) = name.parse::<Upid>() else {
                continue;
            };
            let known = store
                .state
                .lock()
                .map(|s| s.tasks.contains_key(&name))
                .unwrap_or(true);
            if !known {
                let end = entry
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_else(now);
                store.finish(&upid, end, "unexpected status".to_string());
            }
        }
        Ok(Arc::new(store))
    }

    fn log_path(&self, upid: &str) -> PathBuf {
        self.dir.join(upid)
    }

    fn finish(&self, upid: &Upid, endtime: i64, status: String) {
        let key = upid.to_string();
        // One write per line, under the index lock: workers ending together must not
        // interleave their lines (`writeln!` may issue several writes).
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{key} {endtime:08X} {status}\n");
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("index"))
        {
            let _ = f.write_all(line.as_bytes());
        }
        state.tasks.insert(
            key,
            (
                upid.clone(),
                Some(Finished {
                    endtime,
                    status: status.clone(),
                }),
            ),
        );
        self.ended.notify_all();
        drop(state);
        if let Some(hook) = self.on_end.get() {
            let mut row = Self::describe(upid);
            row.status = "stopped".into();
            row.exitstatus = Some(status);
            row.endtime = Some(endtime);
            hook(&row);
        }
    }

    /// Calls `hook` with the status of every task that ends from now on (set once).
    pub fn on_end(&self, hook: EndHook) {
        let _ = self.on_end.set(hook);
    }

    /// Waits until the task ends, for at most `timeout`: its outcome, or `None` while it
    /// still runs.
    pub fn wait(&self, upid: &str, timeout: Duration) -> Result<Option<TaskOutcome>, ApiError> {
        let deadline = Instant::now() + timeout;
        let mut state = self
            .state
            .lock()
            .map_err(|_| ApiError::internal("task index lock poisoned"))?;
        loop {
            match state.tasks.get(upid) {
                None => return Err(ApiError::param("upid", "no such task")),
                Some((_, Some(fin))) => return Ok(Some(TaskOutcome::from_status(&fin.status))),
                Some((_, None)) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self
                .ended
                .wait_timeout(state, left)
                .map_err(|_| ApiError::internal("task index lock poisoned"))?
                .0;
        }
    }

    /// Starts a worker; returns its UPID at once. The worker's `Err` becomes `TASK ERROR`.
    pub fn spawn<F>(
        self: &Arc<Self>,
        task_type: &str,
        id: &str,
        auth_id: &str,
        work: F,
    ) -> Result<String, ApiError>
    where
        F: FnOnce(&TaskLog) -> Result<(), TaskError> + Send + 'static,
    {
        let mut upid = Upid {
            node: self.node.clone(),
            pid: self.pid,
            pstart: self.pstart,
            starttime: now() as u32,
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: auth_id.to_string(),
        };
        let file = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| ApiError::internal("task index lock poisoned"))?;
            // Two workers of the same kind in the same second get distinct pids.
            while state.tasks.contains_key(&upid.to_string()) {
                upid.pid = upid.pid.wrapping_add(1);
            }
            let file = File::create(self.log_path(&upid.to_string()))
                .map_err(|e| ApiError::internal(format!("unable to create task log: {e}")))?;
            state.tasks.insert(upid.to_string(), (upid.clone(), None));
            file
        };
        let log = TaskLog {
            file: Mutex::new(file),
            warnings: Mutex::new(0),
            upid: upid.to_string(),
        };
        let store = Arc::clone(self);
        let text = upid.to_string();
        std::thread::Builder::new()
            .name(format!("task-{task_type}-{id}"))
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&log)))
                    .unwrap_or_else(|_| Err(TaskError::from("worker panicked")));
                let warnings = log.warnings.lock().map(|w| *w).unwrap_or(0);
                let status = match outcome {
                    Ok(()) if warnings == 0 => {
                        log.log("TASK OK");
                        "OK".to_string()
                    }
                    Ok(()) => {
                        log.log(format!("TASK WARNINGS: {warnings}"));
                        format!("WARNINGS: {warnings}")
                    }
                    Err(TaskError(msg)) => {
                        let msg = msg.trim().replace('\n', " ");
                        log.log(format!("TASK ERROR: {msg}"));
                        msg
                    }
                };
                store.finish(&upid, now(), status);
            })
            .map_err(|e| ApiError::internal(format!("unable to start worker: {e}")))?;
        Ok(text)
    }

    fn lookup(&self, upid: &str) -> Result<(Upid, Option<Finished>), ApiError> {
        let parsed: Upid = upid
            .parse()
            .map_err(|_| ApiError::param("upid", "unable to parse worker upid"))?;
        let state = self
            .state
            .lock()
            .map_err(|_| ApiError::internal("task index lock poisoned"))?;
        match state.tasks.get(upid) {
            Some((_, fin)) => Ok((parsed, fin.clone())),
            None => Err(ApiError::param("upid", "no such task")),
        }
    }

    /// A task's row; `status` is filled in by the caller.
    fn describe(upid: &Upid) -> TaskStatus {
        let (user, token) = match upid.user.split_once('!') {
            Some((u, t)) => (u.to_string(), Some(t.to_string())),
            None => (upid.user.clone(), None),
        };
        TaskStatus {
            upid: upid.to_string(),
            node: upid.node.clone(),
            pid: upid.pid,
            pstart: upid.pstart,
            starttime: i64::from(upid.starttime),
            kind: upid.task_type.clone(),
            id: upid.id.clone(),
            user,
            tokenid: token,
            status: String::new(),
            exitstatus: None,
            endtime: None,
        }
    }

    /// The owner of a task, for the "own tasks or Sys.Audit" permission rule.
    pub fn owner(&self, upid: &str) -> Result<String, ApiError> {
        Ok(self.lookup(upid)?.0.user)
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub fn status(&self, upid: &str) -> Result<TaskStatus, ApiError> {
        let (parsed, fin) = self.lookup(upid)?;
        let mut row = Self::describe(&parsed);
        match fin {
            None => row.status = "running".into(),
            Some(f) => {
                row.status = "stopped".into();
                row.exitstatus = Some(f.status);
                row.endtime = Some(f.endtime);
            }
        }
        Ok(row)
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`: lines `[{n, t}]` and the total line count.
    pub fn log(
        &self,
        upid: &str,
        start: usize,
        limit: usize,
    ) -> Result<(Vec<TaskLogLine>, usize), ApiError> {
        self.lookup(upid)?;
        let text = std::fs::read_to_string(self.log_path(upid)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let total = lines.len();
        let page = lines
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, t)| TaskLogLine {
                n: i + 1,
                t: t.to_string(),
            })
            .collect();
        Ok((page, total))
    }

    /// The newest `limit` tasks, running or finished (the cluster-wide task list).
    pub fn recent(&self, limit: usize) -> Vec<TaskStatus> {
        let filter = TaskFilter {
            limit,
            source: "all".into(),
            ..TaskFilter::default()
        };
        self.list(&filter, &|_| true).0
    }

    /// `GET /nodes/{node}/tasks`, newest first; returns the page and the total.
    pub fn list(
        &self,
        filter: &TaskFilter,
        visible: &dyn Fn(&str) -> bool,
    ) -> (Vec<TaskStatus>, usize) {
        let Ok(state) = self.state.lock() else {
            return (Vec::new(), 0);
        };
        let mut rows: Vec<TaskStatus> = state
            .tasks
            .values()
            .filter(|(_, fin)| match filter.source.as_str() {
                "active" => fin.is_none(),
                "all" => true,
                _ => fin.is_some(),
            })
            .filter(|(upid, _)| visible(&upid.user))
            .filter(|(upid, _)| {
                filter
                    .userfilter
                    .as_ref()
                    .is_none_or(|u| upid.user.contains(u.as_str()))
            })
            .filter(|(upid, _)| {
                filter
                    .typefilter
                    .as_ref()
                    .is_none_or(|t| upid.task_type == *t)
            })
            .filter(|(upid, _)| filter.vmid.is_none_or(|v| upid.id == v.to_string()))
            .filter(|(upid, _)| filter.since.is_none_or(|s| i64::from(upid.starttime) >= s))
            .filter(|(upid, _)| filter.until.is_none_or(|u| i64::from(upid.starttime) <= u))
            .filter(|(_, fin)| {
                !filter.errors || fin.as_ref().is_some_and(|f| classify(&f.status) != "ok")
            })
            .filter(|(_, fin)| {
                filter.statusfilter.as_ref().is_none_or(|wanted| {
                    let class = fin.as_ref().map(|f| classify(&f.status)).unwrap_or("ok");
                    wanted.split(',').any(|w| w.trim() == class)
                })
            })
            .map(|(upid, fin)| {
                let mut row = Self::describe(upid);
                match fin {
                    None => row.status = "RUNNING".into(),
                    Some(f) => {
                        row.status = f.status.clone();
                        row.endtime = Some(f.endtime);
                    }
                }
                row
            })
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.starttime));
        let total = rows.len();
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let page = rows.into_iter().skip(filter.start).take(limit).collect();
        (page, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::{Duration, Instant};

    /// The reply as the client reads it.
    fn wire<T: serde::Serialize>(reply: T) -> Value {
        serde_json::to_value(reply).unwrap()
    }

    fn wait_done(store: &TaskStore, upid: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = wire(store.status(upid).unwrap());
            if s["status"] == "stopped" || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn workers_end_with_a_status_line_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::open(dir.path(), "n1").unwrap();
        let ok = store
            .spawn("qmstart", "100", "root@pam", |log| {
                log.log("starting");
                Ok(())
            })
            .unwrap();
        let bad = store
            .spawn("qmstart", "100", "root@pam!ci", |_| Err("boom".into()))
            .unwrap();
        assert_ne!(ok, bad, "same second, same kind: still distinct");
        assert_eq!(wait_done(&store, &ok)["exitstatus"], "OK");
        let failed = wait_done(&store, &bad);
        assert_eq!(failed["exitstatus"], "boom");
        assert_eq!(failed["tokenid"], "ci");
        let (lines, total) = store.log(&ok, 0, 50).unwrap();
        let lines = wire(lines);
        assert_eq!(total, 2);
        assert_eq!(lines[1]["t"], "TASK OK");
        assert_eq!(lines[0]["n"], 1);

        let again = TaskStore::open(dir.path(), "n1").unwrap();
        assert_eq!(wire(again.status(&bad).unwrap())["exitstatus"], "boom");
        let (rows, total) = again.list(
            &TaskFilter {
                source: "all".into(),
                errors: true,
                ..TaskFilter::default()
            },
            &|_| true,
        );
        let rows = wire(rows);
        assert_eq!(total, 1);
        assert_eq!(rows[0]["upid"], bad);
    }

    #[test]
    fn wait_returns_the_outcome_when_the_task_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::open(dir.path(), "n1").unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let held = store
            .spawn("qmstart", "100", "root@pam", move |log| {
                let _ = gate.recv();
                log.warn("slow");
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.wait(&held, Duration::ZERO).unwrap(),
            None,
            "still running"
        );
        release.send(()).unwrap();
        assert_eq!(
            store.wait(&held, Duration::from_secs(60)).unwrap(),
            Some(TaskOutcome::Warnings(1))
        );
        let failed = store
            .spawn("qmconfig", "100", "root@pam", |_| {
                Err(ApiError::param("cores", "must be at least 1").into())
            })
            .unwrap();
        assert_eq!(
            store.wait(&failed, Duration::from_secs(60)).unwrap(),
            Some(TaskOutcome::Failed("cores: must be at least 1".into()))
        );
        assert!(store.wait("UPID:bogus", Duration::ZERO).is_err());
    }

    #[test]
    fn malformed_and_unknown_upids_name_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::open(dir.path(), "n1").unwrap();
        let err = store.status("UPID:bogus").unwrap_err();
        assert_eq!(err.errors["upid"], "unable to parse worker upid");
        let err = store
            .status("UPID:n1:000003E8:00001B58:6B02D736:qmstart:100:root@pam:")
            .unwrap_err();
        assert_eq!(err.errors["upid"], "no such task");
    }
}
