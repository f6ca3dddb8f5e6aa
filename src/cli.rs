//! The command line: a thin layer over the library, each command printing text for people or
//! JSON (`--json`) for scripts. The JSON shapes are documented in the README and kept stable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::bench::{bench_backbone, BenchPlan};
use crate::device::{describe_device, select_device, DeviceChoice};
use crate::inference::{
    backbone_or_stand_in, layer_infos, load_model, ClassScore, LoadedModel, StandIn,
};
use crate::vision::grid::render_grid;
use crate::vision::image_io::{load_rgb, DEFAULT_MAX_PIXELS};
use crate::vision::preprocess::ResizeMode;
use crate::weights::download::{fetch_model, DownloadControl};
use crate::weights::{self, best_present_model, catalogue_status, find_model, CATALOGUE};

/// See inside a pretrained CNN (VGG-16, VGG-19, EfficientNet-Lite0) and use it for transfer
/// learning. Without a command, opens the app window.
#[derive(Debug, Parser)]
#[command(name = "cnn-explorer", version, about)]
pub struct Cli {
    /// Compute device: auto (CUDA, then Metal, then CPU), cpu, cuda or metal. In the window it
    /// overrides the device chosen last time.
    #[arg(long, global = true)]
    pub device: Option<DeviceChoice>,

