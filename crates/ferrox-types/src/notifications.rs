//! `notifications.cfg` as Proxmox VE 8.1+ writes it: targets (`webhook`, `sendmail`) and
//! matchers that route a notification to targets by severity and fields. Webhook secrets
//! are kept apart, in `priv/notifications.cfg` (`webhook: <name>` with `secret` lines).

use crate::section_config::SectionConfigError;
use crate::section_config::{self, header_line, invalid, parse_bool, property_line};
use std::collections::BTreeMap;

pub const SEVERITIES: &[&str] = &["info", "notice", "warning", "error", "unknown"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Webhook {
        url: String,
        /// `post`, `put` or `get`.
        method: String,
        /// `(name, value)`; in the file the value is base64.
        headers: Vec<(String, String)>,
        /// The body template (Handlebars); in the file base64.
        body: Option<String>,
    },
    Sendmail {
        mailto: Vec<String>,
        mailto_user: Vec<String>,
        from_address: Option<String>,
        author: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    pub name: String,
    pub target: Target,
    pub comment: Option<String>,
    pub disable: bool,
}

impl TargetEntry {
    pub fn type_name(&self) -> &'static str {
        match self.target {
            Target::Webhook { .. } => "webhook",
            Target::Sendmail { .. } => "sendmail",
        }
    }
}

/// `exact:<field>=<value>[,<value>...]` or `regex:<field>=<regex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldMatch {
    Exact { field: String, values: Vec<String> },
    Regex { field: String, pattern: String },
}

impl FieldMatch {
    pub fn parse(text: &str) -> Result<FieldMatch, String> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("'{text}' is not exact:FIELD=VALUE or regex:FIELD=REGEX"))?;
        let (field, value) = rest
            .split_once('=')
            .ok_or_else(|| format!("'{text}': missing '='"))?;
        if field.is_empty()
            || !field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("'{field}' is not a field name"));
        }
        match kind {
            "exact" => Ok(FieldMatch::Exact {
                field: field.into(),
                values: value.split(',').map(String::from).collect(),
            }),
            "regex" => Ok(FieldMatch::Regex {
                field: field.into(),
                pattern: value.into(),
            }),
            _ => Err(format!("'{kind}' is not exact or regex")),
        }
    }

    /// As a parameter format check.
    pub fn check(text: &str) -> Result<(), String> {
        FieldMatch::parse(text).map(drop)
    }

    pub fn to_text(&self) -> String {
        match self {
            FieldMatch::Exact { field, values } => format!("exact:{field}={}", values.join(",")),
            FieldMatch::Regex { field, pattern } => format!("regex:{field}={pattern}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matcher {
    pub name: String,
    pub targets: Vec<String>,
    pub match_severity: Vec<String>,
    pub match_field: Vec<FieldMatch>,
    /// `all` (default) or `any`.
    pub mode: String,
    pub invert_match: bool,
    pub comment: Option<String>,
    pub disable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationConfig {
    pub targets: BTreeMap<String, TargetEntry>,
    pub matchers: BTreeMap<String, Matcher>,
    /// Section names in file order.
    pub order: Vec<String>,
    pub digest: String,
}

/// A target or matcher name (Proxmox VE's `pve-configid`).
pub fn entry_name(name: &str) -> Result<(), String> {
    crate::status_config::server_id(name)
}

fn b64_decode(id: &str, key: &str, value: &str) -> Result<String, SectionConfigError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid(id, format!("property '{key}': not base64 UTF-8 text")))
}

fn b64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `name=<name>,value=<base64>` (a webhook header or secret line).
fn parse_pair(id: &str, key: &str, text: &str) -> Result<(String, String), SectionConfigError> {
    let mut name = None;
    let mut value = None;
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("name", n)) => name = Some(n.to_string()),
            Some(("value", v)) => value = Some(b64_decode(id, key, v)?),
            _ => {
                return Err(invalid(
                    id,
                    format!("property '{key}': '{text}' is not name=...,value=..."),
                ))
            }
        }
    }
    match (name, value) {
        (Some(n), Some(v)) => Ok((n, v)),
        _ => Err(invalid(
            id,
            format!("property '{key}': needs name and value"),
        )),
    }
}

/// `priv/notifications.cfg`: the secrets of each webhook (`webhook: <name>` sections with
/// `secret name=<name>,value=<base64>` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub by_target: BTreeMap<String, Vec<(String, String)>>,
}

