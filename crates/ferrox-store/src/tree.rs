//! The replicated state: the configuration tree and the leased locks, and the one
//! function that changes them (`Tree::apply`). Pure and deterministic: every node applies
//! the same commands in the same order and reaches the same tree, so time comes from
//! the command (stamped by the leader), never from the local clock.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A file in the tree: text, as Proxmox VE's config files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub data: String,
    /// Log index of the write that produced this content.
    pub version: u64,
}

/// A cluster-wide named lock held by `owner` until `expires_ms` (store time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub owner: String,
    pub expires_ms: u64,
}

/// What a write expects to find at its path (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    Any,
    Absent,
    /// The SHA-1 hex digest of the current content (Proxmox VE's `digest`).
    Digest(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        path: String,
        data: String,
        expect: Expect,
    },
    Delete {
        path: String,
        expect: Expect,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Put { path, .. } | Op::Delete { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// All operations or none.
    Txn(Vec<Op>),
    /// Take or renew `name` for `lease_ms`; granted when free, expired or already ours.
    LockAcquire {
        name: String,
        owner: String,
        lease_ms: u64,
    },
    LockRelease {
        name: String,
        owner: String,
    },
}

/// A command with the leader's wall-clock time at proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Raft-internal entries (blank, membership) answer nothing.
    None,
    Applied {
        index: u64,
    },
    Conflict {
        path: String,
        reason: String,
    },
    LockGranted {
        expires_ms: u64,
    },
    LockHeld {
        owner: String,
        expires_ms: u64,
    },
    LockReleased {
        released: bool,
    },
}

/// One change, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(String),
    Delete(String),
    /// The whole tree was replaced (snapshot installed): re-read everything.
    Reset,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub files: BTreeMap<String, Entry>,
    pub locks: BTreeMap<String, Lock>,
    /// Store time: the greatest `now_ms` applied so far, so it never runs backwards
    /// when a leader with a slower clock takes over.
    pub clock_ms: u64,
}

/// SHA-1 hex of the content, as in Proxmox VE config digests.
pub fn digest(data: &str) -> String {
    ferrox_types::section_config::digest(data)
}

/// Paths are relative, `/`-separated, without `.`/`..` or empty components.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        return Err(format!("path '{path}' must be relative and name a file"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("path '{path}' has an invalid component"));
        }
        if part.chars().any(|c| c.is_control()) {
            return Err(format!("path '{path}' contains a control character"));
        }
    }
    Ok(())
}

