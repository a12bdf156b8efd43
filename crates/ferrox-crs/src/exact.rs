//! Exact optimum for small clusters, the yardstick for the planner's quality: the lowest
//! imbalance reachable with at most `max_moves` guest moves (each guest moving at most
//! once, memory and CPU overcommit limits holding in the final placement), and the fewest
//! moves that reach it. Static mode, no rules. Exhaustive, so only for a few nodes and
//! guests (6 × 12 with 4 moves is about 340 000 placements).

use crate::objective;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, PartialEq)]
pub struct Optimum {
    pub imbalance: f64,
    pub moves: usize,
}

struct Search<'a> {
    cores: Vec<f64>,
    memory: Vec<f64>,
    cpu_cap: Vec<f64>,
    guests: Vec<(usize, f64, f64)>,
    max_moves: usize,
    cpu: Vec<f64>,
    mem: Vec<f64>,
    best: Optimum,
    _snapshot: &'a Snapshot,
}

impl Search<'_> {
    fn imbalance(&self) -> f64 {
        objective::imbalance(
            (0..self.cores.len())
                .map(|i| [self.cpu[i] / self.cores[i], self.mem[i] / self.memory[i]]),
        )
    }

    fn visit(&mut self, index: usize, moves: usize) {
        if index == self.guests.len() {
            let feasible = (0..self.cores.len())
                .all(|i| self.mem[i] <= self.memory[i] && self.cpu[i] <= self.cpu_cap[i] + 1e-9);
            if feasible {
                let i = self.imbalance();
                if i < self.best.imbalance - 1e-12
                    || ((i - self.best.imbalance).abs() <= 1e-12 && moves < self.best.moves)
                {
                    self.best = Optimum {
                        imbalance: i,
                        moves,
                    };
                }
            }
            return;
        }
        self.visit(index + 1, moves);
        if moves == self.max_moves {
            return;
        }
        let (home, cpu, mem) = self.guests[index];
        for t in 0..self.cores.len() {
            if t == home {
                continue;
            }
            self.cpu[home] -= cpu;
            self.mem[home] -= mem;
            self.cpu[t] += cpu;
            self.mem[t] += mem;
            self.visit(index + 1, moves + 1);
            self.cpu[t] -= cpu;
            self.mem[t] -= mem;
            self.cpu[home] += cpu;
            self.mem[home] += mem;
        }
    }
}

/// The optimum for `snapshot` in static mode, ignoring its rules.
pub fn solve(snapshot: &Snapshot, max_moves: usize) -> Optimum {
    let index = |name: &str| {
        snapshot
            .nodes
            .iter()
            .position(|n| n.name == name)
            .expect("validated node")
    };
    let guests: Vec<(usize, f64, f64)> = snapshot
        .guests
        .iter()
        .map(|g| {
            let home = index(&g.node);
            let cores = if g.cores == 0.0 {
                snapshot.nodes[home].cores
            } else {
                g.cores
            };
            (home, cores, g.memory as f64)
        })
        .collect();
    let n = snapshot.nodes.len();
    let mut search = Search {
        cores: snapshot.nodes.iter().map(|n| n.cores).collect(),
        memory: snapshot.nodes.iter().map(|n| n.memory as f64).collect(),
        cpu_cap: snapshot
            .nodes
            .iter()
            .map(|n| n.cores * snapshot.settings.cpu_overcommit)
            .collect(),
        guests,
        max_moves,
        cpu: vec![0.0; n],
        mem: vec![0.0; n],
        best: Optimum {
            imbalance: f64::INFINITY,
            moves: 0,
        },
        _snapshot: snapshot,
    };
    for &(home, cpu, mem) in &search.guests.clone() {
        search.cpu[home] += cpu;
        search.mem[home] += mem;
    }
    search.visit(0, 0);
    if search.best.imbalance.is_infinite() {
        // Even the current placement breaks a limit: report it as is.
        search.best = Optimum {
            imbalance: search.imbalance(),
            moves: 0,
        };
    }
    search.best
}
