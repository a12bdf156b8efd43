//! `jobs.cfg`: the cluster's scheduled jobs, a section config as Proxmox VE keeps it.
//! Ferrox runs `vzdump:` (backup) jobs; sections of other types (`realm-sync:`, ...) are
//! kept as they are.
//!
//! ```text
//! vzdump: backup-nightly
//!     schedule 21:00
//!     storage local
//!     vmid 100,101
//!     mode snapshot
//!     prune-backups keep-last=3
//!     enabled 1
//! ```

use crate::calendar::CalendarEvent;
use crate::section_config::{
    self, header_line, invalid, parse_bool, property_line, Section, SectionConfigError,
};
use crate::storage::Retention;
use std::collections::BTreeMap;

/// Which guests a job backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Vmids(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJob {
    pub id: String,
    pub schedule: String,
    pub storage: String,
    pub selection: Selection,
    /// `snapshot`, `suspend` or `stop`.
    pub mode: String,
    pub enabled: bool,
    /// Only the guests on this node.
    pub node: Option<String>,
    pub prune_backups: Option<String>,
    pub comment: Option<String>,
    /// Keys Ferrox keeps without acting on them (`mailto`, `notes-template`, ...).
    pub other: BTreeMap<String, String>,
}

impl BackupJob {
    pub fn event(&self) -> CalendarEvent {
        // Checked when parsed or set: never fails here.
        CalendarEvent::parse(&self.schedule)
            .unwrap_or_else(|_| CalendarEvent::parse("00:00").expect("a fixed schedule parses"))
    }

    /// Whether the job covers guest `vmid` (on `node`).
    pub fn covers(&self, vmid: u32, node: &str) -> bool {
        self.enabled
            && self.node.as_deref().is_none_or(|n| n == node)
            && match &self.selection {
                Selection::All => true,
                Selection::Vmids(v) => v.contains(&vmid),
            }
    }

    /// The job's settings as `key → value`, as the API shows and takes them.
    pub fn properties(&self) -> BTreeMap<String, String> {
        let mut out = self.other.clone();
        out.insert("schedule".into(), self.schedule.clone());
        out.insert("storage".into(), self.storage.clone());
        match &self.selection {
            Selection::All => {
                out.insert("all".into(), "1".into());
            }
            Selection::Vmids(v) => {
                out.insert(
                    "vmid".into(),
                    v.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                );
            }
        }
        out.insert("mode".into(), self.mode.clone());
        out.insert(
            "enabled".into(),
            if self.enabled { "1" } else { "0" }.into(),
        );
        if let Some(n) = &self.node {
            out.insert("node".into(), n.clone());
        }
        if let Some(p) = &self.prune_backups {
            out.insert("prune-backups".into(), p.clone());
        }
        if let Some(c) = &self.comment {
            out.insert("comment".into(), c.clone());
        }
        out
    }

