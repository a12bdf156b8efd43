//! Ferrox's balancing objective: how unevenly CPU and memory (and, in dynamic mode with
//! measured stalls, pressure) are loaded across nodes, each resource on its own.
//!
//! A node's load is (CPU share, memory share, pressure per core). The imbalance is the
//! root mean square of the resources' coefficients of variation over the balanced nodes:
//! `sqrt((cv_cpu² + cv_mem²) / 2)`, or `sqrt((cv_cpu² + cv_mem² + cv_pressure²) / 3)` when
//! pressure counts. Averaging the two shares per node first (as Proxmox
//! VE's own formula does, kept exactly in `usage`) makes a CPU-hot node next to a
//! memory-hot node look balanced; here each resource has to be even by itself.
//! Everything is kept as running sums so that the effect of one move is O(1).

/// (CPU share, memory share, pressure per core) of one node.
pub type Load = [f64; 3];

/// Running sums of the balanced nodes' loads, per resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// 2, or 3 when pressure counts: the mean is over this many resources whatever their
    /// loads, so the scale does not jump when a resource's load reaches zero.
    resources: f64,
    nodes: f64,
    sum: Load,
    squares: Load,
}

impl Spread {
    /// The sums over `loads`; their third (pressure) figure counts only `with_pressure`.
    pub fn of(loads: impl IntoIterator<Item = Load>, with_pressure: bool) -> Spread {
        let resources = if with_pressure { 3 } else { 2 };
        let mut spread = Spread {
            resources: resources as f64,
            nodes: 0.0,
            sum: [0.0; 3],
            squares: [0.0; 3],
        };
        for load in loads {
            spread.nodes += 1.0;
            for (r, share) in load.into_iter().enumerate().take(resources) {
                spread.sum[r] += share;
                spread.squares[r] += share * share;
            }
        }
        spread
    }

    /// The sums once a node's load changes from `old` to `new`.
    pub fn replaced(mut self, old: Load, new: Load) -> Spread {
        // Always all three: a fixed bound the compiler unrolls (this runs for every guest
        // × node a search looks at); without pressure the third figures stay zero.
        for r in 0..3 {
            self.sum[r] += new[r] - old[r];
            self.squares[r] += new[r] * new[r] - old[r] * old[r];
        }
        self
    }

    pub fn nodes(&self) -> f64 {
        self.nodes
    }

    /// The squared imbalance: monotone in it, and cheaper (no square root), so searches
    /// compare candidates by it.
    pub fn score(&self) -> f64 {
        if self.nodes == 0.0 {
            return 0.0;
        }
        // cv² = variance / mean² = n·Σl² / (Σl)² − 1: one division per resource (this
        // runs for every guest × node a search looks at).
        let mut total = 0.0;
        for r in 0..3 {
            if r == 2 && self.resources < 3.0 {
                break;
            }
            let sum = self.sum[r];
            if sum > 0.0 {
                total += (self.nodes * self.squares[r] / (sum * sum) - 1.0).max(0.0);
            }
        }
        total / self.resources
    }

    pub fn imbalance(&self) -> f64 {
        self.score().sqrt()
    }
}

/// The imbalance of the given node loads (CPU share, memory share).
pub fn imbalance(loads: impl IntoIterator<Item = [f64; 2]>) -> f64 {
    Spread::of(loads.into_iter().map(|[c, m]| [c, m, 0.0]), false).imbalance()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_hot_next_to_memory_hot_is_imbalanced() {
        // Averaged per node both are at 50 %: Proxmox VE's formula calls this balanced.
        let crossed = imbalance([[0.9, 0.1], [0.1, 0.9]]);
        assert!((crossed - 0.8).abs() < 1e-12, "{crossed}");
        assert_eq!(imbalance([[0.5, 0.5], [0.5, 0.5]]), 0.0);
    }

    #[test]
    fn one_resource_is_its_coefficient_of_variation_over_root_two() {
        // CPU 0.2 and 0.6: mean 0.4, deviation 0.2, cv 0.5; memory even.
        let value = imbalance([[0.2, 0.3], [0.6, 0.3]]);
        assert!((value - 0.5 / 2f64.sqrt()).abs() < 1e-12, "{value}");
    }

    #[test]
    fn replacing_a_load_matches_recomputing() {
        let loads = [[0.2, 0.4, 0.1], [0.7, 0.1, 0.0], [0.3, 0.3, 0.4]];
        for with_pressure in [false, true] {
            let moved = Spread::of(loads, with_pressure).replaced(loads[1], [0.5, 0.2, 0.3]);
            let direct = Spread::of([loads[0], [0.5, 0.2, 0.3], loads[2]], with_pressure);
            assert!((moved.imbalance() - direct.imbalance()).abs() < 1e-12);
        }
    }

    #[test]
    fn pressure_is_a_third_resource_when_it_counts() {
        // CPU and memory even; all the stall on one of two nodes: cv 1 in pressure.
        let loads = [[0.5, 0.5, 0.2], [0.5, 0.5, 0.0]];
        assert_eq!(Spread::of(loads, false).imbalance(), 0.0);
        let value = Spread::of(loads, true).imbalance();
        assert!((value - (1.0f64 / 3.0).sqrt()).abs() < 1e-12, "{value}");
    }

    #[test]
    fn no_load_is_no_imbalance() {
        assert_eq!(imbalance([[0.0, 0.0], [0.0, 0.0]]), 0.0);
        assert_eq!(imbalance(std::iter::empty()), 0.0);
    }
}