    #[command(flatten)]
    pub window: WindowArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the window (no command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WindowArgs {
    /// A photo to open at start (default: the bundled cat).
    pub photo: Option<PathBuf>,
    /// Model to start with (default: the one chosen last time, else the best installed).
    #[arg(long)]
    pub model: Option<String>,
    /// Layer to show first, e.g. conv3_1 or block5.
    #[arg(long)]
    pub layer: Option<String>,
    /// Channel of that layer to open large over the photo.
    #[arg(long, requires = "layer")]
    pub channel: Option<usize>,
    /// Once the photo, its feature maps and predictions are drawn, save the window as this
    /// PNG and quit (exit status 1 if that cannot happen within 2 minutes).
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the models with their size, source and whether their weights are present.
    Models {
        #[arg(long)]
        json: bool,
    },
    /// Download a model's weights into the weights folder.
    Fetch {
        /// Model name (see `models`).
        model: String,
        /// Download again even if the weights are present.
        #[arg(long)]
        force: bool,
    },
    /// Classify images: the top-K ImageNet classes of each.
    Predict {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// crop: torchvision's Resize(256) + CenterCrop(224); whole: the whole photo at 224x224.
        #[arg(long, default_value = "crop", value_parser = parse_mode)]
        resize: ResizeMode,
        /// One JSON object per image, one per line.
        #[arg(long)]
        json: bool,
    },
    /// List every layer (tap) of a model with its shape for one 224x224 image.
    Layers {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Render one layer's channels for an image as a grid PNG, with per-channel means.
    Features {
        image: PathBuf,
        /// Layer name (see `layers`), e.g. conv3_1 or block7.
        #[arg(long)]
        layer: String,
        /// Where to write the grid PNG (default: IMAGE-STEM_LAYER.png here).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Time forward passes and dream steps (forward + gradient to the input) per model.
    Bench {
        /// Model to time (default: every model; absent weights are replaced by random ones).
        #[arg(long)]
        model: Option<String>,
        /// Timed calls per measurement (the median is reported).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Untimed calls first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Which model to run.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model name (see `models`; default: the best one whose weights are present).
    #[arg(long)]
    pub model: Option<String>,
    /// Weights file to use instead of the weights folder's.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<ResizeMode, String> {
    match s {
        "crop" | "center-crop" => Ok(ResizeMode::CenterCrop),
        "whole" => Ok(ResizeMode::Whole),
        _ => Err(format!("unknown resize mode '{s}' (crop or whole)")),
    }
}

/// Runs a parsed command; `None` (no command) is the caller's to handle (it opens the window).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        return Ok(());
    };
    let device = cli.device.unwrap_or_default();
    match command {
        Command::Models { json } => models(json),
        Command::Fetch { model, force } => fetch(&model, force),
        Command::Predict {
            images,
            model,
            top,
            resize,
            json,
        } => predict(device, &images, &model, top, resize, json),
        Command::Layers { model, json } => layers(device, &model, json),
        Command::Features {
            image,
            layer,
            output,
            model,
            json,
        } => features(device, &image, &layer, output, &model, json),
        Command::Bench {
            model,
            runs,
            warmup,
            json,
        } => bench(device, model.as_deref(), BenchPlan { warmup, runs }, json),
    }
}

fn models(json: bool) -> anyhow::Result<()> {
    let dir = weights::weights_dir();
    let rows = catalogue_status(&dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("weights folder: {}", dir.display());
    for m in rows {
        println!(
            "{:<20} {:<20} {:>7.1} MB  {:<9} {}",
            m.name,
            m.arch.to_string(),
            m.size_bytes as f64 / 1e6,
            if m.present { "present" } else { "absent" },
            m.source
        );
    }
    Ok(())
}

fn fetch(name: &str, force: bool) -> anyhow::Result<()> {
    let spec = find_model(name)?;
    let dir = weights::weights_dir();
    if spec.is_present_in(&dir) && !force {
        println!(
            "{} is already present at {}",
            spec.name,
            spec.path_in(&dir).display()
        );
        return Ok(());
    }
    eprintln!("downloading {} from {}", spec.name, spec.source.describe());
    let bar = indicatif::ProgressBar::new(spec.size_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress_bar = bar.clone();
    let control = DownloadControl {
        progress: Arc::new(move |done, total| {
            if let Some(total) = total {
                progress_bar.set_length(total);
            }
            progress_bar.set_position(done);
        }),
        ..DownloadControl::default()
    };
    let result = fetch_model(spec, &dir, &control);
    bar.finish_and_clear();
    let path = result?;
    println!("saved {} to {}", spec.name, path.display());
    Ok(())
}

/// Loads the model named by `args`, or the best present one.
fn open_model(device: DeviceChoice, args: &ModelArgs) -> anyhow::Result<LoadedModel> {
    let device = select_device(device)?;
    eprintln!("device: {}", describe_device(&device));
    let name = match (&args.model, &args.weights) {
        (Some(name), _) => name.clone(),
        (None, Some(_)) => bail!("--weights needs --model to say which architecture it holds"),
        (None, None) => match best_present_model(&weights::weights_dir()) {
            Some(spec) => spec.name.to_string(),
            None => bail!(
                "no model weights found in {}; download one with `cnn-explorer fetch \
                 efficientnet-lite0` (19 MB) or `cnn-explorer fetch vgg16` (553 MB)",
                weights::weights_dir().display()
            ),
        },
    };
    Ok(load_model(&name, args.weights.as_deref(), &device)?)
}

#[derive(serde::Serialize)]
struct PredictionJson<'a> {
    image: String,
    model: &'a str,
    top: &'a [ClassScore],
}

fn predict(
    device: DeviceChoice,
    images: &[PathBuf],
    args: &ModelArgs,
    top: usize,
    resize: ResizeMode,
    json: bool,
) -> anyhow::Result<()> {
    let mut model = open_model(device, args)?;
    model.preprocess.mode = resize;
    let mut failed = 0;
    for path in images {
        // One image at a time: a bad file is reported and skipped, the others still run.
        let scores = load_rgb(path, DEFAULT_MAX_PIXELS)
            .map_err(anyhow::Error::from)
            .and_then(|img| Ok(model.predict(&[&img], top)?));
        let scores = match scores {
            Ok(mut s) => s.pop().unwrap_or_default(),
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
                continue;
            }
        };
        if json {
            let row = PredictionJson {
                image: path.display().to_string(),
                model: model.spec.name,
                top: &scores,
            };
            println!("{}", serde_json::to_string(&row)?);
        } else {
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
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified",
            images.len()
        );
    }
    Ok(())
}

fn layers(device: DeviceChoice, args: &ModelArgs, json: bool) -> anyhow::Result<()> {
    let spec = find_model(args.model.as_deref().unwrap_or(CATALOGUE[0].name))?;
    let device = select_device(device)?;
    eprintln!("device: {}", describe_device(&device));
    let (backbone, _real) =
        backbone_or_stand_in(spec, args.weights.as_deref(), &device, StandIn::Zeros)?;
    let infos = layer_infos(backbone.as_ref(), 224, &device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    println!("{} ({}), input [1, 3, 224, 224]:", spec.name, spec.arch);
    for l in infos {
        println!(
            "  {:<10} {:<7} {:?}",
            l.name,
            format!("{:?}", l.kind).to_lowercase(),
            l.shape
        );
    }
    Ok(())
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

fn features(
    device: DeviceChoice,
    image: &Path,
    layer: &str,
    output: Option<PathBuf>,
    args: &ModelArgs,
    json: bool,
) -> anyhow::Result<()> {
    let img = load_rgb(image, DEFAULT_MAX_PIXELS)?;
    let model = open_model(device, args)?;
    let maps = model.layer_maps(&img, layer)?;
    let output = output.unwrap_or_else(|| {
        let stem = image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image");
        PathBuf::from(format!("{stem}_{layer}.png"))
    });
    render_grid(&maps, 48)
        .save(&output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let means = maps.channel_means();
    if json {
        let row = FeaturesJson {
            image: image.display().to_string(),
            model: model.spec.name,
            layer,
            shape: [maps.channels, maps.height, maps.width],
            grid: output.display().to_string(),
            channel_means: means,
        };
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    println!(
        "{} {} of {}: {} channels of {}x{}, grid written to {}",
        model.spec.name,
        layer,
        image.display(),
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

fn bench(
    device: DeviceChoice,
    model: Option<&str>,
    plan: BenchPlan,
    json: bool,
) -> anyhow::Result<()> {
    let device = select_device(device)?;
    eprintln!("device: {}", describe_device(&device));
    let specs = match model {
        Some(name) => vec![find_model(name)?],
        None => CATALOGUE.iter().collect(),
    };
    let mut records = Vec::new();
    for spec in specs {
        let (backbone, real) = backbone_or_stand_in(spec, None, &device, StandIn::Random)?;
        if !real {
            eprintln!(
                "{}: weights absent, timing random weights of the same shapes",
                spec.name
            );
        }
        let rows = bench_backbone(spec.name, backbone.as_ref(), &device, 224, plan)?;
        if !json {
            for r in &rows {
                println!(
                    "{:<20} {:<11} {:>4}  {:>9.1} ms",
                    r.model, r.what, r.size, r.median_ms
                );
            }
        }
        records.extend(rows);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    }
    Ok(())
}
