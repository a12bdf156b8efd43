//! Node usage accounting and the decisions built on it (spec §9.2–§9.5).

use crate::topsis;
use ferrox_types::{RebalanceMethod, SchedulerMode};
use std::collections::BTreeMap;

pub type UsageMode = SchedulerMode;

/// A node's capacity and current usage. CPU in cores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeStats {
    pub cpu: f64,
    pub maxcpu: f64,
    pub mem: f64,
    pub maxmem: f64,
}

impl NodeStats {
    pub fn cpu_load(&self) -> f64 {
        self.cpu / self.maxcpu
    }
    pub fn mem_load(&self) -> f64 {
        self.mem / self.maxmem
    }
    /// The node's load as the imbalance measure sees it: mean of CPU and memory load.
    pub fn load(&self) -> f64 {
        (self.cpu_load() + self.mem_load()) / 2.0
    }

    /// Adds a resource the way a started one occupies a node: its configured CPU (the
    /// whole node when it has no limit) and memory.
    fn add_as_started(&mut self, stats: &ResourceStats) {
        self.cpu += if stats.maxcpu == 0.0 {
            self.maxcpu
        } else {
            stats.maxcpu
        };
        self.mem += stats.maxmem;
    }
}

/// A resource's usage: `cpu`/`mem` what it uses now (static mode: its configured maximum),
/// `maxcpu`/`maxmem` its configured maximum (maxcpu 0 means no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceStats {
    pub cpu: f64,
    pub maxcpu: f64,
    pub mem: f64,
    pub maxmem: f64,
}

impl ResourceStats {
    /// Static mode counts a resource at its configured maximum.
    pub fn from_static(maxcpu: f64, maxmem: f64) -> Self {
        ResourceStats {
            cpu: maxcpu,
            maxcpu,
            mem: maxmem,
            maxmem,
        }
    }
}

/// Where a resource occupies capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Stationary(String),
    /// Being moved: it occupies both nodes until the move ends.
    Moving {
        current: String,
        target: String,
    },
}

impl Placement {
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        let (first, second) = match self {
            Placement::Stationary(n) => (n, None),
            Placement::Moving { current, target } => (current, Some(target)),
        };
        std::iter::once(first.as_str()).chain(second.map(String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Resource {
    stats: ResourceStats,
    running: bool,
    placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// The named service has no usage information.
    MissingStats(String),
    /// A migration candidate cannot be evaluated.
    BadCandidate(String),
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageError::MissingStats(sid) => write!(f, "no usage information for service '{sid}'"),
            UsageError::BadCandidate(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for UsageError {}

/// A move of one resource (or the bundle it leads) from `source` to `target`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Migration {
    pub sid: String,
    pub source: String,
    pub target: String,
}

/// A bundle that may move together, led by `leader`, with the nodes it may move to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationCandidate {
    pub leader: String,
    pub resources: Vec<String>,
    pub nodes: Vec<String>,
}

/// The chosen rebalancing move and the imbalance expected after it.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceChoice {
    pub migration: Migration,
    pub imbalance: f64,
}

/// The scheduler's model of the online nodes and what occupies them.
#[derive(Debug, Clone)]
pub struct Usage {
    mode: UsageMode,
    nodes: BTreeMap<String, NodeStats>,
    resources: BTreeMap<String, Resource>,
}

/// Truncation to 15 decimals, so that rounding noise does not decide between equal moves.
fn truncate15(x: f64) -> f64 {
    (x * 1e15).trunc() / 1e15
}

/// Coefficient of variation of the given loads (0 when they sum to 0).
pub fn imbalance_of_loads(loads: &[f64]) -> f64 {
    imbalance_of_iter(loads.iter().copied())
}

/// [`imbalance_of_loads`] over loads produced twice by `loads` (no allocation): the one
/// arithmetic both the straightforward and the fast rebalancing search use, so that they
/// agree to the last bit.
fn imbalance_of_iter(loads: impl Iterator<Item = f64> + Clone) -> f64 {
    let mut n = 0usize;
    let mut sum = 0.0;
    for l in loads.clone() {
        n += 1;
        sum += l;
    }
    if n == 0 || sum == 0.0 {
        return 0.0;
    }
    let n = n as f64;
    let mean = sum / n;
    let mut squares = 0.0;
    for l in loads {
        squares += (l - mean).powi(2);
    }
    let variance = squares / n;
    variance.sqrt() / mean
}

/// Coefficient of variation of the node loads (raw, as Proxmox VE 9.2's shipped logs use).
pub fn imbalance_of<'a>(nodes: impl Iterator<Item = &'a NodeStats>) -> f64 {
    let loads: Vec<f64> = nodes.map(NodeStats::load).collect();
    imbalance_of_loads(&loads)
}

impl Usage {
    pub fn new(mode: UsageMode) -> Self {
        Usage {
            mode,
            nodes: BTreeMap::new(),
            resources: BTreeMap::new(),
        }
    }

    pub fn mode(&self) -> UsageMode {
        self.mode
    }

    /// Adds a node with its base usage (static and basic mode: zero usage).
    pub fn add_node(&mut self, name: &str, stats: NodeStats) {
        self.nodes.insert(name.to_string(), stats);
    }

