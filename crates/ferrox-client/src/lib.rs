//! The one client of the Ferrox API: HTTPS with the node certificate pinned by its SHA-256
//! fingerprint (`pinned`), a ticket or API token login, calls that return `data` or the
//! API's error (status, message, per-parameter errors), and task waiting. Used by the
//! CLI, the end-to-end tests, the benchmarks and node-to-node calls.
//!
//! It holds no decision logic and no command-line parsing.

pub mod pinned;

use ferrox_api_types::access::Ticket;
use ferrox_api_types::cluster::{ClusterStatusEntry, Resource};
use ferrox_api_types::ha::HaStatusEntry;
use ferrox_api_types::qemu::GuestStatus;
use ferrox_api_types::tasks::{TaskLogLine, TaskStatus};
use ferrox_api_types::Upid;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How to log in.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password {
        user: String,
        password: String,
    },
    /// `user@realm!name=secret`.
    Token(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("login as {user} failed: {reason}")]
    Login { user: String, reason: String },
    /// The API refused the call: HTTP status, reason phrase, per-parameter errors.
    #[error("{}", api_error_text(*.status, .reason, .errors))]
    Api {
        status: u16,
        reason: String,
        errors: BTreeMap<String, String>,
    },
    #[error("{method} {path}: {reason}")]
    Transport {
        method: String,
        path: String,
        reason: String,
    },
    #[error("task failed: {0}")]
    TaskFailed(String),
    #[error("{0}")]
    Unexpected(String),
}

fn api_error_text(status: u16, reason: &str, errors: &BTreeMap<String, String>) -> String {
    let mut msg = format!("{status} {reason}");
    for (k, v) in errors {
        msg.push_str(&format!("\n  {k}: {v}"));
    }
    msg
}

enum Login {
    Ticket { ticket: String, csrf: String },
    Token(String),
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    login: Login,
}

impl Client {
    /// Connects to `host` (`host:port`), checking its certificate against `fingerprint`
    /// (`None`: any certificate), and logs in.
    pub fn connect(
        host: &str,
        fingerprint: Option<&str>,
        credentials: Credentials,
    ) -> Result<Client, ClientError> {
        let pin = fingerprint
            .map(pinned::parse_fingerprint)
            .transpose()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let agent = pinned::tls_agent(pin).map_err(|e| ClientError::Setup(e.to_string()))?;
        let base = format!("https://{host}/api2/json");
        let login = match credentials {
            Credentials::Token(token) => Login::Token(token),
            Credentials::Password { user, password } => {
                let resp = agent
                    .post(&format!("{base}/access/ticket"))
                    .send_form(&[("username", &user), ("password", &password)]);
                let body: Envelope<Ticket> = match resp {
                    Ok(r) => r
                        .into_json()
                        .map_err(|e| ClientError::Unexpected(format!("login response: {e}")))?,
                    Err(ureq::Error::Status(_, r)) => {
                        return Err(ClientError::Login {
                            user,
                            reason: r.status_text().to_string(),
                        })
                    }
                    Err(e) => {
                        return Err(ClientError::Unreachable {
                            host: host.to_string(),
                            reason: e.to_string(),
                        })
                    }
                };
                let (Some(ticket), Some(csrf)) =
                    (body.data.ticket, body.data.csrf_prevention_token)
                else {
                    return Err(ClientError::Login {
                        user,
                        reason: "the answer has no ticket (a second factor is required)".into(),
                    });
                };
                Login::Ticket { ticket, csrf }
            }
        };
        Ok(Client { agent, base, login })
    }

