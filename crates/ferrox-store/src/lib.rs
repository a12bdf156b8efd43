//! The cluster store: Proxmox VE's `/etc/pve` tree (`datacenter.cfg`, `storage.cfg`,
//! `user.cfg`, `ha/*`, `nodes/<node>/qemu-server/<vmid>.conf`, ...) replicated on every
//! node with openraft, durable in SQLite; compare-and-set writes by digest, watches,
//! leased cluster-wide locks, membership and quorum.
//!
//! The split follows openraft's examples: `tree` is the state and its one transition
//! function, `sqlite` the durable log and state machine, `network` the peer protocol over
//! a transport the daemon supplies, `store` the API the daemon uses. This crate does not
//! open sockets or know HTTP, and it never decides anything about guests.

pub mod history;
pub mod mirror;
pub mod network;
pub mod sqlite;
pub mod store;
pub mod testing;
pub mod tree;

pub use network::{rpc, RpcFuture, Transport, TransportError};
pub use store::{ClusterStatus, JoinGrant, MemberStatus, Store, StoreError, StoreOptions};
pub use tree::{digest, Change, Command, Entry, Expect, Op, Request, Response};

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// A cluster member as Raft knows it: its node name, where its API listens, and the
/// SHA-256 fingerprint of its TLS certificate (peers pin it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub address: String,
    pub fingerprint: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Vec<u8>,
);