    pub fn list_nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    pub fn contains_node(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// Registers a resource; nodes of its placement that are not in the model are ignored.
    pub fn add_resource(
        &mut self,
        sid: &str,
        stats: ResourceStats,
        running: bool,
        placement: Placement,
    ) {
        self.resources.insert(
            sid.to_string(),
            Resource {
                stats,
                running,
                placement,
            },
        );
    }

    pub fn remove_resource(&mut self, sid: &str) {
        self.resources.remove(sid);
    }

    /// Per-node stats as the mode aggregates them for imbalance and rebalancing.
    fn balance_stats(&self) -> BTreeMap<String, NodeStats> {
        let mut nodes = self.nodes.clone();
        for (node, stats) in self.balance_additions() {
            if let Some(n) = nodes.get_mut(node) {
                n.add_as_started(stats);
            }
        }
        nodes
    }

    /// What balancing adds to the nodes' own figures, resource by resource: in static
    /// mode every resource as started on each node it occupies; nothing in dynamic mode
    /// (the nodes' figures are measured).
    fn balance_additions(&self) -> impl Iterator<Item = (&str, &ResourceStats)> {
        let counted = (self.mode == UsageMode::Static).then_some(&self.resources);
        counted
            .into_iter()
            .flat_map(|r| r.values())
            .flat_map(|res| res.placement.nodes().map(move |node| (node, &res.stats)))
    }

    /// Per-node stats as seen when choosing where to start a resource: resources that are
    /// about to start count with their configured maximum.
    fn start_stats(&self) -> BTreeMap<String, NodeStats> {
        match self.mode {
            UsageMode::Dynamic => {
                let mut nodes = self.nodes.clone();
                for res in self.resources.values().filter(|r| !r.running) {
                    for node in res.placement.nodes() {
                        if let Some(n) = nodes.get_mut(node) {
                            n.add_as_started(&res.stats);
                        }
                    }
                }
                nodes
            }
            _ => self.balance_stats(),
        }
    }

    /// Scores every node for starting `sid` with `stats` there; lower is better.
    pub fn score_nodes_to_start(
        &self,
        sid: &str,
        stats: Option<ResourceStats>,
    ) -> Result<BTreeMap<String, f64>, UsageError> {
        if self.mode == UsageMode::Basic {
            let mut counts: BTreeMap<String, f64> =
                self.nodes.keys().map(|n| (n.clone(), 0.0)).collect();
            for res in self.resources.values() {
                for node in res.placement.nodes() {
                    if let Some(c) = counts.get_mut(node) {
                        *c += 1.0;
                    }
                }
            }
            return Ok(counts);
        }
        let stats = stats
            .or_else(|| self.resources.get(sid).map(|r| r.stats))
            .ok_or_else(|| UsageError::MissingStats(sid.to_string()))?;
        let base = self.start_stats();
        let names: Vec<&String> = base.keys().collect();
        let matrix: Vec<topsis::Criteria> = names
            .iter()
            .map(|target| {
                let loads: Vec<(f64, f64)> = base
                    .iter()
                    .map(|(name, node)| {
                        let mut node = *node;
                        if name == *target {
                            node.add_as_started(&stats);
                        }
                        (node.cpu_load(), node.mem_load())
                    })
                    .collect();
                topsis::criteria(&loads)
            })
            .collect();
        let scores = topsis::score(&matrix);
        Ok(names
            .into_iter()
            .zip(scores)
            .map(|(n, s)| (n.clone(), -s))
            .collect())
    }

    /// The imbalance of the online nodes (0 in basic mode, which has no load model).
    pub fn imbalance(&self) -> f64 {
        if self.mode == UsageMode::Basic {
            return 0.0;
        }
        imbalance_of(self.balance_stats().values())
    }

    /// A candidate's source node and the sum of what moves, refused when the bundle is
    /// not together on one node and stationary.
    fn bundle_of<'a>(
        &'a self,
        cand: &MigrationCandidate,
    ) -> Result<(&'a String, ResourceStats), UsageError> {
        let leader = self.resources.get(&cand.leader).ok_or_else(|| {
            UsageError::BadCandidate(format!("resource '{}' does not exist", cand.leader))
        })?;
        let Placement::Stationary(source) = &leader.placement else {
            return Err(UsageError::BadCandidate(format!(
                "resource '{}' is not stationary",
                cand.leader
            )));
        };
        let mut sum = ResourceStats::default();
        for sid in &cand.resources {
            // Most bundles are the leader alone: no second lookup for it.
            let res = if *sid == cand.leader {
                leader
            } else {
                self.resources.get(sid).ok_or_else(|| {
                    UsageError::BadCandidate(format!("resource '{sid}' does not exist"))
                })?
            };
            match &res.placement {
                Placement::Stationary(n) if n == source => {}
                Placement::Stationary(_) => {
                    return Err(UsageError::BadCandidate(format!(
                        "resource '{sid}' is on another node than '{}'",
                        cand.leader
                    )))
                }
                Placement::Moving { .. } => {
                    return Err(UsageError::BadCandidate(format!(
                        "resource '{sid}' is not stationary"
                    )))
                }
            }
            sum.cpu += res.stats.cpu;
            sum.mem += res.stats.mem;
            sum.maxcpu += res.stats.maxcpu;
            sum.maxmem += res.stats.maxmem;
        }
        Ok((source, sum))
    }

    fn expand(
        &self,
        candidates: &[MigrationCandidate],
    ) -> Result<Vec<(Migration, ResourceStats)>, UsageError> {
        let mut out = Vec::new();
        for cand in candidates {
            let (source, sum) = self.bundle_of(cand)?;
            for target in &cand.nodes {
                out.push((
                    Migration {
                        sid: cand.leader.clone(),
                        source: source.clone(),
                        target: target.clone(),
                    },
                    sum,
                ));
            }
        }
        Ok(out)
    }

    fn stats_after(
        base: &BTreeMap<String, NodeStats>,
        migration: &Migration,
        moved: &ResourceStats,
    ) -> BTreeMap<String, NodeStats> {
        let mut nodes = base.clone();
        if let Some(src) = nodes.get_mut(&migration.source) {
            src.cpu = (src.cpu - moved.cpu).max(0.0);
            src.mem = (src.mem - moved.mem).max(0.0);
        }
        if let Some(dst) = nodes.get_mut(&migration.target) {
            dst.cpu += moved.cpu;
            dst.mem += moved.mem;
        }
        nodes
    }

    /// The single migration that best lowers the imbalance, by brute force over every
    /// candidate move or by TOPSIS ranking, with Proxmox VE's formulas and tie-breaking.
    ///
    /// Memory stays O(nodes + candidates): no per-move copy of the node table. Brute force
    /// ranks every move by an O(1) estimate of the imbalance after it (updated from
    /// running sums), then evaluates exactly, as [`Self::best_rebalance_migration_reference`]
    /// does, only the moves whose estimate is within [`ESTIMATE_BAND`] of the best; the
    /// estimate's error is far below the band, so the answer is the same to the last bit.
    /// TOPSIS ranks every move against all others: two streaming passes over O(1)
    /// estimates of each move's criteria, each score with a bound on its distance from the
    /// exact one. The second pass skips whole bundles whose moves all score below the
    /// best lower bound so far (from criteria at or below all of theirs), and single
    /// moves by a test without roots or divisions. Only when the bounds leave more than
    /// one possible winner (different moves within rounding of each other) are the
    /// criteria summed exactly, per move.
    pub fn best_rebalance_migration(
        &self,
        candidates: &[MigrationCandidate],
        method: RebalanceMethod,
    ) -> Result<Option<RebalanceChoice>, UsageError> {
        let model = MoveModel::new(self, candidates)?;
        let chosen = match method {
            RebalanceMethod::Bruteforce => model.best_by_imbalance(),
            RebalanceMethod::Topsis => model.best_by_topsis(),
        };
        Ok(chosen.map(|m| RebalanceChoice {
            imbalance: model.exact_imbalance(&m),
            migration: model.migration(&m),
        }))
    }

