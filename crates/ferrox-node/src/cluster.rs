//! This node as a cluster member: the store's transport over HTTPS (certificates pinned
//! by the fingerprints in the membership, requests authenticated by the cluster secret),
//! API proxying to other nodes, and the watch that keeps this node's caches in line with
//! what other nodes write. The routes other nodes call are in `peers`.

use crate::Node;
use ferrox_api::router::{RawRequest, RawResponse};
use ferrox_api::ApiError;
use ferrox_store::{
    Change, Entry, Expect, Member, Op, RpcFuture, Store, StoreError, Transport, TransportError,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::runtime::Handle;

/// Header carrying the cluster secret on node-to-node requests.
pub const SECRET_HEADER: &str = "x-ferrox-cluster";

/// How long a peer may take to answer a Raft message before it counts as unreachable.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Snapshots carry the whole tree.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer that does not accept a connection by then counts as down.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Aggregating listings must not hang on a dead node.
const PEER_READ_TIMEOUT: Duration = Duration::from_millis(1500);

pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { path, reason } => ApiError::new(500, format!("{path}: {reason}")),
        StoreError::NoQuorum(m) => ApiError::new(500, format!("cluster not ready - {m}")),
        StoreError::Uncertain(m) => ApiError::new(
            500,
            format!("cluster not ready - {m} (the change may or may not have been applied)"),
        ),
        StoreError::Invalid(m) => ApiError::new(400, m),
        StoreError::Internal(m) => ApiError::internal(m),
    }
}

/// The store as blocking code (API handlers, task workers) uses it.
pub struct ConfigTree {
    pub store: Arc<Store>,
    pub rt: Handle,
}

/// A config document as read from the tree, for a compare-and-set write back
/// (`ConfigTree::load`, `ConfigTree::save`): its text (empty when the file does not exist)
/// and whether it existed.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: String,
    pub text: String,
    present: bool,
}

impl Document {
    /// Proxmox VE's `digest` of the document (SHA-1 of its text).
    pub fn digest(&self) -> String {
        ferrox_store::digest(&self.text)
    }

    /// Refuses the change when the client's `digest` names another version.
    pub fn check_digest(&self, client: Option<&str>) -> Result<(), ApiError> {
        match client {
            Some(d) if d != self.digest() => Err(ApiError::param(
                "digest",
                "detected modified configuration - file changed by other user? Try again.",
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn expect(&self) -> Expect {
        if self.present {
            Expect::Digest(self.digest())
        } else {
            Expect::Absent
        }
    }
}

impl ConfigTree {
    /// Reads a config document for a read-modify-write.
    pub fn load(&self, path: impl Into<String>) -> Document {
        let path = path.into();
        let entry = self.get(&path);
        Document {
            path,
            present: entry.is_some(),
            text: entry.map(|e| e.data).unwrap_or_default(),
        }
    }

    /// Writes `text` in place of `doc`, only if nobody changed it since it was loaded.
    pub fn save(&self, doc: &Document, text: &str) -> Result<u64, ApiError> {
        self.put(&doc.path, text, doc.expect()).map_err(store_error)
    }

    pub fn get(&self, path: &str) -> Option<Entry> {
        self.store.get(path)
    }

    pub fn list(&self, prefix: &str) -> Vec<(String, Entry)> {
        self.store.list(prefix)
    }

    pub fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.rt.block_on(self.store.txn(ops))
    }

    pub fn put(&self, path: &str, data: &str, expect: Expect) -> Result<u64, StoreError> {
        self.rt.block_on(self.store.put(path, data, expect))
    }

    pub fn delete(&self, path: &str, expect: Expect) -> Result<u64, StoreError> {
        self.rt.block_on(self.store.delete(path, expect))
    }

    /// See `Store::wait_applied`.
    pub fn wait_applied(&self, index: u64) -> bool {
        self.rt.block_on(self.store.wait_applied(index))
    }
}

/// Accounts live in the store: reads come from this node's applied state (which a write
/// from this node has reached before it returns), writes are one compare-and-set
/// transaction.
impl ferrox_api::auth::AccountFiles for ConfigTree {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        Ok(self.get(path).map(|e| e.data))
    }

    fn read_latest(&self, path: &str) -> Result<Option<String>, String> {
        self.rt
            .block_on(self.store.get_linearizable(path))
            .map(|e| e.map(|e| e.data))
            .map_err(|e| store_error(e).message)
    }

    fn write(
        &self,
        files: &[ferrox_api::auth::FileWrite<'_>],
    ) -> Result<(), ferrox_api::auth::WriteError> {
        use ferrox_api::auth::WriteError;
        let ops = files
            .iter()
            .map(|f| Op::Put {
                path: f.path.to_string(),
                data: f.data.to_string(),
                expect: match f.expected {
                    Some(old) => Expect::Digest(ferrox_store::digest(old)),
                    None => Expect::Absent,
                },
            })
            .collect();
        match self.txn(ops) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { path, .. }) => Err(WriteError::Conflict(path)),
            Err(e) => Err(WriteError::Failed(store_error(e).message)),
        }
    }
}

/// HTTPS to peers with one pinned agent per certificate fingerprint.
#[derive(Default)]
pub struct Peers {
    store: OnceLock<Weak<Store>>,
    agents: Mutex<HashMap<String, ureq::Agent>>,
}

impl Peers {
    pub fn attach(&self, store: &Arc<Store>) {
        let _ = self.store.set(Arc::downgrade(store));
    }

