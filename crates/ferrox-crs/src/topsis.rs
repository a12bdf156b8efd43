//! TOPSIS (technique for order of preference by similarity to ideal solution) over the
//! four load criteria Proxmox VE's scheduler uses.

/// Criteria per alternative: mean-square CPU load, highest CPU load, mean-square memory
/// load, highest memory load (each as 1 + value). All are minimised.
pub type Criteria = [f64; 4];

/// Weights 1, 2, 5, 10: memory pressure matters most, as in Proxmox VE.
const WEIGHTS: [f64; 4] = [1.0, 2.0, 5.0, 10.0];

/// The criteria for one hypothetical cluster state given per-node (cpu_load, mem_load).
pub fn criteria(loads: &[(f64, f64)]) -> Criteria {
    let len = loads.len() as f64;
    let mut sum_cpu_sq = 0.0;
    let mut sum_mem_sq = 0.0;
    let mut max_cpu: f64 = 0.0;
    let mut max_mem: f64 = 0.0;
    for &(cpu, mem) in loads {
        sum_cpu_sq += cpu * cpu;
        sum_mem_sq += mem * mem;
        max_cpu = max_cpu.max(cpu);
        max_mem = max_mem.max(mem);
    }
    [
        1.0 + (sum_cpu_sq / len).sqrt(),
        1.0 + max_cpu,
        1.0 + (sum_mem_sq / len).sqrt(),
        1.0 + max_mem,
    ]
}

/// Scores alternatives in [0, 1]; higher is closer to the ideal. All-equal alternatives
/// score 0.
pub fn score(matrix: &[Criteria]) -> Vec<f64> {
    let weight_sum: f64 = WEIGHTS.iter().sum();
    let weights: Vec<f64> = WEIGHTS.iter().map(|w| w / weight_sum).collect();
    let mut weighted: Vec<Criteria> = matrix.to_vec();
    for col in 0..4 {
        let norm = matrix
            .iter()
            .map(|row| row[col] * row[col])
            .sum::<f64>()
            .sqrt();
        for row in weighted.iter_mut() {
            if norm != 0.0 {
                row[col] /= norm;
            }
            row[col] *= weights[col];
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
            let dist = |ideal: &Criteria| {
                (0..4)
                    .map(|c| (row[c] - ideal[c]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            let to_best = dist(&best);
            let to_worst = dist(&worst);
            let divisor = to_best + to_worst;
            if divisor == 0.0 {
                0.0
            } else {
                to_worst / divisor
            }
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
