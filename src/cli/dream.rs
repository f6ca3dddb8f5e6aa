//! `dream`: gradient ascent on an image until the network sees a class (or a class and not
//! another, a channel, its negative, a neuron), with Lucid's recipe by default; one image, or
//! a batch pushed apart by Lucid's diversity term written as one grid PNG.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::args::{check_output_early, class_of};
use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::explain::dream::{
    dream, DreamSettings, DreamStart, DreamTarget, Parameterisation, MAX_BATCH,
};
use crate::labels::imagenet_label;
use crate::output::save_png;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use crate::vision::sheet::{contact_sheet, sheet_columns};

/// `dream`: gradient ascent on an image until the network sees the target.
#[derive(Debug, Clone, clap::Args)]
pub struct DreamArgs {
    /// ImageNet class, by name ("tabby") or index ("281"); not with --layer.
    #[arg(
        long = "class",
        value_name = "NAME|INDEX",
        required_unless_present = "layer"
    )]
    pub class: Option<String>,
    /// ...and not this class: maximise the difference of the two logits.
    #[arg(long, value_name = "NAME|INDEX", requires = "class")]
    pub minus: Option<String>,
    /// Dream a channel of this layer instead of a class (see `layers`).
    #[arg(long, conflicts_with = "class", requires = "channel")]
    pub layer: Option<String>,
    /// The channel of --layer.
    #[arg(long, requires = "layer")]
    pub channel: Option<usize>,
    /// Only the channel's centre position (a neuron).
    #[arg(long, requires = "layer", conflicts_with = "negative")]
    pub neuron: bool,
    /// What the channel hates: minimise its mean activation.
    #[arg(long, requires = "layer")]
    pub negative: bool,
    #[arg(long, default_value_t = 256, value_parser = super::ranges::count)]
    pub steps: usize,
    /// Total-variation weight, 0 to 10 (0: Lucid's recipe; 1 visibly smoother; 10 flat).
    #[arg(long, default_value_t = 0.0, value_parser = super::ranges::tv_weight)]
    pub tv: f32,
    /// Image side in pixels, 32 to 512.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate (default: 0.08 for fourier, Lucid's 0.05 gives paler pictures; 0.02 for pixels).
    #[arg(long, value_parser = super::ranges::rate)]
    pub lr: Option<f64>,
    /// Skip Lucid's random transforms (pad, jitter, scale, rotate) each step.
    #[arg(long)]
    pub no_transforms: bool,
    /// fourier (Lucid's, the default) or pixels (the notebook's).
    #[arg(long, default_value = "fourier", value_parser = parse_parameterisation)]
    pub mode: Parameterisation,
    /// Start from this photo instead of noise.
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<PathBuf>,
    /// Dream this many images at once (1 to 8), pushed apart by Lucid's diversity term; the
    /// PNG is their grid.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Weight of the diversity term for --batch (5; Lucid's examples use 100, which on a
    /// class objective costs the class: measured in the README).
    #[arg(long, default_value_t = crate::explain::dream::DIVERSITY, value_parser = super::ranges::diversity_weight)]
    pub diversity: f32,
    /// The layer whose Gram matrices the diversity term compares (default: the target's layer,
    /// or for a class one two thirds of the way in).
    #[arg(long, value_name = "LAYER")]
    pub diversity_layer: Option<String>,
    /// Where to write the PNG (default: dream-TARGET.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: the target, each image's probability, the steps and the PNG's path.
    #[arg(long)]
    pub json: bool,
}

fn parse_parameterisation(s: &str) -> Result<Parameterisation, String> {
    match s {
        "fourier" | "lucid" => Ok(Parameterisation::Fourier),
        "pixels" | "pixel" => Ok(Parameterisation::Pixels),
        _ => Err(format!("unknown dream mode '{s}' (fourier or pixels)")),
    }
}

#[derive(serde::Serialize)]
struct DreamJson<'a> {
    model: &'a str,
    /// The class for class targets.
    class: Option<usize>,
    label: String,
    /// The first image's probability of the class (else of its top class) when the PNG is
    /// opened like a photo; `probs` has every image's.
    prob: f32,
    probs: Vec<f32>,
    top_classes: Vec<usize>,
    steps: usize,
    ms_per_step: f64,
    size: u32,
    batch: usize,
    /// The members' mean Gram similarity at the diversity layer on the last step (0 alone).
    similarity: f32,
    output: String,
}

