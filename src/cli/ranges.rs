//! The numeric options' allowed ranges, checked as the flags are parsed: NaN, infinities and
//! out-of-range values are refused with a message that says the range.

use std::fmt::Display;
use std::str::FromStr;

/// `s` as a number within `lo..=hi` (NaN never is).
fn within<T: FromStr + PartialOrd + Display>(s: &str, lo: T, hi: T) -> Result<T, String> {
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(format!("{s} is outside the allowed range {lo} to {hi}"))
    }
}

/// A learning rate or a factor of one: more than 0, at most 10.
pub fn rate(s: &str) -> Result<f64, String> {
    within(s, f64::MIN_POSITIVE, 10.0).map_err(|e| format!("{e} (more than 0)"))
}

/// A memory bound in MB: 1 to 1,000,000.
pub fn megabytes(s: &str) -> Result<f64, String> {
    within(s, 1.0, 1e6)
}

/// Weight decay: 0 to 1.
pub fn decay(s: &str) -> Result<f64, String> {
    within(s, 0.0, 1.0)
}

/// The validation share: 0.01 to 0.9.
pub fn share(s: &str) -> Result<f64, String> {
    within(s, 0.01, 0.9)
}

/// A count of epochs, steps or photos per batch: 1 to 100,000.
pub fn count(s: &str) -> Result<usize, String> {
    within(s, 1, 100_000)
}

/// An MLP head's hidden units: 1 to 65,536.
pub fn hidden_units(s: &str) -> Result<usize, String> {
    within(s, 1, 65_536)
}

/// How many classes to list: 1 to 1000.
pub fn top(s: &str) -> Result<usize, String> {
    within(s, 1, 1000)
}

/// A perturbation bound or step in 8-bit units: more than 0, at most 255.
pub fn pixel_units(s: &str) -> Result<f32, String> {
    within(s, f32::MIN_POSITIVE, 255.0).map_err(|e| format!("{e} (more than 0)"))
}

/// A probability to reach: more than 0, at most 1.
pub fn probability(s: &str) -> Result<f32, String> {
    within(s, 0.0, 1.0).and_then(|v| {
        if v > 0.0 {
            Ok(v)
        } else {
            Err(format!(
                "{s} is outside the allowed range 0 to 1 (more than 0)"
            ))
        }
    })
}

/// A diversity weight: 0 to 100,000.
pub fn diversity_weight(s: &str) -> Result<f32, String> {
    within(s, 0.0, 100_000.0)
}

/// A dream's side in pixels: 32 to 512.
pub fn dream_size(s: &str) -> Result<u32, String> {
    within(s, 32, 512)
}

/// Dreams made together in one batch: 1 to 8.
pub fn dream_batch(s: &str) -> Result<usize, String> {
    within(s, 1, crate::explain::dream::MAX_BATCH)
}

/// A total-variation weight: 0 to 10.
pub fn tv_weight(s: &str) -> Result<f32, String> {
    within(s, 0.0, 10.0)
}

/// DeepDream octaves: 1 to 10.
pub fn octaves(s: &str) -> Result<usize, String> {
    use crate::explain::deepdream::OCTAVES;
    within(s, *OCTAVES.start(), *OCTAVES.end())
}

/// The size ratio of one DeepDream octave to the next: 1 to 2.
pub fn octave_scale(s: &str) -> Result<f64, String> {
    use crate::explain::deepdream::OCTAVE_SCALE;
    within(s, *OCTAVE_SCALE.start(), *OCTAVE_SCALE.end())
}

/// DeepDream steps per octave: 1 to 10,000.
pub fn steps_per_octave(s: &str) -> Result<usize, String> {
    use crate::explain::deepdream::STEPS;
    within(s, *STEPS.start(), *STEPS.end())
}

/// A random shift in pixels: 0 to 256.
pub fn jitter(s: &str) -> Result<u32, String> {
    within(s, 0, crate::explain::deepdream::MAX_JITTER)
}

/// A working size's longest side in pixels: 32 to 2048.
pub fn max_side(s: &str) -> Result<u32, String> {
    use crate::explain::deepdream::MAX_SIDE;
    within(s, *MAX_SIDE.start(), *MAX_SIDE.end())
}

/// An opacity: 0 to 1.
pub fn opacity(s: &str) -> Result<f32, String> {
    within(s, 0.0, 1.0)
}

/// Deletion and insertion steps: 0 (skip them) to 1,024.
pub fn causal_steps(s: &str) -> Result<usize, String> {
    within(s, 0, 1024)
}

/// An attribution method by its name (`grad-cam`, `saliency`, ...).
pub fn method(s: &str) -> Result<crate::explain::attribution::Method, String> {
    use crate::explain::attribution::Method;
    Method::from_name(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        format!("unknown method '{s}' (one of {})", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_infinity_and_out_of_range_values_are_refused_with_the_range() {
        assert_eq!(rate("0.001"), Ok(0.001));
        for bad in ["NaN", "inf", "0", "-1", "x"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert!(share("2").unwrap_err().contains("0.01 to 0.9"));
        assert!(share("-1").is_err());
        assert!(pixel_units("-1").is_err());
        assert!(top("0").is_err());
        assert!(hidden_units("100000000").unwrap_err().contains("65536"));
        assert_eq!(tv_weight("0"), Ok(0.0));
        assert_eq!(dream_size("96"), Ok(96));
        assert!(dream_size("16").unwrap_err().contains("32 to 512"));
        assert!(dream_batch("9").is_err() && dream_batch("0").is_err());
        assert_eq!(probability("1"), Ok(1.0));
        assert_eq!(probability("0.865"), Ok(0.865));
        for bad in ["0", "-0.1", "1.01", "NaN", "inf"] {
            let err = probability(bad).unwrap_err();
            assert!(
                err.contains("0 to 1") || err.contains("not a number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn deepdream_ranges_are_the_librarys() {
        assert_eq!(octaves("4"), Ok(4));
        assert!(octaves("0").unwrap_err().contains("1 to 10"));
        assert_eq!(octave_scale("1.4"), Ok(1.4));
        for bad in ["0.9", "2.5", "NaN", "inf"] {
            assert!(octave_scale(bad).is_err(), "{bad}");
        }
        assert!(steps_per_octave("0").is_err() && steps_per_octave("10001").is_err());
        assert_eq!(jitter("0"), Ok(0));
        assert!(jitter("257").is_err());
        assert!(max_side("31").unwrap_err().contains("32 to 2048"));
    }
}
