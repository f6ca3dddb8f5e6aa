//! Images in and out: decoding user files safely, torchvision-identical preprocessing, and
//! turning activations into pictures (colormaps, channel grids, the explorer's atlases) and
//! differences into pictures (an attack's perturbation).

pub mod atlas;
pub mod colormap;
pub mod difference;
pub mod grid;
pub mod heatmap;
pub mod image_io;
pub mod preprocess;
pub mod sheet;
