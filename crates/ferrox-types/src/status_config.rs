//! `status.cfg`: the external metric servers every node pushes its figures to, as
//! Proxmox VE writes them (`influxdb: <id>` / `graphite: <id>` sections). An InfluxDB
//! token is not kept here but in `priv/metricserver/<id>.pw`.

use crate::section_config::invalid;
use crate::section_config::{self, header_line, parse_bool, property_line, SectionConfigError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    Influxdb {
        /// `udp` (default), `http` or `https`.
        proto: String,
        organization: Option<String>,
        bucket: Option<String>,
        /// Below the server's root for `http(s)` (a reverse proxy's prefix).
        api_path_prefix: Option<String>,
        max_body_size: Option<u64>,
        verify_certificate: bool,
    },
    Graphite {
        /// `udp` (default) or `tcp`.
        proto: String,
        /// The first element of every metric path (default `proxmox`).
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricServer {
    pub id: String,
    pub kind: ServerKind,
    pub server: String,
    pub port: u16,
    pub disable: bool,
    /// UDP datagram size (default 1500).
    pub mtu: Option<u32>,
    /// Seconds for TCP/HTTP (default 1).
    pub timeout: Option<u32>,
}

impl MetricServer {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ServerKind::Influxdb { .. } => "influxdb",
            ServerKind::Graphite { .. } => "graphite",
        }
    }

    pub fn proto(&self) -> &str {
        match &self.kind {
            ServerKind::Influxdb { proto, .. } | ServerKind::Graphite { proto, .. } => proto,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusConfig {
    pub servers: BTreeMap<String, MetricServer>,
    /// Ids in file order.
    pub order: Vec<String>,
    pub digest: String,
}

/// A metric server id (Proxmox VE's `pve-configid`).
pub fn server_id(id: &str) -> Result<(), String> {
    crate::format::config_id(id)
}

/// A Graphite path prefix: dot-separated words.
pub fn graphite_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{path}' is not a graphite path (words separated by dots)"
        ))
    }
}

/// What a property of an `influxdb`/`graphite` section may hold; the one check the API
/// and the parser share.
pub fn check_property(kind: &str, key: &str, value: &str) -> Result<(), String> {
    let number = |max: u64| -> Result<(), String> {
        match value.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(()),
            _ => Err(format!("'{value}' is not a number from 1 to {max}")),
        }
    };
    match (kind, key) {
        (_, "server") => crate::domains::server_name(value),
        (_, "port") => number(65535),
        (_, "mtu") => number(65536),
        (_, "timeout") => number(3600),
        (_, "disable") | ("influxdb", "verify-certificate") => parse_bool("", key, value)
            .map(drop)
            .map_err(|e| e.to_string()),
        ("influxdb", "proto") => match value {
            "udp" | "http" | "https" => Ok(()),
            _ => Err(format!("'{value}' is not udp, http or https")),
        },
        ("graphite", "proto") => match value {
            "udp" | "tcp" => Ok(()),
            _ => Err(format!("'{value}' is not udp or tcp")),
        },
        ("graphite", "path") => graphite_path(value),
        ("influxdb", "organization" | "bucket") => crate::format::group_id(value),
        ("influxdb", "api-path-prefix") => crate::format::absolute_path(value),
        ("influxdb", "max-body-size") => number(u64::MAX),
        _ => Err(format!("unknown property '{key}'")),
    }
}

