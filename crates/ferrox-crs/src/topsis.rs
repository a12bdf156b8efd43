//! TOPSIS (technique for order of preference by similarity to ideal solution) over the
//! four load criteria Proxmox VE's scheduler uses.

/// Criteria per alternative: mean-square CPU load, highest CPU load, mean-square memory
/// load, highest memory load (each as 1 + value). All are minimised.
pub type Criteria = [f64; 4];

/// Weights 1, 2, 5, 10: memory pressure matters most, as in Proxmox VE.
const WEIGHTS: [f64; 4] = [1.0, 2.0, 5.0, 10.0];

/// The criteria for one hypothetical cluster state given per-node (cpu_load, mem_load).
pub fn criteria(loads: &[(f64, f64)]) -> Criteria {
    criteria_iter(loads.iter().copied())
}

/// [`criteria`] over loads as they are produced, in node order (no allocation).
pub fn criteria_iter(loads: impl Iterator<Item = (f64, f64)>) -> Criteria {
    let mut len = 0usize;
    let mut sum_cpu_sq = 0.0;
    let mut sum_mem_sq = 0.0;
    let mut max_cpu: f64 = 0.0;
    let mut max_mem: f64 = 0.0;
    for (cpu, mem) in loads {
        len += 1;
        sum_cpu_sq += cpu * cpu;
        sum_mem_sq += mem * mem;
        max_cpu = max_cpu.max(cpu);
        max_mem = max_mem.max(mem);
    }
    let len = len as f64;
    [
        1.0 + (sum_cpu_sq / len).sqrt(),
        1.0 + max_cpu,
        1.0 + (sum_mem_sq / len).sqrt(),
        1.0 + max_mem,
    ]
}

fn weights() -> Criteria {
    let weight_sum: f64 = WEIGHTS.iter().sum();
    let mut w = WEIGHTS;
    for x in &mut w {
        *x /= weight_sum;
    }
    w
}

/// What [`score`] needs of all alternatives, gathered one alternative at a time: the
/// columns' norms and extremes. Scoring from it gives [`score`]'s figures exactly:
/// normalising and weighting are monotonic, so the extremes of the weighted columns are
/// the weighted extremes.
#[derive(Debug, Clone)]
pub struct Columns {
    squares: Criteria,
    min: Criteria,
    max: Criteria,
    rows: usize,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            squares: [0.0; 4],
            min: [f64::INFINITY; 4],
            max: [f64::NEG_INFINITY; 4],
            rows: 0,
        }
    }
}

impl Columns {
    pub fn add(&mut self, row: &Criteria) {
        for (c, x) in row.iter().enumerate() {
            self.squares[c] += x * x;
            self.min[c] = self.min[c].min(*x);
            self.max[c] = self.max[c].max(*x);
        }
        self.rows += 1;
    }

    /// The scorer, or `None` without alternatives.
    pub fn scorer(&self) -> Option<Scorer> {
        if self.rows == 0 {
            return None;
        }
        let weights = weights();
        let mut norms = [0.0; 4];
        let mut best = [0.0; 4];
        let mut worst = [0.0; 4];
        for c in 0..4 {
            norms[c] = self.squares[c].sqrt();
            best[c] = weigh(self.min[c], norms[c], weights[c]);
            worst[c] = weigh(self.max[c], norms[c], weights[c]);
        }
        Some(Scorer {
            norms,
            weights,
            best,
            worst,
        })
    }
}

fn weigh(x: f64, norm: f64, weight: f64) -> f64 {
    let x = if norm != 0.0 { x / norm } else { x };
    x * weight
}

/// Scores single alternatives against the columns they were gathered into.
#[derive(Debug, Clone)]
pub struct Scorer {
    norms: Criteria,
    weights: Criteria,
    best: Criteria,
    worst: Criteria,
}

impl Scorer {
    pub fn score(&self, row: &Criteria) -> f64 {
        let (to_best, to_worst) = self.distances(row);
        closeness(to_best, to_worst)
    }

    /// A row's weighted distances to the ideal and to the anti-ideal, from which
    /// [`Self::score`] is computed.
    pub fn distances(&self, row: &Criteria) -> (f64, f64) {
        let mut weighted = [0.0; 4];
        for c in 0..4 {
            weighted[c] = weigh(row[c], self.norms[c], self.weights[c]);
        }
        distances(&weighted, &self.best, &self.worst)
    }

    /// What one unit of each criterion weighs after normalisation.
    pub fn scales(&self) -> Criteria {
        std::array::from_fn(|c| weigh(1.0, self.norms[c], self.weights[c]))
    }

    /// The anti-ideal: the largest weighted value of each column.
    pub fn worst(&self) -> &Criteria {
        &self.worst
    }
}

fn distances(row: &Criteria, best: &Criteria, worst: &Criteria) -> (f64, f64) {
    let dist = |ideal: &Criteria| {
        (0..4)
            .map(|c| (row[c] - ideal[c]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    (dist(best), dist(worst))
}

/// Relative closeness to the ideal: distance to the worst over the sum of both distances.
pub(crate) fn closeness(to_best: f64, to_worst: f64) -> f64 {
    let divisor = to_best + to_worst;
    if divisor == 0.0 {
        0.0
    } else {
        to_worst / divisor
    }
}

/// Scores alternatives in [0, 1]; higher is closer to the ideal. All-equal alternatives
/// score 0.
pub fn score(matrix: &[Criteria]) -> Vec<f64> {
    let weights = weights();
    let mut weighted: Vec<Criteria> = matrix.to_vec();
    for col in 0..4 {
        let norm = matrix
            .iter()
            .map(|row| row[col] * row[col])
            .sum::<f64>()
            .sqrt();
        for row in weighted.iter_mut() {
            row[col] = weigh(row[col], norm, weights[col]);
        }
    }
    let mut best = [f64::INFINITY; 4];
    let mut worst = [f64::NEG_INFINITY; 4];
    for row in &weighted {
        for col in 0..4 {
            best[col] = best[col].min(row[col]);
            worst[col] = worst[col].max(row[col]);
        }
    }
    weighted
        .iter()
        .map(|row| {
            let (to_best, to_worst) = distances(row, &best, &worst);
            closeness(to_best, to_worst)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_alternatives_score_zero() {
        let m = vec![[1.5, 1.5, 1.2, 1.2]; 3];
        assert_eq!(score(&m), vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn dominant_alternative_scores_one() {
        let m = vec![[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]];
        let s = score(&m);
        assert!((s[0] - 1.0).abs() < 1e-12);
        assert!(s[1].abs() < 1e-12);
    }
}