    /// A job from its id and `key → value` settings; errors name the key.
    pub fn from_properties(
        id: &str,
        props: &BTreeMap<String, String>,
    ) -> Result<BackupJob, SectionConfigError> {
        crate::format::config_id(id).map_err(|e| invalid(id, format!("id: {e}")))?;
        let get = |k: &str| props.get(k).cloned();
        let schedule = get("schedule").unwrap_or_else(|| "00:00".into());
        CalendarEvent::parse(&schedule)
            .map_err(|e| invalid(id, format!("property 'schedule': {e}")))?;
        let storage = get("storage").unwrap_or_else(|| "local".into());
        crate::format::storage_id(&storage)
            .map_err(|e| invalid(id, format!("property 'storage': {e}")))?;
        let all = match props.get("all") {
            Some(v) => parse_bool(id, "all", v)?,
            None => false,
        };
        let selection = match (all, props.get("vmid")) {
            (true, Some(_)) => {
                return Err(invalid(
                    id,
                    "property 'vmid': not together with 'all'".into(),
                ))
            }
            (true, None) => Selection::All,
            (false, Some(list)) => {
                let v = crate::format::vmid_list(list)
                    .map_err(|e| invalid(id, format!("property 'vmid': {e}")))?;
                if v.is_empty() {
                    return Err(invalid(id, "property 'vmid': no guest given".into()));
                }
                Selection::Vmids(v)
            }
            (false, None) => {
                return Err(invalid(
                    id,
                    "property 'vmid': give the guests, or all=1".into(),
                ))
            }
        };
        let mode = get("mode").unwrap_or_else(|| "snapshot".into());
        if !matches!(mode.as_str(), "snapshot" | "suspend" | "stop") {
            return Err(invalid(
                id,
                format!("property 'mode': '{mode}' is not snapshot, suspend or stop"),
            ));
        }
        let enabled = match props.get("enabled") {
            Some(v) => parse_bool(id, "enabled", v)?,
            None => true,
        };
        if let Some(n) = props.get("node") {
            crate::format::node_name(n)
                .map_err(|e| invalid(id, format!("property 'node': {e}")))?;
        }
        if let Some(p) = props.get("prune-backups") {
            Retention::parse(p)
                .map_err(|e| invalid(id, format!("property 'prune-backups': {e}")))?;
        }
        if let Some(c) = props.get("comment") {
            crate::format::single_line(c)
                .map_err(|e| invalid(id, format!("property 'comment': {e}")))?;
        }
        let known = [
            "schedule",
            "storage",
            "all",
            "vmid",
            "mode",
            "enabled",
            "node",
            "prune-backups",
            "comment",
        ];
        let mut other = BTreeMap::new();
        for (k, v) in props.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
            crate::format::single_line(v)
                .map_err(|e| invalid(id, format!("property '{k}': {e}")))?;
            other.insert(k.clone(), v.clone());
        }
        Ok(BackupJob {
            id: id.to_string(),
            schedule,
            storage,
            selection,
            mode,
            enabled,
            node: get("node"),
            prune_backups: get("prune-backups"),
            comment: get("comment"),
            other,
        })
    }
}

/// The parsed `jobs.cfg`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobsConfig {
    pub backups: BTreeMap<String, BackupJob>,
    /// Sections of job types Ferrox does not run, kept as they are.
    pub others: Vec<Section>,
}

impl JobsConfig {
    pub fn parse(raw: &str) -> Result<JobsConfig, SectionConfigError> {
        let mut cfg = JobsConfig::default();
        for section in section_config::parse(raw)? {
            if section.section_type != "vzdump" {
                cfg.others.push(section);
                continue;
            }
            let props: BTreeMap<String, String> = section.properties.iter().cloned().collect();
            let job = BackupJob::from_properties(&section.id, &props)?;
            cfg.backups.insert(section.id.clone(), job);
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for job in self.backups.values() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&header_line("vzdump", &job.id));
            for (k, v) in job.properties() {
                out.push_str(&property_line(&k, &v));
            }
        }
        for s in &self.others {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&header_line(&s.section_type, &s.id));
            for (k, v) in &s.properties {
                out.push_str(&property_line(k, v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_errors_name_the_property() {
        let raw = "vzdump: nightly\n\tschedule mon..fri 21:00\n\tstorage local\n\tvmid 100,101\n\tmode snapshot\n\tprune-backups keep-last=3\n\tenabled 1\n\tmailto root@example.com\n\nrealm-sync: ldap\n\tschedule daily\n\trealm corp\n";
        let cfg = JobsConfig::parse(raw).unwrap();
        let job = &cfg.backups["nightly"];
        assert_eq!(job.selection, Selection::Vmids(vec![100, 101]));
        assert!(job.covers(101, "n1") && !job.covers(102, "n1"));
        assert_eq!(job.other["mailto"], "root@example.com");
        assert_eq!(cfg.others.len(), 1);
        assert_eq!(JobsConfig::parse(&cfg.to_text()).unwrap(), cfg);
        for (bad, key) in [
            ("vzdump: j\n\tschedule 25:00\n\tall 1\n", "schedule"),
            ("vzdump: j\n\tall 1\n\tvmid 100\n", "vmid"),
            ("vzdump: j\n\tvmid 1\n", "vmid"),
            ("vzdump: j\n\tall 1\n\tmode fast\n", "mode"),
            (
                "vzdump: j\n\tall 1\n\tprune-backups keep=1\n",
                "prune-backups",
            ),
            ("vzdump: j\n\tall 1\n\tstorage a/b\n", "storage"),
        ] {
            let e = JobsConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
