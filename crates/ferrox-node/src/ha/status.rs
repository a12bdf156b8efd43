//! The HA status as Proxmox VE words it (`GET /cluster/ha/status/current`): the quorum,
//! the master, the fencing (arm) state, one line per LRM and one per service. Tools parse
//! these texts (a node in maintenance is recognised by "maintenance mode"), so they follow
//! pve-ha-manager's `API2/HA/Status.pm` word for word. Pure: the caller reads the files.

use ferrox_api_types::ha::HaStatusEntry;
use ferrox_types::{HaResources, LrmStatus, ManagerStatus, ServiceState, ServiceStatus};
use std::collections::BTreeMap;

/// What the status is computed from.
pub struct Inputs<'a> {
    /// Unix seconds.
    pub now: i64,
    pub local_node: &'a str,
    pub quorate: bool,
    pub manager: &'a ManagerStatus,
    pub resources: &'a HaResources,
    /// Each node's `lrm_status`, where one could be read.
    pub lrm: &'a BTreeMap<String, LrmStatus>,
    /// `crs: ha=...` of `datacenter.cfg`.
    pub crs_mode: Option<&'a str>,
    /// The node a service's guest is configured on.
    pub guest_node: &'a dyn Fn(&str) -> Option<String>,
}

/// Perl's `scalar localtime($t)`: `Thu Dec  3 08:22:37 2026`, in the node's time zone.
pub fn localtime(t: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(t, 0).single() {
        Some(when) => when.format("%a %b %e %H:%M:%S %Y").to_string(),
        None => t.to_string(),
    }
}

fn timestamp_to_status(now: i64, timestamp: i64) -> &'static str {
    let diff = now - timestamp;
    if diff > 30 {
        "old timestamp - dead?"
    } else if diff < -2 {
        "detected time drift!"
    } else {
        "active"
    }
}

fn row(id: String, kind: &str, node: Option<String>, status: String) -> HaStatusEntry {
    HaStatusEntry {
        id,
        kind: kind.to_string(),
        status,
        node,
        ..HaStatusEntry::default()
    }
}

/// Services counted as running on (or moving to) `node`, as the LRM's idle check does.
fn active_services(services: &BTreeMap<String, ServiceStatus>, node: &str) -> usize {
    services
        .values()
        .filter(|s| s.node == node || s.target.as_deref() == Some(node))
        .filter(|s| {
            !matches!(
                s.state,
                ServiceState::Stopped
                    | ServiceState::Freeze
                    | ServiceState::Error
                    | ServiceState::RequestStart
            )
        })
        .count()
}

/// What the user should read about a service: pve-ha-manager's verbose service state.
fn verbose_state(
    status: Option<&ServiceStatus>,
    request: Option<&str>,
    node: Option<&str>,
) -> String {
    let Some(request) = request else {
        return "deleting".into();
    };
    if request == "ignored" {
        return "ignored".into();
    }
    if node.is_none() {
        return "not found".into();
    }
    let Some(status) = status else {
        return "queued".into();
    };
    let current = status.state.as_str();
    match current {
        "stopped" if request == "started" => "starting".into(),
        "stopped" if request == "disabled" => "disabled".into(),
        "started" if !status.running => "starting".into(),
        "started" if request == "stopped" || request == "disabled" => "stopping".into(),
        "error" if request == "disabled" => "clearing error flag".into(),
        other => other.into(),
    }
}

