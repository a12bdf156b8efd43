//! Multi-move balancing plans, maintenance evacuation and best-node placement over a
//! [`Snapshot`](crate::snapshot::Snapshot).
//!
//! The planner is greedy with exact evaluation: each round it evaluates every feasible
//! move of every movable unit (a guest, or a group kept together by positive affinity)
//! to every other node, with the imbalance after the move computed in O(1) from running
//! sums, and takes the best. The model is updated after each chosen move, so later moves
//! see earlier ones (no stacking onto one node). Moves are then packed into steps that may
//! run in parallel. Capacity rules hold in every state: after each step, and during a step
//! (a migrating guest holds memory on both its nodes).

use crate::objective::{Load, Spread};
use crate::snapshot::{AffinityKind, Guest, Mode, Rule, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A planned move in the model: (unit, from node, to node, imbalance before, after).
type Chosen = (usize, usize, usize, f64, f64);

/// A set of moves: (unit, target node) each.
type MoveSet = Vec<(usize, usize)>;

/// A resident moved to make room during an evacuation: (unit, from node, to node).
type ResidentMove = (usize, usize, usize);

#[derive(Debug, Clone)]
struct NodeModel {
    name: String,
    cores: f64,
    memory: f64,
    /// Memory guests may commit: the node's minus the host reserve.
    capacity: f64,
    /// Host usage outside of guests (dynamic mode only).
    host_cpu: f64,
    host_mem: f64,
    maintenance: bool,
}

#[derive(Debug, Clone)]
struct Negative {
    unit: usize,
    rule: String,
    strict: bool,
}

/// Guests that move as one: a guest, or a positive-affinity group.
#[derive(Debug, Clone)]
struct Unit {
    members: Vec<usize>,
    /// The node all members are on; `None` for a group that is split over nodes.
    node: Option<usize>,
    cpu_fixed: f64,
    unlimited: usize,
    dyn_cpu: f64,
    bal_mem: f64,
    /// Dynamic mode: the members' measured stall share (zero otherwise).
    pressure: f64,
    commit_mem: f64,
    cost: u64,
    local_disk: u64,
    /// Balancing may move it (no opt-out, no recent move, members together).
    balance_movable: bool,
    /// Per node: allowed by the strict node affinity rules of all members; `None` when
    /// no strict rule applies (kept sparse so memory stays linear in the input).
    allowed: Option<Vec<bool>>,
    strict_rule: Option<String>,
    /// Per node: preference from node affinity (higher is better); `None` without rule.
    priority: Option<Vec<i64>>,
    preference_rule: Option<String>,
    negative: Vec<Negative>,
    /// Nodes that cannot run a member's CPU model, with the flags they lack (sparse).
    cpu_lacks: Vec<(usize, Vec<String>)>,
    sid: String,
}

impl Unit {
    fn allows(&self, node: usize) -> bool {
        self.allowed.as_ref().is_none_or(|a| a[node])
    }
}

/// Why a unit cannot go to a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Blocker {
    Maintenance {
        node: String,
    },
    StrictNodeAffinity {
        node: String,
        rule: String,
    },
    NodePreference {
        node: String,
        rule: String,
    },
    Memory {
        node: String,
        needed: u64,
        free: u64,
    },
    Cpu {
        node: String,
        needed: f64,
        free: f64,
    },
    NegativeAffinity {
        node: String,
        rule: String,
        with: String,
    },
    PositiveAffinity {
        node: String,
        with: String,
    },
    SameNode {
        node: String,
    },
    CpuModel {
        node: String,
        missing: Vec<String>,
    },
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Maintenance { node } => write!(f, "{node}: in maintenance"),
            Blocker::StrictNodeAffinity { node, rule } => {
                write!(
                    f,
                    "{node}: not allowed by strict node affinity rule '{rule}'"
                )
            }
            Blocker::NodePreference { node, rule } => {
                write!(f, "{node}: lower priority in node affinity rule '{rule}'")
            }
            Blocker::Memory { node, needed, free } => write!(
                f,
                "{node}: not enough memory (needs {}, {} free)",
                gib(*needed),
                gib(*free)
            ),
            Blocker::Cpu { node, needed, free } => write!(
                f,
                "{node}: CPU overcommit limit reached (needs {needed:.1} cores, {free:.1} left)"
            ),
            Blocker::NegativeAffinity { node, rule, with } => write!(
                f,
                "{node}: '{with}' runs there, negative resource affinity rule '{rule}'"
            ),
            Blocker::PositiveAffinity { node, with } => write!(
                f,
                "{node}: must join '{with}', kept together by positive resource affinity"
            ),
            Blocker::SameNode { node } => write!(f, "{node}: the guest is already there"),
            Blocker::CpuModel { node, missing } => write!(
                f,
                "{node}: its CPU lacks {} for the guest's CPU model",
                missing.join(", ")
            ),
        }
    }
}

/// A strict rule or capacity limit the current placement breaks, which a plan restores
/// before it balances.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Repair {
    /// The guest runs on a node its strict node affinity rule does not allow.
    StrictNodeAffinity { node: String, rule: String },
    /// Guests a strict negative resource affinity rule keeps apart share a node.
    NegativeAffinity {
        node: String,
        rule: String,
        with: String,
    },
    /// A group kept together by positive resource affinity is split over nodes.
    PositiveAffinity { group: String },
    /// The node's guests commit more memory than it offers them (host reserve counted).
    Memory {
        node: String,
        committed: u64,
        capacity: u64,
    },
    /// The node's guests have more cores than its overcommit limit.
    Cpu {
        node: String,
        committed: f64,
        limit: f64,
    },
    /// A resident moved so that a repaired guest fits.
    MakesRoom { node: String, guest: String },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::StrictNodeAffinity { node, rule } => {
                write!(
                    f,
                    "{node} is not allowed by strict node affinity rule '{rule}'"
                )
            }
            Repair::NegativeAffinity { node, rule, with } => write!(
                f,
                "shares {node} with '{with}' against negative resource affinity rule '{rule}'"
            ),
            Repair::PositiveAffinity { group } => write!(
                f,
                "positive resource affinity group of '{group}' is split over nodes"
            ),
            Repair::Memory {
                node,
                committed,
                capacity,
            } => write!(
                f,
                "{node} commits {} of memory, {} usable",
                gib(*committed),
                gib(*capacity)
            ),
            Repair::Cpu {
                node,
                committed,
                limit,
            } => write!(
                f,
                "{node} carries {committed:.1} cores, overcommit limit {limit:.1}"
            ),
            Repair::MakesRoom { node, guest } => {
                write!(f, "makes room on {node} for '{guest}'")
            }
        }
    }
}

/// One guest migration in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub sid: String,
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Imbalance before and after the move (the same for every member of a group).
    pub imbalance_before: f64,
    pub imbalance_after: f64,
    pub memory: u64,
    pub local_disk: u64,
    /// What the move costs to carry out: memory plus local disk bytes to copy.
    pub cost: u64,
    /// The positive-affinity group this guest moves with, by its first member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The broken rule or limit this move restores; `None` for a balancing move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repairs: Option<Repair>,
}

/// Migrations that may run at the same time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub moves: Vec<Move>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub mode: Mode,
    pub imbalance_before: f64,
    pub imbalance_after: f64,
    pub steps: Vec<Step>,
    /// Why planning stopped.
    pub stop_reason: String,
    /// Broken rules and limits no move could restore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unrepaired: Vec<Repair>,
}

impl Plan {
    pub fn moves(&self) -> impl Iterator<Item = &Move> {
        self.steps.iter().flat_map(|s| s.moves.iter())
    }
}

/// A guest that cannot be placed, with the reason for every node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Infeasible {
    pub sid: String,
    pub blockers: Vec<Blocker>,
}