    /// The straightforward search (a copy of the node table per move), kept as the
    /// yardstick the fast search is tested and measured against.
    pub fn best_rebalance_migration_reference(
        &self,
        candidates: &[MigrationCandidate],
        method: RebalanceMethod,
    ) -> Result<Option<RebalanceChoice>, UsageError> {
        let migrations = self.expand(candidates)?;
        if migrations.is_empty() {
            return Ok(None);
        }
        let base = self.balance_stats();
        let evaluated: Vec<(Migration, f64, BTreeMap<String, NodeStats>)> = migrations
            .into_iter()
            .map(|(m, moved)| {
                let after = Self::stats_after(&base, &m, &moved);
                let imbalance = truncate15(imbalance_of(after.values()));
                (m, imbalance, after)
            })
            .collect();
        let chosen = match method {
            RebalanceMethod::Bruteforce => evaluated
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                .map(|(m, i, _)| (m.clone(), *i)),
            RebalanceMethod::Topsis => {
                let matrix: Vec<topsis::Criteria> = evaluated
                    .iter()
                    .map(|(_, _, after)| {
                        let loads: Vec<(f64, f64)> = after
                            .values()
                            .map(|n| (n.cpu_load(), n.mem_load()))
                            .collect();
                        topsis::criteria(&loads)
                    })
                    .collect();
                let scores = topsis::score(&matrix);
                let mut order: Vec<usize> = (0..evaluated.len()).collect();
                order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
                order
                    .first()
                    .map(|&i| (evaluated[i].0.clone(), evaluated[i].1))
            }
        };
        Ok(chosen.map(|(migration, imbalance)| RebalanceChoice {
            migration,
            imbalance,
        }))
    }
}

/// How far above the best estimate a move's estimated imbalance may be and still be
/// evaluated exactly. The estimate's error is about 1e-8 of the imbalance at worst
/// (cancellation when a move balances the cluster almost perfectly); imbalances are O(1).
pub const ESTIMATE_BAND: f64 = 1e-6;

/// Whether two node names are equal, without a call to the C library's `memcmp` (which
/// `==` makes) for names of 4 to 16 bytes: two overlapping loads from each end cover
/// every byte. The search compares a name per candidate move; on small clusters those
/// calls were a third of its time.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        4..=8 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        9..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

#[inline]
fn word4(s: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]])
}

#[inline]
fn word8(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// Finds a name's position in a list without the C library's `memcmp` for names of 4
/// to 16 bytes (see [`same_name`]): a binary search over 64-bit keys made of the words
/// `same_name` compares, then `same_name` on the few names with the same key. Building
/// the model looks up a node for every resource placement and every bundle's source.
struct NameIndex<'a> {
    names: &'a [&'a str],
    /// (key, position), sorted.
    keys: Vec<(u64, usize)>,
}

impl<'a> NameIndex<'a> {
    fn new(names: &'a [&'a str]) -> Self {
        let mut keys: Vec<(u64, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (Self::key(n), i))
            .collect();
        keys.sort_unstable();
        NameIndex { names, keys }
    }

    /// Equal names have equal keys; different names rarely do.
    #[inline]
    fn key(name: &str) -> u64 {
        let s = name.as_bytes();
        let n = s.len();
        let mixed = match n {
            4..=8 => u64::from(word4(s, 0)) | u64::from(word4(s, n - 4)) << 32,
            9..=16 => word8(s, 0) ^ word8(s, n - 8).rotate_left(31),
            _ => s.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b)),
        };
        mixed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[inline]
    fn get(&self, name: &str) -> Option<usize> {
        let key = Self::key(name);
        let start = self.keys.partition_point(|(k, _)| *k < key);
        self.keys[start..]
            .iter()
            .take_while(|(k, _)| *k == key)
            .map(|(_, i)| *i)
            .find(|&i| same_name(self.names[i], name))
    }
}

/// A node's (CPU, memory) load, as TOPSIS's criteria take them.
fn split_load(n: &NodeStats) -> [f64; 2] {
    [n.cpu_load(), n.mem_load()]
}

/// Half the distance from 1.0 to the next float: the relative error of one rounding.
const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;

/// How many moves the estimated TOPSIS keeps as possible winners before it leaves the
/// choice to the exact passes.
const TOPSIS_BAND_LIMIT: usize = 64;

/// See [`MoveModel::split_sums`]: per resource (CPU, memory).
struct SplitSums {
    squares: [f64; 2],
    top: [[Option<(usize, f64)>; 3]; 2],
    /// Per resource, the least each node's squared load grows per unit moved onto it
    /// (the smallest 2 · load / capacity) and per unit squared (the smallest
    /// 1 / capacity²): (load + x / capacity)² − load² is at least x times the one plus
    /// x² times the other.
    least_rise: [(f64, f64); 2],
    /// 1 / the number of nodes.
    inverse_count: f64,
}

/// See [`MoveModel::bundle_base`]: per resource (CPU, memory).
struct BundleBase {
    squares: [f64; 2],
    magnitude: [f64; 2],
    /// The source's load after the move (0 without a source).
    max: [f64; 2],
    /// The two largest loads of nodes other than the source: (node, load).
    others: [[Option<(usize, f64)>; 2]; 2],
}

/// What the error of a move's estimated root-mean-square load depends on: the magnitude
/// of the sums of squares it came from, their mean and its root.
#[derive(Debug, Clone, Copy, Default)]
struct RootTerms {
    magnitude: f64,
    mean: f64,
    root: f64,
}

/// The largest error of each estimated criterion over a set of moves, bounded from the
/// extremes of their [`RootTerms`] rather than move by move (no division per move).
///
/// A root-mean-square differs from the in-order figure by the rounding of two summation
/// orders: at most (n − 1)u of the sum's magnitude each way for the in-order sum, the
/// same plus four operations for the running one (u the unit roundoff), and the
/// reciprocal's and the division's rounding of the mean; carried through the root
/// (|√x − √y| ≤ |x − y| / √x, and ≤ √|x − y| when x is nearly zero) and the offset with
/// room to spare. Each per-move bound grows with the magnitude, the mean and (through
/// the offset) the root and shrinks with the root under the division, so the extremes
/// bound them all. The maxima are exact: no error.
#[derive(Debug, Clone, Copy)]
struct ErrorSpread {
    magnitude: [f64; 2],
    mean: [f64; 2],
    /// The smallest root above the near-zero limit, and whether any is at or below it.
    smallest_root: [f64; 2],
    near_zero: [bool; 2],
    largest_root: [f64; 2],
    finite: bool,
}

impl Default for ErrorSpread {
    fn default() -> Self {
        ErrorSpread {
            magnitude: [0.0; 2],
            mean: [0.0; 2],
            smallest_root: [f64::INFINITY; 2],
            near_zero: [false; 2],
            largest_root: [0.0; 2],
            finite: true,
        }
    }
}

impl ErrorSpread {
    /// Below this root, the bound through the division would be loose: √ of the error.
    const NEAR_ZERO: f64 = 1e-6;

    fn add(&mut self, criteria: &topsis::Criteria, terms: &[RootTerms; 2]) {
        self.finite &= criteria.iter().all(|c| c.is_finite());
        for (k, t) in terms.iter().enumerate() {
            self.finite &= t.magnitude.is_finite();
            self.magnitude[k] = self.magnitude[k].max(t.magnitude);
            self.mean[k] = self.mean[k].max(t.mean);
            self.largest_root[k] = self.largest_root[k].max(t.root);
            if t.root > Self::NEAR_ZERO {
                self.smallest_root[k] = self.smallest_root[k].min(t.root);
            } else {
                self.near_zero[k] = true;
            }
        }
    }

    /// The bound on each criterion's error; infinite when a figure is not a number.
    fn bounds(&self, nodes: f64) -> [f64; 4] {
        let mut error = [0.0; 4];
        for k in 0..2 {
            let mean_error = (2.0 * nodes + 24.0) * UNIT_ROUNDOFF * self.magnitude[k] / nodes
                + 6.0 * UNIT_ROUNDOFF * self.mean[k];
            let mut root_error: f64 = 0.0;
            if self.smallest_root[k].is_finite() {
                root_error = root_error.max(mean_error / self.smallest_root[k]);
            }
            if self.near_zero[k] {
                root_error = root_error.max(mean_error.sqrt());
            }
            let bound = root_error + 8.0 * UNIT_ROUNDOFF * (1.0 + self.largest_root[k]);
            error[2 * k] = if self.finite && bound.is_finite() {
                bound
            } else {
                f64::INFINITY
            };
        }
        error
    }
}