impl Secrets {
    pub fn parse(raw: &str) -> Result<Secrets, SectionConfigError> {
        let mut out = Secrets::default();
        for section in section_config::parse_with_lists(raw, &["secret"])? {
            let pairs = section
                .properties
                .iter()
                .filter(|(k, _)| k == "secret")
                .map(|(k, v)| parse_pair(&section.id, k, v))
                .collect::<Result<Vec<_>, _>>()?;
            out.by_target.insert(section.id, pairs);
        }
        Ok(out)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (target, pairs) in self.by_target.iter().filter(|(_, p)| !p.is_empty()) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&header_line("webhook", target));
            for (name, value) in pairs {
                out.push_str(&property_line(
                    "secret",
                    &format!("name={name},value={}", b64_encode(value)),
                ));
            }
        }
        out
    }
}

/// A request's `name=<name>,value=<base64>` (a webhook header or secret).
pub fn name_value(text: &str) -> Result<(String, String), String> {
    parse_pair("", "value", text).map_err(|e| match e {
        SectionConfigError::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

/// The checks a request's values share with the parser.
pub fn check_url(url: &str) -> Result<(), String> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!("'{url}' is not an http(s) URL"))
    }
}

pub fn check_mail(address: &str) -> Result<(), String> {
    crate::format::email(address)
}

