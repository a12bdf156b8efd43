//! `ferrox crs ...`: balancing plans, evacuation and best-node placement on snapshots.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use ferrox_crs::plan::{Cluster, EvacuationError, Plan};
use ferrox_crs::snapshot::{Mode, Snapshot};
use ferrox_types::RebalanceMethod;
use std::fmt::Write;
use std::path::PathBuf;

/// A request the cluster cannot satisfy: exit status 2.
#[derive(Debug)]
pub struct Infeasible(pub String);

impl std::error::Error for Infeasible {}

impl std::fmt::Display for Infeasible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Subcommand)]
pub enum CrsCommand {
    /// Plan balancing migrations.
    Plan(PlanArgs),
    /// Plan moving every guest off a node (maintenance).
    Evacuate {
        snapshot: PathBuf,
        node: String,
        #[command(flatten)]
        common: Common,
    },
    /// Rank the nodes for a new guest.
    BestNode {
        snapshot: PathBuf,
        /// Virtual cores of the guest (0: no limit).
        #[arg(long)]
        cores: f64,
        /// Memory of the guest, e.g. 4G or 512M.
        #[arg(long)]
        memory: String,
        /// Place it under the rules of this existing guest (e.g. vm:100), as if new.
        #[arg(long)]
        like: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print a seeded random snapshot (for trying things out and benchmarks).
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    #[arg(long, default_value_t = 10)]
    guests_per_node: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Add a few node and resource affinity rules.
    #[arg(long)]
    rules: bool,
}

#[derive(Args)]
pub struct Common {
    /// Balance configured (static) or measured (dynamic) usage.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Migrations a node takes part in at once.
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Configured cores per physical core a node may carry.
    #[arg(long)]
    cpu_overcommit: Option<f64>,
    /// Memory of each node kept for the host, e.g. `8G`: guests may commit the rest.
    #[arg(long)]
    host_memory_reserve: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    snapshot: PathBuf,
    /// Stop once the imbalance is at or below this.
    #[arg(long)]
    target: Option<f64>,
    #[arg(long)]
    max_moves: Option<usize>,
    /// Minimum imbalance decrease per moved guest, times the number of nodes balanced.
    #[arg(long)]
    min_improvement: Option<f64>,
    /// `planner` (Ferrox's multi-move plan) or the single move Proxmox VE 9.2 would make.
    #[arg(long, value_enum, default_value = "planner")]
    method: MethodArg,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Static,
    Dynamic,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    Planner,
    PveBruteforce,
    PveTopsis,
}

fn load(path: &PathBuf, common: &Common) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut snapshot = Snapshot::from_json(&text).with_context(|| path.display().to_string())?;
    let s = &mut snapshot.settings;
    if let Some(mode) = common.mode {
        s.mode = match mode {
            ModeArg::Static => Mode::Static,
            ModeArg::Dynamic => Mode::Dynamic,
        };
    }
    if let Some(n) = common.max_concurrent {
        s.max_concurrent_per_node = n;
    }
    if let Some(r) = common.cpu_overcommit {
        s.cpu_overcommit = r;
    }
    if let Some(reserve) = &common.host_memory_reserve {
        s.host_memory_reserve = ferrox_types::parse_size(reserve)
            .map_err(|e| anyhow::anyhow!("--host-memory-reserve: {e}"))?;
    }
    snapshot.validate().context("command-line settings")?;
    Ok(snapshot)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn print_plan(out: &mut String, plan: &Plan, json: bool, target: Option<f64>) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(plan)?)?;
        return Ok(());
    }
    let moves = plan.moves().count();
    write!(
        out,
        "imbalance {:.4} -> {:.4}, {moves} move(s) in {} step(s)",
        plan.imbalance_before,
        plan.imbalance_after,
        plan.steps.len()
    )?;
    match target {
        Some(t) => writeln!(out, " (target {t:.4})")?,
        None => writeln!(out)?,
    }
    writeln!(out, "stopped: {}", plan.stop_reason)?;
    for broken in &plan.unrepaired {
        writeln!(out, "not repaired: {broken}")?;
    }
    if moves == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "{:<5} {:<10} {:<12} {:<12} {:>10} {:>11}  imbalance",
        "step", "guest", "from", "to", "memory", "local disk"
    )?;
    for (i, step) in plan.steps.iter().enumerate() {
        for m in &step.moves {
            let group = m
                .group
                .as_ref()
                .map(|g| format!(" (group {g})"))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<5} {:<10} {:<12} {:<12} {:>10} {:>11}  {:.4} -> {:.4}{group}",
                i + 1,
                m.sid,
                m.from,
                m.to,
                gib(m.memory),
                gib(m.local_disk),
                m.imbalance_before,
                m.imbalance_after
            )?;
            if let Some(why) = &m.repairs {
                writeln!(out, "{:<5} repairs: {why}", "")?;
            }
        }
    }
    Ok(())
}