/// A resolved candidate bundle: its leader, source node index and what moves.
struct Bundle<'a> {
    candidate: &'a MigrationCandidate,
    source_name: &'a str,
    source: Option<usize>,
    moved: ResourceStats,
    targets: Vec<Option<usize>>,
}

/// One move: (bundle, position in its target list).
#[derive(Debug, Clone, Copy)]
struct MoveRef {
    bundle: usize,
    target: usize,
}

/// The node table once, and every candidate move as indices into it.
struct MoveModel<'a> {
    stats: Vec<NodeStats>,
    loads: Vec<f64>,
    /// (CPU load, memory load) per node, for TOPSIS.
    split_loads: Vec<[f64; 2]>,
    bundles: Vec<Bundle<'a>>,
    /// Sum, mean and sum of squared deviations of the base loads, for the estimate.
    sum: f64,
    mean: f64,
    deviation: f64,
}

impl<'a> MoveModel<'a> {
    fn new(usage: &'a Usage, candidates: &'a [MigrationCandidate]) -> Result<Self, UsageError> {
        // In the map's (sorted) order, as `balance_stats` would give them.
        let names: Vec<&str> = usage.nodes.keys().map(String::as_str).collect();
        let node_index = NameIndex::new(&names);
        let index = |name: &str| node_index.get(name);
        let mut stats: Vec<NodeStats> = usage.nodes.values().copied().collect();
        for (node, added) in usage.balance_additions() {
            if let Some(i) = index(node) {
                stats[i].add_as_started(added);
            }
        }
        // Consecutive candidates usually list the same nodes, give or take their own
        // source: try the node the previous list had at this position or next to it
        // before searching for the name.
        let mut previous: Vec<Option<usize>> = Vec::new();
        let mut resolve = |targets: &[String]| -> Vec<Option<usize>> {
            let resolved: Vec<Option<usize>> = targets
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    [j, j + 1, j.wrapping_sub(1)]
                        .into_iter()
                        .filter_map(|p| previous.get(p).copied().flatten())
                        .find(|&i| same_name(names[i], t))
                        .or_else(|| index(t.as_str()))
                })
                .collect();
            previous.clone_from(&resolved);
            resolved
        };
        let mut bundles = Vec::with_capacity(candidates.len());
        for cand in candidates {
            let (source, moved) = usage.bundle_of(cand)?;
            bundles.push(Bundle {
                candidate: cand,
                source_name: source.as_str(),
                source: index(source.as_str()),
                moved,
                targets: resolve(&cand.nodes),
            });
        }
        let loads: Vec<f64> = stats.iter().map(NodeStats::load).collect();
        let sum: f64 = loads.iter().sum();
        let mean = sum / loads.len().max(1) as f64;
        let deviation = loads.iter().map(|l| (l - mean) * (l - mean)).sum();
        Ok(MoveModel {
            split_loads: stats.iter().map(split_load).collect(),
            stats,
            loads,
            bundles,
            sum,
            mean,
            deviation,
        })
    }

    fn moves(&self) -> impl Iterator<Item = MoveRef> + '_ {
        self.bundles.iter().enumerate().flat_map(|(bundle, b)| {
            (0..b.targets.len()).map(move |target| MoveRef { bundle, target })
        })
    }

    /// The stats of the nodes a move changes, exactly as a copied table would hold them:
    /// up to two (index, stats after).
    fn changed(&self, m: &MoveRef) -> [Option<(usize, NodeStats)>; 2] {
        let b = &self.bundles[m.bundle];
        let moved = &b.moved;
        let mut source = self.source_after(b);
        let target = b.targets[m.target];
        if let (Some((si, n)), Some(t)) = (source.as_mut(), target) {
            if *si == t {
                n.cpu += moved.cpu;
                n.mem += moved.mem;
                return [source, None];
            }
        }
        let target = target.map(|i| {
            let mut n = self.stats[i];
            n.cpu += moved.cpu;
            n.mem += moved.mem;
            (i, n)
        });
        [source, target]
    }

    /// The loads after move `m` in node order, without copying the table: `load` of the
    /// stats after the move where it changes a node, the base figure elsewhere.
    fn values_after<T: Copy>(
        &self,
        m: &MoveRef,
        base: &'a [T],
        load: impl Fn(&NodeStats) -> T + Copy + 'a,
    ) -> impl Iterator<Item = T> + Clone + 'a {
        let [a, b] = self.changed(m);
        let (ai, av) = a.map(|(i, n)| (i, load(&n))).unzip();
        let (bi, bv) = b.map(|(i, n)| (i, load(&n))).unzip();
        base.iter().enumerate().map(move |(i, v)| {
            if Some(i) == ai {
                av.unwrap_or(*v)
            } else if Some(i) == bi {
                bv.unwrap_or(*v)
            } else {
                *v
            }
        })
    }

    fn exact_imbalance(&self, m: &MoveRef) -> f64 {
        truncate15(imbalance_of_iter(self.values_after(
            m,
            &self.loads,
            NodeStats::load,
        )))
    }

    /// The imbalance after `m` from running sums: O(1), within about 1e-8 of the exact
    /// figure.
    fn estimated_imbalance(&self, m: &MoveRef) -> f64 {
        let [a, b] = self.changed(m);
        self.estimate([a, b].map(|c| c.map(|(i, n)| (i, n.load()))))
    }

    /// The estimate for the loads `changes` (node, load after) put in place of the base.
    fn estimate(&self, changes: [Option<(usize, f64)>; 2]) -> f64 {
        let n = self.loads.len() as f64;
        let (mut sum, mut deviation) = (self.sum, self.deviation);
        for (i, new) in changes.into_iter().flatten() {
            let old = self.loads[i];
            sum += new - old;
            deviation += (new - self.mean).powi(2) - (old - self.mean).powi(2);
        }
        if n == 0.0 || sum == 0.0 {
            return 0.0;
        }
        let mean = sum / n;
        let deviation = deviation - n * (mean - self.mean).powi(2);
        (deviation.max(0.0) / n).sqrt() / mean
    }

    /// Every move's estimate, handed to `visit`. The source side of a bundle is worked
    /// out once; a target's load after the move is its load plus what one core and one
    /// byte add there (reciprocals precomputed), which differs from the exact quotient in
    /// the last bits only, far inside the band.
    fn estimates(&self, mut visit: impl FnMut(MoveRef, f64)) {
        let n = self.loads.len() as f64;
        // Half of 1 / maxcpu and 1 / maxmem per node: a load is the mean of the two shares.
        let steps: Vec<Option<(f64, f64)>> = self
            .stats
            .iter()
            .map(|s| {
                let step = (0.5 / s.maxcpu, 0.5 / s.maxmem);
                (step.0.is_finite() && step.1.is_finite()).then_some(step)
            })
            .collect();
        for (bundle, b) in self.bundles.iter().enumerate() {
            // Sum and squared deviation (around the base mean) with the source changed.
            let (mut sum, mut deviation) = (self.sum, self.deviation);
            if let Some(i) = b.source {
                let mut node = self.stats[i];
                node.cpu = (node.cpu - b.moved.cpu).max(0.0);
                node.mem = (node.mem - b.moved.mem).max(0.0);
                let (old, new) = (self.loads[i], node.load());
                sum += new - old;
                deviation += (new - self.mean).powi(2) - (old - self.mean).powi(2);
            }
            for (target, t) in b.targets.iter().enumerate() {
                let m = MoveRef { bundle, target };
                let estimate = match t.map(|t| (t, steps[t])) {
                    Some((t, Some((cpu_step, mem_step)))) if Some(t) != b.source => {
                        let old = self.loads[t];
                        let new = old + b.moved.cpu * cpu_step + b.moved.mem * mem_step;
                        let sum = sum + new - old;
                        if n == 0.0 || sum == 0.0 {
                            0.0
                        } else {
                            let mean = sum / n;
                            let deviation = deviation + (new - self.mean).powi(2)
                                - (old - self.mean).powi(2)
                                - n * (mean - self.mean).powi(2);
                            (deviation.max(0.0) / n).sqrt() / mean
                        }
                    }
                    _ => self.estimated_imbalance(&m),
                };
                visit(m, estimate);
            }
        }
    }

    fn migration(&self, m: &MoveRef) -> Migration {
        let b = &self.bundles[m.bundle];
        Migration {
            sid: b.candidate.leader.clone(),
            source: b.source_name.to_string(),
            target: b.candidate.nodes[m.target].clone(),
        }
    }

    /// (sid, source, target) as `Migration`'s ordering compares them.
    fn key(&self, m: &MoveRef) -> (&str, &str, &str) {
        let b = &self.bundles[m.bundle];
        (
            b.candidate.leader.as_str(),
            b.source_name,
            b.candidate.nodes[m.target].as_str(),
        )
    }

    fn best_by_imbalance(&self) -> Option<MoveRef> {
        // One pass: the moves whose estimate is within the band of the best so far (and
        // any whose estimate is not a number), then the exact figure for those only.
        let mut best_estimate = f64::INFINITY;
        let mut band: Vec<(MoveRef, f64)> = Vec::new();
        self.estimates(|m, estimate| {
            if !estimate.is_finite() {
                band.push((m, estimate));
                return;
            }
            if estimate > best_estimate + ESTIMATE_BAND {
                return;
            }
            if estimate < best_estimate {
                best_estimate = estimate;
                band.retain(|(_, e)| !e.is_finite() || *e <= best_estimate + ESTIMATE_BAND);
            }
            band.push((m, estimate));
        });
        let mut best: Option<(MoveRef, f64)> = None;
        for (m, _) in band {
            let exact = self.exact_imbalance(&m);
            let better = match &best {
                None => true,
                Some((b, e)) => exact
                    .total_cmp(e)
                    .then_with(|| self.key(&m).cmp(&self.key(b)))
                    .is_lt(),
            };
            if better {
                best = Some((m, exact));
            }
        }
        best.map(|(m, _)| m)
    }

    fn criteria(&self, m: &MoveRef) -> topsis::Criteria {
        topsis::criteria_iter(
            self.values_after(m, &self.split_loads, split_load)
                .map(|[cpu, mem]| (cpu, mem)),
        )
    }

    /// TOPSIS decided from O(1) estimates of every move's criteria when their error
    /// bounds leave one winner, by the exact two passes otherwise.
    fn best_by_topsis(&self) -> Option<MoveRef> {
        self.topsis_by_estimate()
            .unwrap_or_else(|| self.best_by_topsis_exact())
    }

    /// The base figures TOPSIS's criteria are estimated from: the in-order sums of the
    /// squared CPU and memory loads, and the three largest of each (a move changes at
    /// most two nodes, so the largest load elsewhere is among them). `None` when a load
    /// is not a number, which only the exact passes treat as Proxmox VE does.
    fn split_sums(&self) -> Option<SplitSums> {
        let mut sums = SplitSums {
            squares: [0.0; 2],
            top: [[None; 3]; 2],
            least_rise: [(f64::INFINITY, f64::INFINITY); 2],
            inverse_count: 1.0 / self.split_loads.len() as f64,
        };
        for (n, &[cpu, mem]) in self.stats.iter().zip(&self.split_loads) {
            for (k, (load, capacity)) in [(cpu, n.maxcpu), (mem, n.maxmem)].into_iter().enumerate()
            {
                let (slope, curve) = &mut sums.least_rise[k];
                *slope = slope.min(2.0 * load / capacity);
                *curve = curve.min(1.0 / (capacity * capacity));
            }
        }
        for (i, &[cpu, mem]) in self.split_loads.iter().enumerate() {
            for (k, load) in [cpu, mem].into_iter().enumerate() {
                if !load.is_finite() {
                    return None;
                }
                sums.squares[k] += load * load;
                let mut carried = Some((i, load));
                for slot in sums.top[k].iter_mut() {
                    match (*slot, carried) {
                        (None, _) => {
                            *slot = carried;
                            break;
                        }
                        (Some((_, held)), Some((_, load))) if load > held => {
                            std::mem::swap(slot, &mut carried);
                        }
                        _ => {}
                    }
                }
            }
        }
        Some(sums)
    }

    /// A move's TOPSIS criteria from [`SplitSums`] in O(1), with how far each may be from
    /// the figure the in-order sum over all nodes gives.
    #[cfg(test)]
    fn estimated_criteria(&self, sums: &SplitSums, m: &MoveRef) -> (topsis::Criteria, [f64; 4]) {
        let (criteria, terms) = self.estimated_criteria_terms(sums, m);
        let mut spread = ErrorSpread::default();
        spread.add(&criteria, &terms);
        (criteria, spread.bounds(self.split_loads.len() as f64))
    }

    fn estimated_criteria_terms(
        &self,
        sums: &SplitSums,
        m: &MoveRef,
    ) -> (topsis::Criteria, [RootTerms; 2]) {
        let [source, target] = self.changed(m).map(|c| c.map(|(i, n)| (i, split_load(&n))));
        self.criteria_at(sums, &self.bundle_base(sums, source), target)
    }

    /// Every move's estimated criteria and what their errors depend on, in move order, as
    /// [`Self::estimated_criteria_terms`] gives them.
    fn each_estimated_criteria(
        &self,
        sums: &SplitSums,
        mut visit: impl FnMut(MoveRef, &topsis::Criteria, &[RootTerms; 2]),
    ) {
        for bundle in 0..self.bundles.len() {
            self.bundle_estimated_criteria(sums, bundle, &mut visit);
        }
    }

    /// [`Self::each_estimated_criteria`] for one bundle; its source side is worked out
    /// once.
    fn bundle_estimated_criteria(
        &self,
        sums: &SplitSums,
        bundle: usize,
        mut visit: impl FnMut(MoveRef, &topsis::Criteria, &[RootTerms; 2]),
    ) {
        let b = &self.bundles[bundle];
        let base = self.bundle_base(sums, self.source_loads_after(b));
        for (target, t) in b.targets.iter().enumerate() {
            let m = MoveRef { bundle, target };
            let (criteria, terms) = match *t {
                Some(t) if Some(t) != b.source => {
                    let mut n = self.stats[t];
                    n.cpu += b.moved.cpu;
                    n.mem += b.moved.mem;
                    self.criteria_at(sums, &base, Some((t, split_load(&n))))
                }
                _ => self.estimated_criteria_terms(sums, &m),
            };
            visit(m, &criteria, &terms);
        }
    }

    /// What every move of a bundle shares: the sums with its source (node, (CPU, memory)
    /// load after) changed, and the two largest loads elsewhere. With
    /// [`Self::criteria_at`], a move's criteria in O(1); the source is changed before the
    /// target, in the order the error bounds of [`ErrorSpread`] assume.
    fn bundle_base(&self, sums: &SplitSums, source: Option<(usize, [f64; 2])>) -> BundleBase {
        let mut base = BundleBase {
            squares: sums.squares,
            magnitude: sums.squares,
            max: [0.0; 2],
            others: [[None; 2]; 2],
        };
        let source_node = source.map(|(i, _)| i);
        for k in 0..2 {
            if let Some((i, after)) = source {
                let (old, new) = (self.split_loads[i][k], after[k]);
                base.squares[k] = base.squares[k] - old * old + new * new;
                base.magnitude[k] += old * old + new * new;
                base.max[k] = base.max[k].max(new);
            }
            let mut others = sums.top[k]
                .iter()
                .flatten()
                .filter(|(i, _)| Some(*i) != source_node);
            base.others[k] = [others.next().copied(), others.next().copied()];
        }
        base
    }

    /// The estimated criteria, and what their errors depend on, of the move `base` was
    /// made for with `target` (node, (CPU, memory) load after) changed too, if any. The
    /// two maxima are exact (the same loads, compared).
    fn criteria_at(
        &self,
        sums: &SplitSums,
        base: &BundleBase,
        target: Option<(usize, [f64; 2])>,
    ) -> (topsis::Criteria, [RootTerms; 2]) {
        let mut criteria = [0.0; 4];
        let mut terms = [RootTerms::default(); 2];
        let target_node = target.map(|(t, _)| t);
        let target = target.map(|(t, after)| (self.split_loads[t], after));
        for k in 0..2 {
            let (mut squares, mut magnitude, mut max) =
                (base.squares[k], base.magnitude[k], base.max[k]);
            if let Some((before, after)) = target {
                let (old, new) = (before[k], after[k]);
                squares = squares - old * old + new * new;
                magnitude += old * old + new * new;
                max = max.max(new);
            }
            // The largest load outside the changed nodes (Proxmox VE's maximum starts
            // at 0).
            let outside = match base.others[k] {
                [Some((i, _)), second] if Some(i) == target_node => {
                    second.map_or(0.0, |(_, load)| load)
                }
                [Some((_, load)), _] => load,
                [None, _] => 0.0,
            };
            let max = max.max(outside).max(0.0);
            // A product with the reciprocal: one rounding more than the quotient, which
            // the error allows for, and no division per move.
            let mean = (squares * sums.inverse_count).max(0.0);
            let root = mean.sqrt();
            criteria[2 * k] = 1.0 + root;
            criteria[2 * k + 1] = 1.0 + max;
            terms[k] = RootTerms {
                magnitude,
                mean,
                root,
            };
        }
        (criteria, terms)
    }

    /// A bundle's source node and its (CPU, memory) load once the bundle has left.
    fn source_loads_after(&self, b: &Bundle<'_>) -> Option<(usize, [f64; 2])> {
        self.source_after(b).map(|(i, n)| (i, split_load(&n)))
    }

    /// A bundle's source node and its stats once the bundle has left.
    fn source_after(&self, b: &Bundle<'_>) -> Option<(usize, NodeStats)> {
        b.source.map(|i| {
            let mut n = self.stats[i];
            n.cpu = (n.cpu - b.moved.cpu).max(0.0);
            n.mem = (n.mem - b.moved.mem).max(0.0);
            (i, n)
        })
    }

    /// Criteria at or below those of every move of `bundle` (each estimated, within
    /// `spread` of the in-order figure), in O(1): what its source gives up is known; a
    /// target's sum of squared loads grows by at least the least rise any node can
    /// take, and the largest load is at least the largest of the nodes other than the
    /// source (that node is either left as it is or is the target and gains). `None`
    /// where that does not hold: a target that is not a known other node, or a moved
    /// load that is negative or not a number.
    fn bundle_floor(
        &self,
        sums: &SplitSums,
        bundle: usize,
        spread: &[f64; 4],
    ) -> Option<topsis::Criteria> {
        let b = &self.bundles[bundle];
        let moved = [b.moved.cpu, b.moved.mem];
        if moved.iter().any(|x| !(*x >= 0.0 && x.is_finite()))
            || b.targets.iter().any(|t| t.is_none() || *t == b.source)
        {
            return None;
        }
        let base = self.bundle_base(sums, self.source_loads_after(b));
        let mut floor = [0.0; 4];
        for k in 0..2 {
            let (slope, curve) = sums.least_rise[k];
            let squares = base.squares[k] + (moved[k] * slope + moved[k] * moved[k] * curve);
            let largest_other = base.others[k][0].map_or(0.0, |(_, load)| load);
            let max = base.max[k].max(largest_other);
            let root = (squares * sums.inverse_count).max(0.0).sqrt();
            // Each move's criterion is its estimate within the spread; the margins
            // also cover this figure's own rounding.
            let margin = |x: f64, error: f64| x - 2.0 * error - 1e-12 * x.abs();
            floor[2 * k] = margin(1.0 + root, spread[2 * k]);
            floor[2 * k + 1] = margin(1.0 + max, spread[2 * k + 1]);
        }
        floor.iter().all(|x| x.is_finite()).then_some(floor)
    }

    /// Whether two moves leave the same node table behind (same source, same target,
    /// the same load moved), so that every exact figure of theirs is the same.
    fn same_outcome(&self, a: &MoveRef, b: &MoveRef) -> bool {
        let (x, y) = (&self.bundles[a.bundle], &self.bundles[b.bundle]);
        x.source == y.source
            && x.targets[a.target] == y.targets[b.target]
            && x.moved.cpu.to_bits() == y.moved.cpu.to_bits()
            && x.moved.mem.to_bits() == y.moved.mem.to_bits()
    }

    /// TOPSIS from estimated criteria: each move's score with a bound on its distance
    /// from the exact score, and the winner when every move that could be the exact
    /// winner leaves the same table as the first of them (the exact search would then
    /// pick that first one). `None` when the bounds leave the winner open.
    ///
    /// The bound adds up three effects: the columns' norms (each move's criterion is at
    /// least 1, so a norm's relative error is at most the column's largest criterion
    /// error plus the rounding of summing every move), which scales whole columns and
    /// moves a score by at most twice that; each move's own criterion error and the
    /// ideal's, which shift its two distances; and the rounding of the scoring itself.
    fn topsis_by_estimate(&self) -> Option<Option<MoveRef>> {
        let sums = self.split_sums()?;
        let mut columns = topsis::Columns::default();
        let mut errors = ErrorSpread::default();
        let mut rows = 0usize;
        self.each_estimated_criteria(&sums, |_, row, terms| {
            columns.add(row);
            errors.add(row, terms);
            rows += 1;
        });
        let spread = errors.bounds(self.split_loads.len() as f64);
        if spread.iter().any(|e| !e.is_finite()) {
            return None;
        }
        let Some(scorer) = columns.scorer() else {
            return Some(None);
        };
        let scales = scorer.scales();
        let norm_error = 1.01 * spread.iter().fold(0.0f64, |a, e| a.max(*e))
            + (rows as f64 + 8.0) * UNIT_ROUNDOFF;
        let worst_norm = scorer.worst_length();
        let rounding = 8.0 * UNIT_ROUNDOFF * worst_norm;
        // Each move's criteria (and the ideal's) are within the column's largest error.
        let criteria_shift = (0..4)
            .map(|c| (2.0 * spread[c] * scales[c]).powi(2))
            .sum::<f64>()
            .sqrt()
            + rounding;
        let bound_at = |sum: f64| -> Option<f64> {
            let shift = criteria_shift + 8.0 * UNIT_ROUNDOFF * sum;
            let divisor = sum - 2.0 * shift;
            // Not positive (or not a number): the bound is useless.
            (divisor.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater))
                .then(|| 2.0 * (2.0 * norm_error + shift / divisor + 4.0 * UNIT_ROUNDOFF))
        };
        // Every move's two distances add up to at least the ideal's span (less what
        // their rounding may take off), and its bound shrinks as that sum grows: the
        // bound at the span holds for all of them. With it, most moves are ruled out by
        // a test without roots or divisions (`topsis::Below`).
        let least_sum = scorer.ideal_span() * (1.0 - 1e-9) - 1e-9 * worst_norm;
        let largest_bound = bound_at(least_sum)
            .filter(|_| least_sum - 2.0 * criteria_shift > 1e-9 * least_sum)
            .map(|b| b * (1.0 + 1e-9));
        let ruled_out_below =
            |floor: f64| largest_bound.and_then(|b| scorer.below(floor - b - 1e-12 * floor));
        /// The winner's lowest possible score so far, the moves that could still beat
        /// it, and the test that rules out rows below it.
        struct Ranking {
            floor: f64,
            below: Option<topsis::Below>,
            band: Vec<(MoveRef, f64)>,
            open: bool,
        }
        let mut ranking = Ranking {
            floor: f64::NEG_INFINITY,
            below: None,
            band: Vec::new(),
            open: false,
        };
        let visit = |r: &mut Ranking, m: MoveRef, row: &topsis::Criteria| {
            if r.open || r.below.as_ref().is_some_and(|b| b.holds(row)) {
                return;
            }
            let (to_best, to_worst) = scorer.distances(row);
            let score = topsis::closeness(to_best, to_worst);
            let Some(bound) = bound_at(to_best + to_worst) else {
                r.open = true;
                return;
            };
            let (lower, upper) = (score - bound, score + bound);
            if upper < r.floor {
                return;
            }
            if lower > r.floor {
                r.floor = lower;
                let floor = r.floor;
                r.band.retain(|(_, u)| *u >= floor);
                r.below = ruled_out_below(floor);
            }
            r.band.push((m, upper));
            r.open = r.band.len() > TOPSIS_BAND_LIMIT;
        };
        // Whole bundles are ruled out by criteria at or below all of their moves'
        // (a row nowhere above another scores at least as high). The bundles whose
        // floors score highest go first (those without a floor before all), so that the
        // winner's floor rises as early as it can.
        let floors: Vec<Option<topsis::Criteria>> = (0..self.bundles.len())
            .map(|b| self.bundle_floor(&sums, b, &spread))
            .collect();
        let mut order: Vec<(usize, f64)> = floors
            .iter()
            .enumerate()
            .map(|(b, f)| (b, f.map_or(f64::INFINITY, |f| scorer.score(&f))))
            .collect();
        order.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        for (b, _) in order {
            let ruled_out = match (&ranking.below, &floors[b]) {
                (Some(below), Some(f)) => below.holds(f),
                _ => false,
            };
            if !ruled_out {
                self.bundle_estimated_criteria(&sums, b, |m, row, _| visit(&mut ranking, m, row));
            }
        }
        let Ranking { mut band, open, .. } = ranking;
        if open {
            return None;
        }
        // Visited out of order: the first in move order is the one Proxmox VE keeps.
        band.sort_by_key(|(m, _)| (m.bundle, m.target));
        let (first, _) = *band.first()?;
        band.iter()
            .all(|(m, _)| self.same_outcome(&first, m))
            .then_some(Some(first))
    }

    /// TOPSIS over every move in two passes: the columns' norms and extremes, then each
    /// move's score; the first move with the highest score wins (a stable sort's choice).
    fn best_by_topsis_exact(&self) -> Option<MoveRef> {
        let mut columns = topsis::Columns::default();
        for m in self.moves() {
            columns.add(&self.criteria(&m));
        }
        let scorer = columns.scorer()?;
        let mut best: Option<(MoveRef, f64)> = None;
        for m in self.moves() {
            let score = scorer.score(&self.criteria(&m));
            if best
                .as_ref()
                .is_none_or(|(_, s)| score.total_cmp(s).is_gt())
            {
                best = Some((m, score));
            }
        }
        best.map(|(m, _)| m)
    }
}

