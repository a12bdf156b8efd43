//! Planner quality against the exact optimum on seeded small clusters.
//!
//! `cargo run --release -p ferrox-crs --example plan_quality [instances] [max_moves]`
//! Prints, over the instances, the mean relative gap of the planner's final imbalance to
//! the optimum reachable with the same move budget, and how its move count compares.

use ferrox_crs::exact::solve;
use ferrox_crs::generate::{generate, Shape};
use ferrox_crs::plan::Cluster;
use ferrox_crs::snapshot::Settings;

fn main() {
    let mut args = std::env::args().skip(1);
    let instances: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let max_moves: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let settings = Settings {
        max_moves,
        imbalance_target: 0.0,
        min_improvement: 0.0,
        ..Settings::default()
    };
    let (mut gap_sum, mut worst_gap, mut more_moves, mut fewer_or_equal, mut exact_hits) =
        (0.0, 0.0f64, 0, 0, 0);
    let (mut moves_planner, mut moves_optimum, mut counted) = (0usize, 0usize, 0u64);
    let mut abs_gap_sum = 0.0;
    let start = std::time::Instant::now();
    for seed in 0..instances {
        let nodes = 3 + (seed % 4) as usize; // 3..6 nodes
        let mut snapshot = generate(
            seed,
            &Shape {
                nodes,
                guests_per_node: 2,
                rules: false,
                skewed: true,
            },
        );
        snapshot.guests.truncate(12);
        for g in &mut snapshot.guests {
            g.no_balance = false;
        }
        snapshot.settings = settings.clone();
        let opt = solve(&snapshot, max_moves);
        let plan = Cluster::new(&snapshot).plan(&settings);
        let moves = plan.moves().count();
        let gap = if opt.imbalance > 1e-12 {
            (plan.imbalance_after - opt.imbalance) / opt.imbalance
        } else {
            plan.imbalance_after
        };
        if std::env::var("VERBOSE").is_ok() {
            println!("{seed}: nodes {nodes} guests {} before {:.4} planner {:.4} ({moves}) opt {:.4} ({})", snapshot.guests.len(), plan.imbalance_before, plan.imbalance_after, opt.imbalance, opt.moves);
        }
        gap_sum += gap.max(0.0);
        abs_gap_sum += (plan.imbalance_after - opt.imbalance).max(0.0);
        worst_gap = worst_gap.max(gap);
        if gap <= 1e-9 {
            exact_hits += 1;
        }
        if moves > opt.moves {
            more_moves += 1;
        } else {
            fewer_or_equal += 1;
        }
        moves_planner += moves;
        moves_optimum += opt.moves;
        counted += 1;
    }
    let n = counted as f64;
    println!("instances: {counted} (3-6 nodes, up to 12 guests, move budget {max_moves})");
    println!("mean gap to optimum imbalance: {:.3}%", 100.0 * gap_sum / n);
    println!("worst gap: {:.2}%", 100.0 * worst_gap);
    println!(
        "mean absolute gap: {:.4} (imbalance units)",
        abs_gap_sum / n
    );
    println!("optimum reached: {exact_hits} of {counted}");
    println!(
        "moves: planner {:.2} per instance, optimum {:.2}",
        moves_planner as f64 / n,
        moves_optimum as f64 / n
    );
    println!("planner used no more moves than the optimum in {fewer_or_equal} of {counted} ({more_moves} used more)");
    println!("time: {:.1}s", start.elapsed().as_secs_f64());
}
