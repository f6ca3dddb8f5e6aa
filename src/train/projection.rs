//! The dataset map: each photo's frozen features projected to 2-D by principal component
//! analysis, scikit-learn's `PCA(n_components=2).fit_transform` (centred, no whitening, the
//! same signs: see [`pca_2d`]); checked against it on a fixture made by
//! `tests/fixtures/make_pca_fixture.py`.
//!
//! The components come from orthogonal (subspace) iteration on `XᵀX` applied as `Xᵀ(Xv)`, so
//! the `d x d` covariance is never formed: memory stays `O(n d)` for 25,000 photos of 1280
//! features. Plain Rust, f64 accumulation.

/// Rows `x` `[n, dim]` (row-major) projected on their two principal components: `[n]` points.
///
/// Signs follow scikit-learn 1.x's `svd_flip(u, v)` with `u_based_decision=False`: each
/// component's loading of largest magnitude is positive. Fewer than two distinct rows give
/// zeros.
pub fn pca_2d(x: &[f32], dim: usize) -> Vec<[f32; 2]> {
    let n = x.len().checked_div(dim).unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    let mut mean = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred: Vec<f64> = x
        .chunks_exact(dim)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
        .collect();
    let components = top_two(&centred, n, dim);
    let project = |row: &[f64], c: &[f64]| row.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
    centred
        .chunks_exact(dim)
        .map(|row| {
            [
                project(row, &components[0]) as f32,
                project(row, &components[1]) as f32,
            ]
        })
        .collect()
}

/// The two leading right singular vectors of `a` `[n, dim]`, sign-fixed.
fn top_two(a: &[f64], n: usize, dim: usize) -> [Vec<f64>; 2] {
    // A fixed, deterministic start that is not orthogonal to the leading directions in
    // practice (a ramp and an alternating ramp).
    let mut v: [Vec<f64>; 2] = [
        (0..dim).map(|i| 1.0 + (i % 7) as f64 * 0.1).collect(),
        (0..dim)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } * (1.0 + (i % 5) as f64 * 0.1))
            .collect(),
    ];
    orthonormalise(&mut v);
    let mut av = vec![0f64; n];
    for _ in 0..MAX_ITERATIONS {
        let previous = v.clone();
        for c in v.iter_mut() {
            // c <- Aᵀ (A c)
            for (row, out) in a.chunks_exact(dim).zip(av.iter_mut()) {
                *out = row.iter().zip(c.iter()).map(|(x, y)| x * y).sum();
            }
            c.iter_mut().for_each(|x| *x = 0.0);
            for (row, &s) in a.chunks_exact(dim).zip(&av) {
                for (x, &r) in c.iter_mut().zip(row) {
                    *x += s * r;
                }
            }
        }
        orthonormalise(&mut v);
        let moved = v
            .iter()
            .zip(&previous)
            .map(|(a, b)| 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>().abs())
            .fold(0f64, f64::max);
        if moved < 1e-15 {
            break;
        }
    }
    // Subspace iteration converges to the span; rotate within it to the eigenvectors (the
    // Rayleigh-Ritz step on the 2x2 projected matrix).
    let av: Vec<Vec<f64>> = v
        .iter()
        .map(|c| {
            a.chunks_exact(dim)
                .map(|row| row.iter().zip(c).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    let dot = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(x, y)| x * y).sum::<f64>();
    let (s00, s01, s11) = (
        dot(&av[0], &av[0]),
        dot(&av[0], &av[1]),
        dot(&av[1], &av[1]),
    );
    let theta = 0.5 * (2.0 * s01).atan2(s00 - s11);
    let (c, s) = (theta.cos(), theta.sin());
    let mut out = [
        v[0].iter()
            .zip(&v[1])
            .map(|(a, b)| c * a + s * b)
            .collect::<Vec<_>>(),
        v[0].iter()
            .zip(&v[1])
            .map(|(a, b)| -s * a + c * b)
            .collect::<Vec<_>>(),
    ];
    for comp in out.iter_mut() {
        let largest = comp
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(0.0);
        if largest < 0.0 {
            comp.iter_mut().for_each(|x| *x = -*x);
        }
    }
    out
}

/// Iterations at most; each costs two passes over the features.
const MAX_ITERATIONS: usize = 500;

/// Gram-Schmidt on two vectors (a zero vector stays zero).
fn orthonormalise(v: &mut [Vec<f64>; 2]) {
    let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let n0 = norm(&v[0]);
    if n0 > 0.0 {
        v[0].iter_mut().for_each(|x| *x /= n0);
    }
    let d: f64 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
    let (first, second) = v.split_at_mut(1);
    for (b, a) in second[0].iter_mut().zip(&first[0]) {
        *b -= d * a;
    }
    let n1 = norm(&v[1]);
    if n1 > 0.0 {
        v[1].iter_mut().for_each(|x| *x /= n1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_scikit_learns_pca() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/pca_sklearn.json"))
                .expect("fixture");
        let dim = fixture["dim"].as_u64().unwrap_or(0) as usize;
        let x: Vec<f32> = fixture["x"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_f64())
            .map(|v| v as f32)
            .collect();
        let want: Vec<[f64; 2]> = fixture["projected"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                [
                    p[0].as_f64().unwrap_or(f64::NAN),
                    p[1].as_f64().unwrap_or(f64::NAN),
                ]
            })
            .collect();
        let got = pca_2d(&x, dim);
        assert_eq!(got.len(), want.len());
        let scale = want
            .iter()
            .flat_map(|p| p.iter())
            .fold(0f64, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(&want) {
            for k in 0..2 {
                let err = (f64::from(g[k]) - w[k]).abs();
                assert!(err <= 1e-4 * scale, "{g:?} vs {w:?}");
            }
        }
    }

    #[test]
    fn degenerate_inputs_give_zeros_or_nothing() {
        assert!(pca_2d(&[], 3).is_empty());
        assert!(pca_2d(&[1.0, 2.0], 0).is_empty());
        let same = pca_2d(&[1.0, 2.0, 1.0, 2.0], 2);
        assert_eq!(same, vec![[0.0, 0.0], [0.0, 0.0]]);
    }
}
