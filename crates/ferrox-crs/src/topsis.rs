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

    /// The anti-ideal's length: the scale of every distance's rounding.
    pub fn worst_length(&self) -> f64 {
        self.worst.iter().map(|w| w * w).sum::<f64>().sqrt()
    }

    /// The distance between the ideal and the anti-ideal: by the triangle inequality, no
    /// row's two distances add up to less.
    pub fn ideal_span(&self) -> f64 {
        distances(&self.best, &self.best, &self.worst).1
    }

    /// A test that rows score below `threshold` in (0, 1), with neither a root nor a
    /// division per row; `None` outside that range or when a figure is not a number.
    pub fn below(&self, threshold: f64) -> Option<Below> {
        if !(threshold > 0.0 && threshold < 1.0) {
            return None;
        }
        let factors = self.scales();
        let below = Below {
            factors,
            best: self.best,
            worst: self.worst,
            slack: (BELOW_SLACK * self.worst_length()).powi(2),
            keep: (1.0 - threshold).powi(2) * (1.0 + 1e-9),
            threshold: threshold * threshold,
        };
        let figures = [below.slack, below.keep, below.threshold]
            .into_iter()
            .chain(factors)
            .chain(self.best)
            .chain(self.worst);
        figures.into_iter().all(f64::is_finite).then_some(below)
    }
}

/// How far (relative to the anti-ideal's length) [`Below`] lets a distance it computes
/// differ from [`Scorer::distances`]' figure: the two weigh each value with a different
/// rounding (a product with one factor instead of a quotient and a product), a few units
/// of roundoff of the anti-ideal's length at most, far inside this.
const BELOW_SLACK: f64 = 1e-9;

/// Tells rows whose score is below a threshold `t` from the rest, cheaply: with `w` and
/// `b` a row's distances to the anti-ideal and the ideal, the score `w / (b + w)` is
/// below `t` exactly when `w (1 − t) < t b`; squared (both sides are not negative), that
/// needs no root. The squares are taken with each distance moved by the slack against
/// the test ((x + d)² ≤ x²(1 + e) + d²(1 + 1/e) and (x − d)² ≥ x²(1 − e) − d²/e, with
/// e = 10⁻⁶) and the left side raised by a further 10⁻⁹, so that a row it passes scores
/// below `t (1 + 4u)` as [`Scorer::score`] computes it.
#[derive(Debug, Clone)]
pub struct Below {
    factors: Criteria,
    best: Criteria,
    worst: Criteria,
    /// The squared slack of a distance.
    slack: f64,
    /// (1 − t)², raised by 10⁻⁹.
    keep: f64,
    /// t².
    threshold: f64,
}

impl Below {
    const E: f64 = 1e-6;

    /// Whether `row`, and every row of the scorer's columns at or above it in each
    /// criterion, certainly scores below the threshold: between the ideal and the
    /// anti-ideal, a row farther from the one and nearer the other scores lower.
    pub fn holds(&self, row: &Criteria) -> bool {
        let mut to_best = 0.0;
        let mut to_worst = 0.0;
        for (c, value) in row.iter().enumerate() {
            // At or below the ideal counts as the ideal: then the test holds for every
            // row at or above `row` in each criterion as well.
            let x = (value * self.factors[c]).max(self.best[c]);
            to_best += (x - self.best[c]) * (x - self.best[c]);
            to_worst += (x - self.worst[c]) * (x - self.worst[c]);
        }
        let worst_side =
            (to_worst * (1.0 + Self::E) + self.slack * (1.0 + 1.0 / Self::E)) * self.keep;
        let best_side = (to_best * (1.0 - Self::E) - self.slack / Self::E) * self.threshold;
        worst_side < best_side
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
    use proptest::prelude::*;

    #[test]
    fn equal_alternatives_score_zero() {
        let m = vec![[1.5, 1.5, 1.2, 1.2]; 3];
        assert_eq!(score(&m), vec![0.0, 0.0, 0.0]);
    }

    /// Rows near each other, as the moves of one cluster are: criteria of 1 + a load.
    fn rows() -> impl Strategy<Value = Vec<Criteria>> {
        prop::collection::vec(
            prop::array::uniform4(0.0f64..0.05).prop_map(|d| d.map(|x| 1.3 + x)),
            2..40,
        )
    }

    proptest! {
        /// A row the test passes scores below the threshold, and so does every row of
        /// the columns at or above it in each criterion; and it passes every row that
        /// scores clearly below (it is a filter, not only a guard).
        #[test]
        fn below_passes_only_rows_that_score_lower(
            matrix in rows(),
            cut in prop_oneof![0.0f64..1.0, 0.0f64..1e-4],
            lowered in prop::array::uniform4(0.0f64..0.02),
        ) {
            let mut columns = Columns::default();
            for row in &matrix {
                columns.add(row);
            }
            let scorer = columns.scorer().unwrap();
            let scores: Vec<f64> = matrix.iter().map(|r| scorer.score(r)).collect();
            let top = scores.iter().copied().fold(0.0f64, f64::max);
            let threshold = top * cut;
            let Some(below) = scorer.below(threshold) else {
                prop_assert!(threshold <= 0.0);
                return Ok(());
            };
            let mut clearly = 0;
            let mut passed = 0;
            for (row, score) in matrix.iter().zip(&scores) {
                let floor: Criteria = std::array::from_fn(|c| row[c] - lowered[c]);
                if below.holds(row) {
                    passed += 1;
                    prop_assert!(*score < threshold, "{score} >= {threshold}");
                }
                if below.holds(&floor) {
                    // Every row at or above the floor scores below, this one included.
                    prop_assert!(below.holds(row) || *score < threshold);
                    prop_assert!(*score < threshold);
                }
                // Near a threshold of 0 the slack (10⁻⁹ of the anti-ideal's length)
                // outweighs what is left below it: there the test may pass nothing.
                if threshold >= 0.01 && *score < threshold * 0.999 {
                    clearly += 1;
                }
            }
            prop_assert!(passed >= clearly, "{passed} of {clearly} passed");
        }
    }

    #[test]
    fn dominant_alternative_scores_one() {
        let m = vec![[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]];
        let s = score(&m);
        assert!((s[0] - 1.0).abs() < 1e-12);
        assert!(s[1].abs() < 1e-12);
    }
}
