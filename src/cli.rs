//! The command line: a thin layer over the library, each command printing text for people or
//! JSON (`--json`) for scripts. The JSON shapes are documented in the README and kept stable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use image::RgbImage;

use crate::bench::{bench_backbone, BenchPlan};
use crate::device::{describe_device, select_device, DeviceChoice};
use crate::explain::attack::{attack, AttackSettings};
use crate::explain::dream::{dream, DreamSettings, DreamStart, DreamTarget, Parameterisation};
use crate::inference::{
    backbone_or_stand_in, layer_infos, load_model, ranked, ClassScore, LoadedModel, StandIn,
};
use crate::labels::find_class;
use crate::progress::Throttle;
use crate::train::compare::{
    compare_backbones, compare_observer, CompareEntry, CompareEvent, CompareRow,
};
use crate::train::features::default_cache_dir;
use crate::train::head::Head;
use crate::train::observe::{observer, TrainEvent};
use crate::train::pipeline::{classify_with_head, train_on_folder, TrainConfig};
use crate::train::TrainRequest;
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
    /// Tab to show first: explore, dream or attack.
    #[arg(long, default_value = "explore", value_parser = parse_tab)]
    pub tab: crate::ui::app::Tab,
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
        /// Classify with a trained head (see `train-head`) instead of ImageNet's classes.
        #[arg(long)]
        head: Option<PathBuf>,
        /// One JSON object per image, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Train a classifier head on a folder of photos (class sub-folders, Oxford-IIIT Pet's
    /// images/Breed_1.jpg, or Cats-vs-Dogs' PetImages) over the frozen backbone's features.
    TrainHead {
        dir: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        head: HeadArgs,
        /// Also train the backbone's last convolutional block (VGG: conv5_1-3; ResNet: layer4's
        /// last block; EfficientNet: the head convolution), from its pretrained weights; its
        /// inputs are not cached.
        #[arg(long)]
        fine_tune: bool,
        /// The block's learning rate as a fraction of the head's.
        #[arg(long, default_value_t = 0.1)]
        fine_tune_lr_factor: f64,
        /// Where to save the head (its description goes next to it as .json).
        #[arg(short, long, default_value = "head.safetensors")]
        output: PathBuf,
        /// Also write the split as JSON (classes, and each side's paths with their class), e.g.
        /// to train the same split elsewhere.
        #[arg(long)]
        split_out: Option<PathBuf>,
        /// One JSON object per line: the dataset, each epoch, the result.
        #[arg(long)]
        json: bool,
    },
    /// Train the same head on the same split of DIR with several backbones and compare them:
    /// validation accuracy, feature time per photo, parameters, weights size.
    Compare {
        dir: PathBuf,
        /// Models to compare, comma-separated (default: every model whose weights are in the
        /// weights folder).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        #[command(flatten)]
        head: HeadArgs,
        /// One JSON object per line: each model's result as it finishes.
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
    /// Dream a class: gradient ascent from noise until the network sees it; writes a PNG.
    Dream {
        /// ImageNet class, by name ("zebra") or index ("340").
        #[arg(long = "class", value_name = "NAME|INDEX")]
        class: String,
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Total-variation weight, 0 to 10 (higher: smoother).
        #[arg(long, default_value_t = 0.1)]
        tv: f32,
        /// Image side: 112, 160 or 224.
        #[arg(long, default_value_t = 224)]
        size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Adam's learning rate (default: 0.1 for fourier, 0.02 for pixels).
        #[arg(long)]
        lr: Option<f64>,
        /// Largest random shift per step, in pixels.
        #[arg(long, default_value_t = 8)]
        jitter: u32,
        /// fourier (Lucid-style, the default) or pixels (the notebook's).
        #[arg(long, default_value = "fourier", value_parser = parse_parameterisation)]
        mode: Parameterisation,
        /// Start from this photo instead of noise.
        #[arg(long, value_name = "IMAGE")]
        from: Option<PathBuf>,
        /// Where to write the PNG (default: dream-CLASS.png here).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Adversarial attack: nudge a photo until the network sees the target class (PGD), or
    /// any other class (FGSM with --fgsm); writes the adversarial photo as PNG.
    Attack {
        image: PathBuf,
        /// Target class, by name or index (required unless --fgsm).
        #[arg(long, value_name = "NAME|INDEX", required_unless_present = "fgsm")]
        target: Option<String>,
        /// L-infinity budget in 8-bit pixel units: 4 means 4/255.
        #[arg(long, default_value_t = 4.0)]
        eps: f32,
        /// Step size in 8-bit pixel units.
        #[arg(long, default_value_t = 1.0)]
        step: f32,
        /// Steps at most (the attack stops when it succeeds).
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// One untargeted FGSM step of size --eps instead.
        #[arg(long, conflicts_with = "target")]
        fgsm: bool,
        /// Where to write the PNG (default: IMAGE-STEM_adversarial.png here).
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

/// How a head trains (`train-head`, `compare`).
#[derive(Debug, Clone, clap::Args)]
pub struct HeadArgs {
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Share of each class kept for validation.
    #[arg(long = "val", default_value_t = 0.2)]
    pub val_fraction: f64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed of the split, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A hidden layer of this width (with ReLU and dropout) instead of a linear head.
    #[arg(long)]
    pub mlp: Option<usize>,
    /// Also train on each photo flipped left-right.
    #[arg(long)]
    pub flip: bool,
    /// Oxford-IIIT Pet: two classes, cat and dog, instead of 37 breeds.
    #[arg(long)]
    pub cats_vs_dogs: bool,
    /// Compute every feature again, without reading or writing the cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl HeadArgs {
    /// The training request these flags describe, on the photos of `dir`.
    pub fn request(&self, dir: &Path) -> TrainRequest {
        TrainRequest {
            dir: dir.to_path_buf(),
            cats_vs_dogs: self.cats_vs_dogs,
            val_fraction: self.val_fraction,
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            seed: self.seed,
            mlp_hidden: self.mlp,
            dropout: TrainRequest::DEFAULT_DROPOUT,
            flip: self.flip,
            ..TrainRequest::default()
        }
    }

    /// Where features are cached (`None` with `--no-cache`).
    pub fn feature_cache(&self) -> Option<PathBuf> {
        (!self.no_cache).then(default_cache_dir)
    }
}

/// Which model to run.
#[derive(Debug, Clone, clap::Args)]
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
            head,
            json,
        } => match head {
            Some(head) => predict_with_head(device, &images, &model, &head, top, json),
            None => predict(device, &images, &model, top, resize, json),
        },
        Command::TrainHead {
            dir,
            model,
            head,
            fine_tune,
            fine_tune_lr_factor,
            output,
            split_out,
            json,
        } => {
            let request = TrainRequest {
                fine_tune,
                fine_tune_lr_factor,
                output: output.clone(),
                ..head.request(&dir)
            };
            let config = request.config(head.feature_cache());
            train_head(
                device,
                &dir,
                &model,
                &config,
                &output,
                split_out.as_deref(),
                json,
            )
        }
        Command::Compare {
            dir,
            models,
            head,
            json,
        } => compare(
            device,
            &dir,
            &models,
            &head.request(&dir).config(head.feature_cache()),
            json,
        ),
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
        Command::Dream {
            class,
            steps,
            tv,
            size,
            seed,
            lr,
            jitter,
            mode,
            from,
            output,
            model,
            json,
        } => {
            let class = find_class(&class).with_context(|| {
                format!("no ImageNet class matches '{class}' (give a name or an index 0-999)")
            })?;
            let mut settings = DreamSettings::new(DreamTarget::Class(class));
            settings.steps = steps;
            settings.tv_weight = tv;
            settings.size = size;
            settings.seed = seed;
            settings.jitter = jitter;
            settings.parameterisation = mode;
            settings.learning_rate = lr.unwrap_or(match mode {
                Parameterisation::Fourier => 0.1,
                Parameterisation::Pixels => 0.02,
            });
            if let Some(photo) = from {
                settings.start = DreamStart::Photo(load_rgb(&photo, DEFAULT_MAX_PIXELS)?);
            }
            dream_command(device, &settings, output, &model, json)
        }
        Command::Attack {
            image,
            target,
            eps,
            step,
            steps,
            fgsm,
            output,
            model,
            json,
        } => {
            let target = match (&target, fgsm) {
                (_, true) => None,
                (Some(t), false) => Some(find_class(t).with_context(|| {
                    format!("no ImageNet class matches '{t}' (give a name or an index 0-999)")
                })?),
                (None, false) => bail!("give --target CLASS, or --fgsm"),
            };
            let settings = AttackSettings {
                target,
                eps,
                step: if fgsm { eps } else { step },
                max_steps: if fgsm { 1 } else { steps },
            };
            attack_command(device, &image, &settings, output, &model, json)
        }
    }
}

