//! `layers` and `features`: a model's taps, and one layer's channels for a photo.

use std::path::PathBuf;

use super::ModelArgs;
use crate::device::{describe_device, select_device, DeviceChoice};
use crate::inference::{backbone_or_stand_in, layer_infos, StandIn};
use crate::vision::grid::render_grid;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use crate::weights::{find_model, CATALOGUE};

/// `layers`: every tap of a model with its shape (absent weights are stood in for by zeros:
/// shapes do not depend on them).
#[derive(Debug, Clone, clap::Args)]
pub struct LayersArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A JSON list of `{"name", "kind", "shape", "receptive_field", "stride"}` (the field's
    /// side and stride in input pixels).
    #[arg(long)]
    pub json: bool,
}

impl LayersArgs {
    /// Prints the model's layers for one image at its native size (224; EfficientNet-Lite1:
    /// 240, Lite2: 260).
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let spec = find_model(self.model.model.as_deref().unwrap_or(CATALOGUE[0].name))?;
        let device = select_device(device)?;
        eprintln!("device: {}", describe_device(&device));
        let (backbone, _real) =
            backbone_or_stand_in(spec, self.model.weights.as_deref(), &device, StandIn::Zeros)?;
        let side = spec.preprocess.size;
        let infos = layer_infos(backbone.as_ref(), side as usize, &device)?;
        if self.json {
            return super::print_json_pretty(&infos);
        }
        println!(
            "{} ({}), input [1, 3, {side}, {side}]:",
            spec.name, spec.arch
        );
        for l in infos {
            println!(
                "  {:<10} {:<7} {:<18} sees {:>4} px, stride {}",
                l.name,
                format!("{:?}", l.kind).to_lowercase(),
                format!("{:?}", l.shape),
                l.receptive_field,
                l.stride
            );
        }
        Ok(())
    }
}

/// `features`: one layer's channels as a grid PNG, with their means.
#[derive(Debug, Clone, clap::Args)]
pub struct FeaturesArgs {
    /// The photo to run through the model.
    pub image: PathBuf,
    /// Layer name (see `layers`), e.g. conv3_1 or block7.
    #[arg(long)]
    pub layer: String,
    /// Where to write the grid PNG (default: IMAGE-STEM_LAYER.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: the shape, the grid's path and every channel's mean.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct FeaturesJson<'a> {
    image: String,
    model: &'a str,
    layer: &'a str,
    shape: [usize; 3],
    grid: String,
    channel_means: Vec<f32>,
}

impl FeaturesArgs {
    /// Writes the grid and prints the most active channels.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let img = load_rgb(&self.image, DEFAULT_MAX_PIXELS)?;
        let model = self.model.open(device)?;
        let layer = self.layer.as_str();
        let maps = model.layer_maps(&img, layer)?;
        let output = self.output.clone().unwrap_or_else(|| {
            // The photo's own name, even when it is not UTF-8.
            let mut name = self
                .image
                .file_stem()
                .map_or_else(|| "image".into(), std::ffi::OsStr::to_os_string);
            name.push(format!("_{layer}.png"));
            PathBuf::from(name)
        });
        // The photo is never replaced by its grid.
        let grid = image::DynamicImage::ImageRgb8(render_grid(&maps, 48));
        crate::output::save_png(&output, &[&self.image], &grid)?;
        let means = maps.channel_means();
        if self.json {
            return super::print_json(&FeaturesJson {
                image: self.image.display().to_string(),
                model: model.spec.name,
                layer,
                shape: [maps.channels, maps.height, maps.width],
                grid: output.display().to_string(),
                channel_means: means,
            });
        }
        println!(
            "{} {} of {}: {} channels of {}x{}, grid written to {}",
            model.spec.name,
            layer,
            self.image.display(),
            maps.channels,
            maps.height,
            maps.width,
            output.display()
        );
        let mut order: Vec<usize> = (0..means.len()).collect();
        order.sort_by(|&a, &b| means[b].total_cmp(&means[a]));
        println!("most active channels (mean activation):");
        for c in order.into_iter().take(10) {
            println!("  channel {c:>4}: {:.4}", means[c]);
        }
        Ok(())
    }
}
