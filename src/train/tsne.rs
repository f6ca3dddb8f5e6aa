//! t-SNE for the dataset map (van der Maaten and Hinton 2008): each photo's neighbourhood in
//! feature space kept in 2-D, where PCA keeps only the two directions of largest spread. The
//! Barnes-Hut t-SNE of the `bhtsne` crate, set up as scikit-learn's `TSNE` is by default:
//! perplexity 30, early exaggeration 12 for 250 epochs, momentum 0.5 then 0.8, learning rate
//! "auto" (`max(n / 48, 50)`), theta 0.5, 1000 epochs, PCA initialisation scaled to a standard
//! deviation of 1e-4 (which also makes a run repeatable). Features wider than 50 are first
//! reduced to 50 principal components ([`super::projection::pca_reduce`]).
//!
//! t-SNE has no single right answer to agree with, so the fixture made by
//! `tests/fixtures/make_tsne_fixture.py` compares quality on the same input: scikit-learn's
//! trustworthiness (which [`trustworthiness`] reproduces to 1e-6). bhtsne's KL estimate is on
//! another scale than scikit-learn's and is not compared.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use bhtsne::tSNE;

use super::projection::{pca_2d, pca_reduce};
use crate::error::{Error, Result};

/// Components the features are reduced to before t-SNE.
pub const INPUT_COMPONENTS: usize = 50;

/// Fewest photos a t-SNE map is made of.
pub const MIN_POINTS: usize = 5;

/// How a t-SNE map is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsneOptions {
    /// The effective number of neighbours each photo keeps; lowered to what the photos allow
    /// (a third of their number).
    pub perplexity: f32,
    pub epochs: usize,
    /// Barnes-Hut accuracy: 0.5 as scikit-learn; smaller is slower and more exact.
    pub theta: f32,
}

impl Default for TsneOptions {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            epochs: 1000,
            theta: 0.5,
        }
    }
}

/// The features a map is made from, reduced: `x` `[n, dim]` row-major, `dim <= 50`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TsneInput {
    pub x: Vec<f32>,
    pub dim: usize,
}

