//! Proxmox VE's rebalancing search (its crate proxmox-resource-scheduling) and Ferrox's
//! `pve-*` search on the same generated cluster, one side per process so that
//! `/usr/bin/time -v` reports each side's peak memory. Built by
//! scripts/bench-pve-crate.sh outside the workspace; it only calls Proxmox VE's crate.
//!
//! main pve|ferrox bruteforce|topsis NODES GUESTS_PER_NODE [SEED]

use ferrox_crs::generate::{generate, rebalance_input, Shape};
use ferrox_types::RebalanceMethod;
use proxmox_resource_scheduling::node::NodeStats as PveNodeStats;
use proxmox_resource_scheduling::resource::ResourceStats as PveResourceStats;
use proxmox_resource_scheduling::scheduler::{
    Migration, MigrationCandidate as PveCandidate, NodeUsage, Scheduler,
};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: main pve|ferrox bruteforce|topsis NODES GUESTS_PER_NODE [SEED]");
    std::process::exit(2)
}

/// Median time of `search` repeated for half a second; `prepare` (not timed) builds
/// what one call consumes.
fn median<P, T>(
    mut prepare: impl FnMut() -> P,
    mut search: impl FnMut(P) -> T,
) -> (Duration, usize, T) {
    let mut times = Vec::new();
    let whole = Instant::now();
    loop {
        let input = prepare();
        let started = Instant::now();
        let out = search(input);
        times.push(started.elapsed());
        if whole.elapsed().as_secs_f64() > 0.5 || times.len() >= 10_000 {
            times.sort();
            return (times[times.len() / 2], times.len(), out);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        usage();
    }
    let number = |i: usize| -> u64 { args[i].parse().unwrap_or_else(|_| usage()) };
    let topsis = match args[1].as_str() {
        "bruteforce" => false,
        "topsis" => true,
        _ => usage(),
    };
    let seed = if args.len() > 4 { number(4) } else { 1 };
    let snapshot = generate(
        seed,
        &Shape {
            nodes: number(2) as usize,
            guests_per_node: number(3) as usize,
            rules: false,
            skewed: true,
        },
    );
    let moves =
        snapshot.guests.iter().filter(|g| g.ha_managed).count() * (snapshot.nodes.len() - 1);
    let (elapsed, repeats, sid, source, target, imbalance) = match args[0].as_str() {
        "pve" => {
            // Static usage as Proxmox VE's HA manager computes it: a node carries the
            // cores and memory its guests are configured with.
            let mut nodes: Vec<NodeUsage> = snapshot
                .nodes
                .iter()
                .map(|n| NodeUsage {
                    name: n.name.clone(),
                    stats: PveNodeStats {
                        cpu: 0.0,
                        maxcpu: n.cores as usize,
                        mem: 0,
                        maxmem: n.memory as usize,
                    },
                })
                .collect();
            let mut candidates = Vec::new();
            for g in &snapshot.guests {
                let stats = PveResourceStats {
                    cpu: g.cores,
                    maxcpu: g.cores,
                    mem: g.memory as usize,
                    maxmem: g.memory as usize,
                };
                let node = nodes
                    .iter_mut()
                    .find(|n| n.name == g.node)
                    .expect("guest's node");
                node.stats.add_running_resource(&stats);
                if g.ha_managed {
                    for n in snapshot.nodes.iter().filter(|n| n.name != g.node) {
                        candidates.push(PveCandidate {
                            migration: Migration {
                                sid: g.sid(),
                                source_node: g.node.clone(),
                                target_node: n.name.clone(),
                            },
                            stats,
                        });
                    }
                }
            }
            let scheduler = Scheduler::from_nodes(nodes);
            let (elapsed, repeats, best) = median(
                || candidates.clone(),
                |c| {
                    if topsis {
                        scheduler
                            .score_best_balancing_migration_candidates_topsis(&c, 1)
                            .expect("topsis")
                    } else {
                        scheduler.score_best_balancing_migration_candidates(c, 1)
                    }
                },
            );
            let best = best.into_iter().next().expect("a move");
            (
                elapsed,
                repeats,
                best.migration.sid,
                best.migration.source_node,
                best.migration.target_node,
                best.imbalance,
            )
        }
        "ferrox" => {
            let (cluster, candidates) = rebalance_input(&snapshot);
            let method = if topsis {
                RebalanceMethod::Topsis
            } else {
                RebalanceMethod::Bruteforce
            };
            let (elapsed, repeats, best) = median(
                || (),
                |()| cluster.best_rebalance_migration(&candidates, method),
            );
            let best = best.expect("search").expect("a move");
            (
                elapsed,
                repeats,
                best.migration.sid,
                best.migration.source,
                best.migration.target,
                best.imbalance,
            )
        }
        _ => usage(),
    };
    println!(
        "{} {}: {} nodes, {} guests, {moves} moves in {:.3} ms (median of {repeats}): {sid} {source} -> {target} (imbalance {imbalance:.6})",
        args[0],
        args[1],
        snapshot.nodes.len(),
        snapshot.guests.len(),
        elapsed.as_secs_f64() * 1000.0,
    );
}
