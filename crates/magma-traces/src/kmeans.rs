//! Seeded Lloyd k-means over flattened traces, in the manner of `kmeans_pytorch` (Euclidean,
//! initial centres drawn from the data without replacement, an empty cluster re-seeded with a
//! random point).

use rand::seq::index::sample;
use rand::Rng;

/// Iterations at most (`kmeans_pytorch` runs until converged; this caps pathological inputs).
const MAX_ITERATIONS: usize = 300;
/// Converged once the summed squared centre shift falls below this (`kmeans_pytorch`'s `tol`).
const TOLERANCE: f32 = 1e-4;

/// Clusters `rows` (equal-length vectors) into `min(k, rows.len())` clusters; returns each row's
/// cluster id. Empty input or `k == 0` gives no assignment.
///
/// ```
/// use rand::SeedableRng;
/// let rows = vec![vec![0.0, 0.0], vec![0.1, 0.0], vec![10.0, 10.0], vec![10.0, 10.2]];
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let ids = magma_traces::kmeans::kmeans(&rows, 2, &mut rng);
/// assert_eq!(ids[0], ids[1]);
/// assert_eq!(ids[2], ids[3]);
/// assert_ne!(ids[0], ids[2]);
/// ```
pub fn kmeans<R: Rng + ?Sized>(rows: &[Vec<f32>], k: usize, rng: &mut R) -> Vec<usize> {
    let n = rows.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let dim = rows[0].len();
    let mut centres: Vec<Vec<f32>> = sample(rng, n, k).iter().map(|i| rows[i].clone()).collect();
    let mut assignment = vec![0usize; n];
    for _ in 0..MAX_ITERATIONS {
        for (a, row) in assignment.iter_mut().zip(rows) {
            *a = nearest(row, &centres);
        }
        let mut shift = 0.0f32;
        for (c, centre) in centres.iter_mut().enumerate() {
            let members: Vec<&Vec<f32>> = rows
                .iter()
                .zip(&assignment)
                .filter_map(|(r, &a)| (a == c).then_some(r))
                .collect();
            let updated = if members.is_empty() {
                rows[rng.random_range(0..n)].clone()
            } else {
                let mut mean = vec![0.0f32; dim];
                for m in &members {
                    for (acc, v) in mean.iter_mut().zip(m.iter()) {
                        *acc += v;
                    }
                }
                mean.iter_mut().for_each(|v| *v /= members.len() as f32);
                mean
            };
            shift += centre
                .iter()
                .zip(&updated)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>();
            *centre = updated;
        }
        if shift < TOLERANCE {
            break;
        }
    }
    assignment
}

fn nearest(row: &[f32], centres: &[Vec<f32>]) -> usize {
    centres
        .iter()
        .map(|c| {
            c.iter()
                .zip(row)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
        })
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn separates_three_blobs_and_caps_k() {
        let mut rows = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (50.0, 0.0), (0.0, 50.0)] {
            for i in 0..5 {
                rows.push(vec![cx + i as f32 * 0.1, cy - i as f32 * 0.1]);
            }
        }
        let mut rng = StdRng::seed_from_u64(7);
        let ids = kmeans(&rows, 3, &mut rng);
        for blob in 0..3 {
            let first = ids[blob * 5];
            assert!(ids[blob * 5..blob * 5 + 5].iter().all(|&i| i == first));
        }
        assert_ne!(ids[0], ids[5]);
        assert_ne!(ids[5], ids[10]);
        let few = kmeans(&rows[..2], 5, &mut rng);
        assert_eq!(few.len(), 2);
        assert!(few.iter().all(|&i| i < 2));
        assert!(kmeans(&[], 3, &mut rng).is_empty());
    }
}
