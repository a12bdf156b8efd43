//! Notifications as Proxmox VE 8.1+ routes them: an event (severity, `type` and other
//! fields, title, message) goes through the matchers of `notifications.cfg` to their
//! targets: webhooks (a Handlebars body with `{{ title }}`, `{{ message }}`,
//! `{{ severity }}`, `{{ fields.X }}`, `{{ secrets.X }}` and the `escape`, `url-encode`,
//! `json` helpers) and sendmail. Delivery runs on its own thread behind a bounded queue:
//! the event's source (a task, the CRM) never waits for it.

use crate::Node;
use ferrox_types::notifications::{FieldMatch, Matcher, NotificationConfig, Target, TargetEntry};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::Duration;

pub const CONFIG: &str = "notifications.cfg";
/// Webhook secrets: `webhook: <name>` sections with `secret name=...,value=<base64>`.
pub const PRIV_CONFIG: &str = "priv/notifications.cfg";
/// Deliveries that may wait before new ones are dropped (and logged).
const QUEUE: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `info`, `notice`, `warning`, `error`.
    pub severity: &'static str,
    pub title: String,
    pub message: String,
    /// `type` (`fencing`, `ha-recovery`, `migrate`, `task`) and others (`hostname`, ...).
    pub fields: BTreeMap<String, String>,
    pub timestamp: i64,
}

impl Notification {
    pub fn new(severity: &'static str, kind: &str, title: String, message: String) -> Self {
        Notification {
            severity,
            title,
            message,
            fields: BTreeMap::from([("type".to_string(), kind.to_string())]),
            timestamp: ferrox_api::auth::now(),
        }
    }

