//! Error analysis of a trained head on its validation photos (fastai's
//! `ClassificationInterpretation`): every photo's prediction with its probabilities, the
//! photos behind one confusion-matrix cell, and the photos sorted by loss ("top losses").
//!
//! Plain data: the window gets these as they are and filters them itself.

use std::path::PathBuf;

use serde::Serialize;

/// One validation photo as the trained head sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValPrediction {
    pub path: PathBuf,
    /// Its class (index into the head's classes).
    pub truth: usize,
    /// The head's most likely class.
    pub predicted: usize,
    /// The head's probabilities, `[classes]`, in class order.
    pub probabilities: Vec<f32>,
}

impl ValPrediction {
    /// The head's probability of class `class` (0 when out of range).
    pub fn probability(&self, class: usize) -> f32 {
        self.probabilities.get(class).copied().unwrap_or(0.0)
    }

    /// Cross-entropy of the true class, `-ln p(truth)`: the loss fastai's `top_losses` sorts
    /// by. Probabilities are clamped at 1e-12 so that a certain mistake is large, not infinite.
    pub fn loss(&self) -> f32 {
        -self.probability(self.truth).max(1e-12).ln()
    }

    /// Whether the head got it wrong.
    pub fn is_mistake(&self) -> bool {
        self.truth != self.predicted
    }
}

/// Indices (into `predictions`) of the photos of class `truth` predicted as `predicted`: the
/// photos behind the confusion matrix's cell `[truth][predicted]`, highest loss first.
pub fn cell(predictions: &[ValPrediction], truth: usize, predicted: usize) -> Vec<usize> {
    let members: Vec<usize> = (0..predictions.len())
        .filter(|&i| predictions[i].truth == truth && predictions[i].predicted == predicted)
        .collect();
    by_loss(predictions, members)
}

/// Indices of the `n` misclassified photos with the highest loss, highest first (ties keep
/// the photos' order).
pub fn top_losses(predictions: &[ValPrediction], n: usize) -> Vec<usize> {
    let mistakes: Vec<usize> = (0..predictions.len())
        .filter(|&i| predictions[i].is_mistake())
        .collect();
    let mut sorted = by_loss(predictions, mistakes);
    sorted.truncate(n);
    sorted
}

/// `indices` sorted by their photo's loss, highest first, stable.
fn by_loss(predictions: &[ValPrediction], mut indices: Vec<usize>) -> Vec<usize> {
    indices.sort_by(|&a, &b| predictions[b].loss().total_cmp(&predictions[a].loss()));
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(name: &str, truth: usize, probabilities: &[f32]) -> ValPrediction {
        let predicted = (0..probabilities.len())
            .max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]))
            .unwrap_or(0);
        ValPrediction {
            path: PathBuf::from(name),
            truth,
            predicted,
            probabilities: probabilities.to_vec(),
        }
    }

    fn fixture() -> Vec<ValPrediction> {
        vec![
            photo("a", 0, &[0.9, 0.1, 0.0]),
            photo("b", 0, &[0.3, 0.7, 0.0]),
            photo("c", 0, &[0.05, 0.95, 0.0]),
            photo("d", 1, &[0.2, 0.8, 0.0]),
            photo("e", 2, &[0.6, 0.0, 0.4]),
            photo("f", 0, &[0.6, 0.4, 0.0]),
        ]
    }

    #[test]
    fn a_cell_lists_exactly_its_photos_worst_first() {
        let p = fixture();
        assert_eq!(cell(&p, 0, 1), vec![2, 1]);
        assert_eq!(cell(&p, 0, 0), vec![5, 0]);
        assert_eq!(cell(&p, 2, 0), vec![4]);
        assert!(cell(&p, 1, 0).is_empty());
        // Every photo is in exactly one cell.
        let total: usize = (0..3)
            .flat_map(|t| (0..3).map(move |q| (t, q)))
            .map(|(t, q)| cell(&p, t, q).len())
            .sum();
        assert_eq!(total, p.len());
    }

    #[test]
    fn top_losses_are_the_mistakes_by_falling_loss() {
        let p = fixture();
        assert_eq!(top_losses(&p, 10), vec![2, 1, 4]);
        assert_eq!(top_losses(&p, 1), vec![2]);
        assert!((p[2].loss() - 0.05f32.ln().abs()).abs() < 1e-6);
    }

    #[test]
    fn a_certain_mistake_has_a_large_finite_loss() {
        let p = photo("x", 2, &[1.0, 0.0, 0.0]);
        assert!(p.loss().is_finite() && p.loss() > 27.0);
        assert_eq!(p.probability(7), 0.0);
    }
}