fn parse_tab(s: &str) -> Result<crate::ui::app::Tab, String> {
    use crate::ui::app::Tab;
    Tab::ALL
        .into_iter()
        .find(|t| t.label().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown tab '{s}' (explore, dream, attack or train)"))
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
    class: usize,
    label: String,
    prob: f32,
    steps: usize,
    ms_per_step: f64,
    size: u32,
    output: String,
}

fn dream_command(
    device: DeviceChoice,
    settings: &DreamSettings,
    output: Option<PathBuf>,
    args: &ModelArgs,
    json: bool,
) -> anyhow::Result<()> {
    let model = open_model(device, args)?;
    let DreamTarget::Class(class) = settings.target else {
        bail!("the command line dreams classes");
    };
    let label = crate::labels::imagenet_label(class);
    let output = output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "dream-{}.png",
            label.replace([' ', '/', '\\'], "_")
        ))
    });
    let outcome = dream(
        &model,
        settings,
        &|| settings.tv_weight,
        &|| false,
        &mut |f| {
            if !json && (f.step % 20 == 0 || f.step == 1) {
                eprintln!(
                    "step {:>4}: p({label}) = {:.3}, score {:.2}, tv {:.3}",
                    f.step, f.prob, f.score, f.penalty
                );
            }
        },
    )?
    .context("the dream was cancelled")?;
    outcome
        .image
        .save(&output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    if json {
        let row = DreamJson {
            model: model.spec.name,
            class,
            label,
            prob: outcome.prob,
            steps: outcome.steps,
            ms_per_step: outcome.ms_per_step,
            size: settings.size,
            output: output.display().to_string(),
        };
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{}: p({label}) = {:.3} after {} steps ({:.0} ms/step); wrote {}",
            model.spec.name,
            outcome.prob,
            outcome.steps,
            outcome.ms_per_step,
            output.display()
        );
    }
    Ok(())
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
    success: bool,
    /// Probability of the target (untargeted: of the best other class) on the saved PNG.
    prob: f32,
    source_prob: f32,
    steps: usize,
    ms_per_step: f64,
    eps: f32,
    linf: u8,
    l2: f64,
    psnr_db: Option<f64>,
    output: String,
}

