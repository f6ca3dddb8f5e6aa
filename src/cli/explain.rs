//! `explain`: where the network looks. An attribution map of a class for a photo, written over
//! the network's view of the photo as a PNG, with its deletion and insertion scores.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::args::{check_output_early, class_of, output_beside};
use super::ModelArgs;
use crate::device::DeviceChoice;
use crate::explain::attribution::explanation::{
    explain, Explanation, Request, DEFAULT_CAUSAL_STEPS,
};
use crate::explain::attribution::{Method, Settings};
use crate::output::save_png;
use crate::train::head::Head;
use crate::vision::heatmap::{overlay_with_bar, Heatmap};
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};

/// `explain`: one attribution map of one photo.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The photo to explain.
    pub image: PathBuf,
    /// grad-cam, grad-cam-plus-plus, hires-cam, layer-cam, saliency, smoothgrad,
    /// integrated-gradients or occlusion.
    #[arg(long, default_value = "grad-cam", value_parser = super::ranges::method)]
    pub method: Method,
    /// The class to explain, by name or index (ImageNet's, or the head's with --head; default:
    /// the top class).
    #[arg(long, value_name = "NAME|INDEX")]
    pub class: Option<String>,
    /// The layer of a CAM method (see `layers`; default: the last convolutional one).
    #[arg(long)]
    pub layer: Option<String>,
    /// Explain a class of this trained head (see `train-head`) on its backbone's features.
    #[arg(long)]
    pub head: Option<PathBuf>,
    /// Integrated Gradients' integration points.
    #[arg(long, default_value_t = 50, value_parser = super::ranges::count)]
    pub steps: usize,
    /// SmoothGrad's noisy copies.
    #[arg(long, default_value_t = 25, value_parser = super::ranges::count)]
    pub samples: usize,
    /// Steps of the deletion and insertion curves (0 skips them).
    #[arg(long, default_value_t = DEFAULT_CAUSAL_STEPS, value_parser = super::ranges::causal_steps)]
    pub causal_steps: usize,
    /// The map's opacity over the photo, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = super::ranges::opacity)]
    pub opacity: f32,
    /// Where to write the overlay PNG (default: IMAGE-STEM_METHOD.png here).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON object: the class, the raw map, the scores, the output.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct ExplainJson<'a> {
    image: String,
    model: &'a str,
    head: Option<String>,
    method: &'static str,
    class: usize,
    label: &'a str,
    probability: f32,
    layer: Option<&'a str>,
    /// The raw map, rows of numbers at its own resolution (before normalising or resizing).
    map: Vec<&'a [f32]>,
    height: usize,
    width: usize,
    deletion: Option<f32>,
    insertion: Option<f32>,
    deletion_curve: Option<&'a [f32]>,
    insertion_curve: Option<&'a [f32]>,
    map_ms: f64,
    scores_ms: f64,
    output: String,
}

/// A class of `head`, by name (any case) or index.
fn head_class(head: &Head, name: &str) -> anyhow::Result<usize> {
    if let Ok(i) = name.trim().parse::<usize>() {
        if i < head.classes.len() {
            return Ok(i);
        }
    }
    head.classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name.trim()))
        .with_context(|| {
            format!(
                "the head has no class '{name}' (its classes: {})",
                head.classes.join(", ")
            )
        })
}

impl ExplainArgs {
    /// Computes the map and its scores, writes the overlay, prints a line or JSON.
    pub fn run(self, device: DeviceChoice) -> anyhow::Result<()> {
        let output = output_beside(&self.output, &self.image, self.method.name());
        // Neither the photo nor the head is ever replaced by the overlay.
        let mut inputs: Vec<&Path> = vec![&self.image];
        inputs.extend(self.head.as_deref());
        check_output_early(&output, &inputs)?;
        if self.layer.is_some() && !self.method.is_cam() {
            bail!(
                "--layer is for the CAM methods; {} explains the input",
                self.method.name()
            );
        }
        let loaded = self.head.as_deref().map(Head::load).transpose()?;
        let mut args = self.model.clone();
        if let (Some((_, info)), None) = (&loaded, &args.model) {
            // A head explains on the backbone it was trained on.
            args.model = Some(info.backbone.clone());
        }
        let head = loaded.map(|(head, _)| head);
        let model = args.open(device)?;
        let class = match (&self.class, &head) {
            (None, _) => None,
            (Some(name), Some(head)) => Some(head_class(head, name)?),
            (Some(name), None) => Some(class_of(name)?),
        };
        let photo = load_rgb(&self.image, DEFAULT_MAX_PIXELS)?;
        let view = model.preprocess.network_view(&photo);
        let request = Request {
            method: self.method,
            class,
            settings: Settings {
                layer: self.layer.clone(),
                smooth_samples: self.samples,
                ig_steps: self.steps,
                ..Settings::default()
            },
            causal_steps: self.causal_steps,
        };
        let json = self.json;
        let explanation = explain(
            &model,
            &photo,
            head.as_ref(),
            &request,
            &|| false,
            &mut |stage, done, total| {
                if !json && total > 1 && (done == total || done % 16 == 0) {
                    eprint!("\r{stage}: {done}/{total}   ");
                    if done == total {
                        eprintln!();
                    }
                }
            },
        )
        .with_context(|| format!("could not explain {}", self.image.display()))?;
        let overlay = overlay_with_bar(&view, &heatmap(&explanation), self.opacity);
        save_png(&output, &inputs, &image::DynamicImage::ImageRgb8(overlay))?;
        self.report(&model, &explanation, &output)
    }

    fn report(
        &self,
        model: &crate::inference::LoadedModel,
        e: &Explanation,
        output: &Path,
    ) -> anyhow::Result<()> {
        let a = &e.attribution;
        if self.json {
            return super::print_json(&ExplainJson {
                image: self.image.display().to_string(),
                model: model.spec.name,
                head: self.head.as_ref().map(|p| p.display().to_string()),
                method: a.method.name(),
                class: a.class,
                label: &e.label,
                probability: e.probability,
                layer: a.layer.as_deref(),
                map: a.map.chunks(a.width.max(1)).collect(),
                height: a.height,
                width: a.width,
                deletion: e.deletion.as_ref().map(|s| s.auc),
                insertion: e.insertion.as_ref().map(|s| s.auc),
                deletion_curve: e.deletion.as_ref().map(|s| s.curve.as_slice()),
                insertion_curve: e.insertion.as_ref().map(|s| s.curve.as_slice()),
                map_ms: e.map_ms,
                scores_ms: e.scores_ms,
                output: output.display().to_string(),
            });
        }
        let scores = match (&e.deletion, &e.insertion) {
            (Some(d), Some(i)) => format!(
                "; deletion {:.3} (lower is better), insertion {:.3} (higher is better)",
                d.auc, i.auc
            ),
            _ => String::new(),
        };
        println!(
            "{}: {} of {} ({:.1}%){} at {}x{} in {:.0} ms{scores}; wrote {}",
            self.image.display(),
            a.method.name(),
            e.label,
            e.probability * 100.0,
            a.layer
                .as_deref()
                .map_or(String::new(), |l| format!(" on {l}")),
            a.width,
            a.height,
            e.map_ms,
            output.display()
        );
        Ok(())
    }
}

/// The map as drawn: the raw map at its own resolution, signed where the method is.
fn heatmap(e: &Explanation) -> Heatmap<'_> {
    let a = &e.attribution;
    Heatmap {
        values: &a.map,
        height: a.height,
        width: a.width,
        signed: a.method.signed(),
    }
}
