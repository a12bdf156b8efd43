//! Guest consoles as Proxmox VE opens them: `vncproxy` / `termproxy` hand out a one-time
//! VNC ticket bound to the user and the guest, with a port number naming the session;
//! `vncwebsocket` checks both and relays the websocket to the guest's VNC socket (noVNC)
//! or serial socket (xterm.js). A session is used once and lives as long as its ticket.

use crate::Node;
use ferrox_api::websocket::{Accepted, ConsoleTarget, Framing};
use ferrox_api::ApiError;
use ferrox_api_types::qemu::ConsoleTicket;
use ferrox_qemu::command::{serial_socket, vnc_socket};
use ferrox_types::console::{serial_index, SerialPort, Vga};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Proxmox VE's VNC ports; here they only name sessions (nothing listens on them).
const FIRST_PORT: u16 = 5900;
const LAST_PORT: u16 = 5999;
/// As long as the ticket is valid.
const SESSION_LIFETIME: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleKind {
    /// The graphics card, over VNC.
    Vnc,
    /// A serial port (`serialN: socket`), in the termproxy protocol.
    Serial(u8),
}

struct Session {
    vmid: u32,
    kind: ConsoleKind,
    user: String,
    ticket: String,
    expires: Instant,
}

/// The open (not yet connected) console sessions of this node.
#[derive(Default)]
pub struct Consoles {
    sessions: Mutex<BTreeMap<u16, Session>>,
    /// Sessions taken by a websocket, for the proxy task to report.
    connected: Mutex<Vec<u16>>,
}

impl Consoles {
    fn add(&self, session: Session) -> Result<u16, ApiError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        let port = (FIRST_PORT..=LAST_PORT)
            .find(|p| !sessions.contains_key(p))
            .ok_or_else(|| ApiError::new(503, "too many console sessions are opening"))?;
        sessions.insert(port, session);
        Ok(port)
    }

    /// Removes and returns the live session on `port` when it passes `fits` (once: one
    /// lock for the check and the removal).
    fn take_if(&self, port: u16, fits: impl FnOnce(&Session) -> bool) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let live = sessions
            .get(&port)
            .is_some_and(|s| s.expires > Instant::now() && fits(s));
        if live {
            sessions.remove(&port)
        } else {
            None
        }
    }

    fn pending(&self, port: u16) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&port)
            .is_some_and(|s| s.expires > Instant::now())
    }

    fn was_connected(&self, port: u16) -> bool {
        let mut connected = self.connected.lock().unwrap_or_else(|p| p.into_inner());
        let found = connected.contains(&port);
        connected.retain(|p| *p != port);
        found
    }
}

