//! Websockets of the console endpoints (`vncwebsocket`): after the endpoint has checked
//! the caller, its privilege and the one-time ticket, the connection is relayed to the
//! guest's VNC or serial socket on this node, or to the same endpoint on the node that
//! runs the guest. This module moves bytes only; who may connect where is decided by the
//! endpoint's handler.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where an accepted websocket goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// A guest's console socket on this node.
    Console(ConsoleTarget),
    /// The same request on another node (the guest runs there).
    Peer(PeerTarget),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleTarget {
    pub socket: PathBuf,
    pub framing: Framing,
}

/// How the websocket's messages map onto the socket's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Binary messages carry the socket's bytes both ways (VNC's RFB stream, for noVNC).
    Raw,
    /// Proxmox VE's termproxy protocol (xterm.js): the client first sends
    /// `<user>:<ticket>\n`, which must equal `login`, and gets `OK`; then it sends
    /// `0:<len>:<data>` (input), `1:<cols>:<rows>:` (resize) and `2` (ping); output is
    /// sent as binary messages.
    Term { login: String },
}

/// A node that answers the websocket request itself, and how to reach it.
#[derive(Clone)]
pub struct PeerTarget {
    /// `host:port` of the peer's API.
    pub address: String,
    /// The request's path and query, unchanged.
    pub path_and_query: String,
    /// TLS that accepts exactly the peer's pinned certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// The caller's credentials, passed on (tickets and tokens are valid cluster-wide).
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for PeerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerTarget({}{})", self.address, self.path_and_query)
    }
}

impl PartialEq for PeerTarget {
    fn eq(&self, other: &PeerTarget) -> bool {
        self.address == other.address && self.path_and_query == other.path_and_query
    }
}
impl Eq for PeerTarget {}

/// The reply of a websocket endpoint that accepted the connection: Proxmox VE's
/// `{"port": ...}`, and where the HTTP layer relays the websocket.
pub struct Accepted {
    pub port: u16,
    pub target: ConsoleTarget,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct AcceptedReply {
    port: String,
}

impl crate::router::ApiReply for Accepted {
    fn into_reply(self) -> Result<crate::router::Reply, crate::ApiError> {
        let mut reply = AcceptedReply {
            port: self.port.to_string(),
        }
        .into_reply()?;
        reply.upgrade = Some(self.target);
        Ok(reply)
    }
    fn reply_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<AcceptedReply>()
    }
}

/// Runs an accepted websocket until either side closes.
pub async fn relay(socket: WebSocket, upgrade: Upgrade) {
    let result = match upgrade {
        Upgrade::Console(target) => relay_console(socket, target).await,
        Upgrade::Peer(peer) => relay_peer(socket, peer).await,
    };
    if let Err(e) = result {
        tracing::info!("console websocket closed: {e}");
    }
}