/// Runs a `crs` command, writing its report to `out`.
pub fn run(command: CrsCommand, out: &mut String) -> Result<()> {
    match command {
        CrsCommand::Generate(g) => {
            if g.nodes == 0 {
                anyhow::bail!("--nodes: must be at least 1");
            }
            let shape = ferrox_crs::generate::Shape {
                nodes: g.nodes,
                guests_per_node: g.guests_per_node,
                rules: g.rules,
                skewed: true,
            };
            writeln!(
                out,
                "{}",
                ferrox_crs::generate::generate(g.seed, &shape).to_json()
            )?;
        }
        CrsCommand::Plan(args) => {
            let mut snapshot = load(&args.snapshot, &args.common)?;
            let s = &mut snapshot.settings;
            if let Some(t) = args.target {
                s.imbalance_target = t;
            }
            if let Some(m) = args.max_moves {
                s.max_moves = m;
            }
            if let Some(m) = args.min_improvement {
                s.min_improvement = m;
            }
            snapshot.validate().context("command-line settings")?;
            let method = match args.method {
                MethodArg::Planner => {
                    refuse_conflicts(&snapshot, None, args.common.json, out)?;
                    let plan = Cluster::new(&snapshot).plan(&snapshot.settings);
                    print_plan(
                        out,
                        &plan,
                        args.common.json,
                        Some(snapshot.settings.imbalance_target),
                    )?;
                    if !plan.unrepaired.is_empty() {
                        let broken: Vec<String> =
                            plan.unrepaired.iter().map(|r| r.to_string()).collect();
                        return Err(Infeasible(format!(
                            "the plan cannot repair: {}",
                            broken.join("; ")
                        ))
                        .into());
                    }
                    return Ok(());
                }
                MethodArg::PveBruteforce => RebalanceMethod::Bruteforce,
                MethodArg::PveTopsis => RebalanceMethod::Topsis,
            };
            let d = ferrox_ha::pve::single_move(&snapshot, method)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if args.common.json {
                let choice = d.choice.as_ref().map(|c| {
                    serde_json::json!({
                        "sid": c.migration.sid, "from": c.migration.source,
                        "to": c.migration.target, "imbalance_after": c.imbalance,
                    })
                });
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "imbalance": d.imbalance, "threshold": d.threshold, "margin": d.margin,
                        "move": choice, "dropped_rules": d.dropped_rules,
                    }))?
                )?;
                return Ok(());
            }
            for msg in &d.dropped_rules {
                writeln!(out, "{msg}")?;
            }
            match &d.choice {
                Some(c) => writeln!(
                    out,
                    "migrate {} from {} to {} (imbalance {:.2} -> {:.2})",
                    c.migration.sid,
                    c.migration.source,
                    c.migration.target,
                    d.imbalance,
                    c.imbalance
                )?,
                None if d.imbalance <= d.threshold => writeln!(
                    out,
                    "no move: imbalance {:.2} is at or below Proxmox VE's threshold {:.2}",
                    d.imbalance, d.threshold
                )?,
                None => writeln!(
                    out,
                    "no move: none lowers the imbalance {:.2} by Proxmox VE's margin of {:.0}%",
                    d.imbalance,
                    d.margin * 100.0
                )?,
            }
        }
        CrsCommand::Evacuate {
            snapshot,
            node,
            common,
        } => {
            let snap = load(&snapshot, &common)?;
            if !snap.nodes.iter().any(|n| n.name == node) {
                anyhow::bail!("no node '{node}' in the snapshot");
            }
            refuse_conflicts(&snap, Some(&node), common.json, out)?;
            match Cluster::new(&snap).evacuate(&node, &snap.settings) {
                Ok(plan) => print_plan(out, &plan, common.json, None)?,
                Err(EvacuationError::Infeasible(inf)) => {
                    if common.json {
                        writeln!(out, "{}", serde_json::to_string_pretty(&inf)?)?;
                    }
                    return Err(Infeasible(format!("cannot evacuate '{node}': {inf}")).into());
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
        CrsCommand::BestNode {
            snapshot,
            cores,
            memory,
            like,
            common,
        } => {
            let snap = load(&snapshot, &common)?;
            let memory =
                ferrox_types::parse_size(&memory).map_err(|e| anyhow::anyhow!("--memory: {e}"))?;
            if !(cores >= 0.0 && cores.is_finite()) {
                anyhow::bail!("--cores: must be a non-negative number");
            }
            if let Some(sid) = &like {
                if !snap.guests.iter().any(|g| &g.sid() == sid) {
                    anyhow::bail!("--like: no guest '{sid}' in the snapshot");
                }
            }
            let ranking = Cluster::new(&snap).best_node(cores, memory, like.as_deref());
            if common.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&ranking)?)?;
            } else {
                for c in &ranking {
                    match (&c.imbalance_after, &c.blocker) {
                        (Some(i), _) => writeln!(out, "{:<12} imbalance after {:.4}", c.node, i)?,
                        (None, Some(b)) => writeln!(out, "{:<12} not possible: {b}", c.node)?,
                        (None, None) => writeln!(out, "{:<12} not possible", c.node)?,
                    }
                }
            }
            if ranking.first().is_none_or(|c| c.imbalance_after.is_none()) {
                let reasons: Vec<String> = ranking
                    .iter()
                    .filter_map(|c| c.blocker.as_ref().map(|b| format!("  {b}")))
                    .collect();
                return Err(Infeasible(format!(
                    "no node can take the guest:\n{}",
                    reasons.join("\n")
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// Exit 2 before planning when no valid placement can exist, naming every conflict.
fn refuse_conflicts(
    snapshot: &Snapshot,
    evacuating: Option<&str>,
    json: bool,
    out: &mut String,
) -> Result<()> {
    let conflicts = ferrox_crs::feasibility::check(snapshot, evacuating);
    if conflicts.is_empty() {
        return Ok(());
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&conflicts)?)?;
    }
    let list: Vec<String> = conflicts.iter().map(|c| format!("  {c}")).collect();
    Err(Infeasible(format!("no valid placement exists:\n{}", list.join("\n"))).into())
}
