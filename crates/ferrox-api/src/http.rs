//! The HTTPS server: axum on rustls, every request handed to `Api::handle` on the
//! blocking pool (handlers do file and QMP IO synchronously).

use crate::router::{Api, ApiState, RawRequest, RawResponse};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// Proxmox VE's request body limit.
const MAX_BODY: usize = 512 * 1024;

fn to_response(raw: RawResponse) -> Response<Body> {
    let mut resp = Response::new(Body::from(raw.body));
    *resp.status_mut() =
        StatusCode::from_u16(raw.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(raw.content_type));
    headers.insert("server", HeaderValue::from_static("pve-api-daemon/3.0"));
    headers.insert("cache-control", HeaderValue::from_static("max-age=0"));
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    if let Some(reason) = raw.reason {
        // Clients (proxmoxer) show only the reason phrase, so it carries the message.
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
            resp.extensions_mut().insert(phrase);
        }
    }
    resp
}

async fn handle<S: ApiState>(State(api): State<Arc<Api<S>>>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return to_response(RawResponse::json(
                413,
                Some("request too large".into()),
                String::new(),
            ))
        }
    };
    let raw = RawRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(String::from),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect(),
        body,
    };
    let result = tokio::task::spawn_blocking(move || api.handle(&raw)).await;
    match result {
        Ok(resp) => to_response(resp),
        Err(_) => to_response(RawResponse::json(
            500,
            Some("internal error".into()),
            String::new(),
        )),
    }
}

/// TLS material of the server (PEM).
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Serves the API over HTTPS on `listener` until the process ends; `extra` holds routes
/// outside `/api2` (the node-to-node protocol).
pub async fn serve<S: ApiState>(
    api: Arc<Api<S>>,
    listener: std::net::TcpListener,
    tls: TlsIdentity,
    extra: axum::Router,
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert_pem, tls.key_pem).await?;
    let app = axum::Router::new()
        .fallback(handle::<S>)
        .with_state(api)
        .merge(extra);
    listener.set_nonblocking(true)?;
    // Without TCP_NODELAY, small responses wait on the peer's delayed ACK (~40 ms spikes).
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
