//! cnn-explorer: see inside a pretrained convolutional network (VGG-16/19, ResNet-18/50,
//! MobileNetV3-Large, EfficientNet-Lite0/1/2), and use it for transfer learning.
//!
//! The ML side (`model`, `weights`, `vision`, `explain`, `inference`, `worker`) runs on Candle
//! and never touches the UI; `ui` never touches Candle and talks to the models only through the
//! worker's plain-data protocol. The `cli` module is a thin layer over the same
//! library functions the window uses; both follow long jobs through `train::TrainObserver`
//! and throttle what they show with `progress::Throttle`.

pub mod bench;
pub mod cli;
pub mod device;
pub mod error;
pub mod explain;
pub mod export;
pub mod inference;
pub mod input;
pub mod kernels;
pub mod labels;
pub mod model;
pub mod output;
pub mod places;
pub mod progress;
pub mod train;
pub mod ui;
pub mod vision;
pub mod weights;
pub mod worker;

pub use error::{Error, Result};