    fn secret(&self) -> String {
        self.store
            .get()
            .and_then(Weak::upgrade)
            .map(|s| s.secret())
            .unwrap_or_default()
    }

    pub fn agent(&self, fingerprint: &str) -> Result<ureq::Agent, String> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = agents.get(fingerprint) {
            return Ok(a.clone());
        }
        let pin =
            ferrox_client::pinned::parse_fingerprint(fingerprint).map_err(|e| e.to_string())?;
        let agent = ferrox_client::pinned::tls_agent_builder(Some(pin))
            .map_err(|e| e.to_string())?
            .timeout_connect(PEER_CONNECT_TIMEOUT)
            .build();
        agents.insert(fingerprint.to_string(), agent.clone());
        Ok(agent)
    }

    /// A node-to-node request (blocking).
    pub fn request(
        &self,
        member: &Member,
        method: &str,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let agent = self
            .agent(&member.fingerprint)
            .map_err(TransportError::NotSent)?;
        let url = format!("https://{}{path}", member.address);
        let req = agent
            .request(method, &url)
            .set(SECRET_HEADER, &self.secret())
            .timeout(timeout);
        let resp = if body.is_empty() {
            req.call()
        } else {
            req.set("content-type", "application/json").send_bytes(body)
        };
        match resp {
            Ok(r) => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut out)
                    .map_err(|e| TransportError::Failed(e.to_string()))?;
                Ok(out)
            }
            // Refused before handling (a wrong secret is refused before anything runs).
            Err(ureq::Error::Status(code, r)) => Err(TransportError::NotSent(format!(
                "{} answered {code} {}",
                member.name,
                r.status_text()
            ))),
            Err(ureq::Error::Transport(t))
                if matches!(
                    t.kind(),
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
                ) =>
            {
                Err(TransportError::NotSent(format!("{}: {t}", member.name)))
            }
            Err(e) => Err(TransportError::Failed(format!("{}: {e}", member.name))),
        }
    }
}

/// The store's transport: Raft messages as HTTPS posts to `/ferrox/store/{rpc}`.
pub struct PeerTransport(pub Arc<Peers>);

impl Transport for PeerTransport {
    fn call(&self, target: &Member, rpc: &'static str, body: Vec<u8>) -> RpcFuture {
        let timeout = if rpc == ferrox_store::rpc::SNAPSHOT {
            SNAPSHOT_TIMEOUT
        } else {
            RPC_TIMEOUT
        };
        let target = target.clone();
        let peers = Arc::clone(&self.0);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                peers.request(
                    &target,
                    "POST",
                    &format!("/ferrox/store/{rpc}"),
                    &body,
                    timeout,
                )
            })
            .await
            .map_err(|e| TransportError::Failed(e.to_string()))?
        })
    }
}

