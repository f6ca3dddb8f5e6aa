//! Per-class precision, recall and F1 from a confusion matrix, as scikit-learn's
//! `precision_recall_fscore_support(average=None, zero_division=0)` defines them: a class
//! never predicted has precision 0, a class absent from the truth recall 0, and F1 is 0 where
//! precision and recall are both 0.

use serde::Serialize;

/// Each class's scores, in class order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PerClass {
    pub precision: Vec<f32>,
    pub recall: Vec<f32>,
    pub f1: Vec<f32>,
    /// True photos of each class (a row's sum).
    pub support: Vec<usize>,
}

/// The scores of `confusion` `[true][predicted]` (`k x k`; a shorter row counts as zeros).
pub fn per_class(confusion: &[Vec<usize>]) -> PerClass {
    let k = confusion.len();
    let cell = |t: usize, p: usize| confusion[t].get(p).copied().unwrap_or(0);
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut out = PerClass::default();
    for (c, row) in confusion.iter().enumerate() {
        let right = cell(c, c);
        let support: usize = row.iter().take(k).sum();
        let predicted: usize = (0..k).map(|t| cell(t, c)).sum();
        let (p, r) = (ratio(right, predicted), ratio(right, support));
        let f1 = if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
        out.precision.push(p as f32);
        out.recall.push(r as f32);
        out.f1.push(f1 as f32);
        out.support.push(support);
    }
    out
}

/// One off-diagonal cell: `count` photos of class `truth` predicted as `predicted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confused {
    pub truth: usize,
    pub predicted: usize,
    pub count: usize,
}

/// The `n` largest off-diagonal cells of `confusion`, largest first (ties: by true, then
/// predicted class), empty cells left out: fastai's `most_confused`.
pub fn most_confused(confusion: &[Vec<usize>], n: usize) -> Vec<Confused> {
    let mut cells: Vec<Confused> = confusion
        .iter()
        .enumerate()
        .flat_map(|(truth, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(predicted, &count)| predicted != truth && count > 0)
                .map(move |(predicted, &count)| Confused {
                    truth,
                    predicted,
                    count,
                })
        })
        .collect();
    cells.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.truth.cmp(&b.truth))
            .then(a.predicted.cmp(&b.predicted))
    });
    cells.truncate(n);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_confused_pairs_are_the_largest_off_diagonal_cells() {
        let m = [vec![9, 2, 0], vec![5, 1, 2], vec![0, 2, 7]];
        let pairs: Vec<(usize, usize, usize)> = most_confused(&m, 3)
            .iter()
            .map(|c| (c.truth, c.predicted, c.count))
            .collect();
        assert_eq!(pairs, [(1, 0, 5), (0, 1, 2), (1, 2, 2)]);
        assert_eq!(most_confused(&m, 10).len(), 4);
        assert!(most_confused(&[vec![3]], 5).is_empty());
    }

    #[test]
    fn a_class_never_predicted_or_never_present_scores_zero() {
        // Class 2 never predicted, class 1 never true.
        let m = per_class(&[vec![3, 1, 0], vec![0, 0, 0], vec![1, 1, 0]]);
        assert_eq!(m.precision, vec![0.75, 0.0, 0.0]);
        assert_eq!(m.recall, vec![0.75, 0.0, 0.0]);
        assert_eq!(m.f1, vec![0.75, 0.0, 0.0]);
        assert_eq!(m.support, vec![4, 0, 2]);
        assert_eq!(per_class(&[]), PerClass::default());
    }

    /// scikit-learn's scores of a fixed prediction set (tests/fixtures/make_metrics_fixture.py).
    #[test]
    fn scores_agree_with_scikit_learns() {
        #[derive(serde::Deserialize)]
        struct Fixture {
            confusion: Vec<Vec<usize>>,
            precision: Vec<f64>,
            recall: Vec<f64>,
            f1: Vec<f64>,
            support: Vec<usize>,
        }
        let f: Fixture =
            serde_json::from_str(include_str!("../../tests/fixtures/metrics_sklearn.json"))
                .unwrap();
        let m = per_class(&f.confusion);
        assert_eq!(m.support, f.support);
        for (ours, theirs, what) in [
            (&m.precision, &f.precision, "precision"),
            (&m.recall, &f.recall, "recall"),
            (&m.f1, &f.f1, "f1"),
        ] {
            assert_eq!(ours.len(), 37);
            for (c, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
                assert!(
                    (f64::from(a) - b).abs() <= 1e-6,
                    "{what} of class {c}: {a} against scikit-learn's {b}"
                );
            }
        }
    }
}
