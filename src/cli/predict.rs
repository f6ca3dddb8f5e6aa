//! `predict`: the top classes of each photo, ImageNet's or a trained head's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::RgbImage;

use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::inference::{ranked, ClassScore};
use crate::train::head::Head;
use crate::train::pipeline::classify_with_head;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use crate::vision::preprocess::ResizeMode;

/// `predict`: classify each image, a bad file reported and skipped.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// The photos to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5, value_parser = super::ranges::top)]
    pub top: usize,
    /// crop: torchvision's Resize(256) + CenterCrop(224); whole: the whole photo at 224x224.
    #[arg(long, default_value = "crop", value_parser = parse_mode)]
    pub resize: ResizeMode,
    /// Classify with a trained head (see `train-head`) instead of ImageNet's classes (its
    /// backbone is the default model).
    #[arg(long)]
    pub head: Option<PathBuf>,
    /// One JSON object per image, one per line.
    #[arg(long)]
    pub json: bool,
}

fn parse_mode(s: &str) -> Result<ResizeMode, String> {
    match s {
        "crop" | "center-crop" => Ok(ResizeMode::CenterCrop),
        "whole" => Ok(ResizeMode::Whole),
        _ => Err(format!("unknown resize mode '{s}' (crop or whole)")),
    }
}

#[derive(serde::Serialize)]
struct PredictionJson<'a> {
    image: String,
    model: &'a str,
    top: &'a [ClassScore],
}

#[derive(serde::Serialize)]
struct HeadPredictionJson<'a> {
    image: String,
    model: &'a str,
    head: String,
    top: &'a [ClassScore],
}

impl PredictArgs {
    /// Classifies every image; fails at the end if any could not be classified.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        match &self.head {
            Some(head) => self.with_head(device, head),
            None => self.imagenet(device),
        }
    }

    fn imagenet(&self, device: DeviceChoice) -> anyhow::Result<()> {
        let mut model = self.model.open(device)?;
        model.preprocess.mode = self.resize;
        let classifier = format!("{} could not classify", model.spec.name);
        classify_each(
            &self.images,
            &classifier,
            |img| Ok(model.predict(&[img], self.top)?.pop().unwrap_or_default()),
            |path, scores| {
                if self.json {
                    return super::print_json(&PredictionJson {
                        image: path.display().to_string(),
                        model: model.spec.name,
                        top: scores,
                    });
                }
                println!("{} ({}):", path.display(), model.spec.name);
                for (rank, s) in scores.iter().enumerate() {
                    println!(
                        "  {}. {:<30} {:>5.1}%  (class {})",
                        rank + 1,
                        s.label,
                        s.prob * 100.0,
                        s.index
                    );
                }
                Ok(())
            },
        )
    }

    fn with_head(&self, device: DeviceChoice, head_path: &Path) -> anyhow::Result<()> {
        let (head, info) = Head::load(head_path)?;
        let mut args = self.model.clone();
        args.model.get_or_insert(info.backbone.clone());
        let mut model = args.open(device)?;
        model.preprocess.mode = self.resize;
        // A head that fails is the head's fault, not the photo's: it stops the run, named.
        let classifier = format!(
            "the head {} (on {}) could not classify",
            head_path.display(),
            model.spec.name
        );
        classify_each(
            &self.images,
            &classifier,
            |img| {
                let probs = classify_with_head(&model, &head, &[img])?
                    .pop()
                    .unwrap_or_default();
                Ok(ranked(&probs, self.top, |i| head.classes[i].clone()))
            },
            |path, scores| {
                if self.json {
                    return super::print_json(&HeadPredictionJson {
                        image: path.display().to_string(),
                        model: model.spec.name,
                        head: head_path.display().to_string(),
                        top: scores,
                    });
                }
                println!(
                    "{} ({} + {}):",
                    path.display(),
                    model.spec.name,
                    head_path.display()
                );
                for (rank, s) in scores.iter().enumerate() {
                    println!("  {}. {:<30} {:>5.1}%", rank + 1, s.label, s.prob * 100.0);
                }
                Ok(())
            },
        )
    }
}

/// Classifies each image with `classify` and shows the result with `show`, one image at a
/// time: a photo that cannot be read is reported and skipped, the others still run, and the
/// command fails at the end if any did. A failure of `classify` itself (the model or the
/// head, which would fail on every photo) stops the run at once, as `classifier` PHOTO.
fn classify_each(
    images: &[PathBuf],
    classifier: &str,
    classify: impl Fn(&RgbImage) -> anyhow::Result<Vec<ClassScore>>,
    show: impl Fn(&Path, &[ClassScore]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in images {
        let image = match load_rgb(path, DEFAULT_MAX_PIXELS) {
            Ok(image) => image,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        let scores =
            classify(&image).with_context(|| format!("{classifier} {}", path.display()))?;
        show(path, &scores)?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified",
            images.len()
        );
    }
    Ok(())
}
