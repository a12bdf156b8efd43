//! Durability: the Raft log and the state machine, each in its own SQLite file so that
//! appends and applies never wait on each other's write lock. The log is written with
//! `synchronous=FULL` (an acknowledged entry survives power loss); the state machine can
//! always be rebuilt from the log and snapshots, so it commits with `NORMAL`.

// openraft's storage traits fix the error type (`StorageError`, 200+ bytes); the helpers
// return it too rather than converting at every call.
#![allow(clippy::result_large_err)]

use crate::mirror::Mirror;
use crate::tree::{Change, Entry, Lock, Response, Tree};
use crate::{Member, NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

type Entry_ = openraft::Entry<TypeConfig>;
type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}
fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

fn open_db(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn get_meta<T: for<'de> Deserialize<'de>>(
    conn: &Connection,
    table: &str,
    key: &str,
) -> StoreResult<Option<T>> {
    let text: Option<String> = conn
        .query_row(
            &format!("SELECT value FROM {table} WHERE key = ?1"),
            [key],
            |r| r.get(0),
        )
        .optional()
        .map_err(read_err)?;
    match text {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t).map(Some).map_err(read_err),
    }
}

fn set_meta<T: Serialize>(conn: &Connection, table: &str, key: &str, value: &T) -> StoreResult<()> {
    let text = serde_json::to_string(value).map_err(write_err)?;
    conn.execute(
        &format!("INSERT OR REPLACE INTO {table} (key, value) VALUES (?1, ?2)"),
        params![key, text],
    )
    .map_err(write_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Log

#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
}

impl LogStore {
    pub fn open(path: &Path) -> rusqlite::Result<LogStore> {
        let conn = open_db(path, "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        Ok(LogStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry_>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(read_err)?;
        let rows = stmt
            .query_map(
                params![start as i64, end.min(i64::MAX as u64) as i64],
                |r| r.get::<_, String>(0),
            )
            .map_err(read_err)?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(read_err)?;
            out.push(serde_json::from_str(&text).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let conn = self.conn();
        let last_purged: Option<LogId<NodeId>> = get_meta(&conn, "meta", "last_purged")?;
        let last: Option<String> = conn
            .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(read_err)?;
        let last_log_id = match last {
            Some(text) => {
                let e: Entry_ = serde_json::from_str(&text).map_err(read_err)?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        set_meta(&self.conn(), "meta", "vote", vote)
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        get_meta(&self.conn(), "meta", "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        set_meta(&self.conn(), "meta", "committed", &committed)
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(get_meta::<Option<LogId<NodeId>>>(&self.conn(), "meta", "committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry_> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = (|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(write_err)?;
            {
                let mut stmt = tx
                    .prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")
                    .map_err(write_err)?;
                for entry in entries {
                    let text = serde_json::to_string(&entry).map_err(write_err)?;
                    stmt.execute(params![entry.log_id.index as i64, text])
                        .map_err(write_err)?;
                }
            }
            tx.commit().map_err(write_err)
        })();
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.conn()
            .execute("DELETE FROM log WHERE idx >= ?1", [log_id.index as i64])
            .map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(write_err)?;
        set_meta(&tx, "meta", "last_purged", &log_id)?;
        tx.execute("DELETE FROM log WHERE idx <= ?1", [log_id.index as i64])
            .map_err(write_err)?;
        tx.commit().map_err(write_err)
    }
}

// ---------------------------------------------------------------------------------------
// State machine

fn put_file(conn: &Connection, path: &str, e: &Entry) -> StoreResult<()> {
    conn.execute(
        "INSERT OR REPLACE INTO files (path, data, version) VALUES (?1, ?2, ?3)",
        params![path, e.data, e.version as i64],
    )
    .map_err(write_err)?;
    Ok(())
}

/// What a snapshot carries: the whole tree and where it stands in the log.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    meta: SnapshotMeta<NodeId, Member>,
    tree: Tree,
}

/// The applied state, shared between the state machine and the store's readers.
pub struct Shared {
    pub tree: RwLock<Tree>,
    pub changes: broadcast::Sender<Change>,
    pub mirror: Option<Mirror>,
}

impl Shared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct StateMachine {
    conn: Arc<Mutex<Connection>>,
    pub shared: Arc<Shared>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

impl StateMachine {
    /// Opens the state database and loads the tree into memory; the mirror directory is
    /// brought in line with it (a crash between commit and file write is repaired here).
    pub fn open(
        path: &Path,
        mirror: Option<Mirror>,
        resync_mirror: bool,
        changes: broadcast::Sender<Change>,
    ) -> rusqlite::Result<StateMachine> {
        let conn = open_db(path, "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, data TEXT NOT NULL, version INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let mut tree = Tree::default();
        {
            let mut stmt = conn.prepare("SELECT path, data, version FROM files")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (path, data, version) = row?;
                tree.files.insert(
                    path,
                    Entry {
                        data,
                        version: version as u64,
                    },
                );
            }
            let mut stmt = conn.prepare("SELECT name, owner, expires_ms FROM locks")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (name, owner, expires) = row?;
                tree.locks.insert(
                    name,
                    Lock {
                        owner,
                        expires_ms: expires as u64,
                    },
                );
            }
        }
        let meta = |key: &str| -> Option<String> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .ok()
                .flatten()
        };
        tree.clock_ms = meta("clock_ms").and_then(|t| t.parse().ok()).unwrap_or(0);
        let last_applied = meta("last_applied")
            .and_then(|t| serde_json::from_str(&t).ok())
            .flatten();
        let membership = meta("membership")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if let (Some(m), true) = (&mirror, resync_mirror) {
            m.resync_at_start(&tree);
        }
        Ok(StateMachine {
            conn: Arc::new(Mutex::new(conn)),
            shared: Arc::new(Shared {
                tree: RwLock::new(tree),
                changes,
                mirror,
            }),
            last_applied,
            membership,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, tree: &Tree, changes: &[Change], locks_changed: bool) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(write_err)?;
        for change in changes {
            match change {
                Change::Put(path) => {
                    if let Some(e) = tree.files.get(path) {
                        put_file(&tx, path, e)?;
                    }
                }
                Change::Delete(path) => {
                    tx.execute("DELETE FROM files WHERE path = ?1", [path])
                        .map_err(write_err)?;
                }
                Change::Reset => {
                    tx.execute("DELETE FROM files", []).map_err(write_err)?;
                    for (path, e) in &tree.files {
                        put_file(&tx, path, e)?;
                    }
                }
            }
        }
        if locks_changed {
            tx.execute("DELETE FROM locks", []).map_err(write_err)?;
            for (name, l) in &tree.locks {
                tx.execute(
                    "INSERT INTO locks (name, owner, expires_ms) VALUES (?1, ?2, ?3)",
                    params![name, l.owner, l.expires_ms as i64],
                )
                .map_err(write_err)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock_ms', ?1)",
            [tree.clock_ms.to_string()],
        )
        .map_err(write_err)?;
        set_meta(&tx, "meta", "last_applied", &self.last_applied)?;
        set_meta(&tx, "meta", "membership", &self.membership)?;
        tx.commit().map_err(write_err)
    }

    fn mirror(&self, tree: &Tree, changes: &[Change]) {
        if let Some(m) = &self.shared.mirror {
            for change in changes {
                match change {
                    Change::Put(path) => {
                        if let Some(e) = tree.files.get(path) {
                            m.put(path, &e.data);
                        }
                    }
                    Change::Delete(path) => m.delete(path),
                    Change::Reset => m.resync(tree),
                }
            }
        }
    }

    fn publish(&self, changes: Vec<Change>) {
        for change in changes {
            // No receivers is fine: nobody watches.
            let _ = self.shared.changes.send(change);
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachineSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry_> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut changes = Vec::new();
        let mut locks_changed = false;
        let shared = Arc::clone(&self.shared);
        let mut tree = shared.write();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::None
                }
                EntryPayload::Normal(req) => {
                    locks_changed |= !matches!(req.command, crate::tree::Command::Txn(_));
                    tree.apply(entry.log_id.index, &req, &mut changes)
                }
            };
            responses.push(response);
        }
        // Readers wait for the commit and the mirror: whoever sees the new tree also finds
        // it durable and in the files.
        self.persist(&tree, &changes, locks_changed)?;
        self.mirror(&tree, &changes);
        drop(tree);
        self.publish(changes);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachineSnapshotBuilder {
        StateMachineSnapshotBuilder {
            tree: self.shared.read().clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            conn: Arc::clone(&self.conn),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Vec<u8>>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Vec<u8>>,
    ) -> StoreResult<()> {
        let body: SnapshotBody = serde_json::from_slice(&snapshot).map_err(read_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let mut tree = self.shared.write();
        *tree = body.tree;
        self.persist(&tree, &[Change::Reset], true)?;
        self.mirror(&tree, &[Change::Reset]);
        drop(tree);
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('snapshot', ?1)",
                [String::from_utf8_lossy(&snapshot).as_ref()],
            )
            .map_err(write_err)?;
        self.publish(vec![Change::Reset]);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = 'snapshot'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(read_err)?;
        let Some(text) = text else { return Ok(None) };
        let body: SnapshotBody = serde_json::from_str(&text).map_err(read_err)?;
        Ok(Some(Snapshot {
            meta: body.meta,
            snapshot: Box::new(text.into_bytes()),
        }))
    }
}

/// Builds a snapshot from a copy of the tree taken when openraft asked for it, so that
/// applying goes on while the snapshot is serialized and saved.
pub struct StateMachineSnapshotBuilder {
    tree: Tree,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    conn: Arc<Mutex<Connection>>,
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.last_applied.map(|l| l.leader_id.term).unwrap_or(0),
                self.last_applied.map(|l| l.index).unwrap_or(0)
            ),
        };
        let body = SnapshotBody {
            meta: meta.clone(),
            tree: std::mem::take(&mut self.tree),
        };
        let text = serde_json::to_string(&body).map_err(write_err)?;
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('snapshot', ?1)",
                [&text],
            )
            .map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(text.into_bytes()),
        })
    }
}
