//! Scheduler benchmarks: start/recovery target selection, the best single migration and a
//! full plan, for 8 to 1000 nodes with 10 and 100 guests per node.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrox_crs::generate::{generate, Shape};
use ferrox_crs::plan::Cluster;
use ferrox_crs::snapshot::Settings;
use std::time::Duration;

fn sizes() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for nodes in [8, 32, 100, 1000] {
        for per_node in [10, 100] {
            out.push((nodes, per_node));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("crs");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for (nodes, per_node) in sizes() {
        let snapshot = generate(
            7,
            &Shape {
                nodes,
                guests_per_node: per_node,
                rules: true,
                skewed: true,
            },
        );
        let cluster = Cluster::new(&snapshot);
        let id = format!("{nodes}x{per_node}");
        group.bench_with_input(BenchmarkId::new("best_node", &id), &cluster, |b, cl| {
            b.iter(|| cl.best_node(4.0, 8 << 30, None))
        });
        let one = Settings {
            max_moves: 1,
            imbalance_target: 0.0,
            min_improvement: 0.0,
            ..Settings::default()
        };
        group.bench_with_input(
            BenchmarkId::new("best_single_migration", &id),
            &cluster,
            |b, cl| b.iter(|| cl.plan(&one)),
        );
        if nodes * per_node <= 10_000 {
            let full = Settings {
                max_moves: 50,
                ..Settings::default()
            };
            group.bench_with_input(
                BenchmarkId::new("full_plan_50_moves", &id),
                &cluster,
                |b, cl| b.iter(|| cl.plan(&full)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