impl StatusConfig {
    pub fn parse(raw: &str) -> Result<StatusConfig, SectionConfigError> {
        let mut cfg = StatusConfig {
            digest: section_config::digest(raw),
            ..StatusConfig::default()
        };
        for section in section_config::parse(raw)? {
            let id = section.id.clone();
            server_id(&id).map_err(|e| invalid(&id, e))?;
            let kind = section.section_type.as_str();
            if !matches!(kind, "influxdb" | "graphite") {
                return Err(invalid(&id, format!("unknown metric server type '{kind}'")));
            }
            let mut props = BTreeMap::new();
            for (key, value) in &section.properties {
                check_property(kind, key, value)
                    .map_err(|e| invalid(&id, format!("property '{key}': {e}")))?;
                props.insert(key.as_str(), value.clone());
            }
            let server = props
                .get("server")
                .cloned()
                .ok_or_else(|| invalid(&id, "missing property 'server'".into()))?;
            let port = props
                .get("port")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| invalid(&id, "missing property 'port'".into()))?;
            let flag = |key: &str, default: bool| {
                props
                    .get(key)
                    .map(|v| parse_bool(&id, key, v))
                    .transpose()
                    .map(|b| b.unwrap_or(default))
            };
            let kind = if kind == "influxdb" {
                ServerKind::Influxdb {
                    proto: props.get("proto").cloned().unwrap_or_else(|| "udp".into()),
                    organization: props.get("organization").cloned(),
                    bucket: props.get("bucket").cloned(),
                    api_path_prefix: props.get("api-path-prefix").cloned(),
                    max_body_size: props.get("max-body-size").and_then(|v| v.parse().ok()),
                    verify_certificate: flag("verify-certificate", true)?,
                }
            } else {
                ServerKind::Graphite {
                    proto: props.get("proto").cloned().unwrap_or_else(|| "udp".into()),
                    path: props
                        .get("path")
                        .cloned()
                        .unwrap_or_else(|| "proxmox".into()),
                }
            };
            let entry = MetricServer {
                id: id.clone(),
                kind,
                server,
                port,
                disable: flag("disable", false)?,
                mtu: props.get("mtu").and_then(|v| v.parse().ok()),
                timeout: props.get("timeout").and_then(|v| v.parse().ok()),
            };
            if cfg.servers.insert(id.clone(), entry).is_some() {
                return Err(invalid(&id, "metric server defined twice".into()));
            }
            cfg.order.push(id);
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in self.order.iter().filter_map(|id| self.servers.get(id)) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&header_line(s.type_name(), &s.id));
            out.push_str(&property_line("server", &s.server));
            out.push_str(&property_line("port", &s.port.to_string()));
            match &s.kind {
                ServerKind::Influxdb {
                    proto,
                    organization,
                    bucket,
                    api_path_prefix,
                    max_body_size,
                    verify_certificate,
                } => {
                    out.push_str(&property_line("proto", proto));
                    for (key, value) in [
                        ("organization", organization),
                        ("bucket", bucket),
                        ("api-path-prefix", api_path_prefix),
                    ] {
                        if let Some(v) = value {
                            out.push_str(&property_line(key, v));
                        }
                    }
                    if let Some(m) = max_body_size {
                        out.push_str(&property_line("max-body-size", &m.to_string()));
                    }
                    if !verify_certificate {
                        out.push_str(&property_line("verify-certificate", "0"));
                    }
                }
                ServerKind::Graphite { proto, path } => {
                    out.push_str(&property_line("proto", proto));
                    out.push_str(&property_line("path", path));
                }
            }
            if let Some(m) = s.mtu {
                out.push_str(&property_line("mtu", &m.to_string()));
            }
            if let Some(t) = s.timeout {
                out.push_str(&property_line("timeout", &t.to_string()));
            }
            if s.disable {
                out.push_str(&property_line("disable", "1"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_read_back_as_written() {
        let text = "influxdb: influx\n\tserver 10.0.0.5\n\tport 8089\n\tproto udp\n\ngraphite: carbon\n\tserver graphite.example.com\n\tport 2003\n\tproto tcp\n\tpath pve.lab\n\ttimeout 2\n\tdisable 1\n";
        let cfg = StatusConfig::parse(text).unwrap();
        assert_eq!(cfg.order, ["influx", "carbon"]);
        assert_eq!(cfg.servers["influx"].proto(), "udp");
        assert!(cfg.servers["carbon"].disable);
        assert_eq!(
            StatusConfig::parse(&cfg.to_text()).unwrap().servers,
            cfg.servers
        );
    }

    #[test]
    fn bad_values_name_their_property() {
        for (text, what) in [
            ("influxdb: a\n\tserver bad host\n\tport 8089\n", "server"),
            ("influxdb: a\n\tserver h\n\tport 70000\n", "port"),
            (
                "graphite: a\n\tserver h\n\tport 2003\n\tproto http\n",
                "proto",
            ),
            (
                "graphite: a\n\tserver h\n\tport 2003\n\tpath a..b\n",
                "path",
            ),
            (
                "graphite: 1a\n\tserver h\n\tport 2003\n",
                "configuration ID",
            ),
        ] {
            let err = StatusConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err}");
        }
    }
}
