//! The node-to-node routes outside `/api2` (the store's messages, this node's resource
//! rows, the target side of a live migration), each request authenticated by the cluster
//! secret before its body is read.

use crate::cluster::SECRET_HEADER;
use crate::Node;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use std::sync::Arc;

fn secret_ok(node: &Node, headers: &HeaderMap) -> bool {
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = node.store.secret();
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn store_rpc(
    State(node): State<Arc<Node>>,
    Path(rpc): Path<String>,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    (StatusCode::OK, node.store.serve_rpc(&rpc, &body).await)
}

async fn local_resources(
    State(node): State<Arc<Node>>,
    Path(kind): Path<String>,
) -> (StatusCode, Vec<u8>) {
    let json = tokio::task::spawn_blocking(move || {
        let kind = (kind != "all").then_some(kind.as_str());
        crate::resources::local_resources(&node, kind, &|_, _, _| true)
    })
    .await
    .unwrap_or_default();
    (StatusCode::OK, json.into_bytes())
}

/// How many of its tasks a node contributes to the cluster's task list (Proxmox VE keeps
/// a similar window per node).
pub const RECENT_TASKS: usize = 50;

/// This node's recent tasks (for `/cluster/tasks` and `/cluster/log` on any member).
async fn local_tasks(State(node): State<Arc<Node>>) -> (StatusCode, Vec<u8>) {
    let json = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&node.tasks.recent(RECENT_TASKS)).unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    (StatusCode::OK, json)
}

/// This node's current metrics (for `/cluster/metrics/export` on any member).
async fn local_metrics(State(node): State<Arc<Node>>) -> (StatusCode, Vec<u8>) {
    let json = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&crate::host::metrics::export(&node)).unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    (StatusCode::OK, json)
}

/// The target's side of a live migration (see `migrate`).
async fn migration_step(
    State(node): State<Arc<Node>>,
    Path((vmid, action)): Path<(u32, String)>,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let result = tokio::task::spawn_blocking(move || {
        let mut args: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        // Steps without disks or volumes (and older peers) send none: an empty list.
        for list in ["disks", "volumes"] {
            if args[list].is_null() {
                args[list] = serde_json::json!([]);
            }
        }
        // The target watches an incoming guest by its config on the source.
        let source = args["source"]
            .as_str()
            .filter(|s| ferrox_types::format::node_name(s).is_ok())
            .ok_or_else(|| "source: not a node name".to_string());
        match action.as_str() {
            "incoming" => match (source, serde_json::from_value(args["disks"].clone())) {
                (Ok(source), Ok(disks)) => node.prepare_incoming(vmid, source, disks),
                (Err(e), _) => Err(e),
                (_, Err(e)) => Err(format!("disks: {e}")),
            },
            "receive" => match (source, serde_json::from_value(args["disks"].clone())) {
                (Ok(source), Ok(disks)) => node.receive_disks(vmid, source, disks),
                (Err(e), _) => Err(e),
                (_, Err(e)) => Err(format!("disks: {e}")),
            },
            "received" => node.disks_received(vmid),
            "resume" => node.resume_incoming(vmid, args["index"].as_u64().unwrap_or(0)),
            "abort" => match serde_json::from_value(args["volumes"].clone()) {
                Ok(volumes) => node.abort_incoming(vmid, volumes),
                Err(e) => Err(format!("volumes: {e}")),
            },
            other => Err(format!("unknown migration step '{other}'")),
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    (
        StatusCode::OK,
        serde_json::to_vec(&result).unwrap_or_default(),
    )
}

/// Checks the cluster secret from the headers before any handler reads a body: a
/// stranger never gets a node to buffer a snapshot-sized request.
async fn require_secret(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !secret_ok(&node, req.headers()) {
        return (StatusCode::UNAUTHORIZED, "bad cluster secret").into_response();
    }
    next.run(req).await
}

/// Routes outside `/api2`: the node-to-node protocol.
pub fn peer_router(node: Arc<Node>) -> axum::Router {
    axum::Router::new()
        .route("/ferrox/store/{rpc}", post(store_rpc))
        .route("/ferrox/local-resources/{kind}", get(local_resources))
        .route("/ferrox/local-tasks", get(local_tasks))
        .route("/ferrox/local-metrics", get(local_metrics))
        .route("/ferrox/migrate/{vmid}/{action}", post(migration_step))
        .layer(DefaultBodyLimit::max(512 << 20))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&node),
            require_secret,
        ))
        .with_state(node)
}