impl TsneInput {
    /// Rows `x` `[n, dim]`, reduced to [`INPUT_COMPONENTS`] principal components when wider.
    pub fn new(x: &[f32], dim: usize) -> Self {
        if dim > INPUT_COMPONENTS {
            let (x, dim) = pca_reduce(x, dim, INPUT_COMPONENTS);
            Self { x, dim }
        } else {
            Self { x: x.to_vec(), dim }
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.x.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a fit is, told after every epoch.
#[derive(Debug)]
pub struct TsneProgress<'a> {
    /// Epochs done (1-based).
    pub epoch: usize,
    pub epochs: usize,
    /// The current map, `[n, 2]` row-major.
    pub points: &'a [f32],
}

/// A finished map.
#[derive(Debug, Clone, PartialEq)]
pub struct Tsne {
    /// One point per input row, in order.
    pub points: Vec<[f32; 2]>,
    /// The (Barnes-Hut estimated) KL divergence between the neighbourhoods in feature space
    /// and on the map: what t-SNE minimises.
    pub kl_divergence: f32,
    /// The perplexity used (the one asked for, or less for few photos).
    pub perplexity: f32,
}

/// The payload of the unwinding that stops a fit early (`bhtsne`'s epoch callback has no way
/// to stop its loop; a silent unwind to [`tsne_2d`] does, dropping the fit's state).
struct Stopped;

/// The t-SNE map of `input`. `watch` hears every epoch and returns false to stop
/// ([`Error::Cancelled`]). Too few photos, non-finite or identical features are refused.
pub fn tsne_2d(
    input: &TsneInput,
    options: &TsneOptions,
    watch: &mut dyn FnMut(&TsneProgress<'_>) -> bool,
) -> Result<Tsne> {
    let (n, dim) = (input.len(), input.dim);
    if n < MIN_POINTS {
        return Err(Error::Invalid(format!(
            "a t-SNE map needs at least {MIN_POINTS} photos with features; there are {n}"
        )));
    }
    if input.x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "a t-SNE map cannot be made: the features hold NaN or infinite values".into(),
        ));
    }
    if !(options.perplexity >= 1.0 && options.theta > 0.0 && options.epochs > 0) {
        return Err(Error::Invalid(format!(
            "t-SNE needs a perplexity of at least 1, theta above 0 and some epochs \
             (got {}, {}, {})",
            options.perplexity, options.theta, options.epochs
        )));
    }
    // bhtsne finds 3 * perplexity neighbours per photo (and panics when there are fewer).
    let perplexity = options.perplexity.min(((n - 1) / 3) as f32).floor();
    let init = pca_2d(&input.x, dim);
    let spread = standard_deviation(init.iter().map(|p| p[0]));
    if spread <= 0.0 {
        return Err(Error::Invalid(
            "a t-SNE map cannot be made: every photo has the same features".into(),
        ));
    }
    let init: Vec<f32> = init
        .iter()
        .flat_map(|p| p.map(|v| (f64::from(v) / spread * 1e-4) as f32))
        .collect();
    let rows: Vec<&[f32]> = input.x.chunks_exact(dim).collect();
    let epochs = options.epochs;
    let fit = catch_unwind(AssertUnwindSafe(|| {
        let mut tsne: tSNE<f32, &[f32]> = tSNE::new(&rows);
        tsne.perplexity(perplexity)
            .epochs(epochs)
            .initial_embedding(init)
            .epoch_callback(|epoch, points| {
                let progress = TsneProgress {
                    epoch: epoch + 1,
                    epochs,
                    points,
                };
                if !watch(&progress) {
                    resume_unwind(Box::new(Stopped));
                }
            });
        tsne.barnes_hut(options.theta, |a: &&[f32], b: &&[f32]| euclidean(a, b));
        (tsne.embedding(), tsne.kl_divergence())
    }));
    match fit {
        Ok((y, kl)) => Ok(Tsne {
            points: y.chunks_exact(2).map(|p| [p[0], p[1]]).collect(),
            kl_divergence: kl.unwrap_or(f32::NAN),
            perplexity,
        }),
        Err(payload) if payload.is::<Stopped>() => Err(Error::Cancelled),
        Err(payload) => {
            let what = crate::error::panic_message(payload.as_ref())
                .unwrap_or_else(|| "unknown error".into());
            Err(Error::Invalid(format!("t-SNE failed: {}", what.trim())))
        }
    }
}

fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

fn standard_deviation(values: impl Iterator<Item = f32> + Clone) -> f64 {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().map(f64::from).sum::<f64>() / n;
    (values.map(|v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// How well `map` keeps the `k` nearest neighbours of the rows `x` `[n, dim]`: 1 when each
/// photo's `k` nearest on the map are among its nearest in feature space, lower as strangers
/// intrude (Venna and Kaski 2001; scikit-learn's `manifold.trustworthiness`, Euclidean).
/// Exact, `O(n² dim)`: for a few thousand photos.
pub fn trustworthiness(x: &[f32], dim: usize, map: &[[f32; 2]], k: usize) -> f64 {
    let n = map.len();
    if dim == 0 || x.len() != n * dim || k == 0 || 2 * n < 3 * k + 2 {
        return f64::NAN;
    }
    let mut rank = vec![0usize; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut distance = vec![0f64; n];
    let mut penalty = 0f64;
    for i in 0..n {
        let row = &x[i * dim..(i + 1) * dim];
        for (j, d) in distance.iter_mut().enumerate() {
            let other = &x[j * dim..(j + 1) * dim];
            *d = row
                .iter()
                .zip(other)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum();
        }
        order.clear();
        order.extend((0..n).filter(|&j| j != i));
        order.sort_by(|&a, &b| distance[a].total_cmp(&distance[b]));
        for (r, &j) in order.iter().enumerate() {
            rank[j] = r + 1;
        }
        let on_map = |j: usize| {
            let (p, q) = (map[i], map[j]);
            f64::from(p[0] - q[0]).powi(2) + f64::from(p[1] - q[1]).powi(2)
        };
        order.sort_by(|&a, &b| on_map(a).total_cmp(&on_map(b)));
        penalty += order
            .iter()
            .take(k)
            .map(|&j| rank[j].saturating_sub(k) as f64)
            .sum::<f64>();
    }
    let (n, k) = (n as f64, k as f64);
    1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
}

#[cfg(test)]
mod tests;