fn attack_command(
    device: DeviceChoice,
    image: &Path,
    settings: &AttackSettings,
    output: Option<PathBuf>,
    args: &ModelArgs,
    json: bool,
) -> anyhow::Result<()> {
    let model = open_model(device, args)?;
    let photo = load_rgb(image, DEFAULT_MAX_PIXELS)?;
    let outcome = attack(&model, &photo, settings, &|| false, &mut |p| {
        if !json {
            eprintln!(
                "step {:>3}: source {:.3}, target {:.3}, top: {}",
                p.step,
                p.source_prob,
                p.target_prob,
                crate::labels::imagenet_label(p.top_class)
            );
        }
    })?
    .context("the attack was cancelled")?;
    let output = output.unwrap_or_else(|| {
        let stem = image
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{stem}_adversarial.png"))
    });
    outcome
        .adversarial
        .save(&output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let label = crate::labels::imagenet_label;
    if json {
        let row = AttackJson {
            image: image.display().to_string(),
            model: model.spec.name,
            source: outcome.source,
            source_label: label(outcome.source),
            target: outcome.target,
            target_label: outcome.target.map(label),
            top: outcome.last.top_class,
            top_label: label(outcome.last.top_class),
            success: outcome.success,
            prob: outcome.last.target_prob,
            source_prob: outcome.last.source_prob,
            steps: outcome.steps,
            ms_per_step: outcome.ms_per_step,
            eps: settings.eps,
            linf: outcome.linf,
            l2: outcome.l2,
            psnr_db: outcome.psnr_db.is_finite().then_some(outcome.psnr_db),
            output: output.display().to_string(),
        };
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{}: {} -> {} ({}) after {} steps ({:.0} ms/step): L-inf {}/255, L2 {:.3}, PSNR {:.1} dB; wrote {}",
            image.display(),
            label(outcome.source),
            label(outcome.last.top_class),
            if outcome.success { "success" } else { "not reached" },
            outcome.steps,
            outcome.ms_per_step,
            outcome.linf,
            outcome.l2,
            outcome.psnr_db,
            output.display()
        );
    }
    if !outcome.success {
        bail!(
            "the attack did not succeed within {} steps at eps {}/255",
            settings.max_steps,
            settings.eps
        );
    }
    Ok(())
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
    classify_each(
        images,
        |img| Ok(model.predict(&[img], top)?.pop().unwrap_or_default()),
        |path, scores| {
            if json {
                let row = PredictionJson {
                    image: path.display().to_string(),
                    model: model.spec.name,
                    top: scores,
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
            Ok(())
        },
    )
}

/// Classifies each image with `classify` and shows the result with `show`, one image at a
/// time: a bad file is reported and skipped, the others still run, and the command fails at
/// the end if any did.
fn classify_each(
    images: &[PathBuf],
    classify: impl Fn(&RgbImage) -> anyhow::Result<Vec<ClassScore>>,
    show: impl Fn(&Path, &[ClassScore]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in images {
        let scores = load_rgb(path, DEFAULT_MAX_PIXELS)
            .map_err(anyhow::Error::from)
            .and_then(|img| classify(&img));
        match scores {
            Ok(scores) => show(path, &scores)?,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
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

/// `compare`: each model's row as it finishes, then the table and a bar chart.
fn compare(
    device: DeviceChoice,
    dir: &Path,
    names: &[String],
    config: &TrainConfig,
    json: bool,
) -> anyhow::Result<()> {
    let weights_dir = weights::weights_dir();
    let specs: Vec<&'static weights::ModelSpec> = if names.is_empty() {
        weights::CATALOGUE
            .iter()
            .filter(|m| m.is_present_in(&weights_dir))
            .collect()
    } else {
        names
            .iter()
            .map(|n| weights::find_model(n.trim()))
            .collect::<Result<_, _>>()?
    };
    if specs.is_empty() {
        anyhow::bail!(
            "no model's weights are in {} (download some with `cnn-explorer fetch NAME`, \
             or name them with --models)",
            weights_dir.display()
        );
    }
    let device = select_device(device)?;
    let mut throttle = Throttle::terminal();
    let on_event = |event: CompareEvent| match event {
        CompareEvent::Started {
            model,
            index,
            total,
        } => eprintln!("[{}/{total}] {model}", index + 1),
        CompareEvent::Train(TrainEvent::Features(p)) => {
            if throttle.ready(p.done == p.total) {
                eprintln!(
                    "  features {}/{} ({} cached), {:.1} images/s",
                    p.done, p.total, p.cached, p.images_per_s
                );
            }
        }
        CompareEvent::Train(TrainEvent::Epoch(m)) => {
            eprintln!("  epoch {:>3}: val acc {:.1}%", m.epoch, m.val_acc * 100.0)
        }
        CompareEvent::Train(_) => {}
        CompareEvent::Finished(entry) => {
            if json {
                println!("{}", serde_json::to_string(entry).unwrap_or_default());
            } else if let Some(error) = entry.error() {
                eprintln!("  {}: {error}", entry.model);
            }
        }
    };
    let entries = compare_backbones(
        &specs,
        dir,
        &weights_dir,
        config,
        &device,
        &mut compare_observer(on_event, || false),
    )?;
    if !json {
        print!("{}", comparison_table(&entries));
    }
    if entries.iter().all(|e| e.row().is_none()) {
        anyhow::bail!("no model could be trained");
    }
    Ok(())
}

/// The comparison as a text table with bar charts of accuracy and feature time.
fn comparison_table(entries: &[CompareEntry]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<20} {:>9} {:>12} {:>11} {:>10} {:>6}  split",
        "model", "val acc", "ms/photo", "parameters", "weights", "dim"
    );
    for e in entries {
        match &e.result {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "{:<20} {:>8.1}% {:>12.1} {:>10.1}M {:>8.1} MB {:>6}  {}/{}",
                    r.model,
                    r.val_accuracy * 100.0,
                    r.feature_ms_per_image,
                    r.parameters as f64 / 1e6,
                    r.weights_bytes as f64 / 1e6,
                    r.embedding_dim,
                    r.train_photos,
                    r.val_photos
                );
            }
            Err(error) => {
                let _ = writeln!(out, "{:<20} {error}", e.model);
            }
        }
    }
    let rows: Vec<&CompareRow> = entries.iter().filter_map(CompareEntry::row).collect();
    let slowest = rows
        .iter()
        .map(|r| r.feature_ms_per_image)
        .fold(0.0, f64::max);
    let bar = |fraction: f64| "█".repeat((fraction.clamp(0.0, 1.0) * 40.0).round() as usize);
    let _ = writeln!(out, "\nvalidation accuracy");
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<20} {} {:.1}%",
            r.model,
            bar(f64::from(r.val_accuracy)),
            r.val_accuracy * 100.0
        );
    }
    let _ = writeln!(out, "feature time per photo");
    for r in &rows {
        let _ = writeln!(
            out,
            "  {:<20} {} {:.1} ms",
            r.model,
            bar(r.feature_ms_per_image / slowest.max(1e-9)),
            r.feature_ms_per_image
        );
    }
    out
}

