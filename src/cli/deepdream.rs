//! `deepdream`: a photo dreamed octave by octave (see [`crate::explain::deepdream`]), written
//! as a PNG at the photo's aspect ratio.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::args::check_output_early;
use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::explain::deepdream::{deepdream, octave_sizes, working_photo, DeepDreamSettings};
use crate::output::save_png;
use crate::progress::Throttle;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};

/// `deepdream`: amplify what one layer (or one of its channels) sees in a photo.
#[derive(Debug, Clone, clap::Args)]
pub struct DeepDreamArgs {
    /// The photo to dream.
    pub image: PathBuf,
    /// The layer whose activations are amplified (see `cnn-explorer layers`), e.g. block5.
    #[arg(long)]
    pub layer: String,
    /// Only this channel of the layer (else the whole layer).
    #[arg(long)]
    pub channel: Option<usize>,
    /// Octaves, 1 to 10 (fewer run where the smallest would be under 32 pixels).
    #[arg(long, default_value_t = 4, value_parser = super::ranges::octaves)]
    pub octaves: usize,
    /// Size ratio of one octave to the next, 1 to 2.
    #[arg(long, default_value_t = 1.4, value_parser = super::ranges::octave_scale)]
    pub octave_scale: f64,
    /// Gradient steps per octave, 1 to 10000.
    #[arg(long, default_value_t = 10, value_parser = super::ranges::steps_per_octave)]
    pub steps: usize,
    /// Mean change of a pixel per step, in 8-bit units (more than 0, at most 255).
    #[arg(long, default_value_t = 1.5, value_parser = super::ranges::pixel_units)]
    pub step_size: f32,
    /// Largest random roll per step, in pixels (0 to 256).
    #[arg(long, default_value_t = 32, value_parser = super::ranges::jitter)]
    pub jitter: u32,
    /// The photo is scaled down so that its longest side is at most this (32 to 2048).
    #[arg(long, default_value_t = 512, value_parser = super::ranges::max_side)]
    pub max_side: u32,
    /// Seed of the random rolls.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the PNG (default: IMAGE-STEM_deepdream.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: the settings, the octaves' sizes, the objective before and after,
    /// the time per step and the PNG's path.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct DeepDreamJson<'a> {
    image: String,
    model: &'a str,
    layer: &'a str,
    channel: Option<usize>,
    /// The octaves' sizes, smallest first, `[width, height]`.
    octave_sizes: Vec<[u32; 2]>,
    octave_scale: f64,
    steps_per_octave: usize,
    steps: usize,
    step_size: f32,
    jitter: u32,
    /// The PNG's size: the photo's, or scaled down to --max-side.
    width: u32,
    height: u32,
    /// The mean squared activation of the photo and of the PNG written.
    objective_start: f32,
    objective_end: f32,
    ms_per_step: f64,
    output: String,
}

impl DeepDreamArgs {
    fn settings(&self) -> DeepDreamSettings {
        DeepDreamSettings {
            layer: self.layer.clone(),
            channel: self.channel,
            octaves: self.octaves,
            octave_scale: self.octave_scale,
            steps: self.steps,
            step_size: self.step_size,
            jitter: self.jitter,
            max_side: self.max_side,
            seed: self.seed,
        }
    }

    /// The PNG's path: `-o`, else `STEM_deepdream.png`.
    fn output_path(&self) -> PathBuf {
        super::args::output_beside(&self.output, &self.image, "deepdream")
    }

    /// Dreams, printing progress about once a second, and writes the PNG.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let settings = self.settings();
        settings.validate()?;
        let output = self.output_path();
        // The photo is never replaced by its dream; refused before any step runs.
        let inputs: [&Path; 1] = [&self.image];
        check_output_early(&output, &inputs)?;
        let model = self.model.open(device)?;
        let photo = {
            let decoded = load_rgb(&self.image, DEFAULT_MAX_PIXELS)?;
            working_photo(&decoded, settings.max_side).into_owned()
        };
        let sizes = octave_sizes(
            photo.width(),
            photo.height(),
            settings.octaves,
            settings.octave_scale,
        );
        let mut lines = Throttle::terminal();
        let outcome = deepdream(&model, &photo, &settings, &|| false, &mut |f| {
            let octave_done = f.step == f.steps;
            if !self.json && lines.ready(octave_done) {
                eprintln!(
                    "octave {}/{} ({}x{}) step {:>3}/{}: objective {:.4}",
                    f.octave + 1,
                    f.octaves,
                    f.image.width(),
                    f.image.height(),
                    f.step,
                    f.steps,
                    f.objective
                );
            }
        })?
        .context("the DeepDream was cancelled")?;
        save_png(
            &output,
            &inputs,
            &image::DynamicImage::ImageRgb8(outcome.image.clone()),
        )?;
        if self.json {
            return super::print_json(&DeepDreamJson {
                image: self.image.display().to_string(),
                model: model.spec.name,
                layer: &settings.layer,
                channel: settings.channel,
                octave_sizes: sizes.iter().map(|&(w, h)| [w, h]).collect(),
                octave_scale: settings.octave_scale,
                steps_per_octave: settings.steps,
                steps: outcome.steps,
                step_size: settings.step_size,
                jitter: settings.jitter,
                width: outcome.image.width(),
                height: outcome.image.height(),
                objective_start: outcome.objective_start,
                objective_end: outcome.objective_end,
                ms_per_step: outcome.ms_per_step,
                output: output.display().to_string(),
            });
        }
        println!(
            "{}: {} on {} ({}x{}, {} octaves of {} steps, {:.0} ms/step): objective {:.4} -> {:.4}; \
             wrote {}",
            self.image.display(),
            model.spec.name,
            match settings.channel {
                Some(c) => format!("{} channel {c}", settings.layer),
                None => settings.layer.clone(),
            },
            outcome.image.width(),
            outcome.image.height(),
            sizes.len(),
            settings.steps,
            outcome.ms_per_step,
            outcome.objective_start,
            outcome.objective_end,
            output.display()
        );
        Ok(())
    }
}