    /// Calls the API; returns `data`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, ClientError> {
        let path = path.trim_start_matches("/api2/json");
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let mut req = self.agent.request(method, &url);
        req = match &self.login {
            Login::Token(t) => req.set("Authorization", &format!("PVEAPIToken={t}")),
            Login::Ticket { ticket, csrf } => req
                .set("Cookie", &format!("PVEAuthCookie={ticket}"))
                .set("CSRFPreventionToken", csrf),
        };
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = if matches!(method, "GET" | "DELETE") {
            for (k, v) in &pairs {
                req = req.query(k, v);
            }
            req.call()
        } else {
            req.send_form(&pairs)
        };
        match resp {
            Ok(r) => {
                let body: Value = r
                    .into_json()
                    .map_err(|e| ClientError::Unexpected(format!("response body: {e}")))?;
                Ok(body.get("data").cloned().unwrap_or(Value::Null))
            }
            Err(ureq::Error::Status(status, r)) => {
                let reason = r.status_text().to_string();
                let body: Value = r.into_json().unwrap_or(Value::Null);
                let errors = body
                    .get("errors")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                Err(ClientError::Api {
                    status,
                    reason,
                    errors,
                })
            }
            Err(e) => Err(ClientError::Transport {
                method: method.to_string(),
                path: path.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Calls the API; returns `data` as the reply type of the endpoint
    /// (`ferrox_api_types`).
    pub fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<T, ClientError> {
        let data = self.call(method, path, params)?;
        serde_json::from_value(data)
            .map_err(|e| ClientError::Unexpected(format!("{method} {path}: reply: {e}")))
    }

    /// `GET` with no parameters, typed.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call_as("GET", path, &[])
    }

    /// The nodes of the cluster (`GET /nodes`).
    pub fn nodes(&self) -> Result<Vec<Resource>, ClientError> {
        self.get("/nodes")
    }

    /// The name of the node answering (the first of `GET /nodes`).
    pub fn first_node(&self) -> Result<String, ClientError> {
        self.nodes()?
            .into_iter()
            .next()
            .and_then(|n| n.node)
            .ok_or_else(|| ClientError::Unexpected("GET /nodes returned no node".into()))
    }

    /// `GET /cluster/resources`, optionally of one kind (`vm`, `node`, `storage`).
    pub fn cluster_resources(&self, kind: Option<&str>) -> Result<Vec<Resource>, ClientError> {
        let params: Vec<(String, String)> = kind
            .map(|k| ("type".to_string(), k.to_string()))
            .into_iter()
            .collect();
        self.call_as("GET", "/cluster/resources", &params)
    }

    pub fn cluster_status(&self) -> Result<Vec<ClusterStatusEntry>, ClientError> {
        self.get("/cluster/status")
    }

    /// The highest built-in CPU model every node runs (`GET /cluster/qemu/cpu-baseline`).
    pub fn cpu_baseline(
        &self,
        accel: Option<&str>,
    ) -> Result<ferrox_api_types::qemu::CpuBaseline, ClientError> {
        let params: Vec<(String, String)> = accel
            .map(|a| vec![("accel".to_string(), a.to_string())])
            .unwrap_or_default();
        self.call_as("GET", "/cluster/qemu/cpu-baseline", &params)
    }

    pub fn ha_status(&self) -> Result<Vec<HaStatusEntry>, ClientError> {
        self.get("/cluster/ha/status/current")
    }

    /// The guests of `node` (`GET /nodes/{node}/qemu`).
    pub fn guests(&self, node: &str) -> Result<Vec<GuestStatus>, ClientError> {
        self.get(&format!("/nodes/{node}/qemu"))
    }

    /// Starts a task; returns its UPID.
    pub fn start_task(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Upid, ClientError> {
        self.call_as(method, path, params)
    }

    pub fn task_status(&self, upid: &str) -> Result<TaskStatus, ClientError> {
        self.get(&format!("/nodes/{}/tasks/{upid}/status", upid_node(upid)?))
    }

    /// A task's whole log.
    pub fn task_log(&self, upid: &str) -> Result<Vec<TaskLogLine>, ClientError> {
        let path = format!("/nodes/{}/tasks/{upid}/log", upid_node(upid)?);
        self.call_as("GET", &path, &[("limit".into(), "100000".into())])
    }

    /// Waits for a task to end (polling its status); fails unless it ended `OK` or with
    /// warnings.
    pub fn wait_task(&self, upid: &str) -> Result<TaskStatus, ClientError> {
        let start = Instant::now();
        loop {
            let status = self.task_status(upid)?;
            if status.status == "stopped" {
                let exit = status.exitstatus.clone().unwrap_or_default();
                if exit == "OK" || exit.starts_with("WARNINGS") {
                    return Ok(status);
                }
                return Err(ClientError::TaskFailed(exit));
            }
            let delay = if start.elapsed() < Duration::from_secs(2) {
                100
            } else {
                500
            };
            std::thread::sleep(Duration::from_millis(delay));
        }
    }
}

/// The API's reply envelope.
#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: T,
}

/// The node a task runs on, from its UPID.
fn upid_node(upid: &str) -> Result<&str, ClientError> {
    upid.split(':')
        .nth(1)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ClientError::Unexpected(format!("'{upid}' is not a UPID")))
}