pub fn current(input: &Inputs<'_>) -> Vec<HaStatusEntry> {
    let ms = input.manager;
    let local = input.local_node.to_string();
    let mut out = vec![HaStatusEntry {
        quorate: Some(u8::from(input.quorate)),
        ..row(
            "quorum".into(),
            "quorum",
            Some(local.clone()),
            if input.quorate {
                "OK".into()
            } else {
                format!("No quorum on node '{local}'!")
            },
        )
    }];

    let master_fresh = ms
        .timestamp
        .is_some_and(|t| timestamp_to_status(input.now, t) == "active");
    if let (Some(master), Some(timestamp)) = (&ms.master_node, ms.timestamp) {
        let mut state = timestamp_to_status(input.now, timestamp);
        // A master with nothing to manage that is not active is idle.
        if input.quorate && state != "active" && input.resources.resources.is_empty() {
            state = "idle";
        }
        let mut extra = String::new();
        if let Some(d) = &ms.disarm {
            extra.push_str(&format!(
                " - {}, resource mode: {}",
                d.state.as_str(),
                d.mode.as_str()
            ));
        }
        if let Some(mode) = input.crs_mode.filter(|m| *m != "basic") {
            extra.push_str(&format!(" - {mode} load CRS"));
        }
        out.push(HaStatusEntry {
            timestamp: Some(timestamp),
            ..row(
                "master".into(),
                "master",
                Some(master.clone()),
                format!("{master} ({state}, {}){extra}", localtime(timestamp)),
            )
        });
    }

    let fencing_node = Some(ms.master_node.clone().unwrap_or_else(|| local.clone()));
    out.push(match &ms.disarm {
        Some(d) => {
            let state = d.state.as_str();
            let watchdog = if state == "disarmed" {
                "CRM watchdog released"
            } else {
                "CRM watchdog active"
            };
            HaStatusEntry {
                armed_state: Some(state.to_string()),
                resource_mode: Some(d.mode.as_str().to_string()),
                ..row(
                    "fencing".into(),
                    "fencing",
                    fencing_node,
                    format!("{state}, resource mode: {} ({watchdog})", d.mode.as_str()),
                )
            }
        }
        None => {
            let (state, watchdog) = if master_fresh {
                ("armed", "CRM watchdog active")
            } else {
                ("standby", "CRM watchdog standby")
            };
            HaStatusEntry {
                armed_state: Some(state.to_string()),
                ..row(
                    "fencing".into(),
                    "fencing",
                    fencing_node,
                    format!("{state} ({watchdog})"),
                )
            }
        }
    });

    for node in ms.node_status.keys() {
        let id = format!("lrm:{node}");
        let Some((lrm, timestamp)) = input
            .lrm
            .get(node)
            .and_then(|l| l.timestamp.map(|t| (l, t)))
        else {
            out.push(row(
                id,
                "lrm",
                Some(node.clone()),
                format!("{node} (unable to read lrm status)"),
            ));
            continue;
        };
        let mut state = timestamp_to_status(input.now, timestamp).to_string();
        let mode = lrm.mode.map(|m| m.as_str());
        let lrm_state = lrm.state.clone().unwrap_or_else(|| "unknown".into());
        let watchdog = if state == "active" && (lrm_state == "active" || lrm_state == "maintenance")
        {
            "watchdog active"
        } else if mode == Some("disarm") {
            "watchdog released"
        } else {
            "watchdog standby"
        };
        if state == "active" {
            let mode = mode.unwrap_or("active");
            state = if mode != "active" {
                format!("{mode} mode")
            } else if lrm_state == "wait_for_agent_lock"
                && active_services(&ms.service_status, node) == 0
            {
                "idle".into()
            } else {
                lrm_state
            };
        } else if let Some(mode @ ("maintenance" | "disarm")) = mode {
            state = format!("{mode} mode");
        }
        out.push(HaStatusEntry {
            timestamp: Some(timestamp),
            ..row(
                id,
                "lrm",
                Some(node.clone()),
                format!("{node} ({state}, {watchdog}, {})", localtime(timestamp)),
            )
        });
    }

    let mut sids: Vec<&String> = ms.service_status.keys().collect();
    sids.extend(
        input
            .resources
            .resources
            .keys()
            .filter(|sid| !ms.service_status.contains_key(*sid)),
    );
    for sid in sids {
        let status = ms.service_status.get(sid);
        let config = input.resources.resources.get(sid);
        let configured_node = config.and_then(|_| (input.guest_node)(sid));
        let node = status.map(|s| s.node.clone()).or(configured_node.clone());
        let mut state = verbose_state(
            status,
            config.map(|c| c.state.as_str()),
            configured_node.as_deref(),
        );
        if ms
            .disarm
            .as_ref()
            .is_some_and(|d| d.mode.as_str() == "ignore")
        {
            state = "ignore".into();
        }
        let text = format!("{sid} ({}, {state})", node.as_deref().unwrap_or("---"));
        out.push(HaStatusEntry {
            sid: Some(sid.clone()),
            crm_state: status.map(|s| s.state.as_str().to_string()),
            state: Some(state),
            request_state: config.map(|c| c.state.as_str().to_string()),
            max_restart: config.map(|c| c.max_restart),
            max_relocate: config.map(|c| c.max_relocate),
            failback: config.map(|c| u8::from(c.failback)),
            group: config.and_then(|c| c.group.clone()),
            comment: config.and_then(|c| c.comment.clone()),
            ..row(format!("service:{sid}"), "service", node, text)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrox_types::{Disarm, DisarmMode, DisarmState, LrmMode, NodeState};

    fn lrm(state: &str, mode: LrmMode, timestamp: i64) -> LrmStatus {
        LrmStatus {
            state: Some(state.into()),
            mode: Some(mode),
            timestamp: Some(timestamp),
            ..LrmStatus::default()
        }
    }

    #[test]
    fn texts_are_proxmox_ve_s() {
        let now = 1_764_750_157;
        let mut ms = ManagerStatus {
            master_node: Some("n1".into()),
            timestamp: Some(now - 2),
            ..ManagerStatus::default()
        };
        for n in ["n1", "n2", "n3"] {
            ms.node_status.insert(n.into(), NodeState::Online);
        }
        ms.service_status.insert(
            "vm:100".into(),
            ServiceStatus {
                state: ServiceState::Started,
                node: "n1".into(),
                uid: None,
                target: None,
                timeout: None,
                cmd: None,
                failed_nodes: None,
                maintenance_node: None,
                running: true,
            },
        );
        let resources = HaResources::parse("vm: 100\n\tstate started\n\nvm: 101\n").unwrap();
        let lrms = BTreeMap::from([
            ("n1".to_string(), lrm("active", LrmMode::Active, now - 1)),
            (
                "n2".to_string(),
                lrm("maintenance", LrmMode::Maintenance, now - 1),
            ),
            (
                "n3".to_string(),
                lrm("wait_for_agent_lock", LrmMode::Active, now - 1),
            ),
        ]);
        let guest_node = |sid: &str| match sid {
            "vm:100" => Some("n1".to_string()),
            "vm:101" => Some("n3".to_string()),
            _ => None,
        };
        let rows = current(&Inputs {
            now,
            local_node: "n1",
            quorate: true,
            manager: &ms,
            resources: &resources,
            lrm: &lrms,
            crs_mode: Some("static"),
            guest_node: &guest_node,
        });
        let text = |id: &str| {
            rows.iter()
                .find(|r| r.id == id)
                .map(|r| r.status.clone())
                .unwrap()
        };
        assert_eq!(text("quorum"), "OK");
        assert_eq!(
            text("master"),
            format!("n1 (active, {}) - static load CRS", localtime(now - 2))
        );
        assert_eq!(text("fencing"), "armed (CRM watchdog active)");
        assert_eq!(
            text("lrm:n1"),
            format!("n1 (active, watchdog active, {})", localtime(now - 1))
        );
        assert!(text("lrm:n2").starts_with("n2 (maintenance mode, watchdog active, "));
        assert!(text("lrm:n3").starts_with("n3 (idle, watchdog standby, "));
        assert_eq!(text("service:vm:100"), "vm:100 (n1, started)");
        assert_eq!(text("service:vm:101"), "vm:101 (n3, queued)");
        let no_guest = |_: &str| None;
        let rows = current(&Inputs {
            guest_node: &no_guest,
            now,
            local_node: "n1",
            quorate: true,
            manager: &ms,
            resources: &resources,
            lrm: &lrms,
            crs_mode: None,
        });
        let vm101 = rows.iter().find(|r| r.id == "service:vm:101").unwrap();
        assert_eq!(vm101.status, "vm:101 (---, not found)");
        assert!(localtime(0).ends_with("1970"), "{}", localtime(0));

        ms.disarm = Some(Disarm {
            mode: DisarmMode::Freeze,
            state: DisarmState::Disarmed,
        });
        let rows = current(&Inputs {
            now,
            local_node: "n1",
            quorate: false,
            manager: &ms,
            resources: &resources,
            lrm: &lrms,
            crs_mode: None,
            guest_node: &guest_node,
        });
        let fencing = rows.iter().find(|r| r.id == "fencing").unwrap();
        assert_eq!(
            fencing.status,
            "disarmed, resource mode: freeze (CRM watchdog released)"
        );
        assert_eq!(rows[0].status, "No quorum on node 'n1'!");
    }
}
