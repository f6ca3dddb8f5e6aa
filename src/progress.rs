//! Throttled progress: how often a long job's updates go out, written once for the worker
//! (events to the window) and the command line (lines on a terminal).
//!
//! Like burn's training renderer, a job reports every step and a [`Throttle`] decides which
//! updates pass: the first always does (something shows at once), the final one always does
//! (the end is never lost), and in between at most one per interval. The intervals are the
//! constants below, one per audience.

use std::time::{Duration, Instant};

/// Updates that cross to the window (feature progress, comparison stages, dream previews): at
/// most about 20 a second, which looks live and never floods the UI's queue.
pub const WINDOW_INTERVAL: Duration = Duration::from_millis(50);

/// Progress lines printed on a terminal: one a second, which a person can still read.
pub const TERMINAL_INTERVAL: Duration = Duration::from_secs(1);

/// Lets an update through at most once per interval; the first and the final always pass.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle that passes at most one update per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// [`WINDOW_INTERVAL`]: for events the window draws.
    pub fn window() -> Self {
        Self::new(WINDOW_INTERVAL)
    }

    /// [`TERMINAL_INTERVAL`]: for lines a person reads.
    pub fn terminal() -> Self {
        Self::new(TERMINAL_INTERVAL)
    }

    /// Whether the update at hand goes out: always when `is_final` or for the first one, else
    /// when an interval has passed since the last that went out (which this then records).
    pub fn ready(&mut self, is_final: bool) -> bool {
        self.ready_at(Instant::now(), is_final)
    }

    /// [`Throttle::ready`] at time `now` (for tests).
    pub fn ready_at(&mut self, now: Instant, is_final: bool) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due || is_final {
            self.last = Some(now);
        }
        due || is_final
    }

    /// Forgets the last update: the next one passes (a new stage of a job begins).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_and_the_final_pass_and_the_rest_once_per_interval() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut throttle = Throttle::new(Duration::from_millis(100));
        assert!(throttle.ready_at(ms(0), false), "the first");
        assert!(!throttle.ready_at(ms(10), false));
        assert!(!throttle.ready_at(ms(99), false));
        assert!(throttle.ready_at(ms(100), false), "an interval later");
        assert!(!throttle.ready_at(ms(150), false));
        assert!(throttle.ready_at(ms(151), true), "the final");
        assert!(
            !throttle.ready_at(ms(200), false),
            "the final counts as sent"
        );
        throttle.reset();
        assert!(throttle.ready_at(ms(201), false), "after a reset");
    }

    #[test]
    fn the_window_gets_about_twenty_updates_a_second() {
        assert_eq!(Throttle::window().interval, Duration::from_millis(50));
        assert!(Throttle::terminal().interval > Throttle::window().interval);
    }
}
