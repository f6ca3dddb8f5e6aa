//! The user's choices that survive a restart (model, device, how the explorer looks), stored
//! by eframe's persistence. Runtime state (textures, the worker, jobs) never goes in here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The order channels are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChannelOrder {
    /// Channel 0, 1, 2, ...
    #[default]
    Index,
    /// Highest mean activation first.
    MeanActivation,
}

impl ChannelOrder {
    pub const ALL: [Self; 2] = [Self::Index, Self::MeanActivation];

    pub fn label(self) -> &'static str {
        match self {
            Self::Index => "Channel number",
            Self::MeanActivation => "Mean activation (highest first)",
        }
    }
}

/// Persisted settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The model last chosen (a catalogue name).
    pub model: Option<String>,
    /// The device last chosen: "auto", "cpu", "cuda" or "metal".
    pub device: String,
    pub channel_order: ChannelOrder,
    /// Side of a channel tile in the grid, in points.
    pub tile_size: f32,
    /// Opacity of a channel drawn over the photo, 0 to 1.
    pub overlay_opacity: f32,
    /// Where the last photo was opened from, for the next "Open…".
    pub last_folder: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            device: "auto".into(),
            channel_order: ChannelOrder::Index,
            tile_size: 72.0,
            overlay_opacity: 0.6,
            last_folder: None,
        }
    }
}

impl Settings {
    /// Keeps values read from an older or hand-edited file within range.
    pub fn sanitised(mut self) -> Self {
        if !self.tile_size.is_finite() {
            self.tile_size = Self::default().tile_size;
        }
        self.tile_size = self.tile_size.clamp(24.0, 256.0);
        if !self.overlay_opacity.is_finite() {
            self.overlay_opacity = Self::default().overlay_opacity;
        }
        self.overlay_opacity = self.overlay_opacity.clamp(0.0, 1.0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_missing_fields_take_defaults() {
        let s = Settings {
            model: Some("vgg16".into()),
            device: "cpu".into(),
            channel_order: ChannelOrder::MeanActivation,
            ..Settings::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
        let partial: Settings = serde_json::from_str(r#"{"device":"cuda"}"#).unwrap();
        assert_eq!(partial.device, "cuda");
        assert_eq!(partial.tile_size, Settings::default().tile_size);
        let wild = Settings {
            tile_size: f32::NAN,
            overlay_opacity: 7.0,
            ..Settings::default()
        }
        .sanitised();
        assert_eq!(wild.tile_size, 72.0);
        assert_eq!(wild.overlay_opacity, 1.0);
    }
}
