//! `gallery`: dream every channel of a layer (cached) and write them as one contact sheet.

use std::path::PathBuf;

use anyhow::Context;

use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::explain::gallery::{default_gallery_dir, dream_gallery, GallerySettings};
use crate::output::save_png;
use crate::progress::Throttle;
use crate::vision::sheet::{contact_sheet, sheet_columns};

/// `gallery`: one small dream per channel of a layer, as one grid PNG.
#[derive(Debug, Clone, clap::Args)]
pub struct GalleryArgs {
    /// The layer whose channels to dream (see `layers`), e.g. stem or block5.
    #[arg(long)]
    pub layer: String,
    /// Side of each dream in pixels, 32 to 512.
    #[arg(long, default_value_t = 96, value_parser = super::ranges::dream_size)]
    pub size: u32,
    #[arg(long, default_value_t = 96, value_parser = super::ranges::count)]
    pub steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only the first N channels (a quick look; they fill the same cache).
    #[arg(long, value_name = "N", value_parser = super::ranges::count)]
    pub channels: Option<usize>,
    /// Channels dreamed together, 1 to 8 (part of the cache key).
    #[arg(long, default_value_t = 8, value_parser = super::ranges::dream_batch)]
    pub batch: usize,
    /// Neither read nor write the gallery cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where to write the grid (default: gallery-MODEL-LAYER.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: model, layer, channels, cached, computed, seconds, output.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct GalleryJson<'a> {
    model: &'a str,
    layer: &'a str,
    channels: usize,
    cached: usize,
    computed: usize,
    seconds: f64,
    output: String,
}

impl GalleryArgs {
    /// Dreams the gallery, printing progress, and writes the grid.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        if let Some(output) = &self.output {
            super::args::check_output_early(output, &[])?;
        }
        let model = self.model.open(device)?;
        let output = self.output.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "gallery-{}-{}.png",
                model.spec.name,
                self.layer.replace(['/', '\\', ' '], "_")
            ))
        });
        let settings = GallerySettings {
            size: self.size,
            steps: self.steps,
            batch: self.batch,
            seed: self.seed,
            limit: self.channels,
        };
        let root = (!self.no_cache).then(default_gallery_dir);
        let mut lines = Throttle::terminal();
        let gallery = dream_gallery(
            &model,
            &self.layer,
            &settings,
            root.as_deref(),
            &|| false,
            &mut |p| {
                let last = p.done == p.total;
                if !self.json && lines.ready(last) {
                    eprintln!(
                        "{}: {}/{} channels ({:.0}%)",
                        self.layer,
                        p.done,
                        p.total,
                        100.0 * p.fraction(settings.batch)
                    );
                }
            },
        )?
        .context("the gallery was cancelled")?;
        let sheet = contact_sheet(&gallery.images, sheet_columns(gallery.images.len()), 2);
        save_png(&output, &[], &image::DynamicImage::ImageRgb8(sheet))?;
        if self.json {
            return super::print_json(&GalleryJson {
                model: model.spec.name,
                layer: &self.layer,
                channels: gallery.images.len(),
                cached: gallery.cached,
                computed: gallery.computed,
                seconds: gallery.seconds,
                output: output.display().to_string(),
            });
        }
        println!(
            "{} {}: {} channels ({} cached, {} dreamed) in {:.1} s; wrote {}",
            model.spec.name,
            self.layer,
            gallery.images.len(),
            gallery.cached,
            gallery.computed,
            gallery.seconds,
            output.display()
        );
        Ok(())
    }
}