async fn relay_console(socket: WebSocket, target: ConsoleTarget) -> anyhow::Result<()> {
    let stream = tokio::net::UnixStream::connect(&target.socket)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", target.socket.display()))?;
    let (mut from_guest, mut to_guest) = stream.into_split();
    let (mut to_client, mut from_client) = socket.split();
    let mut term = None;
    if let Framing::Term { login } = target.framing {
        // The login comes first and is answered before any output flows.
        let mut input = TermInput::new(login);
        loop {
            let Some(data) = next_bytes(&mut from_client).await? else {
                return Ok(());
            };
            if let TermStep::LoggedIn = input.feed(&data)? {
                break;
            }
        }
        to_client.send(Message::text("OK")).await?;
        let mut input = input.after_login();
        // What followed the login line in the same message.
        if let TermStep::Input(bytes) = input.feed(&[])? {
            to_guest.write_all(&bytes).await?;
        }
        term = Some(input);
    }
    let upstream = async {
        while let Some(data) = next_bytes(&mut from_client).await? {
            match term.as_mut() {
                None => to_guest.write_all(&data).await?,
                Some(term) => {
                    if let TermStep::Input(bytes) = term.feed(&data)? {
                        to_guest.write_all(&bytes).await?;
                    }
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let downstream = pump_down(&mut from_guest, &mut to_client);
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

/// The next data message's bytes; `None` when the client closed.
async fn next_bytes(
    from_client: &mut futures_util::stream::SplitStream<WebSocket>,
) -> anyhow::Result<Option<Vec<u8>>> {
    while let Some(msg) = from_client.next().await {
        match msg? {
            Message::Binary(b) => return Ok(Some(b.to_vec())),
            Message::Text(t) => return Ok(Some(t.as_str().as_bytes().to_vec())),
            Message::Close(_) => return Ok(None),
            _ => continue,
        }
    }
    Ok(None)
}

async fn pump_down(
    from_guest: &mut tokio::net::unix::OwnedReadHalf,
    to_client: &mut futures_util::stream::SplitSink<WebSocket, Message>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from_guest.read(&mut buf).await?;
        if n == 0 {
            let _ = to_client.send(Message::Close(None)).await;
            return Ok(());
        }
        to_client
            .send(Message::Binary(buf[..n].to_vec().into()))
            .await?;
    }
}

enum TermStep {
    LoggedIn,
    Input(Vec<u8>),
}

/// The client's side of the termproxy protocol, parsed from a byte stream (a message
/// may carry several frames, or a frame may span messages).
struct TermInput {
    login: Option<String>,
    buffer: Vec<u8>,
}

impl TermInput {
    fn new(login: String) -> TermInput {
        TermInput {
            login: Some(login),
            buffer: Vec::new(),
        }
    }

    fn after_login(self) -> TermInput {
        TermInput {
            login: None,
            buffer: self.buffer,
        }
    }

    fn feed(&mut self, data: &[u8]) -> anyhow::Result<TermStep> {
        self.buffer.extend_from_slice(data);
        if let Some(login) = &self.login {
            let Some(end) = self.buffer.iter().position(|b| *b == b'\n') else {
                anyhow::ensure!(self.buffer.len() < 4096, "termproxy login line too long");
                return Ok(TermStep::Input(Vec::new()));
            };
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let given = String::from_utf8_lossy(&line[..end]);
            anyhow::ensure!(
                crate::auth::constant_time_eq(given.trim_end().as_bytes(), login.as_bytes()),
                "termproxy login refused"
            );
            self.login = None;
            return Ok(TermStep::LoggedIn);
        }
        let mut input = Vec::new();
        loop {
            match parse_frame(&self.buffer)? {
                Some((used, Frame::Input(bytes))) => {
                    input.extend_from_slice(bytes);
                    self.buffer.drain(..used);
                }
                Some((used, Frame::Control)) => {
                    self.buffer.drain(..used);
                }
                None => break,
            }
        }
        Ok(TermStep::Input(input))
    }
}

enum Frame<'a> {
    Input(&'a [u8]),
    /// Resize and ping: a serial port has no window size and needs no keep-alive.
    Control,
}

/// One frame at the start of `buf`, with the bytes it takes; `None` when incomplete.
fn parse_frame(buf: &[u8]) -> anyhow::Result<Option<(usize, Frame<'_>)>> {
    let Some(kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        b'2' => Ok(Some((1, Frame::Control))),
        b'0' => {
            let Some(colon) = buf.iter().skip(2).position(|b| *b == b':') else {
                anyhow::ensure!(buf.len() < 16, "termproxy frame without length");
                return Ok(None);
            };
            anyhow::ensure!(buf.get(1) == Some(&b':'), "bad termproxy frame");
            let len_text = std::str::from_utf8(&buf[2..2 + colon])?;
            let len: usize = len_text
                .parse()
                .map_err(|_| anyhow::anyhow!("bad termproxy frame length '{len_text}'"))?;
            let start = 2 + colon + 1;
            if buf.len() < start + len {
                return Ok(None);
            }
            Ok(Some((start + len, Frame::Input(&buf[start..start + len]))))
        }
        b'1' => {
            // `1:<cols>:<rows>:`
            let colons: Vec<usize> = buf
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b':')
                .map(|(i, _)| i)
                .take(3)
                .collect();
            if colons.len() < 3 {
                anyhow::ensure!(buf.len() < 32, "bad termproxy resize frame");
                return Ok(None);
            }
            Ok(Some((colons[2] + 1, Frame::Control)))
        }
        other => anyhow::bail!("unknown termproxy frame type '{}'", *other as char),
    }
}

async fn relay_peer(socket: WebSocket, peer: PeerTarget) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let tcp = tokio::net::TcpStream::connect(&peer.address).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&peer.tls));
    let host = peer
        .address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or(&peer.address)
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(host)?;
    let tls = connector.connect(name, tcp).await?;
    let mut request =
        format!("wss://{}{}", peer.address, peer.path_and_query).into_client_request()?;
    for (k, v) in &peer.headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes())?,
            tungstenite::http::HeaderValue::from_str(v)?,
        );
    }
    let (remote, _) = tokio_tungstenite::client_async(request, tls).await?;
    let (mut to_remote, mut from_remote) = remote.split();
    let (mut to_client, mut from_client) = socket.split();
    let upstream = async {
        while let Some(msg) = from_client.next().await {
            let msg = match msg? {
                Message::Binary(b) => tungstenite::Message::Binary(b),
                Message::Text(t) => tungstenite::Message::text(t.as_str()),
                Message::Close(_) => break,
                _ => continue,
            };
            to_remote.send(msg).await?;
        }
        let _ = to_remote.close().await;
        Ok::<(), anyhow::Error>(())
    };
    let downstream = async {
        while let Some(msg) = from_remote.next().await {
            let msg = match msg? {
                tungstenite::Message::Binary(b) => Message::Binary(b),
                tungstenite::Message::Text(t) => Message::text(t.as_str()),
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            to_client.send(msg).await?;
        }
        let _ = to_client.send(Message::Close(None)).await;
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(steps: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut t = TermInput::new("root@pam:PVEVNC:1::x".into());
        let mut out = Vec::new();
        let mut logged_in = false;
        for s in steps {
            match t.feed(s).unwrap() {
                TermStep::LoggedIn => logged_in = true,
                TermStep::Input(b) => out.extend(b),
            }
        }
        (out, logged_in)
    }

    #[test]
    fn termproxy_frames() {
        let (out, logged_in) = input(&[
            b"root@pam:PVEVNC:1::x\n",
            b"0:5:hello",
            b"1:80:24:2",
            b"0:3:a",
            b"bc0:1:\n",
        ]);
        assert!(logged_in);
        assert_eq!(out, b"helloabc\n");
    }

    #[test]
    fn termproxy_refuses_a_wrong_login_and_bad_frames() {
        let mut t = TermInput::new("root@pam:PVEVNC:1::x".into());
        assert!(t.feed(b"root@pam:PVEVNC:1::y\n").is_err());
        let mut t = TermInput::new("u:t".into()).after_login();
        assert!(t.feed(b"9:1:x").is_err());
        let mut t = TermInput::new("u:t".into()).after_login();
        assert!(t.feed(b"0:zz:x").is_err());
    }
}