fn train_head(
    device: DeviceChoice,
    dir: &Path,
    args: &ModelArgs,
    config: &TrainConfig,
    output: &Path,
    split_out: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let model = open_model(device, args)?;
    let mut throttle = Throttle::terminal();
    let on_event = |event: TrainEvent| match event {
        TrainEvent::Scanned(d) => {
            let counts = d.class_counts();
            if json {
                let row = serde_json::json!({
                    "event": "dataset", "root": d.root, "layout": d.layout,
                    "classes": d.classes, "counts": counts, "skipped": d.skipped.len(),
                });
                println!("{row}");
            } else {
                println!(
                    "{} ({:?}): {} photos",
                    d.root.display(),
                    d.layout,
                    d.items.len()
                );
                for (name, n) in d.classes.iter().zip(&counts) {
                    println!("  {name:<30} {n:>6}");
                }
                if !d.skipped.is_empty() {
                    println!("  skipped {} files (not images or empty)", d.skipped.len());
                }
            }
        }
        TrainEvent::Features(p) => {
            if throttle.ready(p.done == p.total) {
                eprintln!(
                    "features {}/{} ({} cached), {:.1} images/s, ETA {:.0} s",
                    p.done, p.total, p.cached, p.images_per_s, p.eta_s
                );
            }
        }
        TrainEvent::Step { .. } => {}
        TrainEvent::Epoch(m) => {
            if json {
                let mut row = serde_json::to_value(m).unwrap_or_default();
                row["event"] = "epoch".into();
                println!("{row}");
            } else {
                println!(
                    "epoch {:>3}: train loss {:.4} acc {:.1}%  val loss {:.4} acc {:.1}%",
                    m.epoch,
                    m.train_loss,
                    m.train_acc * 100.0,
                    m.val_loss,
                    m.val_acc * 100.0
                );
            }
        }
    };
    let outcome = train_on_folder(&model, dir, config, &mut observer(on_event, || false))?;
    let json_path = outcome
        .head
        .save(output, model.spec.name, &model.preprocess)?;
    if let Some(path) = split_out {
        let side = |indices: &[usize]| -> Vec<serde_json::Value> {
            let items = &outcome.dataset.items;
            indices
                .iter()
                .map(|&i| serde_json::json!({"path": items[i].path, "class": items[i].class}))
                .collect()
        };
        let split = serde_json::json!({
            "classes": outcome.dataset.classes,
            "train": side(&outcome.split.train),
            "val": side(&outcome.split.val),
        });
        std::fs::write(path, serde_json::to_string_pretty(&split)?)
            .with_context(|| format!("could not write the split to {}", path.display()))?;
    }
    let best = &outcome.head.metrics[outcome.head.best_epoch];
    if json {
        let row = serde_json::json!({
            "event": "done",
            "val_acc": outcome.val_accuracy,
            "best_epoch": best.epoch,
            "train": outcome.split.train.len(),
            "val": outcome.split.val.len(),
            "failed": outcome.failed.len(),
            "skipped": outcome.dataset.skipped.len(),
            "features_from_cache": outcome.features_from_cache,
            "features_computed": outcome.features_computed,
            "images_per_s": outcome.images_per_s,
            "confusion": outcome.confusion,
            "head": output,
        });
        println!("{row}");
    } else {
        for f in &outcome.failed {
            eprintln!("skipped {}: {}", f.path.display(), f.reason);
        }
        println!(
            "best epoch {}: validation accuracy {:.1}% ({} train, {} validation photos; {} \
             unreadable skipped; features: {} computed at {:.1} images/s, {} from the cache)",
            best.epoch,
            outcome.val_accuracy * 100.0,
            outcome.split.train.len(),
            outcome.split.val.len(),
            outcome.failed.len() + outcome.dataset.skipped.len(),
            outcome.features_computed,
            outcome.images_per_s,
            outcome.features_from_cache
        );
        println!("saved {} and {}", output.display(), json_path.display());
    }
    Ok(())
}