/// A node-to-node `GET` of `path` on `member`, its answer read as `T`.
pub fn peer_get<T: serde::de::DeserializeOwned>(
    node: &Node,
    member: &Member,
    path: &str,
) -> Result<T, String> {
    let body = node
        .peers
        .request(member, "GET", path, &[], PEER_READ_TIMEOUT)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("answer of {}: {e}", member.name))
}

/// This node's view of another member's local resources, or why it has none.
pub fn peer_resources(
    node: &Node,
    member: &Member,
    kind: Option<&str>,
) -> Result<Vec<ferrox_api_types::cluster::Resource>, String> {
    peer_get(
        node,
        member,
        &format!("/ferrox/local-resources/{}", kind.unwrap_or("all")),
    )
}

/// Asks every other member in parallel (each with a short timeout); `None` for those
/// that do not answer.
pub fn ask_members<T: Send>(
    node: &Node,
    ask: impl Fn(&Member) -> Result<T, String> + Sync,
) -> Vec<(Member, Option<T>)> {
    let others = other_members(node);
    std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter()
            .map(|m| {
                let ask = &ask;
                scope.spawn(move || ask(m).ok())
            })
            .collect();
        others
            .iter()
            .cloned()
            .zip(handles.into_iter().map(|h| h.join().ok().flatten()))
            .collect()
    })
}

/// Forwards an API request to the member `target` (see `ApiState::proxy`).
pub fn proxy(node: &Node, target: &str, req: &RawRequest) -> Option<RawResponse> {
    let status = node.store.status();
    let member = status.member_named(target)?.member.clone();
    if req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    {
        return Some(websocket_proxy(target, &member, req));
    }
    let agent = match node.peers.agent(&member.fingerprint) {
        Ok(a) => a,
        Err(e) => return Some(unreachable(target, &e)),
    };
    let url = match &req.query {
        Some(q) => format!("https://{}{}?{q}", member.address, req.path),
        None => format!("https://{}{}", member.address, req.path),
    };
    let mut r = agent
        .request(&req.method, &url)
        .timeout(Duration::from_secs(600));
    for (k, v) in &req.headers {
        if matches!(
            k.as_str(),
            "authorization" | "cookie" | "csrfpreventiontoken" | "content-type" | "accept"
        ) {
            r = r.set(k, v);
        }
    }
    let result = match &req.upload {
        Some(upload) => match multipart_body(req, upload) {
            Ok((content_type, body)) => r.set("content-type", &content_type).send(body),
            Err(e) => return Some(unreachable(target, &e)),
        },
        None if req.body.is_empty() => r.call(),
        None => r.send_bytes(&req.body),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Some(unreachable(target, &e.to_string())),
    };
    let status_code = resp.status();
    let reason = Some(resp.status_text().to_string());
    let content_type = if resp.content_type().contains("javascript") {
        "application/javascript;charset=UTF-8"
    } else {
        "application/json;charset=UTF-8"
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut resp.into_reader(), &mut body) {
        return Some(unreachable(target, &e.to_string()));
    }
    Some(RawResponse {
        status: status_code,
        // The node that answered has already waited for a failed authentication.
        delay: None,
        reason,
        content_type,
        body,
        upgrade: None,
    })
}