impl DreamArgs {
    /// What to dream.
    fn target(&self) -> anyhow::Result<DreamTarget> {
        if let (Some(layer), Some(channel)) = (&self.layer, self.channel) {
            let (layer, channel) = (layer.clone(), channel);
            return Ok(if self.neuron {
                DreamTarget::Neuron { layer, channel }
            } else if self.negative {
                DreamTarget::NegativeChannel { layer, channel }
            } else {
                DreamTarget::Channel { layer, channel }
            });
        }
        let Some(class) = &self.class else {
            bail!("give --class, or --layer with --channel");
        };
        let class = class_of(class)?;
        Ok(match &self.minus {
            Some(minus) => DreamTarget::ClassMinus {
                class,
                minus: class_of(minus)?,
            },
            None => DreamTarget::Class(class),
        })
    }

    /// The dream's settings these flags describe.
    fn settings(&self) -> anyhow::Result<DreamSettings> {
        if !(1..=MAX_BATCH).contains(&self.batch) {
            bail!(
                "--batch {} is outside the allowed range 1 to {MAX_BATCH}",
                self.batch
            );
        }
        let mut settings = DreamSettings::new(self.target()?);
        settings.steps = self.steps;
        settings.tv_weight = self.tv;
        settings.size = self.size;
        settings.seed = self.seed;
        settings.transforms = !self.no_transforms;
        settings.parameterisation = self.mode;
        settings.batch = self.batch;
        settings.diversity = self.diversity;
        settings.diversity_layer = self.diversity_layer.clone();
        settings.learning_rate = self.lr.unwrap_or(self.mode.default_rate());
        if let Some(photo) = &self.from {
            settings.start = DreamStart::Photo(load_rgb(photo, DEFAULT_MAX_PIXELS)?);
        }
        Ok(settings)
    }

    /// Dreams, printing every 20th step, and writes the PNG.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let target = self.target()?;
        let label = target.describe(imagenet_label);
        let output = self.output.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "dream-{}.png",
                label.replace([' ', '/', '\\', ','], "_")
            ))
        });
        // Refused before the photo is read or any step runs, not after; never the photo the
        // dream starts from.
        let inputs: Vec<&Path> = self.from.iter().map(PathBuf::as_path).collect();
        check_output_early(&output, &inputs)?;
        let settings = self.settings()?;
        let model = self.model.open(device)?;
        let outcome = dream(
            &model,
            &settings,
            &|| settings.tv_weight,
            &|| false,
            &mut |f| {
                if !self.json && (f.step % 20 == 0 || f.step == 1) {
                    let probs: Vec<String> = f.probs.iter().map(|p| format!("{p:.3}")).collect();
                    eprintln!(
                        "step {:>4}: p = {}, score {:.2}, tv {:.3}",
                        f.step,
                        probs.join(" "),
                        f.scores.iter().sum::<f32>() / f.scores.len().max(1) as f32,
                        f.penalty
                    );
                }
            },
        )?
        .context("the dream was cancelled")?;
        let picture = if outcome.images.len() == 1 {
            outcome.images[0].clone()
        } else {
            contact_sheet(&outcome.images, sheet_columns(outcome.images.len()), 4)
        };
        save_png(&output, &inputs, &image::DynamicImage::ImageRgb8(picture))?;
        if self.json {
            return super::print_json(&DreamJson {
                model: model.spec.name,
                class: target.class(),
                label,
                prob: outcome.prob(),
                probs: outcome.probs.clone(),
                top_classes: outcome.top_classes.clone(),
                steps: outcome.steps,
                ms_per_step: outcome.ms_per_step,
                size: settings.size,
                batch: settings.batch,
                similarity: outcome.similarity,
                output: output.display().to_string(),
            });
        }
        let probs: Vec<String> = outcome.probs.iter().map(|p| format!("{p:.3}")).collect();
        println!(
            "{}: {label}: p = {} after {} steps ({:.0} ms/step); wrote {}",
            model.spec.name,
            probs.join(", "),
            outcome.steps,
            outcome.ms_per_step,
            output.display()
        );
        Ok(())
    }
}
