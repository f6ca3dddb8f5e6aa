//! One description of a head training, shared by every front end: the command line's flags,
//! the worker's `Train` and `Compare` commands and the window's Train tab all fill a
//! [`TrainRequest`], and [`TrainRequest::config`] turns it into the pipeline's
//! [`TrainConfig`]. Plain data with serde, so a front end can keep it between runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::dataset::ScanOptions;
use super::head::{HeadKind, TrainOptions};
use super::pipeline::TrainConfig;

/// A head training's settings: which photos, which head, how it learns, where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainRequest {
    /// The folder of labelled photos (see [`super::dataset`] for the layouts read).
    pub dir: PathBuf,
    /// Oxford-IIIT Pet: two classes, cat and dog, instead of 37 breeds.
    pub cats_vs_dogs: bool,
    /// Share of each class kept for validation, 0 to 1.
    pub val_fraction: f64,
    pub epochs: usize,
    /// AdamW's learning rate.
    pub lr: f64,
    /// AdamW's weight decay.
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Seed of the split, the initial weights and the shuffling.
    pub seed: u64,
    /// A hidden layer of this width (with ReLU and dropout); `None`: a linear head.
    pub mlp_hidden: Option<usize>,
    /// The hidden layer's dropout probability (an MLP head only).
    pub dropout: f32,
    /// Also train on each photo flipped left-right.
    pub flip: bool,
    /// Also train the backbone's last convolutional block, at `lr * fine_tune_lr_factor`.
    pub fine_tune: bool,
    /// The block's learning rate as a fraction of the head's.
    pub fine_tune_lr_factor: f64,
    /// Where the head is saved (its description goes next to it as .json); a comparison
    /// saves nothing.
    pub output: PathBuf,
}

impl TrainRequest {
    /// The MLP head's dropout unless one is chosen (the window's and the command line's).
    pub const DEFAULT_DROPOUT: f32 = 0.5;
    /// The MLP head's hidden width unless one is chosen (the window's).
    pub const DEFAULT_HIDDEN: usize = 256;

    /// The head's architecture.
    pub fn head_kind(&self) -> HeadKind {
        self.mlp_hidden
            .map_or(HeadKind::Linear, |hidden| HeadKind::Mlp {
                hidden,
                dropout: self.dropout,
            })
    }

    /// The pipeline's configuration for this request, caching features in `feature_cache`
    /// (`None`: compute everything, store nothing).
    pub fn config(&self, feature_cache: Option<PathBuf>) -> TrainConfig {
        let mut config = TrainConfig {
            scan: ScanOptions {
                cats_vs_dogs: self.cats_vs_dogs,
            },
            val_fraction: self.val_fraction,
            head: TrainOptions {
                kind: self.head_kind(),
                epochs: self.epochs,
                lr: self.lr,
                weight_decay: self.weight_decay,
                batch_size: self.batch_size,
                seed: self.seed,
            },
            fine_tune: self.fine_tune.then_some(self.fine_tune_lr_factor),
            ..TrainConfig::default()
        };
        config.features.flip = self.flip;
        config.features.cache_dir = feature_cache;
        config
    }
}

impl Default for TrainRequest {
    fn default() -> Self {
        let head = TrainOptions::default();
        Self {
            dir: PathBuf::new(),
            cats_vs_dogs: false,
            val_fraction: TrainConfig::default().val_fraction,
            epochs: head.epochs,
            lr: head.lr,
            weight_decay: head.weight_decay,
            batch_size: head.batch_size,
            seed: head.seed,
            mlp_hidden: None,
            dropout: Self::DEFAULT_DROPOUT,
            flip: false,
            fine_tune: false,
            fine_tune_lr_factor: 0.1,
            output: PathBuf::from("head.safetensors"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_the_pipelines_config() {
        let request = TrainRequest {
            cats_vs_dogs: true,
            val_fraction: 0.3,
            epochs: 4,
            lr: 0.01,
            batch_size: 8,
            seed: 7,
            mlp_hidden: Some(64),
            dropout: 0.25,
            flip: true,
            fine_tune: true,
            fine_tune_lr_factor: 0.5,
            ..TrainRequest::default()
        };
        let config = request.config(None);
        assert!(config.scan.cats_vs_dogs);
        assert_eq!(config.val_fraction, 0.3);
        assert_eq!(
            config.head.kind,
            HeadKind::Mlp {
                hidden: 64,
                dropout: 0.25
            }
        );
        assert_eq!(
            (config.head.epochs, config.head.batch_size, config.head.seed),
            (4, 8, 7)
        );
        assert_eq!(config.fine_tune, Some(0.5));
        assert!(config.features.flip);
        assert_eq!(config.features.cache_dir, None);
        let linear = TrainRequest::default().config(Some("cache".into()));
        assert_eq!(linear.head.kind, HeadKind::Linear);
        assert_eq!(linear.fine_tune, None);
        assert_eq!(linear.features.cache_dir, Some(PathBuf::from("cache")));
    }

    #[test]
    fn a_request_round_trips_through_json_and_missing_fields_take_defaults() {
        let request = TrainRequest {
            dir: "photos".into(),
            mlp_hidden: Some(128),
            ..TrainRequest::default()
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<TrainRequest>(&json).unwrap(),
            request
        );
        let partial: TrainRequest = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
        assert_eq!(
            partial,
            TrainRequest {
                epochs: 3,
                ..TrainRequest::default()
            }
        );
    }
}
