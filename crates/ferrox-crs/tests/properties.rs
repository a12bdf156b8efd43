//! Invariants of the scheduler arithmetic, over random clusters.

use ferrox_crs::{MigrationCandidate, NodeStats, Placement, ResourceStats, Usage, UsageMode};
use ferrox_types::RebalanceMethod;
use proptest::prelude::*;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone)]
struct Cluster {
    nodes: Vec<(f64, f64)>,
    /// (node index, cores, memory GiB)
    guests: Vec<(usize, f64, f64)>,
}

/// Guests always have a core limit here: a guest without one counts as the whole node
/// when placed but as zero when moved (Proxmox VE's arithmetic), so its promised and
/// actual imbalance differ by design.
fn cluster() -> impl Strategy<Value = Cluster> {
    (2usize..6).prop_flat_map(|n| {
        (
            prop::collection::vec(
                (
                    prop::sample::select(vec![8.0, 16.0, 24.0, 64.0]),
                    16.0..256.0f64,
                ),
                n,
            ),
            prop::collection::vec(
                (
                    0..n,
                    prop::sample::select(vec![1.0, 2.0, 4.0]),
                    0.5..16.0f64,
                ),
                1..14,
            ),
        )
            .prop_map(|(nodes, guests)| Cluster { nodes, guests })
    })
}

fn usage_of(c: &Cluster) -> Usage {
    let mut u = Usage::new(UsageMode::Static);
    for (i, (cpu, mem)) in c.nodes.iter().enumerate() {
        u.add_node(
            &format!("node{i}"),
            NodeStats {
                cpu: 0.0,
                maxcpu: *cpu,
                mem: 0.0,
                maxmem: mem * GIB,
            },
        );
    }
    for (i, (node, cores, mem)) in c.guests.iter().enumerate() {
        u.add_resource(
            &format!("vm:{}", 100 + i),
            ResourceStats::from_static(*cores, mem * GIB),
            true,
            Placement::Stationary(format!("node{node}")),
        );
    }
    u
}

fn candidates(c: &Cluster) -> Vec<MigrationCandidate> {
    c.guests
        .iter()
        .enumerate()
        .map(|(i, (node, _, _))| MigrationCandidate {
            leader: format!("vm:{}", 100 + i),
            resources: vec![format!("vm:{}", 100 + i)],
            nodes: (0..c.nodes.len())
                .filter(|n| n != node)
                .map(|n| format!("node{n}"))
                .collect(),
        })
        .collect()
}

proptest! {
    /// A chosen auto-rebalance migration lowers the imbalance by at least the margin, and
    /// the imbalance it promises is the one that applying the move really gives.
    #[test]
    fn chosen_migration_lowers_imbalance_by_margin(
        c in cluster(),
        margin in 0.0..0.5f64,
        topsis in any::<bool>(),
    ) {
        let method = if topsis { RebalanceMethod::Topsis } else { RebalanceMethod::Bruteforce };
        let u = usage_of(&c);
        if let Some((before, choice)) = u.auto_rebalance_choice(&candidates(&c), method, margin).unwrap() {
            prop_assert!((before - choice.imbalance) / before >= margin);
            let i: usize = choice.migration.sid[3..].parse::<usize>().unwrap() - 100;
            let mut moved = c.clone();
            moved.guests[i].0 = choice.migration.target[4..].parse().unwrap();
            let after = usage_of(&moved).imbalance();
            prop_assert!((after - choice.imbalance).abs() < 1e-9, "promised {} got {}", choice.imbalance, after);
        }
    }

    /// Bruteforce finds the best single move: no candidate move gives a lower imbalance.
    #[test]
    fn bruteforce_is_optimal_over_single_moves(c in cluster()) {
        let u = usage_of(&c);
        let cands = candidates(&c);
        if let Some(choice) = u.best_rebalance_migration(&cands, RebalanceMethod::Bruteforce).unwrap() {
            for (i, cand) in cands.iter().enumerate() {
                for target in &cand.nodes {
                    let mut moved = c.clone();
                    moved.guests[i].0 = target[4..].parse().unwrap();
                    prop_assert!(usage_of(&moved).imbalance() >= choice.imbalance - 1e-9);
                }
            }
        }
    }

    /// Start scores are finite, in [-1, 0], and every node gets one.
    #[test]
    fn start_scores_cover_all_nodes(c in cluster()) {
        let u = usage_of(&c);
        let scores = u.score_nodes_to_start("vm:1", Some(ResourceStats::from_static(2.0, 4.0 * GIB))).unwrap();
        prop_assert_eq!(scores.len(), c.nodes.len());
        prop_assert!(scores.values().all(|s| s.is_finite() && *s <= 0.0 && *s >= -1.0));
    }
}

/// Clusters with many equal guests and nodes, where many moves tie.
fn tied_cluster() -> impl Strategy<Value = Cluster> {
    (2usize..7).prop_flat_map(|n| {
        (
            prop::collection::vec(
                (
                    prop::sample::select(vec![16.0, 32.0]),
                    prop::sample::select(vec![64.0, 128.0]),
                ),
                n,
            ),
            prop::collection::vec(
                (
                    0..n,
                    prop::sample::select(vec![1.0, 2.0]),
                    prop::sample::select(vec![2.0, 4.0]),
                ),
                1..30,
            ),
        )
            .prop_map(|(nodes, guests)| Cluster { nodes, guests })
    })
}

proptest! {
    /// The fast search picks exactly the reference's move, with the same imbalance to the
    /// last bit, for both methods; on random clusters and on clusters full of ties.
    #[test]
    fn fast_search_agrees_with_the_reference(
        c in prop_oneof![cluster(), tied_cluster()],
        topsis in any::<bool>(),
    ) {
        let method = if topsis { RebalanceMethod::Topsis } else { RebalanceMethod::Bruteforce };
        let u = usage_of(&c);
        let cands = candidates(&c);
        let fast = u.best_rebalance_migration(&cands, method).unwrap();
        let reference = u.best_rebalance_migration_reference(&cands, method).unwrap();
        prop_assert_eq!(
            fast.as_ref().map(|f| (&f.migration, f.imbalance.to_bits())),
            reference.as_ref().map(|r| (&r.migration, r.imbalance.to_bits()))
        );
    }
}
