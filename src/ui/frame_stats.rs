//! How long the UI thread spends on each frame, kept apart for frames drawn while a model job
//! runs: the number that says whether the window stays smooth (under 16 ms) during a forward
//! pass.

/// Frame times in milliseconds.
#[derive(Debug, Default, Clone)]
pub struct FrameStats {
    /// The last frame's time.
    pub last_ms: Option<f32>,
    /// Frames drawn while a job was in flight (at most [`Self::KEEP`] kept).
    pub busy_ms: Vec<f32>,
}

impl FrameStats {
    const KEEP: usize = 100_000;

    /// Records the previous frame's time (`cpu_seconds` from eframe, `None` on the first).
    pub fn record(&mut self, cpu_seconds: Option<f32>, busy: bool) {
        let Some(seconds) = cpu_seconds else { return };
        let ms = seconds * 1e3;
        self.last_ms = Some(ms);
        if busy && self.busy_ms.len() < Self::KEEP {
            self.busy_ms.push(ms);
        }
    }

    /// "312 frames while the model ran: median 1.2 ms, max 6.3 ms" (None before any).
    pub fn busy_summary(&self) -> Option<String> {
        if self.busy_ms.is_empty() {
            return None;
        }
        let mut sorted = self.busy_ms.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        let max = sorted[sorted.len() - 1];
        Some(format!(
            "{} frames while the model ran: median {median:.1} ms, p99 {p99:.1} ms, \
             max {max:.1} ms",
            sorted.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_frames_are_summarised_apart() {
        let mut s = FrameStats::default();
        s.record(None, true);
        assert!(s.busy_summary().is_none());
        s.record(Some(0.002), false);
        for ms in [1.0f32, 3.0, 2.0] {
            s.record(Some(ms / 1e3), true);
        }
        assert_eq!(s.busy_ms.len(), 3);
        let text = s.busy_summary().unwrap();
        assert!(text.starts_with("3 frames"), "{text}");
        assert!(
            text.contains("median 2.0 ms") && text.contains("max 3.0 ms"),
            "{text}"
        );
    }
}
