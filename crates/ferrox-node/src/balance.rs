//! The balancing plan of the live cluster (`/cluster/crs/plan`): a CRS snapshot taken from
//! every member's resources, the HA rules and `datacenter.cfg`; the planner's answer with
//! each node's load before and after; and carrying a plan out as live migrations in one
//! task, step by step, stopping at the first failure. The decisions are `ferrox_crs`'s.

use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_api_types::cluster::{CrsPlan, CrsPlanMove, CrsPlanNode, CrsPlanStep, Resource};
use ferrox_crs::plan::{Cluster, Plan};
use ferrox_crs::snapshot::{self, Guest, GuestKind, Measured, Mode, Snapshot};
use ferrox_types::rules::{Affinity, RuleKind, RulesConfig};
use ferrox_types::DatacenterConfig;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one migration of a plan may take before the plan stops.
const MOVE_TIMEOUT: Duration = Duration::from_secs(600);

/// The cluster as the planner sees it now: online nodes, running guests, enabled rules.
pub fn live_snapshot(node: &Node) -> Snapshot {
    let mut rows: Vec<Resource> = Vec::new();
    crate::resources::cluster_rows(node, None, &|_, _, _| true, &mut rows);
    let dc = node
        .tree
        .get("datacenter.cfg")
        .and_then(|e| DatacenterConfig::parse_cfg(&e.data).ok())
        .unwrap_or_default();
    let mode = if dc.crs.ha == "dynamic" {
        Mode::Dynamic
    } else {
        Mode::Static
    };
    let nodes: Vec<snapshot::Node> = rows
        .iter()
        .filter(|r| r.kind == "node" && r.status.as_deref() == Some("online"))
        .filter_map(|r| {
            let cores = r.maxcpu? as f64;
            Some(snapshot::Node {
                name: r.node.clone()?,
                cores,
                memory: r.maxmem?,
                cpu_usage: r.cpu.unwrap_or(0.0) * cores,
                memory_usage: r.mem.unwrap_or(0),
                maintenance: r.hastate.as_deref() == Some("maintenance"),
                cpu_capability: None,
            })
        })
        .collect();
    let online = |n: &str| nodes.iter().any(|x| x.name == n);
    let guests: Vec<Guest> = rows
        .iter()
        .filter(|r| r.kind == "qemu" && r.status.as_deref() == Some("running"))
        .filter(|r| r.template.unwrap_or(0) == 0)
        .filter_map(|r| {
            let node = r.node.clone().filter(|n| online(n))?;
            let cores = r.maxcpu.unwrap_or(1) as f64;
            let cpu = r.cpu.unwrap_or(0.0) * cores;
            let mem = r.mem.unwrap_or(0) as f64;
            Some(Guest {
                vmid: r.vmid?,
                kind: GuestKind::Vm,
                node,
                ha_managed: r.hastate.is_some(),
                cores,
                memory: r.maxmem.unwrap_or(0),
                // Only the latest sample is at hand here: it stands for mean and peak.
                cpu: Measured {
                    now: cpu,
                    mean: cpu,
                    peak: cpu,
                },
                memory_used: Measured {
                    now: mem,
                    mean: mem,
                    peak: mem,
                },
                local_disk: 0,
                no_balance: false,
                cpu_requirement: None,
                // PSI "some" percentages as fractions of time, summed.
                pressure: match (r.pressurecpusome, r.pressurememorysome, r.pressureiosome) {
                    (None, None, None) => None,
                    (c, m, i) => Some(
                        ((c.unwrap_or(0.0) + m.unwrap_or(0.0) + i.unwrap_or(0.0)) / 100.0)
                            .clamp(0.0, 3.0),
                    ),
                },
            })
        })
        .collect();
    let rules = node
        .tree
        .get(crate::ha::RULES)
        .and_then(|e| RulesConfig::parse(&e.data).ok())
        .map(|cfg| {
            cfg.rules
                .values()
                .filter(|r| r.is_enabled())
                .map(|r| match &r.kind {
                    RuleKind::NodeAffinity { nodes, strict } => snapshot::Rule::NodeAffinity {
                        id: r.id.clone(),
                        resources: r.resources.iter().cloned().collect(),
                        nodes: nodes.clone(),
                        strict: strict.unwrap_or(false),
                    },
                    RuleKind::ResourceAffinity { affinity } => snapshot::Rule::ResourceAffinity {
                        id: r.id.clone(),
                        resources: r.resources.iter().cloned().collect(),
                        affinity: match affinity {
                            Affinity::Positive => snapshot::AffinityKind::Positive,
                            Affinity::Negative => snapshot::AffinityKind::Negative,
                        },
                        strict: true,
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    Snapshot {
        time: ferrox_api::auth::now(),
        nodes,
        guests,
        rules,
        recent_moves: Vec::new(),
        settings: snapshot::Settings {
            mode,
            ..Default::default()
        },
    }
}

/// Each node's CPU and memory share before and after the plan's moves.
fn node_loads(snapshot: &Snapshot, plan: &Plan) -> Vec<CrsPlanNode> {
    let moved: BTreeMap<u32, &str> = plan.moves().map(|m| (m.vmid, m.to.as_str())).collect();
    let dynamic = snapshot.settings.mode == Mode::Dynamic;
    let load = |name: &str, after: bool| -> (f64, f64) {
        snapshot
            .guests
            .iter()
            .filter(|g| {
                let at = match moved.get(&g.vmid) {
                    Some(to) if after => *to,
                    _ => g.node.as_str(),
                };
                at == name
            })
            .fold((0.0, 0.0), |(c, m), g| {
                if dynamic {
                    (c + g.cpu.mean, m + g.memory_used.mean)
                } else {
                    (c + g.cores, m + g.memory as f64)
                }
            })
    };
    snapshot
        .nodes
        .iter()
        .map(|n| {
            let (cb, mb) = load(&n.name, false);
            let (ca, ma) = load(&n.name, true);
            let cores = n.cores.max(1.0);
            let memory = (n.memory as f64).max(1.0);
            CrsPlanNode {
                name: n.name.clone(),
                cpu_before: cb / cores,
                cpu_after: ca / cores,
                memory_before: mb / memory,
                memory_after: ma / memory,
            }
        })
        .collect()
}

/// The plan the CRS would carry out now.
pub fn preview(node: &Node) -> CrsPlan {
    let snapshot = live_snapshot(node);
    if snapshot.nodes.is_empty() {
        return CrsPlan {
            mode: "static".into(),
            imbalance_before: 0.0,
            imbalance_after: 0.0,
            steps: Vec::new(),
            reason: "no node is online".into(),
            nodes: Vec::new(),
            digest: digest(&[]),
        };
    }
    let plan = Cluster::new(&snapshot).plan(&snapshot.settings);
    crs_plan(&snapshot, &plan)
}

/// The API's form of `plan`, with each node's load before and after and the digest.
fn crs_plan(snapshot: &Snapshot, plan: &Plan) -> CrsPlan {
    let steps: Vec<CrsPlanStep> = plan
        .steps
        .iter()
        .map(|s| CrsPlanStep {
            moves: s
                .moves
                .iter()
                .map(|m| CrsPlanMove {
                    sid: m.sid.clone(),
                    vmid: m.vmid,
                    from: m.from.clone(),
                    to: m.to.clone(),
                    memory: m.memory,
                    imbalance_after: m.imbalance_after,
                })
                .collect(),
        })
        .collect();
    CrsPlan {
        mode: match plan.mode {
            Mode::Static => "static",
            Mode::Dynamic => "dynamic",
        }
        .to_string(),
        imbalance_before: plan.imbalance_before,
        imbalance_after: plan.imbalance_after,
        digest: digest(&steps),
        reason: plan.stop_reason.clone(),
        nodes: node_loads(snapshot, plan),
        steps,
    }
}

/// The store lock whose holder runs automatic balancing: one node of the cluster at a
/// time, whichever holds it; when that node dies the lease runs out and another takes it.
const BALANCER_LOCK: &str = "crs_balancer";

/// Automatic balancing of the guests HA does not manage (`datacenter.cfg` `crs:
/// balance=1`, a Ferrox extension, off by default). Every `balance-interval` seconds the
/// node holding the balancer lock takes a snapshot of the cluster and, when the
/// planner's imbalance exceeds `balance-threshold`, carries out a plan down to the
/// threshold as root@pam in a `crsplan` task, waiting for it to end. HA-managed guests
/// are left to HA (its own auto-rebalancing); a guest this node moved is left alone for
/// the planner's cool-down (an hour), so nothing ping-pongs.
pub fn spawn_auto_balancer(node: Arc<Node>) {
    let spawned = std::thread::Builder::new()
        .name("crs-balance".into())
        .spawn(move || {
            let mut recent: Vec<snapshot::RecentMove> = Vec::new();
            let mut last_look: Option<Instant> = None;
            loop {
                std::thread::sleep(Duration::from_secs(5));
                let dc = node
                    .tree
                    .get("datacenter.cfg")
                    .and_then(|e| DatacenterConfig::parse_cfg(&e.data).ok())
                    .unwrap_or_default();
                let interval = Duration::from_secs(dc.crs.balance_interval.into());
                if !dc.crs.balance || last_look.is_some_and(|t| t.elapsed() < interval) {
                    continue;
                }
                last_look = Some(Instant::now());
                let store = Arc::clone(&node.store);
                let me = node.opts.node_name.clone();
                let holds = node
                    .rt
                    .block_on(store.lock(BALANCER_LOCK, &me, interval * 3))
                    .is_ok_and(|r| r.is_ok());
                if !holds {
                    continue;
                }
                if let Some(upid) = balance_once(&node, dc.crs.balance_threshold, &mut recent) {
                    if let Err(e) = node.tasks.wait(&upid, MOVE_TIMEOUT * 6) {
                        tracing::warn!("automatic balancing: {e}");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("automatic balancing: no thread: {e}");
    }
}

/// One look: the task carrying out a plan, if the cluster is imbalanced enough and a
/// plan of non-HA guests helps.
fn balance_once(
    node: &Arc<Node>,
    threshold: f64,
    recent: &mut Vec<snapshot::RecentMove>,
) -> Option<String> {
    let mut snapshot = live_snapshot(node);
    if snapshot.nodes.len() < 2 {
        return None;
    }
    for guest in &mut snapshot.guests {
        guest.no_balance |= guest.ha_managed;
    }
    recent.retain(|m| snapshot.time - m.time < snapshot.settings.cooldown);
    snapshot.recent_moves = recent
        .iter()
        .filter(|m| snapshot.guests.iter().any(|g| g.vmid == m.vmid))
        .cloned()
        .collect();
    snapshot.settings.imbalance_target = threshold;
    let cluster = Cluster::new(&snapshot);
    if cluster.imbalance() <= threshold {
        return None;
    }
    let mut plan = cluster.plan(&snapshot.settings);
    // Repairs that would move an HA guest are HA's business: carry out the steps before
    // the first such move only.
    let ha_guest = |vmid: u32| {
        snapshot
            .guests
            .iter()
            .any(|g| g.vmid == vmid && g.ha_managed)
    };
    if let Some(cut) = plan
        .steps
        .iter()
        .position(|s| s.moves.iter().any(|m| ha_guest(m.vmid)))
    {
        plan.steps.truncate(cut);
    }
    if plan.steps.is_empty() {
        return None;
    }
    let plan = crs_plan(&snapshot, &plan);
    for m in plan.steps.iter().flat_map(|s| &s.moves) {
        recent.push(snapshot::RecentMove {
            vmid: m.vmid,
            from: m.from.clone(),
            to: m.to.clone(),
            time: snapshot.time,
        });
    }
    tracing::info!(
        "automatic balancing: imbalance {:.3} above {threshold:.3}, {} step(s)",
        plan.imbalance_before,
        plan.steps.len()
    );
    match apply(node, plan, "root@pam") {
        Ok(upid) => Some(upid),
        Err(e) => {
            tracing::warn!("automatic balancing: {e}");
            None
        }
    }
}

fn digest(steps: &[CrsPlanStep]) -> String {
    let moves: Vec<String> = steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.moves
                .iter()
                .map(move |m| format!("{i}:{}:{}:{}", m.vmid, m.from, m.to))
        })
        .collect();
    Sha256::digest(moves.join("\n").as_bytes())
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Carries `plan` out as `user`: each move through the API of the guest's node (an
/// HA-managed guest through the HA manager), waiting for each before the next.
pub fn apply(node: &Arc<Node>, plan: CrsPlan, user: &str) -> Result<String, ApiError> {
    let runner = Arc::clone(node);
    let userid = user.to_string();
    node.tasks.spawn("crsplan", "", user, move |log| {
        log.log(format!(
            "balancing plan ({} mode): imbalance {:.3} -> {:.3}, {} steps",
            plan.mode,
            plan.imbalance_before,
            plan.imbalance_after,
            plan.steps.len()
        ));
        for (i, step) in plan.steps.iter().enumerate() {
            log.log(format!("step {}:", i + 1));
            for m in &step.moves {
                migrate(&runner, &userid, m, log)?;
            }
        }
        log.log("plan carried out");
        Ok(())
    })
}

fn migrate(node: &Node, user: &str, m: &CrsPlanMove, log: &TaskLog) -> Result<(), TaskError> {
    log.log(format!("migrating {} from {} to {}", m.sid, m.from, m.to));
    let api = SelfClient::new(node, user)?;
    let upid = api.post(
        &format!("/nodes/{}/qemu/{}/migrate", m.from, m.vmid),
        &[("target", m.to.as_str()), ("online", "1")],
    )?;
    let upid = upid
        .as_str()
        .ok_or_else(|| TaskError::from(format!("{}: no task id in the answer", m.sid)))?
        .to_string();
    let start = Instant::now();
    loop {
        let status = api.get(&format!("/nodes/{}/tasks/{}/status", m.from, upid))?;
        if status["status"] == "stopped" {
            let exit = status["exitstatus"].as_str().unwrap_or("");
            if exit != "OK" {
                return Err(format!("{}: migration failed: {exit}", m.sid).into());
            }
            break;
        }
        if start.elapsed() > MOVE_TIMEOUT {
            return Err(format!("{}: migration did not finish in time", m.sid).into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // An HA migration's task only queues the request: wait until the guest runs there.
    loop {
        let rows = api.get("/cluster/resources?type=vm")?;
        let here =
            rows.as_array().into_iter().flatten().any(|r| {
                r["vmid"] == m.vmid && r["node"] == m.to.as_str() && r["status"] == "running"
            });
        if here {
            break;
        }
        if start.elapsed() > MOVE_TIMEOUT {
            return Err(format!("{}: not running on {} in time", m.sid, m.to).into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    log.log(format!("{} runs on {}", m.sid, m.to));
    Ok(())
}

/// The cluster's API called from a task, as the user who started it (a ticket of the
/// cluster's key, so every member accepts it).
struct SelfClient {
    agent: ureq::Agent,
    base: String,
    cookie: String,
    csrf: String,
}

impl SelfClient {
    fn new(node: &Node, user: &str) -> Result<SelfClient, TaskError> {
        let agent = node
            .peers
            .agent(&node.tls.fingerprint)
            .map_err(TaskError::from)?;
        Ok(SelfClient {
            agent,
            base: format!("https://{}/api2/json", node.opts.peer_address()),
            cookie: format!("PVEAuthCookie={}", node.auth.ticket(user)),
            csrf: node.auth.csrf_token(user),
        })
    }

    fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<serde_json::Value, TaskError> {
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => {
                let reason = r.status_text().to_string();
                return Err(reason.into());
            }
            Err(e) => return Err(e.to_string().into()),
        };
        let body: serde_json::Value = resp.into_json().map_err(|e| e.to_string())?;
        Ok(body["data"].clone())
    }

    fn get(&self, path: &str) -> Result<serde_json::Value, TaskError> {
        Self::answer(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("Cookie", &self.cookie)
                .call(),
        )
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<serde_json::Value, TaskError> {
        Self::answer(
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("Cookie", &self.cookie)
                .set("CSRFPreventionToken", &self.csrf)
                .send_form(form),
        )
    }
}