impl Tree {
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.files.get(path)
    }

    fn check(&self, path: &str, expect: &Expect) -> Result<(), String> {
        let current = self.files.get(path);
        match (expect, current) {
            (Expect::Any, _) => Ok(()),
            (Expect::Absent, None) => Ok(()),
            (Expect::Absent, Some(_)) => Err("already exists".into()),
            (Expect::Digest(_), None) => Err("does not exist".into()),
            (Expect::Digest(d), Some(e)) if digest(&e.data) == *d => Ok(()),
            (Expect::Digest(_), Some(_)) => {
                Err("digest mismatch: the file was modified by another request".into())
            }
        }
    }

    /// Applies one command at log `index`, recording the changed paths in `changes`.
    pub fn apply(&mut self, index: u64, req: &Request, changes: &mut Vec<Change>) -> Response {
        self.clock_ms = self.clock_ms.max(req.now_ms);
        let now = self.clock_ms;
        match &req.command {
            Command::Txn(ops) => {
                for op in ops {
                    if let Err(reason) = check_path(op.path()) {
                        return Response::Conflict {
                            path: op.path().to_string(),
                            reason,
                        };
                    }
                    let expect = match op {
                        Op::Put { expect, .. } | Op::Delete { expect, .. } => expect,
                    };
                    if let Err(reason) = self.check(op.path(), expect) {
                        return Response::Conflict {
                            path: op.path().to_string(),
                            reason,
                        };
                    }
                }
                for op in ops {
                    match op {
                        Op::Put { path, data, .. } => {
                            self.files.insert(
                                path.clone(),
                                Entry {
                                    data: data.clone(),
                                    version: index,
                                },
                            );
                            changes.push(Change::Put(path.clone()));
                        }
                        Op::Delete { path, .. } => {
                            if self.files.remove(path).is_some() {
                                changes.push(Change::Delete(path.clone()));
                            }
                        }
                    }
                }
                Response::Applied { index }
            }
            Command::LockAcquire {
                name,
                owner,
                lease_ms,
            } => match self.locks.get(name) {
                Some(l) if l.owner != *owner && l.expires_ms > now => Response::LockHeld {
                    owner: l.owner.clone(),
                    expires_ms: l.expires_ms,
                },
                _ => {
                    let expires_ms = now.saturating_add(*lease_ms);
                    self.locks.insert(
                        name.clone(),
                        Lock {
                            owner: owner.clone(),
                            expires_ms,
                        },
                    );
                    Response::LockGranted { expires_ms }
                }
            },
            Command::LockRelease { name, owner } => {
                let released = match self.locks.get(name) {
                    Some(l) if l.owner == *owner => {
                        self.locks.remove(name);
                        true
                    }
                    _ => false,
                };
                Response::LockReleased { released }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(now_ms: u64, command: Command) -> Request {
        Request { now_ms, command }
    }

    fn put(path: &str, data: &str, expect: Expect) -> Op {
        Op::Put {
            path: path.into(),
            data: data.into(),
            expect,
        }
    }

    #[test]
    fn compare_and_set_is_all_or_nothing() {
        let mut t = Tree::default();
        let mut ch = vec![];
        let r = t.apply(
            1,
            &req(0, Command::Txn(vec![put("a.cfg", "one", Expect::Absent)])),
            &mut ch,
        );
        assert_eq!(r, Response::Applied { index: 1 });
        // Second op conflicts: the first must not be applied either.
        let r = t.apply(
            2,
            &req(
                0,
                Command::Txn(vec![
                    put("b.cfg", "two", Expect::Absent),
                    put("a.cfg", "x", Expect::Digest(digest("stale"))),
                ]),
            ),
            &mut ch,
        );
        assert!(
            matches!(r, Response::Conflict { ref path, .. } if path == "a.cfg"),
            "{r:?}"
        );
        assert!(t.get("b.cfg").is_none());
        assert_eq!(t.get("a.cfg").map(|e| e.data.as_str()), Some("one"));
        let r = t.apply(
            3,
            &req(
                0,
                Command::Txn(vec![
                    Op::Delete {
                        path: "a.cfg".into(),
                        expect: Expect::Digest(digest("one")),
                    },
                    put("b.cfg", "two", Expect::Absent),
                ]),
            ),
            &mut ch,
        );
        assert_eq!(r, Response::Applied { index: 3 });
        assert!(t.get("a.cfg").is_none());
        assert_eq!(t.get("b.cfg").map(|e| e.version), Some(3));
        assert_eq!(
            ch,
            vec![
                Change::Put("a.cfg".into()),
                Change::Delete("a.cfg".into()),
                Change::Put("b.cfg".into())
            ]
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut t = Tree::default();
        for p in ["", "/abs", "a/../b", "a//b", "dir/"] {
            let r = t.apply(
                1,
                &req(0, Command::Txn(vec![put(p, "x", Expect::Any)])),
                &mut vec![],
            );
            assert!(matches!(r, Response::Conflict { .. }), "{p}: {r:?}");
        }
        assert!(t.files.is_empty());
    }

    #[test]
    fn locks_lease_and_store_time_never_runs_backwards() {
        let mut t = Tree::default();
        let acquire = |owner: &str| Command::LockAcquire {
            name: "ha_manager_lock".into(),
            owner: owner.into(),
            lease_ms: 120_000,
        };
        let mut ch = vec![];
        assert_eq!(
            t.apply(1, &req(1_000, acquire("n1")), &mut ch),
            Response::LockGranted {
                expires_ms: 121_000
            }
        );
        assert_eq!(
            t.apply(2, &req(60_000, acquire("n2")), &mut ch),
            Response::LockHeld {
                owner: "n1".into(),
                expires_ms: 121_000
            }
        );
        // Renewal by the holder extends the lease.
        assert_eq!(
            t.apply(3, &req(100_000, acquire("n1")), &mut ch),
            Response::LockGranted {
                expires_ms: 220_000
            }
        );
        // A new leader whose clock is behind cannot make the lock expire early.
        assert!(matches!(
            t.apply(4, &req(10, acquire("n2")), &mut ch),
            Response::LockHeld { .. }
        ));
        assert_eq!(t.clock_ms, 100_000);
        // Expired: the other node gets it.
        assert_eq!(
            t.apply(5, &req(220_000, acquire("n2")), &mut ch),
            Response::LockGranted {
                expires_ms: 340_000
            }
        );
        let release = |owner: &str| Command::LockRelease {
            name: "ha_manager_lock".into(),
            owner: owner.into(),
        };
        assert_eq!(
            t.apply(6, &req(0, release("n1")), &mut ch),
            Response::LockReleased { released: false }
        );
        assert_eq!(
            t.apply(7, &req(0, release("n2")), &mut ch),
            Response::LockReleased { released: true }
        );
        assert!(t.locks.is_empty());
    }
}
