//! A deterministic, stratified train/validation split.
//!
//! Each class is shuffled on its own with a seeded generator that this module defines
//! (SplitMix64, so the split does not change with a dependency's version) and its first
//! `round(n * fraction)` photos go to validation (at least one when the class has two or more
//! and the fraction is above zero), so both parts keep the classes' proportions.

/// Indices into a list of labelled items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// SplitMix64: a tiny, well-mixed, fixed generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator of `seed` (the same seed, the same numbers).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Splits items with classes `labels` (`0..classes`) into train and validation, `val_fraction`
/// of each class to validation. Both lists come out sorted.
pub fn stratified_split(labels: &[usize], val_fraction: f64, seed: u64) -> Split {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut rng = SplitMix64::new(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        let n = members.len();
        let mut take = (n as f64 * val_fraction.clamp(0.0, 1.0)).round() as usize;
        if val_fraction > 0.0 && n >= 2 {
            // Keep one photo on each side.
            take = take.clamp(1, n - 1);
        }
        val.extend_from_slice(&members[..take.min(n)]);
        train.extend_from_slice(&members[take.min(n)..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Split { train, val }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_deterministic_and_disjoint() {
        let labels: Vec<usize> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let a = stratified_split(&labels, 0.25, 7);
        assert_eq!(a, stratified_split(&labels, 0.25, 7));
        assert_ne!(a, stratified_split(&labels, 0.25, 8));
        assert_eq!(a.val.iter().filter(|&&i| labels[i] == 0).count(), 20);
        assert_eq!(a.val.iter().filter(|&&i| labels[i] == 1).count(), 5);
        let mut all = [a.train.clone(), a.val.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Tiny classes keep a photo on each side.
        let s = stratified_split(&[0, 0, 1, 1], 0.1, 1);
        assert_eq!((s.train.len(), s.val.len()), (2, 2));
    }
}
