//! The store as the daemon uses it: local reads, writes that go to the leader wherever
//! they are issued, linearizable reads, locks, watches, and the cluster's membership.
//!
//! A node that is not part of a cluster is a one-member cluster: every write goes
//! through Raft from the very first one, so a cluster created later holds the node's
//! whole history and joiners need nothing else. Joining throws the joiner's own store
//! away (it must have no guests) and takes the cluster's by replication.

use crate::mirror::Mirror;
use crate::network::{rpc, Network, SnapshotTransfer, Transport, TransportError};
use crate::sqlite::{LogStore, Shared, StateMachine};
use crate::tree::{Change, Command, Entry, Expect, Op, Request, Response};
use crate::{Member, NodeId, TypeConfig};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, Raft, ServerState, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Errors callers act on; they cross the wire when a write is forwarded to the leader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// Refused before anything was proposed: nothing changed.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// Proposed (or sent to the leader) but not confirmed: it may or may not have been
    /// applied. Read before retrying a non-idempotent write.
    #[error("outcome unknown: {0}")]
    Uncertain(String),
    #[error("{path}: {reason}")]
    Conflict { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("cluster store: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where the SQLite files and the node's store identity live.
    pub dir: PathBuf,
    /// The directory the tree is mirrored to (the node's `etc/`).
    pub mirror: Option<PathBuf>,
    /// This node as its peers reach it.
    pub member: Member,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    /// How long a write may wait for a majority before it is refused.
    pub write_timeout: Duration,
}

impl StoreOptions {
    pub fn new(dir: &Path, member: Member) -> StoreOptions {
        StoreOptions {
            dir: dir.to_path_buf(),
            mirror: None,
            member,
            // A leader's death must be over (lease + election, 1.8–2.4 s) well within the
            // HA watchdog's allowance (5 s after a renewal at most 1 s old), or every
            // node's watchdog fires at once (docs/fencing.md, "a store leader change").
            heartbeat: Duration::from_millis(150),
            election_timeout: Duration::from_millis(600),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// The node's identity in the store, kept beside the databases.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    id: NodeId,
    /// Shared by all members; peers present it on every store request.
    secret: String,
    /// Set between throwing the old store away and being admitted: never initialise a
    /// one-member cluster in that state, the leader is about to replicate to us.
    joining: bool,
    /// The databases live in `gen-<generation>/`; a join starts a new generation, so the
    /// old instance's SQLite connections (closing asynchronously, and removing their
    /// `-wal`/`-shm` files by name when they do) never touch the new files.
    #[serde(default)]
    generation: u64,
}

impl Identity {
    fn db_dir(&self, store_dir: &Path) -> PathBuf {
        store_dir.join(format!("gen-{}", self.generation))
    }
}

/// Removes the databases of earlier generations (after a join, or left by a crash).
fn remove_old_generations(store_dir: &Path, current: u64) {
    let Ok(entries) = std::fs::read_dir(store_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = name
            .strip_prefix("gen-")
            .and_then(|g| g.parse::<u64>().ok())
            .is_some_and(|g| g != current);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// What a member hands a joining node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinGrant {
    pub id: NodeId,
    pub secret: String,
    pub cluster_name: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub member: Member,
    pub voter: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub id: NodeId,
    pub name: Option<String>,
    pub leader: Option<NodeId>,
    pub quorate: bool,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub members: Vec<MemberStatus>,
}

impl ClusterStatus {
    pub fn voters(&self) -> usize {
        self.members.iter().filter(|m| m.voter).count()
    }
    pub fn member_named(&self, name: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.member.name == name)
    }
}

/// A forwarded request that got no answer.
enum Forward {
    NotSent(String),
    Lost(String),
}

/// The file that names the cluster (written by `cluster create`).
pub const CLUSTER_FILE: &str = "cluster.cfg";

struct Instance {
    id: NodeId,
    raft: Raft<TypeConfig>,
    shared: Arc<Shared>,
}

pub struct Store {
    opts: StoreOptions,
    transport: Arc<dyn Transport>,
    changes: broadcast::Sender<Change>,
    identity: RwLock<Identity>,
    instance: RwLock<Arc<Instance>>,
    /// When a leader's append (or heartbeat) last reached this node: followers have no
    /// other way to tell that they are still connected to a majority.
    last_leader_contact: std::sync::Mutex<Option<std::time::Instant>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    // /dev/urandom never blocks after boot and never fails on Linux short of no /dev.
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Opens (or creates) the node's store and starts Raft. A node seen for the first
    /// time becomes a one-member cluster; files already in the mirror directory (a node
    /// set up before the store existed) are imported.
    pub async fn open(
        opts: StoreOptions,
        transport: Arc<dyn Transport>,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&opts.dir).map_err(internal)?;
        let identity_path = opts.dir.join("identity.json");
        let (identity, fresh) = match std::fs::read_to_string(&identity_path) {
            Ok(text) => (
                serde_json::from_str(&text)
                    .map_err(|e| internal(format!("{}: {e}", identity_path.display())))?,
                false,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity {
                    id: 1,
                    secret: random_secret(),
                    joining: false,
                    generation: 0,
                };
                (id, true)
            }
            Err(e) => return Err(internal(format!("{}: {e}", identity_path.display()))),
        };
        remove_old_generations(&opts.dir, identity.generation);
        let (changes, _) = broadcast::channel(4096);
        // A fresh store leaves the directory alone: its files are imported below.
        let instance = start_instance(&opts, &transport, &changes, &identity, !fresh).await?;
        let store = Store {
            opts,
            transport,
            changes,
            identity: RwLock::new(identity.clone()),
            instance: RwLock::new(Arc::new(instance)),
            last_leader_contact: std::sync::Mutex::new(None),
        };
        if fresh {
            // A new one-member cluster elects itself within an election timeout.
            store.wait_for_leader(Duration::from_secs(10)).await;
            store.import_mirror().await?;
            write_identity(&store.opts.dir, &identity)?;
        }
        Ok(store)
    }

    async fn import_mirror(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.opts.mirror else {
            return Ok(());
        };
        if !self.instance().shared.read().files.is_empty() {
            return Ok(());
        }
        let ops: Vec<Op> = Mirror::new(dir)
            .existing_files()
            .into_iter()
            .map(|(path, data)| Op::Put {
                path,
                data,
                expect: Expect::Any,
            })
            .collect();
        if !ops.is_empty() {
            self.txn(ops).await?;
        }
        Ok(())
    }

    fn instance(&self) -> Arc<Instance> {
        Arc::clone(&self.instance.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The secret peers must present.
    pub fn secret(&self) -> String {
        self.identity().secret
    }

    pub fn member(&self) -> &Member {
        &self.opts.member
    }

    // ---- reads ------------------------------------------------------------------------

    /// This node's copy: may lag the leader by what is in flight.
    pub fn get(&self, path: &str) -> Option<Entry> {
        self.instance().shared.read().files.get(path).cloned()
    }

    /// Files below `prefix` (a directory, without the trailing `/`, or "" for all).
    pub fn list(&self, prefix: &str) -> Vec<(String, Entry)> {
        let inst = self.instance();
        let tree = inst.shared.read();
        let start = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        tree.files
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The lock's holder and expiry (store time), if anyone holds it.
    pub fn lock_holder(&self, name: &str) -> Option<(String, u64)> {
        let inst = self.instance();
        let tree = inst.shared.read();
        tree.locks
            .get(name)
            .filter(|l| l.expires_ms > tree.clock_ms.max(now_ms()))
            .map(|l| (l.owner.clone(), l.expires_ms))
    }

    /// Locks held now: `(name, owner, expires_ms)`.
    pub fn locks(&self) -> Vec<(String, String, u64)> {
        let inst = self.instance();
        let tree = inst.shared.read();
        let now = tree.clock_ms.max(now_ms());
        tree.locks
            .iter()
            .filter(|(_, l)| l.expires_ms > now)
            .map(|(n, l)| (n.clone(), l.owner.clone(), l.expires_ms))
            .collect()
    }

    /// A read that sees every write acknowledged before it started, wherever it ran.
    pub async fn get_linearizable(&self, path: &str) -> Result<Option<Entry>, StoreError> {
        let inst = self.instance();
        match inst.raft.ensure_linearizable().await {
            Ok(_) => Ok(inst.shared.read().files.get(path).cloned()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                let leader = f
                    .leader_node
                    .ok_or_else(|| StoreError::NoQuorum("no leader is known".into()))?;
                self.forward(&leader, rpc::READ, &path.to_string()).await
            }
            Err(e) => Err(StoreError::NoQuorum(e.to_string())),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    // ---- writes -----------------------------------------------------------------------

    /// All operations or none; returns the log index of the write.
    pub async fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        for op in &ops {
            crate::tree::check_path(op.path()).map_err(StoreError::Invalid)?;
        }
        match self.submit(Command::Txn(ops)).await? {
            Response::Applied { index } => {
                // Read-your-writes on this node.
                self.wait_applied(index).await;
                Ok(index)
            }
            Response::Conflict { path, reason } => Err(StoreError::Conflict { path, reason }),
            other => Err(internal(format!("unexpected answer {other:?}"))),
        }
    }

    pub async fn put(&self, path: &str, data: &str, expect: Expect) -> Result<u64, StoreError> {
        self.txn(vec![Op::Put {
            path: path.into(),
            data: data.into(),
            expect,
        }])
        .await
    }

    pub async fn delete(&self, path: &str, expect: Expect) -> Result<u64, StoreError> {
        self.txn(vec![Op::Delete {
            path: path.into(),
            expect,
        }])
        .await
    }

    /// Takes or renews a lock for `lease`. `Ok(Err((owner, expires)))` when another
    /// holder has it. See docs/fencing.md for how long the holder may rely on it.
    pub async fn lock(
        &self,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Result<u64, (String, u64)>, StoreError> {
        let cmd = Command::LockAcquire {
            name: name.into(),
            owner: owner.into(),
            lease_ms: lease.as_millis() as u64,
        };
        // Taking a lock again is a renewal for its owner, so an attempt whose outcome is
        // unknown (the leader went away meanwhile) is simply sent again to the next one.
        let deadline = tokio::time::Instant::now() + self.opts.write_timeout;
        let answer = loop {
            match self.submit(cmd.clone()).await {
                Err(StoreError::Uncertain(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(self.opts.heartbeat).await;
                }
                answer => break answer?,
            }
        };
        match answer {
            Response::LockGranted { expires_ms } => Ok(Ok(expires_ms)),
            Response::LockHeld { owner, expires_ms } => Ok(Err((owner, expires_ms))),
            other => Err(internal(format!("unexpected answer {other:?}"))),
        }
    }

    pub async fn unlock(&self, name: &str, owner: &str) -> Result<bool, StoreError> {
        let cmd = Command::LockRelease {
            name: name.into(),
            owner: owner.into(),
        };
        match self.submit(cmd).await? {
            Response::LockReleased { released } => Ok(released),
            other => Err(internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// Sends a command to the leader, wherever it is, and waits until it is committed
    /// and applied there. While the leader is being replaced (it died, or this node
    /// still names a dead one) it waits for the next, within the write timeout.
    pub async fn submit(&self, command: Command) -> Result<Response, StoreError> {
        let deadline = tokio::time::Instant::now() + self.opts.write_timeout;
        loop {
            let inst = self.instance();
            if inst.raft.metrics().borrow().current_leader.is_none() {
                self.wait_for_leader(self.opts.election_timeout * 3).await;
            }
            let metrics = inst.raft.metrics().borrow().clone();
            let Some(leader) = metrics.current_leader else {
                return Err(StoreError::NoQuorum(format!(
                    "node '{}' sees no leader: it cannot reach a majority of the cluster, so it only serves reads",
                    self.opts.member.name
                )));
            };
            if leader == inst.id {
                match self.submit_as_leader(command.clone()).await {
                    // Nothing was appended: the write follows the leadership if it moved.
                    Err(StoreError::NoQuorum(_))
                        if inst.raft.metrics().borrow().state != ServerState::Leader
                            && tokio::time::Instant::now() < deadline =>
                    {
                        continue
                    }
                    answer => return answer,
                }
            }
            let node = metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .cloned()
                .ok_or_else(|| internal("the leader is not a member"))?;
            // A leader that stops answering (paused, cut off) is replaced within an
            // election timeout; waiting out the write timeout for its answer would stall
            // the caller (an HA lock renewal) long past that.
            let mut view = inst.raft.metrics();
            let replaced = async move {
                while view.borrow().current_leader == Some(leader) {
                    if view.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            let call = self.forward_once(&node, rpc::WRITE, &command);
            tokio::pin!(call);
            let forwarded = tokio::select! {
                answer = &mut call => answer,
                // A transport that could not send says so at once: only a write still
                // unanswered a heartbeat after the replacement is lost. Without that
                // grace a cut-off node whose election starts during a failed send
                // would report an unknown outcome for a write that never left it.
                () = replaced => match tokio::time::timeout(self.opts.heartbeat, &mut call).await {
                    Ok(answer) => answer,
                    Err(_) => Err(Forward::Lost(format!(
                        "the leader '{}' was replaced while the write was in flight",
                        node.name
                    ))),
                },
            };
            match forwarded {
                Err(Forward::NotSent(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(
                        "leader {} unreachable ({why}); waiting for another",
                        node.name
                    );
                    tokio::time::sleep(self.opts.heartbeat).await;
                }
                Err(Forward::NotSent(why)) => {
                    return Err(StoreError::NoQuorum(format!(
                        "the leader '{}' is not reachable: {why}",
                        node.name
                    )))
                }
                Err(Forward::Lost(why)) => {
                    return Err(StoreError::Uncertain(format!(
                        "the leader '{}' did not answer: {why}",
                        node.name
                    )))
                }
                Ok(result) => return result,
            }
        }
    }

    async fn submit_as_leader(&self, command: Command) -> Result<Response, StoreError> {
        let inst = self.instance();
        self.await_leader_quorum(&inst).await?;
        let req = Request {
            now_ms: now_ms(),
            command,
        };
        match tokio::time::timeout(self.opts.write_timeout, inst.raft.client_write(req)).await {
            Err(_) => Err(StoreError::Uncertain(format!(
                "the write was not committed within {} s: a majority of the cluster is not reachable",
                self.opts.write_timeout.as_secs()
            ))),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(
                StoreError::NoQuorum("leadership changed during the write; retry".into()),
            ),
            Ok(Err(e)) => Err(internal(e)),
        }
    }

    /// Like `check_leader_quorum`, for a change about to be made: a leader elected a moment
    /// ago has no answer from a majority until its first heartbeat round is back, and one
    /// on a loaded machine may hear them late. It is given an election timeout to hear
    /// from them before the change is refused; a leader cut off stays refused.
    async fn await_leader_quorum(&self, inst: &Instance) -> Result<(), StoreError> {
        let grace = tokio::time::Instant::now() + self.opts.election_timeout;
        let mut view = inst.raft.metrics();
        loop {
            match self.check_leader_quorum(inst) {
                Err(StoreError::NoQuorum(_))
                    if view.borrow().state == ServerState::Leader
                        && tokio::time::Instant::now() < grace =>
                {
                    // Metrics are reported on every heartbeat answer; the poll bounds the
                    // wait if none comes.
                    let _ = tokio::time::timeout(self.opts.heartbeat / 3, view.changed()).await;
                }
                checked => return checked,
            }
        }
    }

    /// A leader that has not heard from a majority for an election timeout may have been
    /// replaced on the other side of a partition: refuse rather than wait.
    fn check_leader_quorum(&self, inst: &Instance) -> Result<(), StoreError> {
        let metrics = inst.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return Err(StoreError::NoQuorum(
                "this node is no longer the leader".into(),
            ));
        }
        let voters = metrics.membership_config.membership().voter_ids().count();
        let stale = metrics
            .millis_since_quorum_ack
            .map(|ms| ms > self.opts.election_timeout.as_millis() as u64 * 2)
            .unwrap_or(voters > 1);
        if stale {
            return Err(StoreError::NoQuorum(format!(
                "node '{}' leads but has not heard from a majority of {voters} nodes recently",
                self.opts.member.name
            )));
        }
        Ok(())
    }

    async fn forward<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        target: &Member,
        name: &'static str,
        req: &Req,
    ) -> Result<Resp, StoreError> {
        match self.forward_once(target, name, req).await {
            Ok(result) => result,
            Err(Forward::NotSent(why)) => Err(StoreError::NoQuorum(format!(
                "the leader '{}' is not reachable: {why}",
                target.name
            ))),
            Err(Forward::Lost(why)) => Err(StoreError::Uncertain(format!(
                "the leader '{}' did not answer: {why}",
                target.name
            ))),
        }
    }

    async fn forward_once<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        target: &Member,
        name: &'static str,
        req: &Req,
    ) -> Result<Result<Resp, StoreError>, Forward> {
        let body = serde_json::to_vec(req).map_err(|e| Forward::NotSent(e.to_string()))?;
        let call = self.transport.call(target, name, body);
        let answer = match tokio::time::timeout(self.opts.write_timeout, call).await {
            Err(_) => return Err(Forward::Lost("no answer in time".into())),
            Ok(Err(TransportError::NotSent(why))) => return Err(Forward::NotSent(why)),
            Ok(Err(TransportError::Failed(why))) => return Err(Forward::Lost(why)),
            Ok(Ok(answer)) => answer,
        };
        Ok(serde_json::from_slice(&answer).unwrap_or_else(|e| Err(internal(e))))
    }

    // ---- status and membership -----------------------------------------------------

    pub fn status(&self) -> ClusterStatus {
        let inst = self.instance();
        let metrics = inst.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let quorate = match metrics.current_leader {
            None => false,
            Some(l) if l == inst.id => self.check_leader_quorum(&inst).is_ok(),
            Some(_) => self
                .last_leader_contact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < self.opts.election_timeout * 2),
        };
        ClusterStatus {
            id: inst.id,
            name: self.cluster_name(),
            leader: metrics.current_leader,
            quorate,
            term: metrics.current_term,
            last_applied: metrics.last_applied.map(|l| l.index),
            members: membership
                .nodes()
                .map(|(id, m)| MemberStatus {
                    id: *id,
                    member: m.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
        }
    }

    pub fn cluster_name(&self) -> Option<String> {
        self.get(CLUSTER_FILE).and_then(|e| {
            e.data
                .lines()
                .find_map(|l| l.strip_prefix("name:").map(|n| n.trim().to_string()))
        })
    }

    /// Names this node's one-member cluster (`ferrox cluster create`).
    pub async fn create_cluster(&self, name: &str) -> Result<(), StoreError> {
        if let Some(existing) = self.cluster_name() {
            return Err(StoreError::Invalid(format!(
                "this node is already in cluster '{existing}'"
            )));
        }
        self.put(CLUSTER_FILE, &format!("name: {name}\n"), Expect::Absent)
            .await
            .map(|_| ())
    }

    /// Admits a new member (on the leader; forwarded there otherwise). The grant is
    /// returned at once; the new node catches up and becomes a voter in the background,
    /// as soon as it answers with the secret the grant gave it.
    pub async fn add_member(&self, member: Member) -> Result<JoinGrant, StoreError> {
        let inst = self.instance();
        let leader = inst.raft.metrics().borrow().current_leader;
        if leader != Some(inst.id) {
            let status = self.status();
            let leader = leader
                .and_then(|l| status.members.iter().find(|m| m.id == l))
                .ok_or_else(|| StoreError::NoQuorum("no leader is known".into()))?;
            return self.forward(&leader.member, rpc::ADD_MEMBER, &member).await;
        }
        self.await_leader_quorum(&inst).await?;
        let cluster_name = self.cluster_name().ok_or_else(|| {
            StoreError::Invalid(
                "no cluster here yet: run 'ferrox cluster create NAME' first".into(),
            )
        })?;
        let status = self.status();
        if status.member_named(&member.name).is_some() {
            return Err(StoreError::Invalid(format!(
                "node '{}' already exists in the cluster",
                member.name
            )));
        }
        if let Some(m) = status
            .members
            .iter()
            .find(|m| m.member.address == member.address)
        {
            return Err(StoreError::Invalid(format!(
                "address {} is already used by node '{}'",
                member.address, m.member.name
            )));
        }
        let id = status.members.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        let raft = inst.raft.clone();
        let new = member.clone();
        tokio::spawn(async move {
            if let Err(e) = raft.add_learner(id, new.clone(), true).await {
                tracing::warn!("adding {new} as learner: {e}");
                return;
            }
            let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            if let Err(e) = raft.change_membership(voters, false).await {
                tracing::warn!("making {new} a voter: {e}");
            }
        });
        let mut members: Vec<Member> = status.members.into_iter().map(|m| m.member).collect();
        members.push(member);
        Ok(JoinGrant {
            id,
            secret: self.secret(),
            cluster_name,
            members,
        })
    }

    pub async fn remove_member(&self, name: &str) -> Result<(), StoreError> {
        let inst = self.instance();
        let leader = inst.raft.metrics().borrow().current_leader;
        let status = self.status();
        if leader != Some(inst.id) {
            let leader = leader
                .and_then(|l| status.members.iter().find(|m| m.id == l))
                .ok_or_else(|| StoreError::NoQuorum("no leader is known".into()))?;
            return self
                .forward(&leader.member, rpc::REMOVE_MEMBER, &name.to_string())
                .await;
        }
        self.await_leader_quorum(&inst).await?;
        let target = status
            .member_named(name)
            .ok_or_else(|| StoreError::Invalid(format!("node '{name}' is not a cluster member")))?;
        if status.members.len() == 1 {
            return Err(StoreError::Invalid("cannot remove the last member".into()));
        }
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([target.id]));
        tokio::time::timeout(
            self.opts.write_timeout * 4,
            inst.raft.change_membership(change, false),
        )
        .await
        .map_err(|_| StoreError::NoQuorum("membership change not committed in time".into()))?
        .map_err(internal)?;
        Ok(())
    }

    /// Throws this node's store away and waits to be replicated into the cluster that
    /// granted the join. The caller checked that nothing here is worth keeping.
    pub async fn join(&self, grant: &JoinGrant, timeout: Duration) -> Result<(), StoreError> {
        let identity = Identity {
            id: grant.id,
            secret: grant.secret.clone(),
            joining: true,
            generation: self.identity().generation + 1,
        };
        {
            let old = self.instance();
            old.raft.shutdown().await.map_err(internal)?;
        }
        write_identity(&self.opts.dir, &identity)?;
        let instance =
            start_instance(&self.opts, &self.transport, &self.changes, &identity, true).await?;
        let raft = instance.raft.clone();
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = identity.clone();
        *self.instance.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(instance);
        // Admitted means a voter in a membership this node has applied, not merely
        // appended: only then does it hold the cluster's history up to its own admission
        // (its name, its files), so a join that returns leaves a node that serves them.
        let admitted = raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .any(|v| v == grant.id)
                        && m.current_leader.is_some()
                        && m.last_applied >= *m.membership_config.log_id()
                },
                "admitted as voter",
            )
            .await;
        if admitted.is_err() {
            return Err(StoreError::Internal(format!(
                "the cluster did not admit this node within {} s",
                timeout.as_secs()
            )));
        }
        let done = Identity {
            joining: false,
            ..identity
        };
        write_identity(&self.opts.dir, &done)?;
        remove_old_generations(&self.opts.dir, done.generation);
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = done;
        Ok(())
    }

    /// Waits (up to the write timeout) until this node has applied log `index`: after a
    /// write forwarded to the leader, or when another node says it wrote something this
    /// node is about to read. False when it did not get there in time.
    pub async fn wait_applied(&self, index: u64) -> bool {
        self.instance()
            .raft
            .wait(Some(self.opts.write_timeout))
            .applied_index_at_least(Some(index), "local apply")
            .await
            .is_ok()
    }

    /// Waits until this node knows a leader (after start, or after a partition heals).
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        self.instance()
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
            .is_ok()
    }

    pub async fn shutdown(&self) {
        let _ = self.instance().raft.shutdown().await;
    }

    // ---- the peer side ---------------------------------------------------------------

    /// Answers a peer request (the transport has checked the secret). The answer is a
    /// JSON `Result`, whatever happened.
    pub async fn serve_rpc(&self, name: &str, body: &[u8]) -> Vec<u8> {
        let inst = self.instance();
        fn answer<T: Serialize, E: Serialize>(r: Result<T, E>) -> Vec<u8> {
            serde_json::to_vec(&r).unwrap_or_default()
        }
        fn bad(e: impl std::fmt::Display) -> Vec<u8> {
            answer::<(), _>(Err(StoreError::Invalid(format!("malformed request: {e}"))))
        }
        match name {
            rpc::APPEND => match serde_json::from_slice(body) {
                Ok(req) => {
                    let r = inst.raft.append_entries(req).await;
                    if matches!(r, Ok(openraft::raft::AppendEntriesResponse::Success)) {
                        *self
                            .last_leader_contact
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
                    }
                    answer(r.map_err(|e| e.to_string()))
                }
                Err(e) => bad(e),
            },
            rpc::VOTE => match serde_json::from_slice(body) {
                Ok(req) => answer(inst.raft.vote(req).await.map_err(|e| e.to_string())),
                Err(e) => bad(e),
            },
            rpc::SNAPSHOT => match serde_json::from_slice::<SnapshotTransfer>(body) {
                Ok(t) => {
                    let snapshot = Snapshot {
                        meta: t.meta,
                        snapshot: Box::new(t.data.into_bytes()),
                    };
                    let r = inst
                        .raft
                        .install_full_snapshot(t.vote, snapshot)
                        .await
                        .map_err(|e| e.to_string());
                    answer(r)
                }
                Err(e) => bad(e),
            },
            rpc::WRITE => match serde_json::from_slice::<Command>(body) {
                Ok(cmd) => answer(self.submit_as_leader(cmd).await),
                Err(e) => bad(e),
            },
            rpc::READ => match serde_json::from_slice::<String>(body) {
                Ok(path) => {
                    let r = match inst.raft.ensure_linearizable().await {
                        Ok(_) => Ok(inst.shared.read().files.get(&path).cloned()),
                        Err(e) => Err(StoreError::NoQuorum(e.to_string())),
                    };
                    answer(r)
                }
                Err(e) => bad(e),
            },
            rpc::ADD_MEMBER => match serde_json::from_slice::<Member>(body) {
                Ok(m) => answer(self.add_member(m).await),
                Err(e) => bad(e),
            },
            rpc::REMOVE_MEMBER => match serde_json::from_slice::<String>(body) {
                Ok(n) => answer(self.remove_member(&n).await),
                Err(e) => bad(e),
            },
            other => bad(format!("unknown store request '{other}'")),
        }
    }
}

fn write_identity(dir: &Path, id: &Identity) -> Result<(), StoreError> {
    let text = serde_json::to_string_pretty(id).map_err(internal)?;
    ferrox_types::fsutil::write_atomic(&dir.join("identity.json"), text.as_bytes(), 0o600)
        .map_err(internal)
}

async fn start_instance(
    opts: &StoreOptions,
    transport: &Arc<dyn Transport>,
    changes: &broadcast::Sender<Change>,
    identity: &Identity,
    resync_mirror: bool,
) -> Result<Instance, StoreError> {
    let db_dir = identity.db_dir(&opts.dir);
    std::fs::create_dir_all(&db_dir).map_err(internal)?;
    let log = LogStore::open(&db_dir.join("log.db")).map_err(internal)?;
    let sm = StateMachine::open(
        &db_dir.join("state.db"),
        opts.mirror.as_deref().map(Mirror::new),
        resync_mirror,
        changes.clone(),
    )
    .map_err(internal)?;
    let shared = Arc::clone(&sm.shared);
    let election = opts.election_timeout.as_millis() as u64;
    let config = Config {
        cluster_name: "ferrox".into(),
        heartbeat_interval: opts.heartbeat.as_millis() as u64,
        election_timeout_min: election,
        election_timeout_max: election * 2,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
    .validate()
    .map_err(internal)?;
    let network = Network {
        transport: Arc::clone(transport),
    };
    let raft = Raft::new(identity.id, Arc::new(config), network, log, sm)
        .await
        .map_err(internal)?;
    if !identity.joining && !raft.is_initialized().await.map_err(internal)? {
        let members = BTreeMap::from([(identity.id, opts.member.clone())]);
        raft.initialize(members).await.map_err(internal)?;
    }
    Ok(Instance {
        id: identity.id,
        raft,
        shared,
    })
}