impl Usage {
    /// The move automatic rebalancing makes: the best single migration, if it lowers the
    /// current imbalance by at least `margin` (relative). Returns the current imbalance too.
    pub fn auto_rebalance_choice(
        &self,
        candidates: &[MigrationCandidate],
        method: RebalanceMethod,
        margin: f64,
    ) -> Result<Option<(f64, RebalanceChoice)>, UsageError> {
        let current = self.imbalance();
        let Some(choice) = self.best_rebalance_migration(candidates, method)? else {
            return Ok(None);
        };
        if current == 0.0 || (current - choice.imbalance) / current < margin {
            return Ok(None);
        }
        Ok(Some((current, choice)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_equal_exactly_when_they_are() {
        for len in 0..24 {
            let name: String = (0..len).map(|i| (b'a' + i as u8) as char).collect();
            assert!(same_name(&name, &name.clone()), "{name}");
            // A difference at any one position, and a different length, are seen.
            for at in 0..len {
                let mut other = name.clone().into_bytes();
                other[at] = b'Z';
                let other = String::from_utf8(other).unwrap();
                assert!(!same_name(&name, &other), "{name} {other}");
            }
            assert!(!same_name(&name, &format!("{name}x")), "{name}");
        }
    }

    #[test]
    fn the_name_index_finds_each_name_and_nothing_else() {
        let mut owned: Vec<String> = (0..24)
            .map(|len| (0..len).map(|i| (b'a' + i as u8) as char).collect())
            .chain((1..=300).map(|i| format!("node{i}")))
            .chain(["pve-node-01.example.com".to_string(), "vm:100".into()])
            .collect();
        owned.sort();
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        let index = NameIndex::new(&names);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(index.get(name), Some(i), "{name}");
            // One byte different at any position, or one byte longer: not found.
            for at in 0..name.len() {
                let mut other = name.as_bytes().to_vec();
                other[at] = b'Z';
                let other = String::from_utf8(other).unwrap();
                assert_eq!(index.get(&other), None, "{other}");
            }
            assert_eq!(index.get(&format!("{name}Z")), None, "{name}Z");
        }
    }

    /// Seeded, skewed generated clusters of three sizes, named, with their candidates.
    fn generated_searches() -> Vec<(String, Usage, Vec<MigrationCandidate>)> {
        use crate::generate::{generate, rebalance_input, Shape};
        let mut out = Vec::new();
        for seed in 1..=12 {
            for (nodes, guests_per_node) in [(4, 3), (20, 10), (50, 6)] {
                let shape = Shape {
                    nodes,
                    guests_per_node,
                    rules: false,
                    skewed: true,
                };
                let (usage, candidates) = rebalance_input(&generate(seed, &shape));
                out.push((
                    format!("seed {seed}, {nodes}x{guests_per_node}"),
                    usage,
                    candidates,
                ));
            }
        }
        out
    }

    #[test]
    fn estimated_topsis_criteria_are_within_their_bounds() {
        for (what, usage, candidates) in generated_searches() {
            let model = MoveModel::new(&usage, &candidates).unwrap();
            let sums = model.split_sums().unwrap();
            for m in model.moves() {
                let (estimate, error) = model.estimated_criteria(&sums, &m);
                let exact = model.criteria(&m);
                for c in 0..4 {
                    assert!(
                        (estimate[c] - exact[c]).abs() <= error[c],
                        "{what}, criterion {c}: {} vs {} (bound {})",
                        estimate[c],
                        exact[c],
                        error[c]
                    );
                }
                // The maxima are the same figures, compared: no error at all.
                assert_eq!(error[1], 0.0);
                assert_eq!(error[3], 0.0);
            }
        }
    }

    #[test]
    fn bundle_floors_lie_below_every_move_and_rule_out_most_bundles() {
        let mut bundles = 0;
        let mut open = 0;
        for (what, usage, candidates) in generated_searches() {
            let model = MoveModel::new(&usage, &candidates).unwrap();
            let sums = model.split_sums().unwrap();
            let mut columns = topsis::Columns::default();
            let mut errors = ErrorSpread::default();
            model.each_estimated_criteria(&sums, |_, row, terms| {
                columns.add(row);
                errors.add(row, terms);
            });
            let spread = errors.bounds(model.split_loads.len() as f64);
            let scorer = columns.scorer().unwrap();
            let best = model
                .moves()
                .map(|m| scorer.score(&model.criteria(&m)))
                .fold(f64::NEG_INFINITY, f64::max);
            for b in 0..model.bundles.len() {
                let floor = model.bundle_floor(&sums, b, &spread).unwrap();
                model.bundle_estimated_criteria(&sums, b, |m, row, _| {
                    let exact = model.criteria(&m);
                    for c in 0..4 {
                        assert!(floor[c] <= row[c], "{what}, bundle {b}, criterion {c}");
                        assert!(floor[c] <= exact[c], "{what}, bundle {b}, criterion {c}");
                    }
                });
                bundles += 1;
                // A floor scoring as high as the winner leaves its bundle to be visited.
                if scorer.score(&floor) >= best {
                    open += 1;
                }
            }
        }
        assert!(
            open * 3 <= bundles,
            "the floors leave {open} of {bundles} bundles open"
        );
    }

    #[test]
    fn estimated_topsis_settles_generated_clusters_as_the_exact_passes_do() {
        let searches = generated_searches();
        let mut settled = 0;
        for (what, usage, candidates) in &searches {
            let model = MoveModel::new(usage, candidates).unwrap();
            let exact = model.best_by_topsis_exact().map(|m| model.migration(&m));
            if let Some(estimated) = model.topsis_by_estimate() {
                settled += 1;
                assert_eq!(estimated.map(|m| model.migration(&m)), exact, "{what}");
            }
        }
        // Were the bounds too loose to settle most searches, the fast path would be the
        // slow one with extra work.
        assert!(
            settled * 10 >= searches.len() * 9,
            "the estimate settled only {settled} of {} searches",
            searches.len()
        );
    }

    fn node(maxcpu: f64, maxmem: f64) -> NodeStats {
        NodeStats {
            cpu: 0.0,
            maxcpu,
            mem: 0.0,
            maxmem,
        }
    }

    fn static_cluster() -> Usage {
        let gib = 1024.0 * 1024.0 * 1024.0;
        let mut u = Usage::new(UsageMode::Static);
        for n in ["node1", "node2", "node3"] {
            u.add_node(n, node(24.0, 32.0 * gib));
        }
        for sid in ["vm:101", "vm:102", "vm:103", "vm:104"] {
            u.add_resource(
                sid,
                ResourceStats::from_static(2.0, 8.0 * gib),
                true,
                Placement::Stationary("node1".into()),
            );
        }
        u
    }

    #[test]
    fn imbalance_matches_worked_example() {
        // spec §9.4: 4 VMs of 2 cores / 8 GiB on one of three 24-core / 32 GiB nodes.
        let u = static_cluster();
        assert_eq!(format!("{:.2}", u.imbalance()), "1.41");
    }

    #[test]
    fn best_migration_matches_worked_example() {
        let u = static_cluster();
        let cands: Vec<MigrationCandidate> = ["vm:101", "vm:102", "vm:103", "vm:104"]
            .iter()
            .map(|sid| MigrationCandidate {
                leader: sid.to_string(),
                resources: vec![sid.to_string()],
                nodes: vec!["node2".into(), "node3".into()],
            })
            .collect();
        let choice = u
            .best_rebalance_migration(&cands, RebalanceMethod::Bruteforce)
            .unwrap()
            .unwrap();
        assert_eq!(choice.migration.sid, "vm:101");
        assert_eq!(choice.migration.target, "node2");
        assert_eq!(format!("{:.2}", choice.imbalance), "0.94");
    }

    #[test]
    fn basic_scores_count_resources() {
        let mut u = Usage::new(UsageMode::Basic);
        u.add_node("a", NodeStats::default());
        u.add_node("b", NodeStats::default());
        u.add_resource(
            "vm:1",
            ResourceStats::default(),
            true,
            Placement::Moving {
                current: "a".into(),
                target: "b".into(),
            },
        );
        u.add_resource(
            "vm:2",
            ResourceStats::default(),
            true,
            Placement::Stationary("a".into()),
        );
        let s = u.score_nodes_to_start("vm:3", None).unwrap();
        assert_eq!(s["a"], 2.0);
        assert_eq!(s["b"], 1.0);
        assert_eq!(u.imbalance(), 0.0);
    }

    #[test]
    fn static_start_prefers_empty_node() {
        let u = static_cluster();
        let s = u
            .score_nodes_to_start("vm:105", Some(ResourceStats::from_static(2.0, 1e9)))
            .unwrap();
        assert!(s["node2"] < s["node1"]);
        assert_eq!(s["node2"], s["node3"]);
    }
}
