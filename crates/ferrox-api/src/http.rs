//! The HTTPS server: axum on rustls, every request handed to `Api::handle` on the
//! blocking pool (handlers do file and QMP IO synchronously).
//!
//! What keeps one client from taking the node away from everyone else: a TLS handshake
//! and the request headers must arrive within their timeouts, connections above a limit
//! are answered `503` and closed, and the 3 s delay of a failed authentication waits on a
//! timer, not on a thread of the blocking pool.

use crate::router::{Api, ApiState, RawRequest, RawResponse, Upload};
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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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
    let boundary = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .filter(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
        .map(multer::parse_boundary);
    let mut raw = RawRequest {
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
        body: Vec::new(),
        peer,
        upload: None,
    };
    match boundary {
        Some(boundary) => {
            let Ok(boundary) = boundary else {
                return to_response(bad_request("multipart/form-data without a boundary"));
            };
            if let Err(refusal) = admit_upload(&api, &raw).await {
                // A small body is read and dropped, so that the client gets to read the
                // answer rather than a reset connection; a large one is not waited for.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    axum::body::to_bytes(body, MAX_BODY),
                )
                .await;
                return refusal;
            }
            match receive_upload(body, boundary, &api.state.upload_dir()).await {
                Ok((fields, upload)) => {
                    raw.body = fields;
                    raw.upload = upload;
                    raw.headers.retain(|(k, _)| k != "content-type");
                    raw.headers.push((
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ));
                }
                Err(e) => return to_response(bad_request(&e)),
            }
        }
        None => match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => raw.body = b.to_vec(),
            Err(_) => {
                return to_response(RawResponse::json(
                    413,
                    Some("request too large".into()),
                    String::new(),
                ))
            }
        },
    }
    let stored = raw.upload.as_ref().map(|u| u.path.clone());
    let result = tokio::task::spawn_blocking(move || api.handle(&raw)).await;
    // What the handler did not take is not kept.
    if let Some(path) = stored {
        let _ = tokio::fs::remove_file(path).await;
    }
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

fn bad_request(message: &str) -> RawResponse {
    RawResponse::json(
        400,
        Some(message.to_string()),
        serde_json::json!({ "data": null, "message": format!("{message}\n") }).to_string(),
    )
}

/// The route takes uploads and the caller is authenticated, before any byte is stored.
async fn admit_upload<S: ApiState>(
    api: &Arc<Api<S>>,
    head: &RawRequest,
) -> Result<(), Response<Body>> {
    let api = Arc::clone(api);
    let head = head.clone();
    match tokio::task::spawn_blocking(move || api.refuse_upload(&head)).await {
        Ok(None) => Ok(()),
        Ok(Some(resp)) => {
            if let Some(delay) = resp.delay {
                tokio::time::sleep(delay).await;
            }
            Err(to_response(resp))
        }
        Err(_) => Err(to_response(RawResponse::json(
            500,
            Some("internal error".into()),
            String::new(),
        ))),
    }
}

/// The form fields other than the file may not be larger than a form body.
const MAX_FIELDS: usize = 64 * 1024;

/// Reads a multipart body: its text fields form-encoded, its one file stored in `dir`
/// (created `0700`, the file `0600`). A partial file is removed on any error.
async fn receive_upload(
    body: Body,
    boundary: String,
    dir: &std::path::Path,
) -> Result<(Vec<u8>, Option<Upload>), String> {
    use tokio::io::AsyncWriteExt;
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut form_len = 0usize;
    let mut upload: Option<Upload> = None;
    let result = async {
        while let Some(mut field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or("").to_string();
            match field.file_name().map(str::to_string) {
                Some(file_name) => {
                    if upload.is_some() {
                        return Err("only one file per upload".to_string());
                    }
                    let path =
                        new_upload_path(dir).map_err(|e| format!("storing the upload: {e}"))?;
                    let mut file = tokio::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .await
                        .map_err(|e| format!("storing the upload: {e}"))?;
                    // The handler sees the file's name as the field's value, as Proxmox VE
                    // passes it.
                    fields.push((name.clone(), file_name.clone()));
                    upload = Some(Upload {
                        field: name,
                        file_name,
                        path,
                        size: 0,
                    });
                    let stored = upload.as_mut().expect("just set");
                    while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
                        file.write_all(&chunk)
                            .await
                            .map_err(|e| format!("storing the upload: {e}"))?;
                        stored.size += chunk.len() as u64;
                    }
                    file.sync_all()
                        .await
                        .map_err(|e| format!("storing the upload: {e}"))?;
                }
                None => {
                    let value = field.text().await.map_err(|e| e.to_string())?;
                    form_len += name.len() + value.len();
                    if form_len > MAX_FIELDS {
                        return Err("the form fields of the upload are too large".into());
                    }
                    fields.push((name, value));
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.extend_pairs(&fields);
            Ok((form.finish().into_bytes(), upload))
        }
        Err(e) => {
            if let Some(u) = upload {
                let _ = tokio::fs::remove_file(&u.path).await;
            }
            Err(format!("upload failed: {e}"))
        }
    }
}

/// A fresh name in the upload folder (made `0700` if missing).
fn new_upload_path(dir: &std::path::Path) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Ok(dir.join(format!(
        "upload-{}-{}-{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )))
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
                        stream.shutdown().await?;
                        // Closing with the client's request unread would reset the
                        // connection, and the client could lose the answer: read until
                        // it closes.
                        let mut sink = [0u8; 1024];
                        while stream.read(&mut sink).await? > 0 {}
                        Ok::<_, io::Error>(())
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
