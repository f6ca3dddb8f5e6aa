//! The user's choices that survive a restart, in one `#[serde(default)]` struct stored by
//! eframe's persistence: the model and device, and each tab's settings (Explore, Dream,
//! Attack, Train). Runtime state (textures, the worker, jobs) never goes in here. A field
//! missing from an older file takes its default.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use super::dream::DreamSettings;
pub use super::explore::{ChannelOrder, ExploreSettings};
pub use super::train::TrainSettings;
pub use crate::worker::{AttackSettings, DeviceChoice};

/// Persisted settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The model last chosen (a catalogue name).
    pub model: Option<String>,
    /// The device last chosen; stored as its name ("auto", "cpu", "cuda", "metal").
    #[serde(with = "device_name")]
    pub device: DeviceChoice,
    /// Where the last photo was opened from, for the next "Open…".
    pub last_folder: Option<PathBuf>,
    pub explore: ExploreSettings,
    pub dream: DreamSettings,
    pub attack: AttackSettings,
    pub train: TrainSettings,
    /// Explore's settings where versions before the tabs' own settings kept them (at the
    /// top level); read from such a file, moved into `explore`, never written.
    #[serde(skip_serializing, deserialize_with = "some")]
    channel_order: Option<ChannelOrder>,
    #[serde(skip_serializing, deserialize_with = "some")]
    tile_size: Option<f32>,
    #[serde(skip_serializing, deserialize_with = "some")]
    overlay_opacity: Option<f32>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            device: DeviceChoice::Auto,
            last_folder: None,
            explore: ExploreSettings::default(),
            dream: DreamSettings::default(),
            attack: super::attack::default_settings(),
            train: TrainSettings::default(),
            channel_order: None,
            tile_size: None,
            overlay_opacity: None,
        }
    }
}

impl Settings {
    /// Moves settings read from an older file into place and keeps values read from a
    /// hand-edited one within range.
    pub fn sanitised(mut self) -> Self {
        if let Some(order) = self.channel_order.take() {
            self.explore.channel_order = order;
        }
        if let Some(tile) = self.tile_size.take() {
            self.explore.tile_size = tile;
        }
        if let Some(opacity) = self.overlay_opacity.take() {
            self.explore.overlay_opacity = opacity;
        }
        self.explore = self.explore.sanitised();
        self.dream = self.dream.sanitised();
        self.attack = super::attack::sanitised(self.attack);
        self.train = self.train.sanitised();
        self
    }
}

/// A value that is present is `Some` (RON writes `Option`s as `Some(..)`, older files did not).
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The device as the name earlier versions stored (and the command line takes); a name this
/// build does not know reads as `auto`.
mod device_name {
    use super::*;

    pub fn serialize<S: Serializer>(device: &DeviceChoice, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(device)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceChoice, D::Error> {
        let name = String::deserialize(d)?;
        Ok(name.parse().unwrap_or_else(|e: String| {
            tracing::warn!("saved device: {e}; using auto");
            DeviceChoice::Auto
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_missing_fields_take_defaults() {
        let s = Settings {
            model: Some("vgg16".into()),
            device: DeviceChoice::Cpu,
            explore: ExploreSettings {
                channel_order: ChannelOrder::MeanActivation,
                ..ExploreSettings::default()
            },
            ..Settings::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
        let partial: Settings = serde_json::from_str(r#"{"device":"cuda"}"#).unwrap();
        assert_eq!(partial.device, DeviceChoice::Cuda);
        assert_eq!(
            partial.explore.tile_size,
            ExploreSettings::default().tile_size
        );
        let wild = Settings {
            explore: ExploreSettings {
                tile_size: f32::NAN,
                overlay_opacity: 7.0,
                ..ExploreSettings::default()
            },
            ..Settings::default()
        }
        .sanitised();
        assert_eq!(wild.explore.tile_size, 72.0);
        assert_eq!(wild.explore.overlay_opacity, 1.0);
    }

    /// eframe's storage, in memory (it writes and reads values as RON).
    #[derive(Default)]
    struct Memory(std::collections::HashMap<String, String>);

    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_string(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    fn read(text: &str) -> Settings {
        let mut storage = Memory::default();
        eframe::Storage::set_string(&mut storage, eframe::APP_KEY, text.to_string());
        eframe::get_value::<Settings>(&storage, eframe::APP_KEY)
            .expect("the settings load")
            .sanitised()
    }

    #[test]
    fn settings_saved_by_earlier_versions_still_load() {
        // The whole file as the window saved it before the tabs had settings of their own.
        let old = r#"(model: Some("vgg16"), device: "gpu", channel_order: MeanActivation,
            tile_size: 300.0, overlay_opacity: 0.25, last_folder: None)"#;
        let s = read(old);
        assert_eq!(s.model.as_deref(), Some("vgg16"));
        assert_eq!(s.device, DeviceChoice::Cuda);
        assert_eq!(s.explore.channel_order, ChannelOrder::MeanActivation);
        assert_eq!(s.explore.tile_size, 256.0, "kept within range");
        assert_eq!(s.explore.overlay_opacity, 0.25);
        assert_eq!(s.dream, DreamSettings::default());
        assert_eq!(read(r#"(device: "tpu")"#).device, DeviceChoice::Auto);
        // What is saved now reads back the same.
        let mut storage = Memory::default();
        eframe::set_value(&mut storage, eframe::APP_KEY, &s);
        let saved = eframe::Storage::get_string(&storage, eframe::APP_KEY).unwrap();
        assert_eq!(read(&saved), s);
    }
}