impl NotificationConfig {
    pub fn parse(raw: &str) -> Result<NotificationConfig, SectionConfigError> {
        let mut cfg = NotificationConfig {
            digest: section_config::digest(raw),
            ..NotificationConfig::default()
        };
        let lists = [
            "target",
            "match-severity",
            "match-field",
            "header",
            "mailto",
            "mailto-user",
        ];
        for section in section_config::parse_with_lists(raw, &lists)? {
            let id = section.id.clone();
            entry_name(&id).map_err(|e| invalid(&id, e))?;
            let all = |key: &str| -> Vec<String> {
                section
                    .properties
                    .iter()
                    .filter(|(k, _)| k == key)
                    .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let one = |key: &str| -> Option<String> {
                section
                    .properties
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let flag = |key: &str| one(key).map(|v| parse_bool(&id, key, &v)).transpose();
            let comment = one("comment");
            let disable = flag("disable")?.unwrap_or(false);
            match section.section_type.as_str() {
                "webhook" => {
                    let url =
                        one("url").ok_or_else(|| invalid(&id, "missing property 'url'".into()))?;
                    check_url(&url).map_err(|e| invalid(&id, format!("property 'url': {e}")))?;
                    let method = one("method").unwrap_or_else(|| "post".into());
                    if !matches!(method.as_str(), "post" | "put" | "get") {
                        return Err(invalid(
                            &id,
                            format!("property 'method': '{method}' is not post, put or get"),
                        ));
                    }
                    let headers = section
                        .properties
                        .iter()
                        .filter(|(k, _)| k == "header")
                        .map(|(k, v)| parse_pair(&id, k, v))
                        .collect::<Result<Vec<_>, _>>()?;
                    let body = one("body")
                        .map(|b| b64_decode(&id, "body", &b))
                        .transpose()?;
                    cfg.targets.insert(
                        id.clone(),
                        TargetEntry {
                            name: id.clone(),
                            target: Target::Webhook {
                                url,
                                method,
                                headers,
                                body,
                            },
                            comment,
                            disable,
                        },
                    );
                }
                "sendmail" => {
                    let mailto = all("mailto");
                    for m in &mailto {
                        check_mail(m)
                            .map_err(|e| invalid(&id, format!("property 'mailto': {e}")))?;
                    }
                    let from_address = one("from-address");
                    if let Some(f) = &from_address {
                        check_mail(f)
                            .map_err(|e| invalid(&id, format!("property 'from-address': {e}")))?;
                    }
                    cfg.targets.insert(
                        id.clone(),
                        TargetEntry {
                            name: id.clone(),
                            target: Target::Sendmail {
                                mailto,
                                mailto_user: all("mailto-user"),
                                from_address,
                                author: one("author"),
                            },
                            comment,
                            disable,
                        },
                    );
                }
                "matcher" => {
                    let match_severity = all("match-severity");
                    if let Some(bad) = match_severity
                        .iter()
                        .find(|s| !SEVERITIES.contains(&s.as_str()))
                    {
                        return Err(invalid(
                            &id,
                            format!("property 'match-severity': unknown severity '{bad}'"),
                        ));
                    }
                    let match_field = section
                        .properties
                        .iter()
                        .filter(|(k, _)| k == "match-field")
                        .map(|(_, v)| {
                            FieldMatch::parse(v)
                                .map_err(|e| invalid(&id, format!("property 'match-field': {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let mode = one("mode").unwrap_or_else(|| "all".into());
                    if !matches!(mode.as_str(), "all" | "any") {
                        return Err(invalid(
                            &id,
                            format!("property 'mode': '{mode}' is not all or any"),
                        ));
                    }
                    cfg.matchers.insert(
                        id.clone(),
                        Matcher {
                            name: id.clone(),
                            targets: all("target"),
                            match_severity,
                            match_field,
                            mode,
                            invert_match: flag("invert-match")?.unwrap_or(false),
                            comment,
                            disable,
                        },
                    );
                }
                other => return Err(invalid(&id, format!("unknown section type '{other}'"))),
            }
            if cfg.order.contains(&id) {
                return Err(invalid(&id, "defined twice".into()));
            }
            cfg.order.push(id);
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            if !out.is_empty() {
                out.push('\n');
            }
            if let Some(t) = self.targets.get(name) {
                out.push_str(&header_line(t.type_name(), name));
                match &t.target {
                    Target::Webhook {
                        url,
                        method,
                        headers,
                        body,
                    } => {
                        out.push_str(&property_line("url", url));
                        out.push_str(&property_line("method", method));
                        for (n, v) in headers {
                            out.push_str(&property_line(
                                "header",
                                &format!("name={n},value={}", b64_encode(v)),
                            ));
                        }
                        if let Some(b) = body {
                            out.push_str(&property_line("body", &b64_encode(b)));
                        }
                    }
                    Target::Sendmail {
                        mailto,
                        mailto_user,
                        from_address,
                        author,
                    } => {
                        for m in mailto {
                            out.push_str(&property_line("mailto", m));
                        }
                        for u in mailto_user {
                            out.push_str(&property_line("mailto-user", u));
                        }
                        if let Some(f) = from_address {
                            out.push_str(&property_line("from-address", f));
                        }
                        if let Some(a) = author {
                            out.push_str(&property_line("author", a));
                        }
                    }
                }
                if let Some(c) = &t.comment {
                    out.push_str(&property_line("comment", c));
                }
                if t.disable {
                    out.push_str(&property_line("disable", "1"));
                }
            } else if let Some(m) = self.matchers.get(name) {
                out.push_str(&header_line("matcher", name));
                for t in &m.targets {
                    out.push_str(&property_line("target", t));
                }
                if !m.match_severity.is_empty() {
                    out.push_str(&property_line(
                        "match-severity",
                        &m.match_severity.join(","),
                    ));
                }
                for f in &m.match_field {
                    out.push_str(&property_line("match-field", &f.to_text()));
                }
                out.push_str(&property_line("mode", &m.mode));
                if m.invert_match {
                    out.push_str(&property_line("invert-match", "1"));
                }
                if let Some(c) = &m.comment {
                    out.push_str(&property_line("comment", c));
                }
                if m.disable {
                    out.push_str(&property_line("disable", "1"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_matchers_read_back_as_written() {
        let text = "webhook: hook\n\turl http://127.0.0.1:9/notify\n\tmethod post\n\theader name=Content-Type,value=YXBwbGljYXRpb24vanNvbg==\n\tbody eyJ0aXRsZSI6Int7IHRpdGxlIH19In0=\n\nsendmail: mail\n\tmailto root@example.com\n\tmailto-user root@pam\n\nmatcher: errors\n\ttarget hook\n\ttarget mail\n\tmatch-severity error,warning\n\tmatch-field exact:type=fencing,vzdump\n\tmode all\n";
        let cfg = NotificationConfig::parse(text).unwrap();
        let Target::Webhook { headers, body, .. } = &cfg.targets["hook"].target else {
            panic!("not a webhook");
        };
        assert_eq!(
            headers,
            &[("Content-Type".to_string(), "application/json".to_string())]
        );
        assert_eq!(body.as_deref(), Some("{\"title\":\"{{ title }}\"}"));
        assert_eq!(cfg.matchers["errors"].targets, ["hook", "mail"]);
        assert_eq!(
            cfg.matchers["errors"].match_field,
            [FieldMatch::Exact {
                field: "type".into(),
                values: vec!["fencing".into(), "vzdump".into()]
            }]
        );
        let again = NotificationConfig::parse(&cfg.to_text()).unwrap();
        assert_eq!((again.targets, again.matchers), (cfg.targets, cfg.matchers));
    }

    #[test]
    fn bad_values_name_their_property() {
        for (text, what) in [
            ("webhook: h\n\turl ftp://x\n", "url"),
            ("webhook: h\n\turl http://x\n\tmethod delete\n", "method"),
            ("matcher: m\n\tmatch-severity fatal\n", "match-severity"),
            ("matcher: m\n\tmatch-field fuzzy:type=x\n", "match-field"),
            ("sendmail: s\n\tmailto not-an-address\n", "mailto"),
        ] {
            let err = NotificationConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err}");
        }
    }
}
