//! The HA files as Proxmox VE writes them in `/etc/pve`: `ha/resources.cfg` (section
//! config) and the `crs:`/`ha:` lines of `datacenter.cfg` (property strings).

use crate::ha::{DatacenterConfig, FieldError, RequestState};
use crate::property_string::PropertyString;
use crate::section_config::invalid;
use crate::section_config::{self, SectionConfigError};
use std::collections::BTreeMap;

/// One entry of `ha/resources.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaResource {
    /// `vm:100`, `ct:101`.
    pub sid: String,
    pub state: RequestState,
    pub max_restart: u32,
    pub max_relocate: u32,
    pub group: Option<String>,
    pub failback: bool,
    pub comment: Option<String>,
}

impl HaResource {
    pub fn new(sid: &str) -> HaResource {
        HaResource {
            sid: sid.to_string(),
            state: RequestState::Started,
            max_restart: 1,
            max_relocate: 1,
            group: None,
            failback: true,
            comment: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaResources {
    pub resources: BTreeMap<String, HaResource>,
}

impl HaResources {
    pub fn parse(raw: &str) -> Result<HaResources, SectionConfigError> {
        let mut out = HaResources::default();
        for section in section_config::parse(raw)? {
            if !matches!(section.section_type.as_str(), "vm" | "ct") {
                return Err(invalid(
                    &section.id,
                    format!("unknown resource type '{}'", section.section_type),
                ));
            }
            if section.id.parse::<u32>().is_err() {
                return Err(invalid(&section.id, "the id must be a guest id".into()));
            }
            let sid = format!("{}:{}", section.section_type, section.id);
            let mut r = HaResource::new(&sid);
            for (key, value) in &section.properties {
                let number = |what: &str| {
                    value.parse::<u32>().map_err(|_| {
                        invalid(
                            &sid,
                            format!("property '{what}': '{value}' is not a number"),
                        )
                    })
                };
                match key.as_str() {
                    "state" => {
                        r.state = RequestState::parse_with_alias(value).ok_or_else(|| {
                            invalid(&sid, format!("property 'state': unknown state '{value}'"))
                        })?
                    }
                    "max_restart" => r.max_restart = number("max_restart")?,
                    "max_relocate" => r.max_relocate = number("max_relocate")?,
                    "group" => r.group = Some(value.clone()),
                    "failback" => r.failback = section_config::parse_bool(&sid, key, value)?,
                    "comment" => r.comment = Some(value.clone()),
                    other => return Err(invalid(&sid, format!("unknown property '{other}'"))),
                }
            }
            if out.resources.insert(sid.clone(), r).is_some() {
                return Err(invalid(&sid, "resource defined twice".into()));
            }
        }
        Ok(out)
    }

    /// Proxmox VE writes only what differs from the defaults (and always `state`).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for r in self.resources.values() {
            let (kind, id) = r.sid.split_once(':').unwrap_or(("vm", &r.sid));
            out.push_str(&section_config::header_line(kind, id));
            if let Some(c) = &r.comment {
                out.push_str(&section_config::property_line("comment", c));
            }
            if !r.failback {
                out.push_str("\tfailback 0\n");
            }
            if let Some(g) = &r.group {
                out.push_str(&section_config::property_line("group", g));
            }
            if r.max_relocate != 1 {
                out.push_str(&format!("\tmax_relocate {}\n", r.max_relocate));
            }
            if r.max_restart != 1 {
                out.push_str(&format!("\tmax_restart {}\n", r.max_restart));
            }
            out.push_str(&format!("\tstate {}\n\n", r.state.as_str()));
        }
        out
    }
}

impl DatacenterConfig {
    /// Reads `datacenter.cfg` (`key: value` lines; `crs` and `ha` are property strings).
    /// Keys HA does not use are ignored.
    pub fn parse_cfg(text: &str) -> Result<DatacenterConfig, FieldError> {
        let mut json = serde_json::Map::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(FieldError::new(line, "expected 'key: value'"));
            };
            let key = key.trim();
            if key == "max_workers" {
                json.insert(
                    key.to_string(),
                    serde_json::Value::String(value.trim().to_string()),
                );
                continue;
            }
            if !matches!(key, "crs" | "ha" | "bwlimit") {
                continue;
            }
            let props = PropertyString::parse(value.trim())
                .map_err(|e| FieldError::new(key, e.to_string()))?;
            let mut obj = serde_json::Map::new();
            for (k, v) in props.items {
                let k = k.unwrap_or_else(|| {
                    match key {
                        "crs" => "ha",
                        "ha" => "shutdown_policy",
                        _ => "default",
                    }
                    .into()
                });
                obj.insert(k, serde_json::Value::String(v));
            }
            json.insert(key.to_string(), serde_json::Value::Object(obj));
        }
        DatacenterConfig::from_json(&serde_json::Value::Object(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_round_trip_and_errors_name_the_resource() {
        let text = "vm: 100\n\tmax_restart 2\n\tstate started\n\nct: 101\n\tstate disabled\n\tcomment db\n";
        let cfg = HaResources::parse(text).unwrap();
        assert_eq!(cfg.resources["vm:100"].max_restart, 2);
        assert_eq!(cfg.resources["ct:101"].state, RequestState::Disabled);
        assert_eq!(HaResources::parse(&cfg.to_text()).unwrap(), cfg);
        let e = HaResources::parse("vm: 100\n\tstate sleeping\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("vm:100") && e.contains("state"), "{e}");
        assert!(HaResources::parse("vm: x\n\tstate started\n").is_err());
    }

    #[test]
    fn datacenter_crs_and_ha_lines() {
        let cfg = DatacenterConfig::parse_cfg(
            "keyboard: en-us\ncrs: ha=static,ha-rebalance-on-start=1\nha: shutdown_policy=migrate\n",
        )
        .unwrap();
        assert_eq!(cfg.crs.ha, "static");
        assert!(cfg.crs.rebalance_on_start);
        assert_eq!(cfg.shutdown_policy.as_deref(), Some("migrate"));
        let e = DatacenterConfig::parse_cfg("crs: ha-auto-rebalance-threshold=x\n").unwrap_err();
        assert!(e.field.contains("threshold"), "{e}");
    }

    #[test]
    fn datacenter_migration_bandwidth_limit() {
        let limit = |text: &str| DatacenterConfig::parse_cfg(text).map(|c| c.migration_bwlimit_kib);
        assert_eq!(
            limit(
                "keyboard: de
"
            ),
            Ok(None)
        );
        assert_eq!(
            limit(
                "bwlimit: migration=2048,default=100
"
            ),
            Ok(Some(2048))
        );
        assert_eq!(
            limit(
                "bwlimit: default=100,restore=5
"
            ),
            Ok(Some(100))
        );
        assert_eq!(
            limit(
                "bwlimit: migration=0,default=100
"
            ),
            Ok(None)
        );
        assert_eq!(
            limit(
                "bwlimit: clone=7
"
            ),
            Ok(None)
        );
        let e = limit(
            "bwlimit: migration=fast
",
        )
        .unwrap_err();
        assert_eq!(e.field, "bwlimit.migration");
        let e = limit(
            "bwlimit: speed=1
",
        )
        .unwrap_err();
        assert_eq!(e.field, "bwlimit.speed");
    }
}
