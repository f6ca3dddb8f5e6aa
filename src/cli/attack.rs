//! `attack`: PGD or FGSM on a photo, written out as a PNG.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::args::{check_output_early, class_of, output_beside};
use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::explain::attack::{attack, working_photo, AttackSettings, DEFAULT_CONFIDENCE};
use crate::labels::imagenet_label;
use crate::output::save_png;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};

/// `attack`: PGD towards a target class, or one untargeted FGSM step.
#[derive(Debug, Clone, clap::Args)]
pub struct AttackArgs {
    /// The photo to attack.
    pub image: PathBuf,
    /// Target class, by name or index (required unless --fgsm).
    #[arg(long, value_name = "NAME|INDEX", required_unless_present = "fgsm")]
    pub target: Option<String>,
    /// L-infinity budget in 8-bit pixel units: 4 means 4/255.
    #[arg(long, default_value_t = 4.0, value_parser = super::ranges::pixel_units)]
    pub eps: f32,
    /// Step size in 8-bit pixel units.
    #[arg(long, default_value_t = 1.0, value_parser = super::ranges::pixel_units)]
    pub step: f32,
    /// Steps at most (the attack stops when the confidence is reached).
    #[arg(long, default_value_t = 50, value_parser = super::ranges::count)]
    pub steps: usize,
    /// The target's probability to reach, more than 0 and at most 1.
    #[arg(long, default_value_t = DEFAULT_CONFIDENCE, value_parser = super::ranges::probability)]
    pub confidence: f32,
    /// One untargeted FGSM step of size --eps instead.
    #[arg(long, conflicts_with = "target")]
    pub fgsm: bool,
    /// Where to write the PNG (default: IMAGE-STEM_adversarial.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: the classes before and after, the steps, the distances.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct AttackJson<'a> {
    image: String,
    model: &'a str,
    source: usize,
    source_label: String,
    target: Option<usize>,
    target_label: Option<String>,
    top: usize,
    top_label: String,
    /// The top class is the target (untargeted: not the source).
    success: bool,
    /// The confidence asked for, and whether the target's probability reached it.
    confidence: f32,
    confidence_reached: bool,
    /// Probability of the target (untargeted: of the best other class) on the saved PNG.
    prob: f32,
    source_prob: f32,
    steps: usize,
    /// The adversarial PNG's size (the photo's, or its bounded working size).
    width: u32,
    height: u32,
    ms_per_step: f64,
    eps: f32,
    linf: u8,
    l2: f64,
    psnr_db: Option<f64>,
    output: String,
}

impl AttackArgs {
    /// The attack's settings these flags describe.
    fn settings(&self) -> anyhow::Result<AttackSettings> {
        let target = match (&self.target, self.fgsm) {
            (_, true) => None,
            (Some(t), false) => Some(class_of(t)?),
            (None, false) => bail!("give --target CLASS, or --fgsm"),
        };
        Ok(AttackSettings {
            target,
            eps: self.eps,
            step: if self.fgsm { self.eps } else { self.step },
            max_steps: if self.fgsm { 1 } else { self.steps },
            confidence: self.confidence,
        })
    }

    /// The adversarial PNG's path: `-o`, else `STEM_adversarial.png`.
    fn output_path(&self) -> PathBuf {
        output_beside(&self.output, &self.image, "adversarial")
    }

    /// Attacks, printing each step, writes the PNG, and fails when the attack did not reach
    /// its confidence (FGSM: did not move the photo off its class).
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let settings = self.settings()?;
        let output = self.output_path();
        // The photo is never replaced by its adversarial copy; refused before the attack runs.
        check_output_early(&output, &[&self.image])?;
        let model = self.model.open(device)?;
        let photo = load_rgb(&self.image, DEFAULT_MAX_PIXELS)?;
        let (width, height) = photo.dimensions();
        // Only the bounded working copy is kept while the attack runs.
        let photo = working_photo(&model.preprocess, &photo).into_owned();
        if photo.dimensions() != (width, height) && !self.json {
            eprintln!(
                "the {width}x{height} photo is attacked at {}x{}",
                photo.width(),
                photo.height()
            );
        }
        let outcome = attack(&model, &photo, &settings, &|| false, &mut |p| {
            if !self.json {
                eprintln!(
                    "step {:>3}: source {:.3}, target {:.3}, top: {}",
                    p.step,
                    p.source_prob,
                    p.target_prob,
                    imagenet_label(p.top_class)
                );
            }
        })?
        .context("the attack was cancelled")?;
        save_png(
            &output,
            &[&self.image],
            &image::DynamicImage::ImageRgb8(outcome.adversarial.clone()),
        )?;
        let label = imagenet_label;
        if self.json {
            super::print_json(&AttackJson {
                image: self.image.display().to_string(),
                model: model.spec.name,
                source: outcome.source,
                source_label: label(outcome.source),
                target: outcome.target,
                target_label: outcome.target.map(label),
                top: outcome.last.top_class,
                top_label: label(outcome.last.top_class),
                success: outcome.success,
                confidence: outcome.confidence,
                confidence_reached: outcome.reached,
                prob: outcome.last.target_prob,
                source_prob: outcome.last.source_prob,
                steps: outcome.steps,
                width: outcome.adversarial.width(),
                height: outcome.adversarial.height(),
                ms_per_step: outcome.ms_per_step,
                eps: settings.eps,
                linf: outcome.linf,
                l2: outcome.l2,
                psnr_db: outcome.psnr_db.is_finite().then_some(outcome.psnr_db),
                output: output.display().to_string(),
            })?;
        } else {
            println!(
                "{}: {} -> {} at {:.1}% (confidence {:.0}% {}) after {} steps ({:.0} ms/step): \
                 L-inf {}/255, L2 {:.3}, PSNR {:.1} dB; wrote {}",
                self.image.display(),
                label(outcome.source),
                label(outcome.last.top_class),
                outcome.last.target_prob * 100.0,
                outcome.confidence * 100.0,
                if outcome.reached {
                    "reached"
                } else {
                    "not reached"
                },
                outcome.steps,
                outcome.ms_per_step,
                outcome.linf,
                outcome.l2,
                outcome.psnr_db,
                output.display()
            );
        }
        if self.fgsm {
            if !outcome.success {
                bail!(
                    "one FGSM step of {}/255 did not move the photo off {}",
                    settings.eps,
                    label(outcome.source)
                );
            }
        } else if !outcome.reached {
            bail!(
                "confidence {:.0}% not reached: the target's probability is {:.1}% after {} steps \
                 at eps {}/255 (raise --steps or --eps, or lower --confidence)",
                outcome.confidence * 100.0,
                outcome.last.target_prob * 100.0,
                outcome.steps,
                settings.eps
            );
        }
        Ok(())
    }
}
