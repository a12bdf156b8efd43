//! Seeded random cluster snapshots, for benchmarks, property tests and the quality
//! comparison against the exact solver. Same seed, same snapshot.

use crate::snapshot::{AffinityKind, Guest, GuestKind, Measured, Node, Rule, Settings, Snapshot};
use crate::{MigrationCandidate, NodeStats, Placement, ResourceStats, Usage, UsageMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const GIB: u64 = 1 << 30;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: usize,
    pub guests_per_node: usize,
    /// Add a few node and resource affinity rules.
    pub rules: bool,
    /// Put more guests on the first nodes, so that there is something to balance.
    pub skewed: bool,
}

pub fn generate(seed: u64, shape: &Shape) -> Snapshot {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes: Vec<Node> = (0..shape.nodes)
        .map(|i| {
            let cores = [16.0, 32.0, 48.0, 64.0][rng.gen_range(0..4)];
            let memory = [128, 256, 384, 512][rng.gen_range(0..4)] * GIB;
            Node {
                name: format!("node{}", i + 1),
                cores,
                memory,
                cpu_usage: 0.0,
                memory_usage: 0,
                maintenance: false,
                cpu_capability: None,
            }
        })
        .collect();
    let mut free: Vec<u64> = nodes.iter().map(|n| n.memory - 8 * GIB).collect();
    // Within the default CPU overcommit too: a generated cluster breaks no limit.
    let overcommit = Settings::default().cpu_overcommit;
    let mut free_cores: Vec<f64> = nodes.iter().map(|n| n.cores * overcommit).collect();
    let total = shape.nodes * shape.guests_per_node;
    let mut guests = Vec::with_capacity(total);
    for i in 0..total {
        let cores = [1.0, 2.0, 2.0, 4.0, 4.0, 8.0][rng.gen_range(0..6)];
        let memory = [1, 2, 4, 4, 8, 8, 16, 32][rng.gen_range(0..8)] * GIB;
        // Skewed: the first third of the nodes is three times as likely.
        let mut node = loop {
            let pick = rng.gen_range(0..shape.nodes);
            if !shape.skewed || pick < shape.nodes.div_ceil(3) || rng.gen_bool(1.0 / 3.0) {
                break pick;
            }
        };
        let mut tries = 0;
        let fits = |node: usize| free[node] >= memory && free_cores[node] >= cores;
        while !fits(node) && tries < shape.nodes {
            node = (node + 1) % shape.nodes;
            tries += 1;
        }
        if !fits(node) {
            continue;
        }
        free[node] -= memory;
        free_cores[node] -= cores;
        let cpu_mean = cores * rng.gen_range(0.05..0.9);
        let mem_mean = memory as f64 * rng.gen_range(0.3..0.95);
        guests.push(Guest {
            vmid: 100 + i as u32,
            kind: if rng.gen_bool(0.2) {
                GuestKind::Ct
            } else {
                GuestKind::Vm
            },
            node: nodes[node].name.clone(),
            ha_managed: rng.gen_bool(0.7),
            cores,
            memory,
            cpu: Measured {
                now: cpu_mean * rng.gen_range(0.5..1.5),
                mean: cpu_mean,
                peak: (cpu_mean * rng.gen_range(1.0..2.0)).min(cores),
            },
            memory_used: Measured {
                now: mem_mean,
                mean: mem_mean,
                peak: (mem_mean * 1.1).min(memory as f64),
            },
            local_disk: if rng.gen_bool(0.2) {
                rng.gen_range(1..64) * GIB
            } else {
                0
            },
            no_balance: rng.gen_bool(0.02),
            cpu_requirement: None,
            pressure: None,
        });
    }
    let mut nodes = nodes;
    for node in &mut nodes {
        let on: Vec<&Guest> = guests.iter().filter(|g| g.node == node.name).collect();
        node.cpu_usage = 0.5 + on.iter().map(|g| g.cpu.now).sum::<f64>();
        node.memory_usage = 4 * GIB + on.iter().map(|g| g.memory_used.now as u64).sum::<u64>();
    }
    let mut rules = Vec::new();
    if shape.rules && guests.len() >= 6 && nodes.len() >= 2 {
        let sid = |g: &Guest| g.sid();
        let pick = |rng: &mut ChaCha8Rng| rng.gen_range(0..guests.len());
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        if a != b {
            rules.push(Rule::ResourceAffinity {
                id: "apart".into(),
                resources: vec![sid(&guests[a]), sid(&guests[b])],
                affinity: AffinityKind::Negative,
                strict: true,
            });
        }
        let c = pick(&mut rng);
        if c != a && c != b {
            let mut prios = BTreeMap::new();
            prios.insert(guests[c].node.clone(), 1);
            let other = &nodes[rng.gen_range(0..nodes.len())].name;
            prios.entry(other.clone()).or_insert(0);
            rules.push(Rule::NodeAffinity {
                id: "pin".into(),
                resources: vec![sid(&guests[c])],
                nodes: prios,
                strict: true,
            });
        }
        // A pair kept together: make the second follow the first.
        let (d, e) = (pick(&mut rng), pick(&mut rng));
        if d != e && ![a, b, c].contains(&d) && ![a, b, c].contains(&e) {
            let node = guests[d].node.clone();
            guests[e].node = node;
            rules.push(Rule::ResourceAffinity {
                id: "together".into(),
                resources: vec![sid(&guests[d]), sid(&guests[e])],
                affinity: AffinityKind::Positive,
                strict: true,
            });
        }
    }
    Snapshot {
        time: 1_800_000_000,
        nodes,
        guests,
        rules,
        recent_moves: Vec::new(),
        settings: Settings::default(),
    }
}

/// The input of Proxmox VE's single-move rebalancing search for `snapshot`: the static
/// usage (each guest counts with its configured cores and memory) and every HA guest's
/// move to every other node — what the search benchmarks time.
pub fn rebalance_input(snapshot: &Snapshot) -> (Usage, Vec<MigrationCandidate>) {
    let mut cluster = Usage::new(UsageMode::Static);
    for n in &snapshot.nodes {
        cluster.add_node(
            &n.name,
            NodeStats {
                cpu: 0.0,
                maxcpu: n.cores,
                mem: 0.0,
                maxmem: n.memory as f64,
            },
        );
    }
    let mut candidates = Vec::new();
    for g in &snapshot.guests {
        cluster.add_resource(
            &g.sid(),
            ResourceStats::from_static(g.cores, g.memory as f64),
            true,
            Placement::Stationary(g.node.clone()),
        );
        if g.ha_managed {
            candidates.push(MigrationCandidate {
                leader: g.sid(),
                resources: vec![g.sid()],
                nodes: snapshot
                    .nodes
                    .iter()
                    .filter(|n| n.name != g.node)
                    .map(|n| n.name.clone())
                    .collect(),
            });
        }
    }
    (cluster, candidates)
}
