//! `examples`: the photos of a folder that excite each channel of a layer most, cropped
//! around the strongest cell (its receptive field), as one sheet (a row per channel) and JSON.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::explain::examples::{default_examples_dir, find_examples, ExampleSettings, CROP_SIDE};
use crate::output::save_png;
use crate::progress::Throttle;
use crate::train::dataset::{scan, ScanOptions};
use crate::vision::sheet::contact_sheet;

/// `examples`: dataset examples per channel (Microscope's other half).
#[derive(Debug, Clone, clap::Args)]
pub struct ExamplesArgs {
    /// The folder of photos: class sub-folders (or Oxford-IIIT Pet's images/), as train-head
    /// reads.
    pub dir: PathBuf,
    /// The layer (see `layers`), e.g. conv4_3 or block5; a convolutional one.
    #[arg(long)]
    pub layer: String,
    /// Photos kept per channel, 1 to 32.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub top: u16,
    /// Only the first N channels in the sheet and the JSON (all are found and cached).
    #[arg(long, value_name = "N", value_parser = super::ranges::count)]
    pub channels: Option<usize>,
    /// Neither read nor write the examples cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where to write the sheet, a row of crops per channel, the field boxed in yellow
    /// (default: examples-MODEL-LAYER.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: model, layer, receptive_field, photos, failed, channels (each a list
    /// of {photo, path, value, cell, field, window}), output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ExampleJson<'a> {
    /// Index into `photos`.
    photo: usize,
    path: &'a std::path::Path,
    value: f32,
    /// `[y, x]` in the layer's map.
    cell: [usize; 2],
    /// `[x0, y0, x1, y1]` in network-view pixels.
    field: [u32; 4],
    window: [u32; 4],
}

#[derive(Serialize)]
struct ExamplesJson<'a> {
    model: &'a str,
    layer: &'a str,
    receptive_field: crate::model::receptive::ReceptiveField,
    view_side: u32,
    photos: usize,
    failed: Vec<(String, &'a str)>,
    from_cache: bool,
    seconds: f64,
    channels: Vec<Vec<ExampleJson<'a>>>,
    output: String,
}

impl ExamplesArgs {
    /// Finds the examples, printing progress, and writes the sheet.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        if let Some(output) = &self.output {
            super::args::check_output_early(output, &[])?;
        }
        let dataset = scan(&self.dir, ScanOptions::default())?;
        let model = self.model.open(device)?;
        let output = self.output.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "examples-{}-{}.png",
                model.spec.name,
                self.layer.replace(['/', '\\', ' '], "_")
            ))
        });
        let inputs: Vec<&std::path::Path> =
            dataset.items.iter().map(|i| i.path.as_path()).collect();
        crate::output::check_output(&output, &inputs)?;
        let settings = ExampleSettings {
            top: usize::from(self.top),
            ..ExampleSettings::default()
        };
        let root = (!self.no_cache).then(default_examples_dir);
        let mut lines = Throttle::terminal();
        let found = find_examples(
            &model,
            &self.layer,
            &dataset.items,
            settings,
            root.as_deref(),
            &|| false,
            &mut |p| {
                if !self.json && lines.ready(p.done == p.total) {
                    eprintln!("{}: {}/{} photos", self.layer, p.done, p.total);
                }
            },
        )?
        .context("the search was cancelled")?;
        let shown = self
            .channels
            .map_or(found.channels.len(), |n| n.min(found.channels.len()));
        let blank = image::RgbImage::new(CROP_SIDE, CROP_SIDE);
        let top = settings.top;
        let tiles: Vec<image::RgbImage> = found.channels[..shown]
            .iter()
            .flat_map(|list| {
                (0..top).map(|k| {
                    list.get(k)
                        .map_or_else(|| blank.clone(), |e| e.boxed([255, 200, 0]))
                })
            })
            .collect();
        let sheet = contact_sheet(&tiles, top, 2);
        save_png(&output, &inputs, &image::DynamicImage::ImageRgb8(sheet))?;
        // What the folder scan left out (FIFOs, devices, unreadable entries), then the photos
        // that did not decode.
        let skipped: Vec<_> = dataset.skipped.iter().chain(&found.failed).collect();
        for s in &skipped {
            eprintln!("skipped {}: {}", s.path.display(), s.reason);
        }
        if self.json {
            let channels = found.channels[..shown]
                .iter()
                .map(|list| {
                    list.iter()
                        .map(|e| ExampleJson {
                            photo: e.photo,
                            path: &found.photos[e.photo],
                            value: e.value,
                            cell: e.cell,
                            field: e.field,
                            window: e.window,
                        })
                        .collect()
                })
                .collect();
            return super::print_json(&ExamplesJson {
                model: model.spec.name,
                layer: &self.layer,
                receptive_field: found.field,
                view_side: found.view_side,
                photos: found.photos.len(),
                failed: skipped
                    .iter()
                    .map(|s| (s.path.display().to_string(), s.reason.as_str()))
                    .collect(),
                from_cache: found.from_cache,
                seconds: found.seconds,
                channels,
                output: output.display().to_string(),
            });
        }
        println!(
            "{} {}: the top {top} of {} photos for {} channels (receptive field {} px, stride \
             {}){} in {:.1} s; wrote {}",
            model.spec.name,
            self.layer,
            found.photos.len(),
            found.channels.len(),
            found.field.size,
            found.field.stride,
            if found.from_cache {
                ", from the cache,"
            } else {
                ""
            },
            found.seconds,
            output.display()
        );
        Ok(())
    }
}