fn predict_with_head(
    device: DeviceChoice,
    images: &[PathBuf],
    args: &ModelArgs,
    head_path: &Path,
    top: usize,
    json: bool,
) -> anyhow::Result<()> {
    let (head, info) = Head::load(head_path)?;
    let mut args = args.clone();
    args.model.get_or_insert(info.backbone.clone());
    let model = open_model(device, &args)?;
    classify_each(
        images,
        |img| {
            let probs = classify_with_head(&model, &head, &[img])?
                .pop()
                .unwrap_or_default();
            Ok(ranked(&probs, top, |i| head.classes[i].clone()))
        },
        |path, scores| {
            if json {
                let row = serde_json::json!({
                    "image": path.display().to_string(),
                    "model": model.spec.name,
                    "head": head_path,
                    "top": scores,
                });
                println!("{row}");
            } else {
                println!(
                    "{} ({} + {}):",
                    path.display(),
                    model.spec.name,
                    head_path.display()
                );
                for (rank, s) in scores.iter().enumerate() {
                    println!("  {}. {:<30} {:>5.1}%", rank + 1, s.label, s.prob * 100.0);
                }
            }
            Ok(())
        },
    )
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
        let mut rows = Vec::new();
        for size in [224, 112] {
            rows.extend(bench_backbone(
                spec.name,
                backbone.as_ref(),
                &device,
                size,
                plan,
            )?);
        }
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
