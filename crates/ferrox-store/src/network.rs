//! Raft's network, over whatever `Transport` the daemon provides (HTTPS between nodes).
//! The store only knows request names and JSON bodies; connections, TLS pinning and
//! authentication are the transport's business.

use crate::{Member, NodeId, TypeConfig};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why a call to a peer failed before the peer could answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request certainly did not reach the peer (no connection): safe to retry.
    #[error("{0}")]
    NotSent(String),
    /// It may or may not have been handled.
    #[error("{0}")]
    Failed(String),
}

pub type RpcFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send>>;

/// Carries one request to a peer and brings back its answer.
pub trait Transport: Send + Sync + 'static {
    fn call(&self, target: &Member, rpc: &'static str, body: Vec<u8>) -> RpcFuture;
}

/// Names of the peer requests (`Store::serve_rpc` answers them).
pub mod rpc {
    pub const APPEND: &str = "append";
    pub const VOTE: &str = "vote";
    pub const SNAPSHOT: &str = "snapshot";
    pub const WRITE: &str = "write";
    pub const READ: &str = "read";
    pub const ADD_MEMBER: &str = "add-member";
    pub const REMOVE_MEMBER: &str = "remove-member";
}

#[derive(Serialize, Deserialize)]
pub struct SnapshotTransfer {
    pub vote: Vote<NodeId>,
    pub meta: SnapshotMeta<NodeId, Member>,
    pub data: String,
}

pub struct Network {
    pub transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        Connection {
            transport: Arc::clone(&self.transport),
            target,
            member: node.clone(),
        }
    }
}

pub struct Connection {
    transport: Arc<dyn Transport>,
    target: NodeId,
    member: Member,
}

impl Connection {
    /// Peers answer `Result<T, String>`: openraft's own error types do not all
    /// deserialize, and a remote failure is handled like a network failure anyway.
    async fn call<Req, Resp, E>(
        &self,
        rpc: &'static str,
        req: &Req,
    ) -> Result<Resp, RPCError<NodeId, Member, E>>
    where
        Req: Serialize,
        Resp: for<'de> Deserialize<'de>,
        E: std::error::Error,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self
            .transport
            .call(&self.member, rpc, body)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let result: Result<Resp, String> = serde_json::from_slice(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::Network(NetworkError::new(&TransportError::Failed(format!(
                "node {}: {e}",
                self.target
            ))))
        })
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(rpc::APPEND, &req).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(rpc::VOTE, &req).await
    }

    #[allow(deprecated)]
    async fn install_snapshot(
        &mut self,
        _req: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // With generic snapshot data openraft sends whole snapshots (`full_snapshot`).
        Err(RPCError::Network(NetworkError::new(
            &TransportError::Failed("chunked snapshots are not used".into()),
        )))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let transfer = SnapshotTransfer {
            vote,
            meta: snapshot.meta.clone(),
            data: String::from_utf8_lossy(&snapshot.snapshot).into_owned(),
        };
        match self
            .call::<_, _, RaftError<NodeId>>(rpc::SNAPSHOT, &transfer)
            .await
        {
            Ok(resp) => Ok(resp),
            Err(RPCError::Unreachable(e)) => Err(StreamingError::Unreachable(e)),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }
}
