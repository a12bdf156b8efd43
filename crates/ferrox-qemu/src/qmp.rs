//! A small synchronous QMP client: greeting, capabilities negotiation, commands, and the
//! events that arrive in between. Written here rather than taken from the `qapi` crate
//! because Ferrox needs a dozen commands as plain JSON and full control over timeouts.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by QEMU")]
    Closed,
    #[error("malformed message from QEMU: {0}")]
    Protocol(String),
    #[error("{class}: {desc}")]
    Command { class: String, desc: String },
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events received so far (`{"event": ..., "data": ...}`).
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects to a QMP socket, retrying until `timeout` while QEMU is still starting.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    return Qmp::from_stream(stream);
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        }
    }

    /// Reads the greeting and leaves capabilities negotiation mode.
    pub fn from_stream(stream: UnixStream) -> Result<Qmp, QmpError> {
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected greeting, got {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {}", line.trim())))
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes())?;
        self.reply()
    }

    /// Hands QEMU an open file as `name` (`getfd`, the descriptor travelling as
    /// SCM_RIGHTS with the command), for URIs such as `fd:<name>`: QEMU never opens a
    /// path or runs a shell for it.
    pub fn send_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut text = json!({"execute": "getfd", "arguments": {"fdname": name}}).to_string();
        text.push('\n');
        let mut space = [0u8; rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        if !ancillary.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(QmpError::Protocol("no room for the descriptor".into()));
        }
        let sent = sendmsg(
            &self.writer,
            &[std::io::IoSlice::new(text.as_bytes())],
            &mut ancillary,
            SendFlags::empty(),
        )
        .map_err(std::io::Error::from)?;
        self.writer.write_all(&text.as_bytes()[sent..])?;
        self.reply().map(drop)
    }

    /// The reply to the command just sent; events that come first are kept.
    fn reply(&mut self) -> Result<Value, QmpError> {
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                return Err(QmpError::Command {
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected reply {reply}")));
        }
    }

    /// Waits for an event named `name`, up to `timeout`.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Option<Value>, QmpError> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Ok(Some(self.events.remove(i)));
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.reader.get_ref().set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))?;
            match self.read_message() {
                Ok(msg) if msg["event"] == name => return Ok(Some(msg)),
                Ok(msg) => self.events.push(msg),
                Err(QmpError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted QMP peer: checks each request and answers with the given lines.
    fn peer(
        script: Vec<(&'static str, Vec<&'static str>)>,
    ) -> (UnixStream, std::thread::JoinHandle<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let handle = std::thread::spawn(move || {
            let mut reader = BufReader::new(theirs.try_clone().unwrap());
            let mut w = theirs;
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\n")
                .unwrap();
            for (expect, replies) in script {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["execute"], expect);
                for r in replies {
                    w.write_all(r.as_bytes()).unwrap();
                    w.write_all(b"\n").unwrap();
                }
            }
        });
        (ours, handle)
    }

    #[test]
    fn negotiates_runs_commands_and_keeps_events() {
        let (stream, handle) = peer(vec![
            ("qmp_capabilities", vec![r#"{"return": {}}"#]),
            (
                "query-status",
                vec![
                    r#"{"event": "RESUME", "data": {}}"#,
                    r#"{"return": {"status": "running", "running": true}}"#,
                ],
            ),
            (
                "nosuch",
                vec![
                    r#"{"error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}"#,
                ],
            ),
        ]);
        let mut qmp = Qmp::from_stream(stream).unwrap();
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        assert_eq!(qmp.events.len(), 1);
        match qmp.execute("nosuch", None) {
            Err(QmpError::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
            other => panic!("{other:?}"),
        }
        handle.join().unwrap();
    }

    #[test]
    fn closed_connection_is_an_error() {
        let (stream, handle) = peer(vec![]);
        handle.join().unwrap();
        assert!(matches!(
            Qmp::from_stream(stream),
            Err(QmpError::Closed | QmpError::Io(_))
        ));
    }
}