impl fmt::Display for Infeasible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "no node can take '{}':", self.sid)?;
        for b in &self.blockers {
            writeln!(f, "  {b}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Infeasible {}

/// A node's suitability for a new guest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCandidate {
    pub node: String,
    /// Imbalance after placing the guest there, if it may go there.
    pub imbalance_after: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocker: Option<Blocker>,
}

/// A candidate move while searching: (unit, source, target, squared imbalance after).
type Best = (usize, usize, usize, f64);

/// One thread's share of a round: its best move and the targets its units keep.
type ScanPart = (Option<Best>, Vec<(usize, KeptTargets)>);

/// Light nodes per mix of CPU and memory every unit scores in a cached round.
const FRONTIER: usize = 1;

/// What every unit's scan in one round shares.
struct MoveScan {
    spread: Spread,
    /// Per node: its load and what one core and one byte add to it (1 / cores,
    /// 1 / memory), side by side because every scored pair reads both.
    nodes: Vec<ScanNode>,
    /// The balanced nodes: a full scan's targets.
    every_node: Vec<usize>,
    /// With a cache: the nodes changed since the last round and the least loaded nodes in
    /// five mixes of CPU and memory, which every unit scores besides its kept targets
    /// (kept targets fill up as moves land on them).
    extra: Vec<usize>,
}

#[derive(Clone, Copy)]
struct ScanNode {
    load: Load,
    per_unit: Load,
    maintenance: bool,
}

/// A unit's best few targets, best first; a fixed array, because every unit of a large
/// cluster renews its list every round.
#[derive(Clone, Copy, Default)]
struct KeptTargets {
    len: u8,
    nodes: [u32; TargetCache::KEEP],
}

impl KeptTargets {
    fn as_slice(&self) -> &[u32] {
        &self.nodes[..self.len as usize]
    }
}

/// Each unit's best few targets from its last full scan, kept between the rounds of the
/// greedy pass on large clusters: a move changes the load of two nodes only, so a unit
/// scans every node again only when its own node changed, and otherwise scores its kept
/// targets and the changed nodes.
struct TargetCache {
    /// `None` until the unit's first scan.
    targets: Vec<Option<KeptTargets>>,
    /// Nodes whose load changed since the last round.
    changed: Vec<usize>,
}

impl TargetCache {
    /// Above this many unit × node pairs a full scan per round costs more than the rest
    /// of planning.
    const PAIRS: usize = 4_000_000;
    const KEEP: usize = 4;

    fn for_cluster(cluster: &Cluster) -> Option<TargetCache> {
        (cluster.units.len() * cluster.nodes.len() > Self::PAIRS).then(|| TargetCache {
            targets: vec![None; cluster.units.len()],
            changed: Vec::new(),
        })
    }

    fn changed(cache: &mut Option<TargetCache>, nodes: [usize; 2]) {
        if let Some(c) = cache {
            c.changed.extend(nodes);
        }
    }
}

/// Whether a plan reaching imbalance `a.0` with `a.1` moves beats one reaching `b.0` with
/// `b.1`: reaching the target with fewer moves beats a lower imbalance; short of the
/// target, the lower imbalance wins, then fewer moves.
fn better_plan(target: f64, a: (f64, usize), b: (f64, usize)) -> bool {
    match (a.0 <= target, b.0 <= target) {
        (true, true) => a.1 < b.1 || (a.1 == b.1 && a.0 < b.0 - 1e-12),
        (true, false) => true,
        (false, true) => false,
        (false, false) => a.0 < b.0 - 1e-12 || ((a.0 - b.0).abs() <= 1e-12 && a.1 < b.1),
    }
}

/// The planner's model of a snapshot.
#[derive(Debug, Clone)]
pub struct Cluster {
    mode: Mode,
    nodes: Vec<NodeModel>,
    guests: Vec<Guest>,
    units: Vec<Unit>,
    unit_node: Vec<Option<usize>>,
    /// Node of each guest; `None` while a guest is being placed anew.
    guest_node: Vec<Option<usize>>,
    /// Guests that opted out of balancing or moved recently: only a repair moves them,
    /// and only when no other guest will do.
    guest_pinned: Vec<bool>,
    bal_cpu: Vec<f64>,
    bal_mem: Vec<f64>,
    /// Per node: its guests' stall shares (dynamic mode).
    bal_pressure: Vec<f64>,
    /// Pressure is a third resource: dynamic mode, and some guest reports stalls.
    with_pressure: bool,
    commit_mem: Vec<f64>,
    commit_cores: Vec<f64>,
    overcommit: f64,
}

fn demand(mean: f64, now: f64) -> f64 {
    if mean > 0.0 {
        mean
    } else {
        now
    }
}

/// Disjoint sets over `0..n` (positive-affinity groups).
pub(crate) struct UnionFind(Vec<usize>);

impl UnionFind {
    pub(crate) fn new(n: usize) -> UnionFind {
        UnionFind((0..n).collect())
    }
    pub(crate) fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        self.0[x] = r;
        r
    }
    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

impl Cluster {
    pub fn new(snapshot: &Snapshot) -> Cluster {
        Self::with_mode(snapshot, snapshot.settings.mode)
    }

    pub fn with_mode(snapshot: &Snapshot, mode: Mode) -> Cluster {
        let node_index: BTreeMap<&str, usize> = snapshot
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        // What the guests use now, per node: the rest of the node's usage is the host's.
        let mut guests_now = vec![(0.0, 0.0); snapshot.nodes.len()];
        for g in &snapshot.guests {
            if let Some(&i) = node_index.get(g.node.as_str()) {
                guests_now[i].0 += g.cpu.now;
                guests_now[i].1 += g.memory_used.now;
            }
        }
        let nodes: Vec<NodeModel> = snapshot
            .nodes
            .iter()
            .zip(&guests_now)
            .map(|(n, &(guests_cpu, guests_mem))| NodeModel {
                name: n.name.clone(),
                cores: n.cores,
                memory: n.memory as f64,
                capacity: n
                    .memory
                    .saturating_sub(snapshot.settings.host_memory_reserve)
                    as f64,
                host_cpu: (n.cpu_usage - guests_cpu).max(0.0),
                host_mem: (n.memory_usage as f64 - guests_mem).max(0.0),
                maintenance: n.maintenance,
            })
            .collect();
        let guests = snapshot.guests.clone();
        let sid_index: BTreeMap<String, usize> = guests
            .iter()
            .enumerate()
            .map(|(i, g)| (g.sid(), i))
            .collect();

        let mut uf = UnionFind::new(guests.len());
        for rule in &snapshot.rules {
            if let Rule::ResourceAffinity {
                resources,
                affinity: AffinityKind::Positive,
                ..
            } = rule
            {
                let idx: Vec<usize> = resources
                    .iter()
                    .filter_map(|s| sid_index.get(s).copied())
                    .collect();
                for w in idx.windows(2) {
                    uf.union(w[0], w[1]);
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for g in 0..guests.len() {
            let root = uf.find(g);
            groups.entry(root).or_default().push(g);
        }
        let cooled: BTreeSet<u32> = snapshot
            .recent_moves
            .iter()
            .filter(|m| snapshot.time - m.time < snapshot.settings.cooldown)
            .map(|m| m.vmid)
            .collect();

        let mut units = Vec::new();
        let mut guest_unit = vec![0usize; guests.len()];
        for members in groups.into_values() {
            let unit_id = units.len();
            let mut unit = Unit {
                members: members.clone(),
                node: None,
                cpu_fixed: 0.0,
                unlimited: 0,
                dyn_cpu: 0.0,
                bal_mem: 0.0,
                pressure: 0.0,
                commit_mem: 0.0,
                cost: 0,
                local_disk: 0,
                balance_movable: true,
                allowed: None,
                strict_rule: None,
                priority: None,
                preference_rule: None,
                negative: Vec::new(),
                cpu_lacks: Vec::new(),
                sid: guests[members[0]].sid(),
            };
            let first_node = node_index[guests[members[0]].node.as_str()];
            unit.node = members
                .iter()
                .all(|m| node_index[guests[*m].node.as_str()] == first_node)
                .then_some(first_node);
            for &m in &members {
                let g = &guests[m];
                guest_unit[m] = unit_id;
                if g.cores == 0.0 {
                    unit.unlimited += 1;
                } else {
                    unit.cpu_fixed += g.cores;
                }
                unit.dyn_cpu += demand(g.cpu.mean, g.cpu.now);
                unit.bal_mem += match mode {
                    Mode::Static => g.memory as f64,
                    Mode::Dynamic => demand(g.memory_used.mean, g.memory_used.now),
                };
                if mode == Mode::Dynamic {
                    unit.pressure += g.pressure.unwrap_or(0.0);
                }
                unit.commit_mem += g.memory as f64;
                unit.local_disk += g.local_disk;
                unit.cost += g.memory + g.local_disk;
                if g.no_balance || cooled.contains(&g.vmid) {
                    unit.balance_movable = false;
                }
            }
            if unit.node.is_none() {
                unit.balance_movable = false;
            }
            for (i, node) in snapshot.nodes.iter().enumerate() {
                let Some(offer) = &node.cpu_capability else {
                    continue;
                };
                let mut lacks: Vec<String> = members
                    .iter()
                    .filter_map(|m| guests[*m].cpu_requirement.as_ref())
                    .flat_map(|need| offer.missing(need))
                    .collect();
                lacks.sort();
                lacks.dedup();
                if !lacks.is_empty() {
                    unit.cpu_lacks.push((i, lacks));
                }
            }
            units.push(unit);
        }
        // Node affinity.
        for rule in &snapshot.rules {
            if let Rule::NodeAffinity {
                id,
                resources,
                nodes: prios,
                strict,
            } = rule
            {
                for sid in resources {
                    let Some(&g) = sid_index.get(sid) else {
                        continue;
                    };
                    let unit = &mut units[guest_unit[g]];
                    let per_node: Vec<i64> = nodes
                        .iter()
                        .map(|n| prios.get(&n.name).copied().unwrap_or(-1))
                        .collect();
                    if *strict {
                        for (i, n) in nodes.iter().enumerate() {
                            if !prios.contains_key(&n.name) {
                                unit.allowed.get_or_insert_with(|| vec![true; nodes.len()])[i] =
                                    false;
                            }
                        }
                        unit.strict_rule.get_or_insert_with(|| id.clone());
                    }
                    unit.priority = Some(match unit.priority.take() {
                        None => per_node,
                        Some(old) => old
                            .iter()
                            .zip(&per_node)
                            .map(|(a, b)| (*a).min(*b))
                            .collect(),
                    });
                    unit.preference_rule.get_or_insert_with(|| id.clone());
                }
            }
        }
        // Negative resource affinity, between units.
        for rule in &snapshot.rules {
            if let Rule::ResourceAffinity {
                id,
                resources,
                affinity: AffinityKind::Negative,
                strict,
            } = rule
            {
                let us: BTreeSet<usize> = resources
                    .iter()
                    .filter_map(|s| sid_index.get(s).map(|g| guest_unit[*g]))
                    .collect();
                for &a in &us {
                    for &b in &us {
                        if a != b {
                            units[a].negative.push(Negative {
                                unit: b,
                                rule: id.clone(),
                                strict: *strict,
                            });
                        }
                    }
                }
            }
        }

        let n = nodes.len();
        let guest_pinned = guests
            .iter()
            .map(|g| g.no_balance || cooled.contains(&g.vmid))
            .collect();
        let guest_node = guests
            .iter()
            .map(|g| node_index.get(g.node.as_str()).copied())
            .collect();
        let mut cluster = Cluster {
            mode,
            unit_node: units.iter().map(|u| u.node).collect(),
            guest_node,
            guest_pinned,
            nodes,
            guests,
            units,
            bal_cpu: vec![0.0; n],
            bal_mem: vec![0.0; n],
            bal_pressure: vec![0.0; n],
            with_pressure: mode == Mode::Dynamic
                && snapshot
                    .guests
                    .iter()
                    .any(|g| g.pressure.is_some_and(|p| p > 0.0)),
            commit_mem: vec![0.0; n],
            commit_cores: vec![0.0; n],
            overcommit: snapshot.settings.cpu_overcommit,
        };
        cluster.recompute();
        cluster
    }

    /// What guest `g` adds to node `i`: (balance cpu, memory and pressure, committed
    /// memory, committed cores).
    fn guest_contribution(&self, g: usize, i: usize) -> (Load, f64, f64) {
        let guest = &self.guests[g];
        let cores = if guest.cores == 0.0 {
            self.nodes[i].cores
        } else {
            guest.cores
        };
        let balance = match self.mode {
            Mode::Static => [cores, guest.memory as f64, 0.0],
            Mode::Dynamic => [
                demand(guest.cpu.mean, guest.cpu.now),
                demand(guest.memory_used.mean, guest.memory_used.now),
                guest.pressure.unwrap_or(0.0),
            ],
        };
        (balance, guest.memory as f64, cores)
    }

    fn add_guest(&mut self, g: usize, i: usize, sign: f64) {
        let ([cpu, mem, pressure], commit_mem, commit_cores) = self.guest_contribution(g, i);
        self.bal_cpu[i] += sign * cpu;
        self.bal_mem[i] += sign * mem;
        self.bal_pressure[i] += sign * pressure;
        self.commit_mem[i] += sign * commit_mem;
        self.commit_cores[i] += sign * commit_cores;
    }

    fn recompute(&mut self) {
        for (i, node) in self.nodes.iter().enumerate() {
            let dynamic = self.mode == Mode::Dynamic;
            self.bal_cpu[i] = if dynamic { node.host_cpu } else { 0.0 };
            self.bal_mem[i] = if dynamic { node.host_mem } else { 0.0 };
            self.bal_pressure[i] = 0.0;
            self.commit_mem[i] = node.host_mem;
            self.commit_cores[i] = 0.0;
        }
        for g in 0..self.guests.len() {
            if let Some(i) = self.guest_node[g] {
                self.add_guest(g, i, 1.0);
            }
        }
    }

    fn unit_cores_on(&self, u: usize, node: usize) -> f64 {
        let unit = &self.units[u];
        unit.cpu_fixed + unit.unlimited as f64 * self.nodes[node].cores
    }

    fn unit_bal_cpu_on(&self, u: usize, node: usize) -> f64 {
        match self.mode {
            Mode::Static => self.unit_cores_on(u, node),
            Mode::Dynamic => self.units[u].dyn_cpu,
        }
    }

    /// What unit `u` adds to the balance figures of `node`: (CPU, memory, pressure).
    fn unit_balance_on(&self, u: usize, node: usize) -> Load {
        let unit = &self.units[u];
        [self.unit_bal_cpu_on(u, node), unit.bal_mem, unit.pressure]
    }

    fn loads(&self, node: usize) -> Load {
        self.loads_with(node, [0.0; 3])
    }

    /// Node `node`'s load with `change` (CPU, memory, pressure) added; negative figures
    /// take away. Pressure counts per core, as CPU does: a larger node absorbs more.
    fn loads_with(&self, node: usize, change: Load) -> Load {
        let n = &self.nodes[node];
        [
            (self.bal_cpu[node] + change[0]) / n.cores,
            (self.bal_mem[node] + change[1]) / n.memory,
            (self.bal_pressure[node] + change[2]) / n.cores,
        ]
    }

    fn balanced_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.nodes[*i].maintenance)
    }

    fn spread(&self) -> Spread {
        Spread::of(
            self.balanced_nodes().map(|i| self.loads(i)),
            self.with_pressure,
        )
    }

    /// CPU and memory spread over the nodes not in maintenance (see [`crate::objective`]).
    pub fn imbalance(&self) -> f64 {
        self.spread().imbalance()
    }

    /// The spread after moving unit `u` from `s` to `t`, in O(1) from the running sums.
    fn spread_after(&self, spread: Spread, u: usize, s: usize, t: usize) -> Spread {
        let mut spread = spread;
        if !self.nodes[s].maintenance {
            let after = self.loads_with(s, self.unit_balance_on(u, s).map(|x| -x));
            spread = spread.replaced(self.loads(s), after);
        }
        if !self.nodes[t].maintenance {
            let after = self.loads_with(t, self.unit_balance_on(u, t));
            spread = spread.replaced(self.loads(t), after);
        }
        spread
    }

    /// The spread after units `a` (on `s`) and `b` (on `t`) exchange nodes.
    fn spread_after_exchange(
        &self,
        spread: Spread,
        a: usize,
        s: usize,
        b: usize,
        t: usize,
    ) -> Spread {
        // What `incoming` brings to `node` where `outgoing` leaves it.
        let exchange = |node: usize, incoming: usize, outgoing: usize| -> Load {
            let (i, o) = (
                self.unit_balance_on(incoming, node),
                self.unit_balance_on(outgoing, node),
            );
            [i[0] - o[0], i[1] - o[1], i[2] - o[2]]
        };
        let mut after = spread;
        if !self.nodes[s].maintenance {
            let ls = self.loads_with(s, exchange(s, b, a));
            after = after.replaced(self.loads(s), ls);
        }
        if !self.nodes[t].maintenance {
            let lt = self.loads_with(t, exchange(t, a, b));
            after = after.replaced(self.loads(t), lt);
        }
        after
    }

    /// The imbalance once every member of unit `u` (a split group) is on node `t`.
    fn imbalance_after_gathering(&self, u: usize, t: usize) -> f64 {
        let mut change: BTreeMap<usize, Load> = BTreeMap::new();
        for &m in &self.units[u].members {
            let Some(from) = self.guest_node[m].filter(|&n| n != t) else {
                continue;
            };
            for (node, sign) in [(from, -1.0), (t, 1.0)] {
                let (balance, ..) = self.guest_contribution(m, node);
                let e = change.entry(node).or_default();
                for r in 0..3 {
                    e[r] += sign * balance[r];
                }
            }
        }
        let mut spread = self.spread();
        for (node, delta) in change {
            if !self.nodes[node].maintenance {
                spread = spread.replaced(self.loads(node), self.loads_with(node, delta));
            }
        }
        spread.imbalance()
    }

    fn imbalance_after(&self, spread: Spread, u: usize, s: usize, t: usize) -> f64 {
        self.spread_after(spread, u, s, t).imbalance()
    }

    /// Checks whether unit `u` may go to node `t` given extra memory/cores already
    /// reserved there. `balancing` adds the balancer's own restraint (no move to a
    /// less preferred node); `soft` says whether non-strict rules are honoured.
    fn blocker(
        &self,
        u: usize,
        t: usize,
        reserved: (f64, f64),
        balancing: bool,
        soft: bool,
    ) -> Option<Blocker> {
        let unit = &self.units[u];
        let node = &self.nodes[t];
        let name = || node.name.clone();
        if node.maintenance {
            return Some(Blocker::Maintenance { node: name() });
        }
        if self.unit_node[u] == Some(t) {
            return Some(Blocker::SameNode { node: name() });
        }
        if let Some((_, missing)) = unit.cpu_lacks.iter().find(|(n, _)| *n == t) {
            return Some(Blocker::CpuModel {
                node: name(),
                missing: missing.clone(),
            });
        }
        if !unit.allows(t) {
            return Some(Blocker::StrictNodeAffinity {
                node: name(),
                rule: unit.strict_rule.clone().unwrap_or_default(),
            });
        }
        if balancing && soft {
            if let (Some(prio), Some(cur)) = (&unit.priority, self.unit_node[u]) {
                if prio[t] < prio[cur] {
                    return Some(Blocker::NodePreference {
                        node: name(),
                        rule: unit.preference_rule.clone().unwrap_or_default(),
                    });
                }
            }
        }
        let free_mem = node.capacity - self.commit_mem[t] - reserved.0;
        if unit.commit_mem > free_mem {
            return Some(Blocker::Memory {
                node: name(),
                needed: unit.commit_mem as u64,
                free: free_mem.max(0.0) as u64,
            });
        }
        let cores = self.unit_cores_on(u, t);
        let free_cores = self.overcommit * node.cores - self.commit_cores[t] - reserved.1;
        if cores > free_cores + 1e-9 {
            return Some(Blocker::Cpu {
                node: name(),
                needed: cores,
                free: free_cores.max(0.0),
            });
        }
        for neg in &unit.negative {
            if (neg.strict || soft) && self.unit_node[neg.unit] == Some(t) {
                return Some(Blocker::NegativeAffinity {
                    node: name(),
                    rule: neg.rule.clone(),
                    with: self.units[neg.unit].sid.clone(),
                });
            }
        }
        None
    }

    fn apply(&mut self, u: usize, t: usize) {
        for m in self.units[u].members.clone() {
            if let Some(s) = self.guest_node[m] {
                self.add_guest(m, s, -1.0);
            }
            self.add_guest(m, t, 1.0);
            self.guest_node[m] = Some(t);
        }
        self.unit_node[u] = Some(t);
        self.units[u].node = Some(t);
    }

    fn moves_for(&self, u: usize, from: usize, to: usize, before: f64, after: f64) -> Vec<Move> {
        let unit = &self.units[u];
        let group = (unit.members.len() > 1).then(|| unit.sid.clone());
        unit.members
            .iter()
            .filter(|&&m| self.guest_node[m] != Some(to))
            .map(|&m| {
                let g = &self.guests[m];
                let from = self.guest_node[m].unwrap_or(from);
                Move {
                    sid: g.sid(),
                    vmid: g.vmid,
                    from: self.nodes[from].name.clone(),
                    to: self.nodes[to].name.clone(),
                    imbalance_before: before,
                    imbalance_after: after,
                    memory: g.memory,
                    local_disk: g.local_disk,
                    cost: g.memory + g.local_disk,
                    group: group.clone(),
                    repairs: None,
                }
            })
            .collect()
    }

    /// The best single balancing move: (unit, source, target, imbalance after). With a
    /// `cache` (large clusters), a unit scans every node only on its first round or when
    /// its own node changed; otherwise it scores the few best targets of its last scan and
    /// the nodes whose load changed since, under the current spread, split over two
    /// threads.
    fn best_move(
        &self,
        moved: &[bool],
        budget: usize,
        mut cache: Option<&mut TargetCache>,
    ) -> Option<(usize, usize, usize, f64)> {
        let spread = self.spread();
        if spread.nodes() == 0.0 {
            return None;
        }
        let scan = MoveScan {
            spread,
            nodes: (0..self.nodes.len())
                .map(|i| ScanNode {
                    load: self.loads(i),
                    per_unit: [
                        1.0 / self.nodes[i].cores,
                        1.0 / self.nodes[i].memory,
                        1.0 / self.nodes[i].cores,
                    ],
                    maintenance: self.nodes[i].maintenance,
                })
                .collect(),
            every_node: self.balanced_nodes().collect(),
            extra: match cache.as_deref() {
                Some(c) => {
                    let mut extra: BTreeSet<usize> =
                        self.light_frontier(FRONTIER).into_iter().collect();
                    extra.extend(c.changed.iter().copied());
                    extra.into_iter().collect()
                }
                None => Vec::new(),
            },
        };
        let candidates: Vec<usize> = (0..self.units.len())
            .filter(|&u| {
                let unit = &self.units[u];
                unit.balance_movable
                    && !moved[u]
                    && unit.members.len() <= budget
                    && self.unit_node[u].is_some_and(|s| !self.nodes[s].maintenance)
            })
            .collect();
        let cached = cache.as_deref();
        let scan_units = |units: &[usize]| -> ScanPart {
            let mut best: Option<Best> = None;
            let mut kept = Vec::new();
            for &u in units {
                let (found, keep) = self.scan_unit(u, &scan, cached, best);
                if let Some(found) = found {
                    if best.is_none_or(|b| self.better_move(found, b)) {
                        best = Some(found);
                    }
                }
                if let Some(keep) = keep {
                    kept.push((u, keep));
                }
            }
            (best, kept)
        };
        // Large clusters (those with a cache) split every round over two threads.
        let parts: Vec<ScanPart> = if cached.is_some() && candidates.len() > 1_000 {
            let (left, right) = candidates.split_at(candidates.len() / 2);
            std::thread::scope(|threads| {
                let other = threads.spawn(|| scan_units(right));
                let mine = scan_units(left);
                vec![mine, other.join().expect("scan thread")]
            })
        } else {
            vec![scan_units(&candidates)]
        };
        let mut best: Option<Best> = None;
        for (found, kept) in parts {
            if let Some(found) = found {
                if best.is_none_or(|b| self.better_move(found, b)) {
                    best = Some(found);
                }
            }
            if let Some(c) = cache.as_deref_mut() {
                for (u, keep) in kept {
                    c.targets[u] = Some(keep);
                }
            }
        }
        if let Some(c) = cache {
            c.changed.clear();
        }
        best.map(|(u, s, t, _)| (u, s, t, self.imbalance_after(spread, u, s, t)))
    }

    /// The `side` least loaded balanced nodes in each of five mixes of CPU and memory
    /// share (each share relative to its mean), from CPU only to memory only.
    fn light_frontier(&self, side: usize) -> Vec<usize> {
        let mut order: Vec<usize> = self.balanced_nodes().collect();
        let count = order.len().max(1) as f64;
        let mean: Vec<f64> = (0..2)
            .map(|r| (order.iter().map(|&i| self.loads(i)[r]).sum::<f64>() / count).max(1e-12))
            .collect();
        let mut light = BTreeSet::new();
        for step in 0..=4 {
            let angle = std::f64::consts::FRAC_PI_8 * step as f64;
            let (wc, wm) = (angle.cos() / mean[0], angle.sin() / mean[1]);
            let key = |i: usize| {
                let l = self.loads(i);
                wc * l[0] + wm * l[1]
            };
            order.sort_by(|a, b| key(*a).total_cmp(&key(*b)).then(a.cmp(b)));
            light.extend(order.iter().take(side).copied());
        }
        light.into_iter().collect()
    }

    /// Whether candidate move `a` beats `b`: lower squared imbalance; on a tie the cheaper
    /// move, then the guest and node names, so the choice does not depend on scan order.
    fn better_move(&self, a: Best, b: Best) -> bool {
        let ((au, _, at, ai), (bu, _, bt, bi)) = (a, b);
        ai < bi * (1.0 - 1e-12) - 1e-24
            || ((ai - bi).abs() <= bi * 1e-12 + 1e-24
                && (
                    self.units[au].cost,
                    &self.units[au].sid,
                    &self.nodes[at].name,
                ) < (
                    self.units[bu].cost,
                    &self.units[bu].sid,
                    &self.nodes[bt].name,
                ))
    }

    /// Unit `u`'s best feasible move that may beat `bound`, and, with a cache, its best
    /// few feasible targets among those it scored.
    fn scan_unit(
        &self,
        u: usize,
        scan: &MoveScan,
        cache: Option<&TargetCache>,
        bound: Option<Best>,
    ) -> (Option<Best>, Option<KeptTargets>) {
        let unit = &self.units[u];
        let s = self.unit_node[u].expect("candidates have a node");
        let cpu_here = self.unit_bal_cpu_on(u, s);
        let without = scan.spread.replaced(
            scan.nodes[s].load,
            self.loads_with(s, [-cpu_here, -unit.bal_mem, -unit.pressure]),
        );
        let fixed_cpu = self.mode == Mode::Dynamic || unit.unlimited == 0;
        // Every scan with a cache renews the unit's kept targets from what it scored, so
        // a node that became light stays a candidate after the round that changed it.
        let keeping = cache.is_some();
        let kept: &[u32] = match cache {
            Some(c) if !c.changed.contains(&s) => {
                c.targets[u].as_ref().map_or(&[], |k| k.as_slice())
            }
            _ => &[],
        };
        let rescan = cache.is_some_and(|c| c.targets[u].is_none() || c.changed.contains(&s));
        let (all, extra): (&[usize], &[usize]) = if cache.is_none() || rescan {
            (&scan.every_node, &[])
        } else {
            (&[], &scan.extra)
        };
        let targets = all
            .iter()
            .copied()
            .chain(kept.iter().filter(|_| !rescan).map(|&t| t as usize))
            .chain(
                extra
                    .iter()
                    .copied()
                    .filter(|&n| !kept.contains(&(n as u32))),
            );
        // The best few scored so far, best first.
        let mut top = [(f64::INFINITY, 0usize); TargetCache::KEEP];
        let mut top_len = 0;
        let mut best = bound;
        let mut found = None;
        for t in targets {
            let node = &scan.nodes[t];
            if t == s || node.maintenance {
                continue;
            }
            let cpu = if fixed_cpu {
                cpu_here
            } else {
                self.unit_bal_cpu_on(u, t)
            };
            let lt = node.load;
            let moved_in = [
                lt[0] + cpu * node.per_unit[0],
                lt[1] + unit.bal_mem * node.per_unit[1],
                lt[2] + unit.pressure * node.per_unit[2],
            ];
            let after = without.replaced(lt, moved_in).score();
            let kept = keeping && (top_len < TargetCache::KEEP || after < top[top_len - 1].0);
            // Arithmetic first: the rule and capacity checks only for contenders, and the
            // capacity check (the usual blocker) before the full one.
            let contender = best.is_none_or(|(.., bi)| after <= bi * (1.0 + 1e-12) + 1e-24);
            if !kept && !contender {
                continue;
            }
            if !self.room_for(t, unit.commit_mem, self.unit_cores_on(u, t))
                || self.blocker(u, t, (0.0, 0.0), true, true).is_some()
            {
                continue;
            }
            if kept {
                let at = top[..top_len].partition_point(|x| x.0 <= after);
                top_len = (top_len + 1).min(TargetCache::KEEP);
                top.copy_within(at..top_len - 1, at + 1);
                top[at] = (after, t);
            }
            if contender && best.is_none_or(|b| self.better_move((u, s, t, after), b)) {
                best = Some((u, s, t, after));
                found = best;
            }
        }
        (
            found,
            keeping.then(|| {
                let mut kept = KeptTargets {
                    len: top_len as u8,
                    ..KeptTargets::default()
                };
                for (slot, (_, t)) in kept.nodes.iter_mut().zip(&top[..top_len]) {
                    *slot = *t as u32;
                }
                kept
            }),
        )
    }

    fn balance_candidate(&self, u: usize, moved: &[bool], budget: usize) -> bool {
        let unit = &self.units[u];
        unit.balance_movable
            && !moved[u]
            && unit.members.len() <= budget
            && self.unit_node[u].is_some_and(|n| !self.nodes[n].maintenance)
    }

    /// The best exchange of two units between two nodes, for when single moves get
    /// stuck: (first unit, its node, second unit, its node, imbalance after). The first
    /// unit moves first; both orders are tried so that no intermediate state overcommits.
    fn best_swap(
        &self,
        moved: &[bool],
        budget: usize,
    ) -> Option<(usize, usize, usize, usize, f64)> {
        const SIDE: usize = 3;
        let balanced: Vec<usize> = self.balanced_nodes().collect();
        if balanced.len() < 2 {
            return None;
        }
        // The most and least loaded nodes in each resource: a CPU-hot node is light in
        // memory, so it pairs with a memory-hot node too.
        let mut heavy = BTreeSet::new();
        let mut light = BTreeSet::new();
        for r in 0..2 {
            let mut order = balanced.clone();
            order.sort_by(|a, b| self.loads(*b)[r].total_cmp(&self.loads(*a)[r]));
            heavy.extend(order.iter().copied().take(SIDE));
            light.extend(order.iter().rev().copied().take(SIDE));
        }
        let mut on_node: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for u in 0..self.units.len() {
            if self.balance_candidate(u, moved, budget) {
                if let Some(n) = self.unit_node[u] {
                    on_node[n].push(u);
                }
            }
        }
        let spread = self.spread();
        let mut best: Option<(usize, usize, usize, usize, f64)> = None;
        for &s in &heavy {
            for &t in &light {
                if s == t {
                    continue;
                }
                for &a in &on_node[s] {
                    let ua = &self.units[a];
                    for &b in &on_node[t] {
                        let ub = &self.units[b];
                        if ua.members.len() + ub.members.len() > budget {
                            continue;
                        }
                        let after = self.spread_after_exchange(spread, a, s, b, t).imbalance();
                        if best.is_some_and(|(.., bi)| after >= bi - 1e-12) {
                            continue;
                        }
                        if !self.rules_allow_end(a, t, s, Some(b))
                            || !self.rules_allow_end(b, s, t, Some(a))
                        {
                            continue;
                        }
                        // `first` leaves `from` for `to` while `second` is still on
                        // `to`; then `second` takes `first`'s place.
                        let order_ok = |first: usize, from: usize, to: usize, second: usize| {
                            let (m1, m2) =
                                (self.units[first].commit_mem, self.units[second].commit_mem);
                            self.room_for(to, m1, self.unit_cores_on(first, to))
                                && self.room_for(
                                    from,
                                    m2 - m1,
                                    self.unit_cores_on(second, from)
                                        - self.unit_cores_on(first, from),
                                )
                        };
                        if order_ok(a, s, t, b) {
                            best = Some((a, s, b, t, after));
                        } else if order_ok(b, t, s, a) {
                            best = Some((b, t, a, s, after));
                        }
                    }
                }
            }
        }
        best
    }

    /// The single move that lowers the imbalance most, whatever its size, if any does.
    pub fn best_migration(&self) -> Option<Vec<Move>> {
        let before = self.imbalance();
        let (u, s, t, after) = self.best_move(&vec![false; self.units.len()], usize::MAX, None)?;
        (after < before).then(|| self.moves_for(u, s, t, before, after))
    }

    /// Plans in two phases. Repair first: every strict rule and capacity limit the
    /// current placement breaks is restored with as few moves as the repair rules allow
    /// (each such move says what it repairs). Then balancing, from the repaired state,
    /// until the imbalance is at or below the target, no move improves it by the minimum
    /// margin, or the move budget (repairs included) is spent. Each guest moves at most
    /// once per plan.
    pub fn plan(&self, settings: &crate::snapshot::Settings) -> Plan {
        let before = self.imbalance();
        let mut repaired = self.clone();
        // Repaired guests have moved once and are frozen for the balancing phase.
        let (mut chosen, reasons, unrepaired) = repaired.repair();
        let repair_moves: usize = chosen
            .iter()
            .map(|c| repaired.units[c.0].members.len())
            .sum();
        let (balancing, after, stop_reason) =
            repaired.balance(settings, settings.max_moves.saturating_sub(repair_moves));
        chosen.extend(balancing);
        let mut steps = self.schedule(&chosen, settings.max_concurrent_per_node);
        let by_guest: BTreeMap<u32, &Repair> = reasons
            .iter()
            .flat_map(|(u, why)| self.units[*u].members.iter().map(move |&m| (m, why)))
            .map(|(m, why)| (self.guests[m].vmid, why))
            .collect();
        for mv in steps.iter_mut().flat_map(|s| s.moves.iter_mut()) {
            mv.repairs = by_guest.get(&mv.vmid).map(|why| (*why).clone());
        }
        Plan {
            mode: self.mode,
            imbalance_before: before,
            imbalance_after: after,
            steps,
            stop_reason,
            unrepaired,
        }
    }

    /// Restores the strict rules and capacity limits the current placement breaks:
    /// split positive groups gather where the fewest members move, guests leave nodes their
    /// strict node affinity forbids, guests sharing a node against a strict negative rule
    /// are separated (the one with the most conflicts moves first), and nodes over their
    /// memory or CPU limit shed the smallest guest that alone brings them back, else the
    /// largest. Guests that opted out of balancing move only when no other will do. Each
    /// moved guest goes where the highest node affinity priority, then the lowest
    /// imbalance, allows; when capacity alone stops it, residents of one node make room.
    /// Returns the moves in order, what each unit's move repairs, and what stays broken.
    fn repair(&mut self) -> (Vec<Chosen>, BTreeMap<usize, Repair>, Vec<Repair>) {
        let mut chosen: Vec<Chosen> = Vec::new();
        let mut reasons: BTreeMap<usize, Repair> = BTreeMap::new();
        let mut unrepaired = Vec::new();

        // Split positive groups.
        for u in 0..self.units.len() {
            if self.unit_node[u].is_some() || self.units[u].members.is_empty() {
                continue;
            }
            let mut best: Option<((usize, usize, i64), f64, usize)> = None;
            for t in 0..self.nodes.len() {
                let on_t: Vec<usize> = self.units[u]
                    .members
                    .iter()
                    .copied()
                    .filter(|&m| self.guest_node[m] == Some(t))
                    .collect();
                // Members already there hold their share of the node.
                let held = on_t.iter().fold((0.0, 0.0), |acc, &m| {
                    let (_, mem, cores) = self.guest_contribution(m, t);
                    (acc.0 - mem, acc.1 - cores)
                });
                if self.blocker(u, t, held, false, false).is_some() {
                    continue;
                }
                let leaving = || {
                    self.units[u]
                        .members
                        .iter()
                        .filter(|&&m| self.guest_node[m] != Some(t))
                };
                // Fewest pinned members moved, then fewest members, then priority.
                let rank = (
                    leaving().filter(|&&m| self.guest_pinned[m]).count(),
                    leaving().count(),
                    -self.units[u].priority.as_ref().map_or(0, |p| p[t]),
                );
                let after = self.imbalance_after_gathering(u, t);
                if best
                    .as_ref()
                    .is_none_or(|(r, i, _)| rank < *r || (rank == *r && after < *i - 1e-12))
                {
                    best = Some((rank, after, t));
                }
            }
            let group = self.units[u].sid.clone();
            let Some((_, _, t)) = best else {
                unrepaired.push(Repair::PositiveAffinity { group });
                continue;
            };
            let from = self.units[u]
                .members
                .iter()
                .filter_map(|&m| self.guest_node[m])
                .find(|&n| n != t)
                .unwrap_or(t);
            let before = self.imbalance();
            self.apply(u, t);
            chosen.push((u, from, t, before, self.imbalance()));
            reasons.insert(u, Repair::PositiveAffinity { group });
        }

        // Strict node affinity.
        for u in 0..self.units.len() {
            let Some(s) = self.unit_node[u] else { continue };
            if self.units[u].allows(s) || reasons.contains_key(&u) {
                continue;
            }
            let why = Repair::StrictNodeAffinity {
                node: self.nodes[s].name.clone(),
                rule: self.units[u].strict_rule.clone().unwrap_or_default(),
            };
            if !self.relocate(u, s, why.clone(), &mut chosen, &mut reasons) {
                unrepaired.push(why);
            }
        }

        // Strict negative resource affinity.
        let separated: Vec<usize> = (0..self.units.len())
            .filter(|&u| self.units[u].negative.iter().any(|n| n.strict))
            .collect();
        for s in 0..self.nodes.len() {
            let mut stuck: BTreeSet<usize> = BTreeSet::new();
            loop {
                let conflicts = |u: usize| {
                    self.units[u]
                        .negative
                        .iter()
                        .filter(|n| n.strict && self.unit_node[n.unit] == Some(s))
                        .count()
                };
                let pick = separated
                    .iter()
                    .copied()
                    .filter(|&u| self.unit_node[u] == Some(s) && !stuck.contains(&u))
                    .filter(|&u| !reasons.contains_key(&u) && conflicts(u) > 0)
                    .max_by(|&a, &b| {
                        (conflicts(a), self.units[a].balance_movable)
                            .cmp(&(conflicts(b), self.units[b].balance_movable))
                            .then(self.units[b].cost.cmp(&self.units[a].cost))
                            .then(self.units[b].sid.cmp(&self.units[a].sid))
                    });
                let Some(u) = pick else { break };
                let partner = self.units[u]
                    .negative
                    .iter()
                    .find(|n| n.strict && self.unit_node[n.unit] == Some(s))
                    .expect("a conflict was counted");
                let why = Repair::NegativeAffinity {
                    node: self.nodes[s].name.clone(),
                    rule: partner.rule.clone(),
                    with: self.units[partner.unit].sid.clone(),
                };
                if !self.relocate(u, s, why.clone(), &mut chosen, &mut reasons) {
                    stuck.insert(u);
                    unrepaired.push(why);
                }
            }
        }

        // Memory and CPU limits.
        for s in 0..self.nodes.len() {
            let mut stuck: BTreeSet<usize> = BTreeSet::new();
            loop {
                let node = &self.nodes[s];
                let excess_mem = self.commit_mem[s] - node.capacity;
                let limit = self.overcommit * node.cores;
                let excess_cores = self.commit_cores[s] - limit;
                if excess_mem <= 0.5 && excess_cores <= 1e-9 {
                    break;
                }
                let why = if excess_mem > 0.5 {
                    Repair::Memory {
                        node: node.name.clone(),
                        committed: self.commit_mem[s] as u64,
                        capacity: node.capacity as u64,
                    }
                } else {
                    Repair::Cpu {
                        node: node.name.clone(),
                        committed: self.commit_cores[s],
                        limit,
                    }
                };
                let residents: Vec<usize> = (0..self.units.len())
                    .filter(|&u| self.unit_node[u] == Some(s) && !stuck.contains(&u))
                    .filter(|&u| !reasons.contains_key(&u))
                    .collect();
                let size = |u: usize| (self.units[u].commit_mem, self.unit_cores_on(u, s));
                let enough = |u: usize| {
                    let (mem, cores) = size(u);
                    mem >= excess_mem - 0.5 && cores >= excess_cores - 1e-9
                };
                // Willing movers first; among them the smallest guest that alone is
                // enough, else the largest in the resource that is over.
                let pick = [true, false].into_iter().find_map(|willing| {
                    let pool: Vec<usize> = residents
                        .iter()
                        .copied()
                        .filter(|&u| self.units[u].balance_movable == willing)
                        .collect();
                    let by_size = |a: &usize, b: &usize| {
                        let (sa, sb) = (size(*a), size(*b));
                        let key = |x: (f64, f64)| if excess_mem > 0.5 { x.0 } else { x.1 };
                        key(sa)
                            .total_cmp(&key(sb))
                            .then(self.units[*b].sid.cmp(&self.units[*a].sid))
                    };
                    pool.iter()
                        .copied()
                        .filter(|&u| enough(u))
                        .min_by(by_size)
                        .or_else(|| pool.iter().copied().max_by(by_size))
                });
                let Some(u) = pick else {
                    unrepaired.push(why);
                    break;
                };
                if !self.relocate(u, s, why, &mut chosen, &mut reasons) {
                    stuck.insert(u);
                }
            }
        }
        (chosen, reasons, unrepaired)
    }

    /// Moves unit `u` off node `s` for a repair (see [`Cluster::place_off`]). Whether it
    /// moved.
    fn relocate(
        &mut self,
        u: usize,
        s: usize,
        why: Repair,
        chosen: &mut Vec<Chosen>,
        reasons: &mut BTreeMap<usize, Repair>,
    ) -> bool {
        let Ok((t, residents)) = self.place_off(u, s, None) else {
            return false;
        };
        for (r, from, to) in residents {
            let before = self.imbalance();
            self.apply(r, to);
            self.units[r].balance_movable = false;
            chosen.push((r, from, to, before, self.imbalance()));
            reasons.insert(
                r,
                Repair::MakesRoom {
                    node: self.nodes[from].name.clone(),
                    guest: self.units[u].sid.clone(),
                },
            );
        }
        let before = self.imbalance();
        self.apply(u, t);
        self.units[u].balance_movable = false;
        chosen.push((u, s, t, before, self.imbalance()));
        reasons.insert(u, why);
        true
    }

    /// Balancing moves until the imbalance is at or below the target, no move
    /// improves it by the minimum margin, or the move budget is spent. Each round takes
    /// the best single move, or the best exchange of two guests when that gains more per
    /// move; each guest moves at most once per plan.
    fn balance(
        &self,
        settings: &crate::snapshot::Settings,
        max_moves: usize,
    ) -> (Vec<Chosen>, f64, String) {
        let mut model = self.clone();
        let mut moved = vec![false; model.units.len()];
        let mut chosen: Vec<Chosen> = Vec::new();
        let mut budget = max_moves;
        let nodes_balanced = model.balanced_nodes().count().max(1) as f64;
        let mut cache = TargetCache::for_cluster(self);
        let mut stop_reason = loop {
            let current = model.imbalance();
            if current <= settings.imbalance_target {
                break format!(
                    "imbalance {current:.4} is at or below the target {:.4}",
                    settings.imbalance_target
                );
            }
            if budget == 0 {
                break format!("the move budget of {} is spent", settings.max_moves);
            }
            // Each move must earn its keep: lower the imbalance by the minimum gain.
            // One move shifts a node's load by about 1/n of the cluster's, so the minimum
            // gain scales with the number of balanced nodes.
            let min_gain = settings.min_improvement / nodes_balanced;
            let enough = |after: f64, moves: usize| {
                after < current && current - after >= min_gain * moves as f64
            };
            let single = model
                .best_move(&moved, budget, cache.as_mut())
                .filter(|m| enough(m.3, model.units[m.0].members.len()));
            let swap = if budget >= 2 {
                model.best_swap(&moved, budget).filter(|m| {
                    enough(
                        m.4,
                        model.units[m.0].members.len() + model.units[m.2].members.len(),
                    )
                })
            } else {
                None
            };
            let single_gain =
                single.map(|m| (current - m.3) / model.units[m.0].members.len() as f64);
            let swap_gain = swap.map(|w| {
                (current - w.4)
                    / (model.units[w.0].members.len() + model.units[w.2].members.len()) as f64
            });
            let take_swap = match (single_gain, swap_gain) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(g1), Some(g2)) => g2 > g1,
            };
            if take_swap {
                let (a, s, b, t, _) = swap.expect("swap chosen");
                // Exact checks in order; the quick screen may miss a rule interaction.
                // Tried in place and undone if the second half is refused: a copy of a
                // large cluster per swap costs more than the search.
                if model.blocker(a, t, (0.0, 0.0), true, true).is_none() {
                    model.apply(a, t);
                    if model.blocker(b, s, (0.0, 0.0), true, true).is_none() {
                        let mid = model.imbalance();
                        model.apply(b, s);
                        chosen.push((a, s, t, current, mid));
                        chosen.push((b, t, s, mid, model.imbalance()));
                        budget -= model.units[a].members.len() + model.units[b].members.len();
                        moved[a] = true;
                        moved[b] = true;
                        TargetCache::changed(&mut cache, [s, t]);
                        continue;
                    }
                    model.apply(a, s);
                }
                if single.is_none() {
                    break "no feasible move is left".to_string();
                }
            }
            let Some((u, s, t, _)) = single else {
                break if settings.min_improvement > 0.0 {
                    format!(
                        "no move lowers the imbalance by {} or more",
                        settings.min_improvement
                    )
                } else {
                    "no move lowers the imbalance".to_string()
                };
            };
            budget -= model.units[u].members.len();
            moved[u] = true;
            model.apply(u, t);
            TargetCache::changed(&mut cache, [s, t]);
            chosen.push((u, s, t, current, model.imbalance()));
        };
        let greedy: Vec<(usize, usize)> = chosen.iter().map(|&(u, _, t, _, _)| (u, t)).collect();
        let improved = if max_moves > 1
            && (settings.imbalance_target < model.imbalance() || chosen.len() > 1)
        {
            self.exact_small(max_moves, settings.imbalance_target)
                .or_else(|| {
                    // Beam search, then polish whichever set is better with local search.
                    let start = match self.beam(max_moves, settings.imbalance_target) {
                        Some(b)
                            if self.final_imbalance(&b) < self.final_imbalance(&greedy) - 1e-12 =>
                        {
                            b
                        }
                        _ => greedy.clone(),
                    };
                    let polished = self
                        .improve(&start, max_moves, settings.min_improvement)
                        .unwrap_or(start);
                    Some(
                        self.iterated_search(&polished, max_moves, settings.imbalance_target)
                            .unwrap_or(polished),
                    )
                })
        } else {
            None
        };
        if let Some(better) = improved {
            if better != greedy {
                if let Some(seq) = self.sequence(&better) {
                    let mut trial = self.clone();
                    for &(u, _, t, _, _) in &seq {
                        trial.apply(u, t);
                    }
                    let (new, old) = (trial.imbalance(), model.imbalance());
                    let target = settings.imbalance_target;
                    let better = if new <= target && old <= target {
                        seq.len() < chosen.len()
                    } else {
                        new < old - 1e-12 || (new <= old + 1e-12 && seq.len() < chosen.len())
                    };
                    if better {
                        chosen = seq;
                        model = trial;
                        stop_reason = if model.imbalance() <= target {
                            format!(
                                "imbalance {:.4} is at or below the target {target:.4}",
                                model.imbalance()
                            )
                        } else {
                            format!("no better plan within {max_moves} moves")
                        };
                    }
                }
            }
        }
        (chosen, model.imbalance(), stop_reason)
    }

    /// Whether unit `u` may end up on `t`; `origin` is where it was
    /// before the plan (node preference is judged against it).
    fn may_end_on(&self, u: usize, t: usize, origin: usize) -> bool {
        if t == origin || self.blocker(u, t, (0.0, 0.0), false, true).is_some() {
            return false;
        }
        match &self.units[u].priority {
            Some(prio) => prio[t] >= prio[origin],
            None => true,
        }
    }

    /// Local search over the set of moves the greedy pass chose: retarget a move, drop
    /// it, add one, or trade a moved guest for another, while the final imbalance drops.
    /// Runs only where the neighbourhood is small enough to search in milliseconds.
    fn improve(
        &self,
        moves: &[(usize, usize)],
        budget: usize,
        min_improvement: f64,
    ) -> Option<Vec<(usize, usize)>> {
        const WORK_LIMIT: usize = 300_000;
        if self.units.len() * self.nodes.len() * budget.max(1) > WORK_LIMIT {
            return None;
        }
        let origin: Vec<Option<usize>> = self.unit_node.clone();
        let mut work = self.clone();
        let mut set: Vec<(usize, usize)> = moves.to_vec();
        for &(u, t) in &set {
            work.apply(u, t);
        }
        let size = |u: usize| self.units[u].members.len();
        for _ in 0..64 {
            let current = work.imbalance();
            let used: usize = set.iter().map(|(u, _)| size(*u)).sum();
            let sums = work.spread();
            // (new imbalance, fewer moves wins ties, the new set)
            let mut best: Option<(f64, Vec<(usize, usize)>)> = None;
            let consider =
                |after: f64,
                 candidate: Vec<(usize, usize)>,
                 best: &mut Option<(f64, Vec<(usize, usize)>)>| {
                    let key = (after, candidate.len());
                    if best.as_ref().is_none_or(|(bi, bs)| {
                        key.0 < bi - 1e-12 || ((key.0 - bi).abs() <= 1e-12 && key.1 < bs.len())
                    }) {
                        *best = Some((after, candidate));
                    }
                };
            for (i, &(u, t)) in set.iter().enumerate() {
                let o = origin[u].expect("moved units had a node");
                for t2 in 0..work.nodes.len() {
                    if t2 != t && work.may_end_on(u, t2, o) {
                        let mut c = set.clone();
                        c[i] = (u, t2);
                        consider(work.imbalance_after(sums, u, t, t2), c, &mut best);
                    }
                }
                if work.blocker(u, o, (0.0, 0.0), false, true).is_none() {
                    let mut c = set.clone();
                    c.remove(i);
                    consider(work.imbalance_after(sums, u, t, o), c, &mut best);
                }
            }
            let moved: Vec<bool> = (0..work.units.len())
                .map(|u| set.iter().any(|(m, _)| *m == u))
                .collect();
            if used < budget {
                if let Some((u, _, t, after)) = work.best_move(&moved, budget - used, None) {
                    let mut c = set.clone();
                    c.push((u, t));
                    consider(after, c, &mut best);
                }
            }
            for (i, &(u, _)) in set.iter().enumerate() {
                let o = origin[u].expect("moved units had a node");
                if work.blocker(u, o, (0.0, 0.0), false, true).is_some() {
                    continue;
                }
                let mut trial = work.clone();
                trial.apply(u, o);
                let mut frozen = moved.clone();
                frozen[u] = true;
                if let Some((v, _, w, after)) =
                    trial.best_move(&frozen, budget - used + size(u), None)
                {
                    let mut c = set.clone();
                    c[i] = (v, w);
                    consider(after, c, &mut best);
                }
            }
            let Some((after, candidate)) = best else {
                break;
            };
            let better = after < current - min_improvement.min(0.001) * 0.1 - 1e-12
                || (after <= current + 1e-12 && candidate.len() < set.len());
            if !better {
                break;
            }
            work = self.clone();
            for &(u, t) in &candidate {
                work.apply(u, t);
            }
            set = candidate;
        }
        Some(set)
    }

    /// Whether unit `u` may end on node `t` in a balancing plan that started with it on
    /// `origin`, with `leaving` (if any) leaving `t` at the same time; capacity apart.
    fn rules_allow_end(&self, u: usize, t: usize, origin: usize, leaving: Option<usize>) -> bool {
        let unit = &self.units[u];
        if self.nodes[t].maintenance
            || !unit.allows(t)
            || unit.cpu_lacks.iter().any(|(n, _)| *n == t)
        {
            return false;
        }
        if let Some(prio) = &unit.priority {
            if prio[t] < prio[origin] {
                return false;
            }
        }
        !unit
            .negative
            .iter()
            .any(|n| Some(n.unit) != leaving && self.unit_node[n.unit] == Some(t))
    }

    /// Whether node `t` holds `mem` more memory and `cores` more cores (negative: less).
    fn room_for(&self, t: usize, mem: f64, cores: f64) -> bool {
        let node = &self.nodes[t];
        (mem <= 0.0 || self.commit_mem[t] + mem <= node.capacity)
            && (cores <= 0.0 || self.commit_cores[t] + cores <= self.overcommit * node.cores + 1e-9)
    }

    /// Iterated local search over final placements within the move budget, for clusters
    /// too large for the exhaustive stage but small enough to search a neighbourhood in
    /// microseconds: from `start`, best-improvement descent over moving one guest
    /// anywhere (home included) and exchanging the nodes of two guests, then a seeded
    /// random kick of two moves, a fixed number of times; the best placement seen wins.
    /// Every visited placement keeps every rule and limit. Deterministic.
    fn iterated_search(
        &self,
        start: &[(usize, usize)],
        budget: usize,
        target: f64,
    ) -> Option<Vec<(usize, usize)>> {
        use rand::{Rng, SeedableRng};
        const WORK_LIMIT: usize = 2_000;
        const KICKS: usize = 300;
        let none_moved = vec![false; self.units.len()];
        let movable: Vec<usize> = (0..self.units.len())
            .filter(|&u| self.balance_candidate(u, &none_moved, budget))
            .collect();
        let n = self.nodes.len();
        // One descent step looks at every guest on every node and every pair of guests.
        if movable.len() < 2 || movable.len() * n + movable.len() * movable.len() > WORK_LIMIT {
            return None;
        }
        let origin: Vec<usize> = movable
            .iter()
            .map(|&u| self.unit_node[u].expect("movable units have a node"))
            .collect();
        let size = |i: usize| self.units[movable[i]].members.len();
        let mut work = self.clone();
        for &(u, t) in start {
            work.apply(u, t);
        }
        let used = |work: &Cluster| -> usize {
            (0..movable.len())
                .filter(|&i| work.unit_node[movable[i]] != Some(origin[i]))
                .map(size)
                .sum()
        };
        let set_of = |work: &Cluster| -> Vec<(usize, usize)> {
            (0..movable.len())
                .filter_map(|i| {
                    let at = work.unit_node[movable[i]]?;
                    (at != origin[i]).then_some((movable[i], at))
                })
                .collect()
        };
        let better = |a, b| better_plan(target, a, b);
        let mut best = ((work.imbalance(), used(&work)), set_of(&work));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed ^ movable.len() as u64);
        for kick in 0..=KICKS {
            if kick > 0 {
                // Kick: two random feasible relocations within the budget.
                for _ in 0..2 {
                    let i = rng.gen_range(0..movable.len());
                    let u = movable[i];
                    let t = rng.gen_range(0..n);
                    let Some(s) = work.unit_node[u] else { continue };
                    let (mem, cores) = (work.units[u].commit_mem, work.unit_cores_on(u, t));
                    let extra = usize::from(t != origin[i]) * size(i);
                    let freed = usize::from(s != origin[i]) * size(i);
                    if t != s
                        && used(&work) - freed + extra <= budget
                        && work.rules_allow_end(u, t, origin[i], None)
                        && work.room_for(t, mem, cores)
                    {
                        work.apply(u, t);
                    }
                }
            }
            // Descent.
            loop {
                let spread = work.spread();
                let current = (spread.score(), used(&work));
                let mut step: Option<((f64, usize), MoveSet)> = None;
                let mut consider = |key: (f64, usize), moves: Vec<(usize, usize)>| {
                    let cur = step.as_ref().map_or(current, |(k, _)| *k);
                    let as_imbalance = |k: (f64, usize)| (k.0.sqrt(), k.1);
                    if better(as_imbalance(key), as_imbalance(cur)) {
                        step = Some((key, moves));
                    }
                };
                let in_use = current.1;
                for (i, &u) in movable.iter().enumerate() {
                    let s = work.unit_node[u].expect("placed");
                    let freed = usize::from(s != origin[i]) * size(i);
                    for t in 0..n {
                        if t == s {
                            continue;
                        }
                        let moves = in_use - freed + usize::from(t != origin[i]) * size(i);
                        if moves > budget
                            || !work.rules_allow_end(u, t, origin[i], None)
                            || !work.room_for(t, work.units[u].commit_mem, work.unit_cores_on(u, t))
                        {
                            continue;
                        }
                        let after = work.spread_after(spread, u, s, t).score();
                        consider((after, moves), vec![(u, t)]);
                    }
                }
                for i in 0..movable.len() {
                    let a = movable[i];
                    let s = work.unit_node[a].expect("placed");
                    for j in i + 1..movable.len() {
                        let b = movable[j];
                        let t = work.unit_node[b].expect("placed");
                        if s == t {
                            continue;
                        }
                        let moves = in_use
                            - usize::from(s != origin[i]) * size(i)
                            - usize::from(t != origin[j]) * size(j)
                            + usize::from(t != origin[i]) * size(i)
                            + usize::from(s != origin[j]) * size(j);
                        if moves > budget
                            || !work.rules_allow_end(a, t, origin[i], Some(b))
                            || !work.rules_allow_end(b, s, origin[j], Some(a))
                        {
                            continue;
                        }
                        let (ma, mb) = (work.units[a].commit_mem, work.units[b].commit_mem);
                        if !work.room_for(
                            t,
                            ma - mb,
                            work.unit_cores_on(a, t) - work.unit_cores_on(b, t),
                        ) || !work.room_for(
                            s,
                            mb - ma,
                            work.unit_cores_on(b, s) - work.unit_cores_on(a, s),
                        ) {
                            continue;
                        }
                        let after = work.spread_after_exchange(spread, a, s, b, t);
                        consider((after.score(), moves), vec![(a, t), (b, s)]);
                    }
                }
                let Some((_, moves)) = step else { break };
                for (u, t) in moves {
                    work.apply(u, t);
                }
            }
            let here = (work.imbalance(), used(&work));
            if better(here, best.0) {
                best = (here, set_of(&work));
            }
        }
        Some(best.1)
    }

    /// Number of placements an exhaustive search over at most `budget` moves visits.
    fn search_space(&self, movable: usize, budget: usize) -> f64 {
        let other = (self.nodes.len().saturating_sub(1)) as f64;
        let mut total = 0.0;
        let mut choose = 1.0;
        for k in 0..=budget.min(movable) {
            total += choose * other.powi(k as i32);
            choose = choose * (movable - k) as f64 / (k + 1) as f64;
        }
        total
    }

    /// Whether the current placement (after the moves in `set`) keeps every rule and
    /// limit on the nodes the moves touched.
    fn final_state_ok(&self, set: &[(usize, usize)], origin: &[Option<usize>]) -> bool {
        for &(u, t) in set {
            let unit = &self.units[u];
            let node = &self.nodes[t];
            if node.maintenance || !unit.allows(t) {
                return false;
            }
            if let (Some(prio), Some(o)) = (&unit.priority, origin[u]) {
                if prio[t] < prio[o] {
                    return false;
                }
            }
            if self.commit_mem[t] > node.capacity
                || self.commit_cores[t] > self.overcommit * node.cores + 1e-9
            {
                return false;
            }
            if unit
                .negative
                .iter()
                .any(|n| self.unit_node[n.unit] == Some(t))
            {
                return false;
            }
        }
        true
    }

    fn final_imbalance(&self, set: &[(usize, usize)]) -> f64 {
        let mut model = self.clone();
        for &(u, t) in set {
            model.apply(u, t);
        }
        model.imbalance()
    }

    /// The `count` best feasible single moves, best first.
    fn top_moves(
        &self,
        moved: &[bool],
        budget: usize,
        count: usize,
    ) -> Vec<(usize, usize, usize, f64)> {
        let sums = self.spread();
        let mut top: Vec<(usize, usize, usize, f64)> = Vec::with_capacity(count + 1);
        for u in 0..self.units.len() {
            if !self.balance_candidate(u, moved, budget) {
                continue;
            }
            let Some(s) = self.unit_node[u] else { continue };
            for t in 0..self.nodes.len() {
                if t == s {
                    continue;
                }
                let after = self.imbalance_after(sums, u, s, t);
                if top.len() == count && top.last().is_some_and(|w| after >= w.3) {
                    continue;
                }
                if self.blocker(u, t, (0.0, 0.0), true, true).is_some() {
                    continue;
                }
                let at = top.partition_point(|w| w.3 <= after);
                top.insert(at, (u, s, t, after));
                top.truncate(count);
            }
        }
        top
    }

    /// Beam search over move sequences: keeps the few best partial plans at each depth,
    /// each extended by its few best next moves. Every prefix is feasible by construction.
    fn beam(&self, budget: usize, target: f64) -> Option<Vec<(usize, usize)>> {
        const WIDTH: usize = 32;
        const BRANCH: usize = 12;
        const WORK_LIMIT: usize = 20_000_000;
        if self.units.len() * self.nodes.len() * budget * WIDTH * BRANCH > WORK_LIMIT {
            return None;
        }
        struct State {
            model: Cluster,
            moved: Vec<bool>,
            set: Vec<(usize, usize)>,
            used: usize,
            imbalance: f64,
        }
        let better = |a, b| better_plan(target, a, b);
        let mut states = vec![State {
            model: self.clone(),
            moved: vec![false; self.units.len()],
            set: Vec::new(),
            used: 0,
            imbalance: self.imbalance(),
        }];
        let mut best: Option<(f64, Vec<(usize, usize)>)> = None;
        for _ in 0..budget {
            let mut next: Vec<State> = Vec::new();
            for st in &states {
                if st.imbalance <= target {
                    continue;
                }
                for (u, _, t, after) in st.model.top_moves(&st.moved, budget - st.used, BRANCH) {
                    if after >= st.imbalance - 1e-12 {
                        continue;
                    }
                    let mut set = st.set.clone();
                    set.push((u, t));
                    let mut key = set.clone();
                    key.sort_unstable();
                    if next.iter().any(|n| {
                        let mut k = n.set.clone();
                        k.sort_unstable();
                        k == key
                    }) {
                        continue;
                    }
                    let mut model = st.model.clone();
                    model.apply(u, t);
                    let mut moved = st.moved.clone();
                    moved[u] = true;
                    let used = st.used + self.units[u].members.len();
                    let imbalance = model.imbalance();
                    next.push(State {
                        model,
                        moved,
                        set,
                        used,
                        imbalance,
                    });
                }
            }
            if next.is_empty() {
                break;
            }
            next.sort_by(|a, b| a.imbalance.total_cmp(&b.imbalance));
            next.truncate(WIDTH);
            for st in &next {
                if best
                    .as_ref()
                    .is_none_or(|(bi, bs)| better((st.imbalance, st.set.len()), (*bi, bs.len())))
                {
                    best = Some((st.imbalance, st.set.clone()));
                }
            }
            states = next;
        }
        best.map(|(_, set)| set)
    }

    /// Exhaustive search for the best set of at most `budget` moves, where that is cheap
    /// (small clusters): exact instead of greedy.
    fn exact_small(&self, budget: usize, target: f64) -> Option<Vec<(usize, usize)>> {
        const SPACE_LIMIT: f64 = 400_000.0;
        let none_moved = vec![false; self.units.len()];
        let movable: Vec<usize> = (0..self.units.len())
            .filter(|&u| self.balance_candidate(u, &none_moved, budget))
            .collect();
        if self.search_space(movable.len(), budget) > SPACE_LIMIT {
            return None;
        }
        struct Dfs<'a> {
            movable: &'a [usize],
            origin: Vec<Option<usize>>,
            budget: usize,
            target: f64,
            set: Vec<(usize, usize)>,
            best: Option<(f64, Vec<(usize, usize)>)>,
        }
        fn visit(model: &mut Cluster, d: &mut Dfs<'_>, index: usize, used: usize) {
            if index == d.movable.len() {
                if d.set.is_empty() || !model.final_state_ok(&d.set, &d.origin) {
                    return;
                }
                let i = model.imbalance();
                let target = d.target;
                let better = d
                    .best
                    .as_ref()
                    .is_none_or(|(bi, bs)| better_plan(target, (i, d.set.len()), (*bi, bs.len())));
                if better {
                    d.best = Some((i, d.set.clone()));
                }
                return;
            }
            visit(model, d, index + 1, used);
            let u = d.movable[index];
            let size = model.units[u].members.len();
            if used + size > d.budget {
                return;
            }
            let Some(home) = d.origin[u] else { return };
            for t in 0..model.nodes.len() {
                if t == home || model.nodes[t].maintenance || !model.units[u].allows(t) {
                    continue;
                }
                model.apply(u, t);
                d.set.push((u, t));
                visit(model, d, index + 1, used + size);
                d.set.pop();
                model.apply(u, home);
            }
        }
        let mut model = self.clone();
        let mut d = Dfs {
            movable: &movable,
            origin: self.unit_node.clone(),
            budget,
            target,
            set: Vec::new(),
            best: None,
        };
        visit(&mut model, &mut d, 0, 0);
        d.best.map(|(_, set)| set)
    }

    /// Orders a set of moves so that every intermediate state respects the rules and
    /// capacities: each time, the feasible move that lowers the imbalance most.
    fn sequence(&self, set: &[(usize, usize)]) -> Option<Vec<Chosen>> {
        let mut model = self.clone();
        let mut left: Vec<(usize, usize)> = set.to_vec();
        let mut out = Vec::new();
        while !left.is_empty() {
            let sums = model.spread();
            let current = model.imbalance();
            let pick = left
                .iter()
                .enumerate()
                .filter(|(_, (u, t))| model.blocker(*u, *t, (0.0, 0.0), false, true).is_none())
                .map(|(i, (u, t))| {
                    (
                        i,
                        model.imbalance_after(sums, *u, model.unit_node[*u].unwrap_or(*t), *t),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))?;
            let (u, t) = left.remove(pick.0);
            let s = model.unit_node[u]?;
            model.apply(u, t);
            out.push((u, s, t, current, model.imbalance()));
        }
        Some(out)
    }

    /// Packs planned moves, in order, into steps: a move joins the current step when
    /// its nodes have a free migration slot and its target can hold it while the step's
    /// other migrations still hold memory on their sources; otherwise a new step starts.
    fn schedule(&self, chosen: &[Chosen], max_concurrent: usize) -> Vec<Step> {
        let mut model = self.clone();
        let mut steps: Vec<Step> = Vec::new();
        let mut in_step: Vec<(usize, usize)> = Vec::new();
        let mut slots: BTreeMap<usize, usize> = BTreeMap::new();
        let mut reserved: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        let mut current = Step { moves: Vec::new() };
        for &(u, s, t, before, after) in chosen {
            let size = model.units[u].members.len();
            let fits_slots = |slots: &BTreeMap<usize, usize>| {
                slots.get(&s).copied().unwrap_or(0) + size <= max_concurrent
                    && slots.get(&t).copied().unwrap_or(0) + size <= max_concurrent
            };
            let res = reserved.get(&t).copied().unwrap_or((0.0, 0.0));
            let fits = !current.moves.is_empty()
                && fits_slots(&slots)
                && model.blocker(u, t, res, false, false).is_none();
            if !fits && !current.moves.is_empty() {
                // Close the step: its migrations finish and free their sources.
                for (mu, mt) in in_step.drain(..) {
                    model.apply(mu, mt);
                }
                steps.push(std::mem::replace(&mut current, Step { moves: Vec::new() }));
                slots.clear();
                reserved.clear();
            }
            current.moves.extend(self.moves_for(u, s, t, before, after));
            *slots.entry(s).or_default() += size;
            *slots.entry(t).or_default() += size;
            let r = reserved.entry(t).or_default();
            r.0 += model.units[u].commit_mem;
            r.1 += model.unit_cores_on(u, t);
            in_step.push((u, t));
        }
        if !current.moves.is_empty() {
            steps.push(current);
        }
        steps
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Moves every guest off `node`: largest first, each to the allowed node with the
    /// most preferred priority that leaves the lowest imbalance. Non-strict rules give way
    /// only when nothing else fits. When that needs residents to make room (or finds no
    /// place for a guest), a bounded search looks for a packing of the evacuated guests
    /// alone and takes it when one exists: then no move beyond the evacuation is needed.
    pub fn evacuate(
        &self,
        node: &str,
        settings: &crate::snapshot::Settings,
    ) -> Result<Plan, EvacuationError> {
        let source = self
            .node_index(node)
            .ok_or_else(|| EvacuationError::UnknownNode(node.to_string()))?;
        let mut model = self.clone();
        model.nodes[source].maintenance = true;
        let before = model.imbalance();
        let mut order: Vec<usize> = (0..model.units.len())
            .filter(|&u| {
                model.units[u]
                    .members
                    .iter()
                    .any(|&m| model.guest_node[m] == Some(source))
            })
            .collect();
        order.sort_by(|a, b| {
            model.units[*b]
                .commit_mem
                .total_cmp(&model.units[*a].commit_mem)
                .then_with(|| model.units[*a].sid.cmp(&model.units[*b].sid))
        });
        let greedy = model.clone().evacuate_greedy(source, &order);
        let needs_more = match &greedy {
            Ok((chosen, _)) => chosen.len() > order.len(),
            Err(_) => true,
        };
        let packed = if needs_more {
            model.pack(source, &order)
        } else {
            None
        };
        let (chosen, after) = match (packed, greedy) {
            (Some(packed), _) => packed,
            (None, Ok(greedy)) => greedy,
            (None, Err(e)) => return Err(e),
        };
        let steps = self.schedule(&chosen, settings.max_concurrent_per_node);
        Ok(Plan {
            mode: self.mode,
            imbalance_before: before,
            imbalance_after: after.imbalance(),
            steps,
            stop_reason: format!("node '{node}' is empty"),
            unrepaired: Vec::new(),
        })
    }

    /// The forced target of unit `u` leaving `source`: where the members of a group split
    /// over nodes are (they must join them).
    fn forced_target(&self, u: usize, source: usize) -> Option<usize> {
        self.units[u]
            .members
            .iter()
            .map(|&m| self.guest_node[m].unwrap_or(source))
            .find(|&n| n != source)
    }

    /// The greedy evacuation of `order` (all on `source`), residents making room where
    /// capacity alone blocks a guest: the moves and the model after them. Each guest moves
    /// at most once.
    fn evacuate_greedy(
        mut self,
        source: usize,
        order: &[usize],
    ) -> Result<(Vec<Chosen>, Cluster), EvacuationError> {
        let model = &mut self;
        let mut chosen = Vec::new();
        for &u in order {
            // A group split over nodes must join the members that are elsewhere.
            let forced = model.forced_target(u, source);
            model.unit_node[u] = Some(source);
            let t = match model.place_off(u, source, forced) {
                Ok((t, residents)) => {
                    for (r, from, to) in residents {
                        let before = model.imbalance();
                        model.apply(r, to);
                        // Each guest moves once per plan: a resident that made room
                        // is not asked to make room again.
                        model.units[r].balance_movable = false;
                        chosen.push((r, from, to, before, model.imbalance()));
                    }
                    t
                }
                Err(blockers) => {
                    return Err(EvacuationError::Infeasible(Infeasible {
                        sid: model.units[u].sid.clone(),
                        blockers,
                    }));
                }
            };
            let current = model.imbalance();
            model.apply(u, t);
            // Nor is a guest just evacuated (CI once saw one evacuated to a node and
            // then moved on as a resident, listed twice as leaving the evacuated node).
            model.units[u].balance_movable = false;
            chosen.push((u, source, t, current, model.imbalance()));
        }
        Ok((chosen, self))
    }

    /// A placement of the units `order` (all on `source`) on the other nodes without
    /// moving anyone else: depth-first over each unit's allowed targets, those honouring
    /// non-strict rules first, then by lowest imbalance, within a bounded number of tries
    /// (packing is NP-hard; the bound keeps an evacuation request prompt). The moves in
    /// order and the model after them. Groups split over nodes are left to the greedy
    /// evacuation (they join their other members there).
    fn pack(&self, source: usize, order: &[usize]) -> Option<(Vec<Chosen>, Cluster)> {
        /// Node checks the search may spend: about a second on a large cluster.
        const WORK: usize = 2_000_000;
        struct Search<'a> {
            order: &'a [usize],
            source: usize,
            work: usize,
            placed: Vec<usize>,
        }
        fn visit(model: &mut Cluster, search: &mut Search<'_>, index: usize) -> bool {
            let Some(&u) = search.order.get(index) else {
                return true;
            };
            if search.work < model.nodes.len() {
                return false;
            }
            search.work -= model.nodes.len();
            let spread = model.spread();
            let forced = model.forced_target(u, search.source);
            let mut targets: Vec<(bool, i64, f64, usize)> = (0..model.nodes.len())
                .filter(|&t| t != search.source && forced.is_none_or(|f| f == t))
                .filter(|&t| model.blocker(u, t, (0.0, 0.0), false, false).is_none())
                .map(|t| {
                    let soft_ok = model.blocker(u, t, (0.0, 0.0), false, true).is_none();
                    let prio = match &model.units[u].priority {
                        Some(p) if soft_ok => p[t],
                        _ => 0,
                    };
                    let after = model.imbalance_after(spread, u, search.source, t);
                    (!soft_ok, -prio, after, t)
                })
                .collect();
            targets.sort_by(|a, b| {
                (a.0, a.1)
                    .cmp(&(b.0, b.1))
                    .then(a.2.total_cmp(&b.2))
                    .then(a.3.cmp(&b.3))
            });
            for (.., t) in targets {
                model.apply(u, t);
                search.placed.push(t);
                if visit(model, search, index + 1) {
                    return true;
                }
                search.placed.pop();
                model.apply(u, search.source);
            }
            false
        }
        if order.iter().any(|&u| self.unit_node[u] != Some(source)) {
            return None;
        }
        let mut trial = self.clone();
        let mut search = Search {
            order,
            source,
            work: WORK,
            placed: Vec::new(),
        };
        if !visit(&mut trial, &mut search, 0) {
            return None;
        }
        // Replay in order for each move's imbalance before and after.
        let mut model = self.clone();
        let mut chosen = Vec::new();
        for (&u, &t) in order.iter().zip(&search.placed) {
            let before = model.imbalance();
            model.apply(u, t);
            chosen.push((u, source, t, before, model.imbalance()));
        }
        Some((chosen, model))
    }

    /// Where unit `u` goes when it must leave `source` (evacuation or repair): the allowed
    /// node with the highest node affinity priority, then the lowest imbalance; non-strict
    /// rules give way (and priorities no longer count) only when nothing else fits; a
    /// group split over nodes goes to `forced`, where its other members are. When capacity
    /// alone stops it, the resident moves that make room come with the target (not yet
    /// applied). Otherwise why each node is refused.
    fn place_off(
        &mut self,
        u: usize,
        source: usize,
        forced: Option<usize>,
    ) -> Result<(usize, Vec<ResidentMove>), Vec<Blocker>> {
        let spread = self.spread();
        let mut best: Option<(i64, f64, usize)> = None;
        let mut blockers = Vec::new();
        for soft in [true, false] {
            blockers.clear();
            for t in 0..self.nodes.len() {
                if let Some(f) = forced.filter(|&f| f != t) {
                    blockers.push(Blocker::PositiveAffinity {
                        node: self.nodes[t].name.clone(),
                        with: self.nodes[f].name.clone(),
                    });
                    continue;
                }
                if let Some(b) = self.blocker(u, t, (0.0, 0.0), false, soft) {
                    blockers.push(b);
                    continue;
                }
                let prio = match (&self.units[u].priority, soft) {
                    (Some(p), true) => p[t],
                    _ => 0,
                };
                let after = self.imbalance_after(spread, u, source, t);
                if best.is_none_or(|(bp, bi, _)| prio > bp || (prio == bp && after < bi - 1e-12)) {
                    best = Some((prio, after, t));
                }
            }
            if let Some((_, _, t)) = best {
                return Ok((t, Vec::new()));
            }
        }
        // Only capacity in the way? Move residents off one node first.
        self.make_room(u, source, forced).ok_or(blockers)
    }

    /// When unit `u` (on `source`, being evacuated) fits nowhere for lack of capacity
    /// alone: the node to free and the resident moves `(unit, from, to)` that make room
    /// there, with the fewest moves, then the lowest imbalance. Residents move largest
    /// first, each to the node where it leaves the lowest imbalance; units that opted
    /// out of balancing, were moved recently, or are split over nodes stay.
    fn make_room(
        &mut self,
        u: usize,
        source: usize,
        forced: Option<usize>,
    ) -> Option<(usize, Vec<ResidentMove>)> {
        const MAX_RESIDENT_MOVES: usize = 8;
        let capacity_only = |b: &Blocker| matches!(b, Blocker::Memory { .. } | Blocker::Cpu { .. });
        // (resident moves, imbalance after, node freed, the moves)
        let mut best: Option<(usize, f64, usize, Vec<ResidentMove>)> = None;
        let mut movable_on: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for r in (0..self.units.len()).filter(|&r| r != u && self.units[r].balance_movable) {
            if let Some(at) = self.unit_node[r] {
                movable_on[at].push(r);
            }
        }
        for t in (0..self.nodes.len()).filter(|&t| t != source && forced.is_none_or(|f| f == t)) {
            if !self
                .blocker(u, t, (0.0, 0.0), false, false)
                .is_some_and(|b| capacity_only(&b))
            {
                continue;
            }
            let mut residents = std::mem::take(&mut movable_on[t]);
            residents.sort_by(|a, b| {
                self.units[*b]
                    .commit_mem
                    .total_cmp(&self.units[*a].commit_mem)
                    .then_with(|| self.units[*a].sid.cmp(&self.units[*b].sid))
            });
            // Tried in place and undone: a copy of a large cluster per node costs more
            // than the search.
            let mut moves = Vec::new();
            for r in residents.into_iter().take(MAX_RESIDENT_MOVES) {
                let spread = self.spread();
                let to = (0..self.nodes.len())
                    .filter(|&t2| t2 != t && t2 != source)
                    .filter(|&t2| self.blocker(r, t2, (0.0, 0.0), false, true).is_none())
                    .map(|t2| (self.imbalance_after(spread, r, t, t2), t2))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let Some((_, to)) = to else { continue };
                self.apply(r, to);
                moves.push((r, t, to));
                if self.blocker(u, t, (0.0, 0.0), false, false).is_none() {
                    let after = self.imbalance_after(self.spread(), u, source, t);
                    let better = best.as_ref().is_none_or(|(n, i, _, _)| {
                        moves.len() < *n || (moves.len() == *n && after < *i - 1e-12)
                    });
                    if better {
                        best = Some((moves.len(), after, t, moves.clone()));
                    }
                    break;
                }
            }
            for &(r, from, _) in moves.iter().rev() {
                self.apply(r, from);
            }
        }
        best.map(|(_, _, t, moves)| (t, moves))
    }

    /// Ranks the nodes for a new guest with `cores` and `memory` (bytes). `like` names an
    /// existing guest whose rules the new one follows (it is placed anew).
    pub fn best_node(&self, cores: f64, memory: u64, like: Option<&str>) -> Vec<NodeCandidate> {
        let mut model = self.clone();
        let u = match like.and_then(|sid| {
            model.units.iter().position(|x| {
                x.sid == sid || x.members.iter().any(|&m| model.guests[m].sid() == sid)
            })
        }) {
            Some(u) => {
                for m in model.units[u].members.clone() {
                    if let Some(s) = model.guest_node[m].take() {
                        model.add_guest(m, s, -1.0);
                    }
                }
                model.unit_node[u] = None;
                model.units[u].members.clear();
                u
            }
            None => {
                model.units.push(Unit {
                    members: Vec::new(),
                    node: None,
                    cpu_fixed: 0.0,
                    unlimited: 0,
                    dyn_cpu: 0.0,
                    bal_mem: 0.0,
                    pressure: 0.0,
                    commit_mem: 0.0,
                    cost: 0,
                    local_disk: 0,
                    balance_movable: false,
                    allowed: None,
                    strict_rule: None,
                    priority: None,
                    preference_rule: None,
                    negative: Vec::new(),
                    cpu_lacks: Vec::new(),
                    sid: "new guest".into(),
                });
                model.unit_node.push(None);
                model.units.len() - 1
            }
        };
        {
            let unit = &mut model.units[u];
            unit.cpu_fixed = if cores == 0.0 { 0.0 } else { cores };
            unit.unlimited = usize::from(cores == 0.0);
            unit.dyn_cpu = cores;
            unit.bal_mem = memory as f64;
            unit.commit_mem = memory as f64;
        }
        let spread = model.spread();
        let prio = model.units[u].priority.clone();
        let mut out: Vec<(i64, NodeCandidate)> = (0..model.nodes.len())
            .map(|t| {
                let blocker = model.blocker(u, t, (0.0, 0.0), false, true);
                let after = blocker.is_none().then(|| {
                    // A placement adds load without removing any: only the target changes.
                    let added = model.loads_with(t, model.unit_balance_on(u, t));
                    spread.replaced(model.loads(t), added).imbalance()
                });
                let p = prio.as_ref().map(|p| p[t]).unwrap_or(0);
                (
                    p,
                    NodeCandidate {
                        node: model.nodes[t].name.clone(),
                        imbalance_after: after,
                        blocker,
                    },
                )
            })
            .collect();
        out.sort_by(
            |(pa, a), (pb, b)| match (a.imbalance_after, b.imbalance_after) {
                (Some(x), Some(y)) => pb.cmp(pa).then(x.total_cmp(&y)).then(a.node.cmp(&b.node)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.node.cmp(&b.node),
            },
        );
        out.into_iter().map(|(_, c)| c).collect()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvacuationError {
    #[error("no node '{0}' in the snapshot")]
    UnknownNode(String),
    #[error("{0}")]
    Infeasible(Infeasible),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{generate, Shape};

    #[test]
    fn cached_rounds_agree_with_full_scans_where_they_must() {
        let snapshot = generate(
            7,
            &Shape {
                // Over 1 000 guests: the first round's scan runs on two threads.
                nodes: 40,
                guests_per_node: 40,
                rules: true,
                skewed: true,
            },
        );
        let mut model = Cluster::new(&snapshot);
        assert!(model.units.len() > 1_000);
        let mut cache = TargetCache {
            targets: vec![None; model.units.len()],
            changed: Vec::new(),
        };
        let mut moved = vec![false; model.units.len()];
        for round in 0..10 {
            let full = model.best_move(&moved, usize::MAX, None);
            let cached = model.best_move(&moved, usize::MAX, Some(&mut cache));
            if round == 0 {
                // The first round scans everything: the same move.
                assert_eq!(cached, full);
            }
            let Some((u, s, t, after)) = cached else {
                break;
            };
            // A cached choice is a feasible move whose promise is exact, and never better
            // than the full scan's.
            assert!(model.blocker(u, t, (0.0, 0.0), true, true).is_none());
            let (_, _, _, best) = full.expect("the full scan finds a move too");
            assert!(after >= best - 1e-12, "round {round}: {after} < {best}");
            model.apply(u, t);
            assert!((model.imbalance() - after).abs() < 1e-9);
            moved[u] = true;
            cache.changed.extend([s, t]);
        }
    }
}