    pub fn field(mut self, key: &str, value: impl Into<String>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

/// Whether `matcher` routes `n` (Proxmox VE: all conditions, or any with `mode any`;
/// no condition matches everything; `invert-match` negates).
pub fn matches(matcher: &Matcher, n: &Notification) -> bool {
    let mut results = Vec::new();
    if !matcher.match_severity.is_empty() {
        results.push(matcher.match_severity.iter().any(|s| s == n.severity));
    }
    for f in &matcher.match_field {
        results.push(match f {
            FieldMatch::Exact { field, values } => n
                .fields
                .get(field)
                .is_some_and(|v| values.iter().any(|w| w == v)),
            FieldMatch::Regex { field, pattern } => n
                .fields
                .get(field)
                .is_some_and(|v| regex_lite::Regex::new(pattern).is_ok_and(|re| re.is_match(v))),
        });
    }
    let matched = if results.is_empty() {
        true
    } else if matcher.mode == "any" {
        results.iter().any(|r| *r)
    } else {
        results.iter().all(|r| *r)
    };
    matched != matcher.invert_match
}

/// Renders a webhook template with the notification and the target's secrets.
pub fn render(
    template: &str,
    n: &Notification,
    secrets: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut hb = handlebars::Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(false);
    hb.register_helper("escape", Box::new(escape_helper));
    hb.register_helper("url-encode", Box::new(url_encode_helper));
    hb.register_helper("json", Box::new(json_helper));
    let data = json!({
        "title": n.title,
        "message": n.message,
        "severity": n.severity,
        "timestamp": n.timestamp,
        "fields": n.fields,
        "secrets": secrets,
    });
    hb.render_template(template, &data)
        .map_err(|e| format!("template: {e}"))
}

fn first_param(h: &handlebars::Helper<'_>) -> serde_json::Value {
    h.param(0).map(|p| p.value().clone()).unwrap_or_default()
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape_helper(
    h: &handlebars::Helper<'_>,
    _: &handlebars::Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    // A JSON string's content, without the quotes: safe inside "..." of a JSON body.
    let quoted = serde_json::to_string(&text_of(&first_param(h))).unwrap_or_default();
    out.write(&quoted[1..quoted.len().saturating_sub(1)])?;
    Ok(())
}

fn url_encode_helper(
    h: &handlebars::Helper<'_>,
    _: &handlebars::Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let text = text_of(&first_param(h));
    out.write(
        &percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    )?;
    Ok(())
}

fn json_helper(
    h: &handlebars::Helper<'_>,
    _: &handlebars::Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    out.write(&first_param(h).to_string())?;
    Ok(())
}

/// A delivery ready to go: everything resolved, no reference to the node.
#[derive(Debug, Clone)]
enum Delivery {
    Webhook {
        target: String,
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    Sendmail {
        target: String,
        to: Vec<String>,
        from: String,
        subject: String,
        body: String,
    },
}

fn deliver(d: &Delivery) -> Result<(), String> {
    match d {
        Delivery::Webhook {
            url,
            method,
            headers,
            body,
            ..
        } => {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build();
            let mut request = agent.request(&method.to_uppercase(), url);
            for (name, value) in headers {
                request = request.set(name, value);
            }
            match body {
                Some(b) => request.send_string(b),
                None => request.call(),
            }
            .map(drop)
            .map_err(|e| format!("{url}: {e}"))
        }
        Delivery::Sendmail {
            to,
            from,
            subject,
            body,
            ..
        } => {
            use std::io::Write;
            let mut child = std::process::Command::new("/usr/sbin/sendmail")
                .args(["-t", "-oi"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("/usr/sbin/sendmail: {e}"))?;
            let mail = format!(
                "From: {from}\nTo: {}\nSubject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
                to.join(", ")
            );
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(mail.as_bytes())
                    .map_err(|e| format!("sendmail: {e}"))?;
            }
            let status = child.wait().map_err(|e| format!("sendmail: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("sendmail exited with {status}"))
            }
        }
    }
}

/// The delivery thread and its queue.
pub struct Notifier {
    queue: SyncSender<Delivery>,
}

impl Default for Notifier {
    fn default() -> Self {
        let (queue, deliveries) = sync_channel::<Delivery>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                for d in deliveries {
                    if let Err(e) = deliver(&d) {
                        let target = match &d {
                            Delivery::Webhook { target, .. }
                            | Delivery::Sendmail { target, .. } => target,
                        };
                        tracing::warn!("notification target '{target}': {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no notification thread: {e}");
        }
        Notifier { queue }
    }
}

fn config(node: &Node) -> NotificationConfig {
    node.tree
        .get(CONFIG)
        .and_then(|e| NotificationConfig::parse(&e.data).ok())
        .unwrap_or_default()
}

/// A webhook's secrets from `priv/notifications.cfg`.
pub fn secrets(node: &Node, target: &str) -> BTreeMap<String, String> {
    node.tree
        .get(PRIV_CONFIG)
        .and_then(|e| ferrox_types::notifications::Secrets::parse(&e.data).ok())
        .and_then(|mut s| s.by_target.remove(target))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Builds what `target` sends for `n`.
fn prepare(node: &Node, target: &TargetEntry, n: &Notification) -> Result<Delivery, String> {
    match &target.target {
        Target::Webhook {
            url,
            method,
            headers,
            body,
        } => {
            let secrets = secrets(node, &target.name);
            let render = |t: &str| render(t, n, &secrets);
            Ok(Delivery::Webhook {
                target: target.name.clone(),
                url: render(url)?,
                method: method.clone(),
                headers: headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), render(v)?)))
                    .collect::<Result<_, String>>()?,
                body: body.as_deref().map(render).transpose()?,
            })
        }
        Target::Sendmail {
            mailto,
            mailto_user,
            from_address,
            author,
        } => {
            let users = node.auth.user_config();
            let mut to = mailto.clone();
            to.extend(
                mailto_user
                    .iter()
                    .filter_map(|u| users.users.get(u))
                    .map(|u| u.email.clone())
                    .filter(|e| !e.is_empty()),
            );
            if to.is_empty() {
                return Err("no recipient (mailto, or mailto-user with an e-mail address)".into());
            }
            let from = from_address
                .clone()
                .unwrap_or_else(|| format!("root@{}", node.opts.node_name));
            let from = match author {
                Some(a) => format!("{a} <{from}>"),
                None => from,
            };
            Ok(Delivery::Sendmail {
                target: target.name.clone(),
                to,
                from,
                subject: n.title.clone(),
                body: n.message.clone(),
            })
        }
    }
}

impl Node {
    /// Routes `n` through the matchers to their targets; returns at once.
    pub fn notify(&self, n: Notification) {
        let n = n.field("hostname", self.opts.node_name.clone());
        let cfg = config(self);
        let mut targets: Vec<&str> = cfg
            .matchers
            .values()
            .filter(|m| !m.disable && matches(m, &n))
            .flat_map(|m| m.targets.iter().map(String::as_str))
            .collect();
        targets.sort();
        targets.dedup();
        for name in targets {
            let Some(target) = cfg.targets.get(name).filter(|t| !t.disable) else {
                continue;
            };
            match prepare(self, target, &n) {
                Ok(d) => {
                    if self.notifier.queue.try_send(d).is_err() {
                        tracing::warn!("notification to '{name}' dropped: the queue is full");
                    }
                }
                Err(e) => tracing::warn!("notification target '{name}': {e}"),
            }
        }
    }

    /// Sends a test notification to `target` now, with the error if it fails.
    pub fn notify_test(&self, target: &str) -> Result<(), String> {
        let cfg = config(self);
        let entry = cfg
            .targets
            .get(target)
            .ok_or_else(|| format!("notification target '{target}' does not exist"))?;
        let n = Notification::new(
            "info",
            "system",
            "Test notification".into(),
            format!("This is a test of the notification target '{target}'."),
        )
        .field("hostname", self.opts.node_name.clone());
        deliver(&prepare(self, entry, &n)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Notification {
        Notification::new(
            "error",
            "fencing",
            "fence n2".into(),
            "node \"n2\" fenced".into(),
        )
        .field("hostname", "n1")
    }

    #[test]
    fn matchers_by_severity_fields_mode_and_inversion() {
        let m = |sev: &[&str], fields: &[&str], mode: &str, invert: bool| Matcher {
            name: "m".into(),
            targets: vec!["t".into()],
            match_severity: sev.iter().map(|s| s.to_string()).collect(),
            match_field: fields
                .iter()
                .map(|f| FieldMatch::parse(f).unwrap())
                .collect(),
            mode: mode.into(),
            invert_match: invert,
            comment: None,
            disable: false,
        };
        let n = event();
        assert!(matches(&m(&[], &[], "all", false), &n));
        assert!(matches(
            &m(&["error"], &["exact:type=fencing"], "all", false),
            &n
        ));
        assert!(!matches(
            &m(&["info"], &["exact:type=fencing"], "all", false),
            &n
        ));
        assert!(matches(
            &m(&["info"], &["exact:type=fencing"], "any", false),
            &n
        ));
        assert!(matches(
            &m(&[], &["regex:hostname=^n[0-9]$"], "all", false),
            &n
        ));
        assert!(!matches(&m(&["error"], &[], "all", true), &n));
    }

    #[test]
    fn templates_render_fields_secrets_and_helpers() {
        let secrets = BTreeMap::from([("token".to_string(), "s3cr3t".to_string())]);
        let body = render(
            r#"{"title":"{{ title }}","text":"{{ escape message }}","sev":"{{ severity }}","type":"{{ fields.type }}","auth":"{{ secrets.token }}","q":"{{ url-encode title }}","f":{{ json fields }}}"#,
            &event(),
            &secrets,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "node \"n2\" fenced");
        assert_eq!(v["sev"], "error");
        assert_eq!(v["type"], "fencing");
        assert_eq!(v["auth"], "s3cr3t");
        assert_eq!(v["q"], "fence%20n2");
        assert_eq!(v["f"]["hostname"], "n1");
    }
}
