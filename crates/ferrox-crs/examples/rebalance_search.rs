//! Times Proxmox VE's single-move rebalancing search (the path the HA manager's automatic
//! rebalancing takes) on a generated cluster: the fast search or the straightforward
//! reference, one per run so that `/usr/bin/time -v` reports each one's peak memory.
//!
//! cargo run --release -p ferrox-crs --example rebalance_search -- fast|reference \
//!     bruteforce|topsis NODES GUESTS_PER_NODE [SEED]

use ferrox_crs::generate::{generate, rebalance_input, Shape};
use ferrox_types::RebalanceMethod;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: rebalance_search fast|reference bruteforce|topsis NODES GUESTS_PER_NODE [SEED]";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let number = |i: usize| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            eprintln!("{usage}");
            std::process::exit(2)
        })
    };
    let method = match args[1].as_str() {
        "bruteforce" => RebalanceMethod::Bruteforce,
        "topsis" => RebalanceMethod::Topsis,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
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
    let (cluster, candidates) = rebalance_input(&snapshot);
    let moves: usize = candidates.iter().map(|c| c.nodes.len()).sum();
    let search = || match args[0].as_str() {
        "fast" => cluster.best_rebalance_migration(&candidates, method),
        "reference" => cluster.best_rebalance_migration_reference(&candidates, method),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    // Small searches take well under a millisecond: repeat them for half a second and
    // report the median.
    let mut times = Vec::new();
    let whole = Instant::now();
    let choice = loop {
        let started = Instant::now();
        let choice = search();
        times.push(started.elapsed());
        if whole.elapsed().as_secs_f64() > 0.5 || times.len() >= 10_000 {
            break choice;
        }
    };
    times.sort();
    let elapsed = times[times.len() / 2];
    match choice {
        Ok(Some(c)) => println!(
            "{} {:?}: {} nodes, {} guests, {moves} moves evaluated in {:.3} ms (median of {}): {} {} -> {} (imbalance {:.6})",
            args[0],
            method,
            snapshot.nodes.len(),
            snapshot.guests.len(),
            elapsed.as_secs_f64() * 1000.0,
            times.len(),
            c.migration.sid,
            c.migration.source,
            c.migration.target,
            c.imbalance
        ),
        Ok(None) => println!("no move ({moves} moves)"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
