//! The dataset map: each photo's frozen features projected to 2-D by principal component
//! analysis, scikit-learn's `PCA(n_components=2).fit_transform` (centred, no whitening, the
//! same signs: see [`pca_2d`]); checked against it on a fixture made by
//! `tests/fixtures/make_pca_fixture.py`.
//!
//! The components come from orthogonal (subspace) iteration on `XᵀX` applied as `Xᵀ(Xv)`, so
//! the `d x d` covariance is never formed: memory stays `O(n d)` for 25,000 photos of 1280
//! features. Plain Rust, f64 accumulation. [`pca_reduce`] keeps about 50 components instead,
//! approximately, as the input of t-SNE ([`super::tsne`]).

use super::split::SplitMix64;

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

/// Rows `x` `[n, dim]` reduced to (about) their `k` leading principal components: `[n, k']`
/// row-major with `k' = min(k, dim, n)`, centred. The input of [`super::tsne`], as
/// scikit-learn's manual advises for t-SNE on many features (and what keeps its neighbour
/// search fast at 1280 features).
///
/// A randomised range finder (Halko, Martinsson and Tropp 2011, as scikit-learn's
/// `randomized_svd`: `k + 10` columns, a fixed seed, four power iterations), then the exact
/// SVD of the small projected matrix. Components beyond the first few are approximate, which
/// t-SNE does not mind; signs are arbitrary. The mean is subtracted on the fly, so the only
/// copies are `[n, k + 10]`.
pub fn pca_reduce(x: &[f32], dim: usize, k: usize) -> (Vec<f32>, usize) {
    let n = x.len().checked_div(dim).unwrap_or(0);
    let l = (k + 10).min(dim).min(n);
    let k = k.min(l);
    if n == 0 || k == 0 {
        return (Vec::new(), 0);
    }
    let rows = || x.chunks_exact(dim);
    let mut mean = vec![0f64; dim];
    for row in rows() {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    // (X - 1 mean) z for each of the columns `z` [dim]: `[n]` each.
    let times = |z: &[Vec<f64>]| -> Vec<Vec<f64>> {
        let shift: Vec<f64> = z.iter().map(|c| dot(c, &mean)).collect();
        let mut out = vec![vec![0f64; n]; z.len()];
        for (i, row) in rows().enumerate() {
            for ((o, c), s) in out.iter_mut().zip(z).zip(&shift) {
                o[i] = row
                    .iter()
                    .zip(c)
                    .map(|(&a, b)| f64::from(a) * b)
                    .sum::<f64>()
                    - s;
            }
        }
        out
    };
    // (X - 1 mean)ᵀ y for each of the columns `y` [n]: `[dim]` each.
    let transposed_times = |y: &[Vec<f64>]| -> Vec<Vec<f64>> {
        let mut out = vec![vec![0f64; dim]; y.len()];
        for (i, row) in rows().enumerate() {
            for (o, c) in out.iter_mut().zip(y) {
                let s = c[i];
                for (a, &v) in o.iter_mut().zip(row) {
                    *a += s * f64::from(v);
                }
            }
        }
        for (o, c) in out.iter_mut().zip(y) {
            let total: f64 = c.iter().sum();
            for (a, m) in o.iter_mut().zip(&mean) {
                *a -= total * m;
            }
        }
        out
    };
    let mut seed = SplitMix64::new(0x9e37_79b9_7f4a_7c15);
    let omega: Vec<Vec<f64>> = (0..l)
        .map(|_| (0..dim).map(|_| uniform(&mut seed)).collect())
        .collect();
    let mut y = times(&omega);
    gram_schmidt(&mut y);
    for _ in 0..POWER_ITERATIONS {
        let mut z = transposed_times(&y);
        gram_schmidt(&mut z);
        y = times(&z);
        gram_schmidt(&mut y);
    }
    // B = Yᵀ (X - 1 mean), `[l, dim]`, and its Gram matrix B Bᵀ = W S² Wᵀ: the projection on
    // the leading right singular vectors is then Y W S.
    let b = transposed_times(&y);
    let gram: Vec<Vec<f64>> = b
        .iter()
        .map(|p| b.iter().map(|q| dot(p, q)).collect())
        .collect();
    let (values, vectors) = symmetric_eigen(gram);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut out = vec![0f32; n * k];
    for (j, &e) in order.iter().take(k).enumerate() {
        let sigma = values[e].max(0.0).sqrt();
        for i in 0..n {
            let v: f64 = (0..l).map(|m| y[m][i] * vectors[m][e]).sum();
            out[i * k + j] = (v * sigma) as f32;
        }
    }
    (out, k)
}

/// Power iterations of [`pca_reduce`]: enough for the leading components of image features,
/// whose spectrum decays slowly (scikit-learn uses 4 or 7).
const POWER_ITERATIONS: usize = 4;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A deterministic uniform number in [-1, 1).
fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Orthonormalises the vectors in order (modified Gram-Schmidt, twice for accuracy); a vector
/// in the span of those before it becomes zero.
fn gram_schmidt(v: &mut [Vec<f64>]) {
    for i in 0..v.len() {
        let (done, rest) = v.split_at_mut(i);
        let c = &mut rest[0];
        for _ in 0..2 {
            for d in done.iter() {
                let p = dot(c, d);
                c.iter_mut().zip(d).for_each(|(a, b)| *a -= p * b);
            }
        }
        let norm = dot(c, c).sqrt();
        if norm > 1e-12 {
            c.iter_mut().for_each(|a| *a /= norm);
        } else {
            c.iter_mut().for_each(|a| *a = 0.0);
        }
    }
}

/// Eigenvalues and eigenvectors (`vectors[row][e]` is component `row` of vector `e`) of a
/// small symmetric matrix, by cyclic Jacobi rotations.
fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let l = a.len();
    let mut v: Vec<Vec<f64>> = (0..l)
        .map(|i| (0..l).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for _ in 0..100 {
        let off: f64 = (0..l)
            .flat_map(|i| (0..l).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let scale: f64 = (0..l).map(|i| a[i][i] * a[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-26 * scale {
            break;
        }
        for p in 0..l {
            for q in p + 1..l {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (top, bottom) = a.split_at_mut(q);
                for (apk, aqk) in top[p].iter_mut().zip(bottom[0].iter_mut()) {
                    let (x, y) = (*apk, *aqk);
                    *apk = c * x - s * y;
                    *aqk = s * x + c * y;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..l).map(|i| a[i][i]).collect(), v)
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

    #[test]
    fn reduction_keeps_the_leading_components() {
        // 300 points in 40-D whose variance lies in 3 directions (scales 9, 4, 2) plus small
        // noise: the reduction to 3 keeps nearly all the variance, and its first two columns
        // match the exact PCA up to sign.
        let (n, dim) = (300, 40);
        let mut seed = SplitMix64::new(7);
        let dirs: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..dim).map(|_| uniform(&mut seed)).collect())
            .collect();
        let mut x = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c: Vec<f64> = [9.0, 4.0, 2.0]
                .iter()
                .map(|s| s * uniform(&mut seed))
                .collect();
            for j in 0..dim {
                let v: f64 = c.iter().zip(&dirs).map(|(c, d)| c * d[j]).sum::<f64>()
                    + 0.01 * uniform(&mut seed)
                    + 5.0;
                x.push(v as f32);
            }
        }
        let (reduced, k) = pca_reduce(&x, dim, 3);
        assert_eq!((k, reduced.len()), (3, n * 3));
        let exact = pca_2d(&x, dim);
        for j in 0..2 {
            let agree: f32 = (0..n).map(|i| reduced[i * 3 + j] * exact[i][j]).sum();
            let sign = agree.signum();
            let scale = exact.iter().fold(0f32, |m, p| m.max(p[j].abs()));
            for (i, e) in exact.iter().enumerate() {
                let err = (sign * reduced[i * 3 + j] - e[j]).abs();
                assert!(err <= 1e-3 * scale, "component {j}, row {i}: {err}");
            }
        }
        // Fewer columns than asked when the data has fewer.
        assert_eq!(pca_reduce(&x[..4 * dim], dim, 50).1, 4);
        assert_eq!(pca_reduce(&[], 3, 50), (Vec::new(), 0));
    }

    #[test]
    fn jacobi_diagonalises() {
        let a = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 1.0],
        ];
        let (values, v) = symmetric_eigen(a.clone());
        for e in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i][j] * v[j][e]).sum();
                assert!((av - values[e] * v[i][e]).abs() < 1e-12);
            }
        }
    }
}