impl Node {
    /// `vncproxy` and `termproxy`: a ticket for one connection to the guest's console.
    pub fn open_console(
        self: &Arc<Self>,
        vmid: u32,
        kind: ConsoleKind,
        user: &str,
        generate_password: bool,
    ) -> Result<ConsoleTicket, ApiError> {
        let cfg = self.guest_config(vmid)?;
        let process = self
            .guests
            .process(vmid)
            .ok_or_else(|| ApiError::new(500, format!("VM {vmid} not running")))?;
        let ticket = self.auth.vnc_ticket(user, &format!("/vms/{vmid}"));
        let mut password = None;
        match kind {
            ConsoleKind::Vnc => {
                let vga = match cfg.options.get("vga") {
                    Some(v) => Vga::parse(v).map_err(|e| ApiError::param("vga", e))?,
                    None => Vga::default(),
                };
                if !vga.has_display() {
                    return Err(ApiError::new(
                        400,
                        format!("VM {vmid} has no graphics card (vga: {}): use its serial console (termproxy)", cfg.options.get("vga").map(String::as_str).unwrap_or("")),
                    ));
                }
                // QEMU checks the VNC password too (DES: its first 8 characters); the
                // websocket's ticket check is what keeps others out.
                let secret = if generate_password {
                    use rand::distributions::{Alphanumeric, DistString};
                    let p = Alphanumeric.sample_string(&mut rand::thread_rng(), 8);
                    password = Some(p.clone());
                    p
                } else {
                    ticket.clone()
                };
                let mut qmp = process
                    .qmp()
                    .map_err(|e| ApiError::internal(format!("VM {vmid}: {e}")))?;
                qmp.execute(
                    "set_password",
                    Some(serde_json::json!({"protocol": "vnc", "password": secret})),
                )
                .and_then(|_| {
                    qmp.execute(
                        "expire_password",
                        Some(serde_json::json!({"protocol": "vnc", "time": "+30"})),
                    )
                })
                .map_err(|e| {
                    ApiError::internal(format!("VM {vmid}: setting the VNC password: {e}"))
                })?;
            }
            ConsoleKind::Serial(index) => {
                let key = format!("serial{index}");
                match cfg.options.get(&key).map(|v| SerialPort::parse(v)) {
                    Some(Ok(SerialPort::Socket)) => {}
                    Some(Err(e)) => return Err(ApiError::param(&key, e)),
                    None => {
                        return Err(ApiError::param(
                            "serial",
                            format!("VM {vmid} has no '{key}: socket'"),
                        ))
                    }
                }
            }
        }
        let port = self.consoles.add(Session {
            vmid,
            kind,
            user: user.to_string(),
            ticket: ticket.clone(),
            expires: Instant::now() + SESSION_LIFETIME,
        })?;
        let task_type = match kind {
            ConsoleKind::Vnc => "vncproxy",
            ConsoleKind::Serial(_) => "vncshell",
        };
        let node = Arc::clone(self);
        let upid = self
            .tasks
            .spawn(task_type, &vmid.to_string(), user, move |log| {
                log.log(format!("waiting for the console connection (port {port})"));
                while node.consoles.pending(port) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if node.consoles.was_connected(port) {
                    log.log("connected");
                    Ok(())
                } else {
                    Err("connection timed out".into())
                }
            })?;
        Ok(ConsoleTicket {
            user: user.to_string(),
            ticket,
            port,
            upid,
            cert: Some(self.tls.cert_pem.clone()),
            password,
        })
    }

    /// `vncwebsocket`: takes the session the ticket opened (once) and says where the
    /// websocket goes.
    pub fn accept_console(
        &self,
        vmid: u32,
        port: u16,
        vncticket: &str,
        user: &str,
    ) -> Result<Accepted, ApiError> {
        let refused = || ApiError::new(401, "Permission denied - invalid vnc ticket");
        if !self
            .auth
            .verify_vnc_ticket(vncticket, user, &format!("/vms/{vmid}"))
        {
            return Err(refused());
        }
        let session = self
            .consoles
            .take_if(port, |s| {
                s.vmid == vmid
                    && s.user == user
                    && ferrox_api::auth::constant_time_eq(s.ticket.as_bytes(), vncticket.as_bytes())
            })
            .ok_or_else(refused)?;
        self.consoles
            .connected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(port);
        let run = &self.guests.run_dir;
        let target = match session.kind {
            ConsoleKind::Vnc => ConsoleTarget {
                socket: vnc_socket(run, vmid),
                framing: Framing::Raw,
            },
            ConsoleKind::Serial(index) => ConsoleTarget {
                socket: serial_socket(run, vmid, index),
                framing: Framing::Term {
                    login: format!("{user}:{}", session.ticket),
                },
            },
        };
        Ok(Accepted { port, target })
    }
}

/// `termproxy`'s `serial` parameter, or the guest's first serial socket.
pub fn serial_port(
    cfg: &ferrox_types::GuestConfig,
    requested: Option<&str>,
) -> Result<u8, ApiError> {
    match requested {
        Some(key) => serial_index(key)
            .ok_or_else(|| ApiError::param("serial", format!("'{key}' is not serial0..serial3"))),
        None => cfg
            .options
            .keys()
            .filter_map(|k| serial_index(k))
            .next()
            .ok_or_else(|| ApiError::param("serial", "the VM has no serial port")),
    }
}