/// An upload for another node as a multipart body again: the form fields, then the
/// stored file, streamed from disk.
fn multipart_body(
    req: &RawRequest,
    upload: &ferrox_api::router::Upload,
) -> Result<(String, impl std::io::Read), String> {
    let boundary = format!("ferrox-{:016x}", rand::random::<u64>());
    let quote_ok = |s: &str| !s.contains(['"', '\r', '\n']);
    let mut head = String::new();
    for (k, v) in form_urlencoded::parse(&req.body) {
        if k == upload.field {
            continue;
        }
        if !quote_ok(&k) {
            return Err(format!("form field name '{k}' cannot be forwarded"));
        }
        head.push_str(&format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    if !quote_ok(&upload.field) || !quote_ok(&upload.file_name) {
        return Err("the uploaded file's name cannot be forwarded".into());
    }
    head.push_str(&format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"{}\"; filename=\"{}\"\r\ncontent-type: application/octet-stream\r\n\r\n",
        upload.field, upload.file_name
    ));
    let file = std::fs::File::open(&upload.path).map_err(|e| format!("the upload: {e}"))?;
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = std::io::Read::chain(
        std::io::Read::chain(std::io::Cursor::new(head.into_bytes()), file),
        std::io::Cursor::new(tail.into_bytes()),
    );
    Ok((format!("multipart/form-data; boundary={boundary}"), body))
}

/// A console websocket for a guest on another node is relayed to that node, which checks
/// the caller and the ticket itself.
fn websocket_proxy(target: &str, member: &Member, req: &RawRequest) -> RawResponse {
    let tls = match ferrox_client::pinned::parse_fingerprint(&member.fingerprint)
        .and_then(|pin| ferrox_client::pinned::tls_client_config(Some(pin)))
    {
        Ok(tls) => tls,
        Err(e) => return unreachable(target, &e.to_string()),
    };
    let path_and_query = match &req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.clone(),
    };
    let headers = req
        .headers
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "authorization" | "cookie"))
        .cloned()
        .collect();
    RawResponse {
        upgrade: Some(ferrox_api::websocket::Upgrade::Peer(
            ferrox_api::websocket::PeerTarget {
                address: member.address.clone(),
                path_and_query,
                tls,
                headers,
            },
        )),
        ..RawResponse::json(200, None, String::new())
    }
}

/// Proxmox VE's answer for a node it cannot reach.
fn unreachable(target: &str, why: &str) -> RawResponse {
    tracing::info!("proxy to {target}: {why}");
    RawResponse::json(
        595,
        Some(format!(
            "No route to host - node '{target}' is not reachable"
        )),
        r#"{"data":null}"#.into(),
    )
}

/// Keeps this node's caches (guest configs, accounts) in line with the store.
pub fn spawn_watch(node: &Arc<Node>) {
    let mut changes = node.store.subscribe();
    let weak = Arc::downgrade(node);
    node.rt.spawn(async move {
        loop {
            let change = changes.recv().await;
            let Some(node) = weak.upgrade() else { return };
            let (guests, accounts) = match &change {
                Ok(Change::Put(p)) | Ok(Change::Delete(p)) => (
                    crate::guests::parse_config_path(p)
                        .filter(|(owner, _)| *owner == node.opts.node_name)
                        .map(|(_, vmid)| Some(vmid)),
                    p == "user.cfg" || p == "domains.cfg" || p.starts_with("priv/"),
                ),
                // Reset, or we fell behind: re-read everything.
                Ok(Change::Reset) | Err(_) => (Some(None), true),
            };
            if guests.is_none() && !accounts {
                continue;
            }
            let _ = tokio::task::spawn_blocking(move || {
                match guests {
                    Some(Some(vmid)) => node.guests.refresh(vmid),
                    Some(None) => node.guests.refresh_all(),
                    None => {}
                }
                if accounts {
                    if let Err(e) = node.auth.reload() {
                        tracing::warn!("reloading accounts: {e}");
                    }
                }
            })
            .await;
        }
    });
}

// ---- membership and where guests are ------------------------------------------------

/// Every member but this node.
pub fn other_members(node: &Node) -> Vec<Member> {
    node.store
        .status()
        .members
        .into_iter()
        .map(|m| m.member)
        .filter(|m| m.name != node.opts.node_name)
        .collect()
}

/// The vmids of every node's guests, from the store: `(vmid, node)`.
pub fn cluster_vmids(node: &Node) -> Vec<(u32, String)> {
    node.tree
        .list("nodes")
        .iter()
        .filter_map(|(path, _)| {
            crate::guests::parse_config_path(path).map(|(n, vmid)| (vmid, n.to_string()))
        })
        .collect()
}

/// The node that owns guest `vmid`, anywhere in the cluster.
pub fn vmid_owner(node: &Node, vmid: u32) -> Option<String> {
    other_members(node)
        .into_iter()
        .map(|m| m.name)
        .chain([node.opts.node_name.clone()])
        .find(|n| {
            node.tree
                .get(&crate::guests::config_path(n, vmid))
                .is_some()
        })
}
