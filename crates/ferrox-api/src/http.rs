//! The HTTPS server: axum on rustls, every request handed to `Api::handle` on the
//! blocking pool (handlers do file and QMP IO synchronously).
//!
//! What keeps one client from taking the node away from everyone else: a TLS handshake
//! and the request headers must arrive within their timeouts, connections above a limit
//! are answered `503` and closed, and the 3 s delay of a failed authentication waits on a
//! timer, not on a thread of the blocking pool.

use crate::router::{Api, ApiState, RawRequest, RawResponse};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum_server::accept::Accept;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Proxmox VE's request body limit.
const MAX_BODY: usize = 512 * 1024;

/// Limits of the listener; `Default` is what the daemon uses.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Open connections at most; more are answered `503` and closed.
    pub max_connections: usize,
    /// A client must finish the TLS handshake within this time.
    pub handshake_timeout: Duration,
    /// ...and send a request's headers within this time (also how long an idle
    /// keep-alive connection stays open).
    pub header_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
        }
    }
}

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
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, body) = req.into_parts();
    let websocket = if parts
        .headers
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => Some(ws),
            Err(rejection) => return rejection.into_response(),
        }
    } else {
        None
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
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
        peer,
    };
    let result = tokio::task::spawn_blocking(move || api.handle(&raw)).await;
    match result {
        Ok(mut resp) => {
            if let Some(delay) = resp.delay {
                tokio::time::sleep(delay).await;
            }
            match (resp.upgrade.take(), websocket) {
                (Some(upgrade), Some(ws)) => ws
                    // noVNC asks for `binary`; xterm.js for none.
                    .protocols(["binary"])
                    .on_upgrade(move |socket| crate::websocket::relay(socket, upgrade))
                    .into_response(),
                (Some(_), None) => to_response(RawResponse::json(
                    400,
                    Some("websocket upgrade required".into()),
                    r#"{"data":null,"message":"websocket upgrade required\n"}"#.into(),
                )),
                (None, _) => to_response(resp),
            }
        }
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

/// A connection that holds one of the listener's connection permits while it is open.
pub struct Limited<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Wraps the TLS acceptor: a connection takes a permit before its handshake; without one
/// it still gets a (short) handshake so that the client can read a plain `503` answer.
#[derive(Clone)]
pub struct LimitAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    limit: usize,
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 too many connections\r\ncontent-type: text/plain\r\ncontent-length: 49\r\nconnection: close\r\n\r\nthe node has too many open connections: try again";

impl<A, I, Svc> Accept<I, Svc> for LimitAcceptor<A>
where
    A: Accept<I, Svc> + Clone + Send + Sync + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Future: Send + 'static,
    I: Send + 'static,
    Svc: Send + 'static,
{
    type Stream = Limited<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: Svc) -> Self::Future {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        let inner = self.inner.clone();
        let limit = self.limit;
        Box::pin(async move {
            match permit {
                Some(permit) => {
                    let (stream, service) = inner.accept(stream, service).await?;
                    Ok((
                        Limited {
                            inner: stream,
                            _permit: permit,
                        },
                        service,
                    ))
                }
                None => {
                    tracing::warn!("connection refused: {limit} connections are open");
                    let (mut stream, _) = inner.accept(stream, service).await?;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        stream.write_all(REFUSAL).await?;
                        stream.shutdown().await
                    })
                    .await;
                    Err(io::Error::other("connection limit reached"))
                }
            }
        })
    }
}

/// Raises the soft limit of open files to the hard limit, so that the connection limit,
/// not the 1 024 file descriptors many systems start with, is what bounds the server.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    if let Some(max) = current.maximum {
        if current.current != Some(max) {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            );
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Serves the API over HTTPS on `listener` until the process ends; `extra` holds routes
/// outside `/api2` (the node-to-node protocol).
pub async fn serve<S: ApiState>(
    api: Arc<Api<S>>,
    listener: std::net::TcpListener,
    tls: TlsIdentity,
    extra: axum::Router,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert_pem, tls.key_pem).await?;
    let app = axum::Router::new()
        .fallback(handle::<S>)
        .with_state(api)
        .merge(extra);
    listener.set_nonblocking(true)?;
    // Without TCP_NODELAY, small responses wait on the peer's delayed ACK (~40 ms spikes).
    let tls_acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
        .handshake_timeout(limits.handshake_timeout)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let acceptor = LimitAcceptor {
        inner: tls_acceptor,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        limit: limits.max_connections,
    };
    let mut server = axum_server::from_tcp(listener).acceptor(acceptor);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
